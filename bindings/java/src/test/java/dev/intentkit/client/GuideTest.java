package dev.intentkit.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every Java block of docs/guide/java.md runs, in order, as one program against a real
 * `intentkitd --sandbox` on free ports, and prints what the page's `text` blocks say it prints.
 * The only changes to the page's code: the sandbox's default addresses (127.0.0.1:50051 for
 * gRPC, :8701 and :8702 for the simulators) become the free ports this sandbox got. The names
 * the page calls yours (credit, log, headers, rawBody, response) are stand-ins that print to
 * stderr; the production block's PEM files are the TLS tests' certificates.
 */
@Tag("integration")
class GuideTest {
  private static final Pattern BLOCK = Pattern.compile("(?m)^```(\\w*)\\n(.*?)^```\\n", Pattern.DOTALL);

  record Block(String language, String body, int end, int start) {}

  static List<Block> blocks(String page) {
    List<Block> out = new ArrayList<>();
    Matcher m = BLOCK.matcher(page);
    while (m.find()) {
      out.add(new Block(m.group(1), m.group(2), m.end(), m.start()));
    }
    return out;
  }

  @Test
  void everyJavaBlockOfTheGuideRunsAgainstTheSandboxAndPrintsWhatThePageSays(@TempDir Path dir) throws Exception {
    String page = Files.readString(Path.of("../../docs/guide/java.md"));
    List<Block> all = blocks(page);
    StringBuilder code = new StringBuilder();
    StringBuilder expected = new StringBuilder();
    int javaBlocks = 0;
    for (int i = 0; i < all.size(); i++) {
      Block b = all.get(i);
      if (!b.language().equals("java")) {
        continue;
      }
      javaBlocks++;
      code.append("    // block ").append(javaBlocks).append('\n').append(b.body().indent(4));
      // Its output is the text block right after it, if nothing but blank lines come between.
      if (i + 1 < all.size() && all.get(i + 1).language().equals("text")
          && page.substring(b.end(), all.get(i + 1).start()).isBlank()) {
        expected.append(all.get(i + 1).body());
      }
    }
    assertTrue(javaBlocks >= 10, "the guide has " + javaBlocks + " Java blocks");
    assertTrue(code.indexOf("tr-main") < 0 && code.indexOf("in-main") < 0, "the guide names accounts the sandbox does not have");

    try (Sandbox s = Sandbox.start(Files.createDirectories(dir.resolve("data")), null)) {
      String body = code.toString()
          .replace("127.0.0.1:50051", s.grpcAddr)
          .replace("http://127.0.0.1:8701", s.pientegra)
          .replace("http://127.0.0.1:8702", s.decentro);
      String source = """
          import dev.intentkit.client.*;
          import dev.intentkit.client.testing.*;
          import dev.intentkit.v1.*;
          import com.google.protobuf.ByteString;
          import io.grpc.Metadata;
          import io.grpc.stub.MetadataUtils;
          import java.net.URI;
          import java.net.http.*;
          import java.nio.file.Path;
          import java.time.Duration;
          import java.util.Map;
          import java.util.concurrent.*;

          public class Guide {
            /** Stand-ins for what the page calls yours. */
            static void credit(String businessKey, long amountMinor) {
              System.err.println("credit " + businessKey + " " + amountMinor);
            }
            interface Log {
              void info(String format, Object... args);
              void warn(String format, Object... args);
            }
            static final Log log = new Log() {
              public void info(String f, Object... a) { System.err.println("info " + f + " " + java.util.Arrays.toString(a)); }
              public void warn(String f, Object... a) { System.err.println("warn " + f + " " + java.util.Arrays.toString(a)); }
            };
            static final Map<String, String> headers = Map.of("content-type", "application/json");
            static final byte[] rawBody = "{\\"event\\":\\"intent.approved\\"}".getBytes(java.nio.charset.StandardCharsets.UTF_8);
            static final class Response {
              void setStatus(int status) { System.err.println("response status " + status); }
              java.io.PrintWriter getWriter() { return new java.io.PrintWriter(System.err, true); }
            }
            static final Response response = new Response();

            public static void main(String[] args) throws Exception {
          %s
              System.exit(0); // the stand-in HTTP client's threads are not daemons
            }
          }
          """.formatted(body);
      Path src = dir.resolve("Guide.java");
      Files.writeString(src, source);
      JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
      StringWriter errors = new StringWriter();
      String cp = System.getProperty("java.class.path");
      boolean ok = javac.getTask(errors, null, null, List.of("-classpath", cp, "-d", dir.toString()), null,
          javac.getStandardFileManager(null, null, null).getJavaFileObjects(src)).call();
      assertTrue(ok, () -> errors + "\n" + numbered(source));
      for (String pem : List.of("ca.pem", "client.pem", "client.key")) {
        Files.copy(Path.of("src/test/resources/tls", pem), dir.resolve(pem));
      }
      String javaBin = Path.of(System.getProperty("java.home"), "bin", "java").toString();
      Process p = new ProcessBuilder(javaBin, "-cp", dir + java.io.File.pathSeparator + cp, "Guide")
          .directory(dir.toFile()).redirectError(dir.resolve("stderr.txt").toFile()).start();
      byte[] out = p.getInputStream().readAllBytes();
      assertTrue(p.waitFor(120, TimeUnit.SECONDS), "the guide's program did not end");
      String stdout = new String(out, StandardCharsets.UTF_8);
      String stderr = Files.readString(dir.resolve("stderr.txt"));
      assertEquals(0, p.exitValue(), () -> "the guide's program failed:\n" + stderr + "\n" + numbered(source));
      assertEquals(expected.toString(), stdout, () -> "stderr:\n" + stderr);
      System.out.println("guide blocks: " + javaBlocks + " ran against the sandbox, output as the page says");
    }
  }

  static String numbered(String source) {
    String[] lines = source.split("\n", -1);
    StringBuilder b = new StringBuilder();
    for (int i = 0; i < lines.length; i++) {
      b.append(String.format("%4d  %s%n", i + 1, lines[i]));
    }
    return b.toString();
  }
}
