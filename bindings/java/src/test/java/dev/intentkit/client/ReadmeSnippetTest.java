package dev.intentkit.client;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The README's Java snippet compiles as pasted (inside a main, with a credit method), and so
 * does every Java block of docs/guide/java.md, each as the body of a method of its own beside
 * the stand-ins the page names (credit, log, a servlet response, the request's headers and
 * body).
 */
@Tag("integration")
class ReadmeSnippetTest {
  @Test
  void theReadmeSnippetCompiles(@TempDir Path dir) throws Exception {
    String readme = Files.readString(Path.of("../../README.md"));
    int start = readme.indexOf("```java\n");
    assertTrue(start >= 0, "README.md has no java block");
    int end = readme.indexOf("```\n", start + 8);
    String snippet = readme.substring(start + 8, end);
    String source = "import dev.intentkit.client.*;\nimport dev.intentkit.v1.*;\n"
        + "public class Snippet {\n  static void credit(Event e) {}\n"
        + "  public static void main(String[] args) throws Exception {\n" + snippet + "  }\n}\n";
    Path file = dir.resolve("Snippet.java");
    Files.writeString(file, source);
    JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
    assertNotNull(javac, "a JDK is needed");
    StringWriter errors = new StringWriter();
    boolean ok = javac.getTask(errors, null, null,
        List.of("-classpath", System.getProperty("java.class.path"), "-d", dir.toString()), null,
        javac.getStandardFileManager(null, null, null).getJavaFileObjects(file)).call();
    assertTrue(ok, () -> errors + "\n" + source);
  }

  @Test
  void everyJavaBlockOfTheGuideCompiles(@TempDir Path dir) throws Exception {
    String page = Files.readString(Path.of("../../docs/guide/java.md"));
    StringBuilder methods = new StringBuilder();
    int n = 0;
    for (int at = page.indexOf("```java\n"); at >= 0; at = page.indexOf("```java\n", at + 1)) {
      int end = page.indexOf("```\n", at + 8);
      methods.append("  void block").append(++n).append("() throws Exception {\n")
          .append(page, at + 8, end).append("  }\n");
    }
    assertTrue(n >= 5, "the guide has " + n + " Java blocks");
    String source = "import dev.intentkit.client.*;\nimport dev.intentkit.v1.*;\n"
        + "import com.google.protobuf.ByteString;\nimport java.time.Duration;\nimport java.util.Map;\n"
        + "public class Guide {\n"
        + "  interface Response { void setStatus(int s); java.io.PrintWriter getWriter(); }\n"
        + "  interface Log { void warn(String format, Object... args); }\n"
        + "  IntentkitClient client; Map<String, String> headers; byte[] rawBody; Response response;\n"
        + "  Log log; CreateDepositRequest request;\n"
        + "  static void credit(String businessKey, long amountMinor) {}\n"
        + methods + "}\n";
    Path file = dir.resolve("Guide.java");
    Files.writeString(file, source);
    JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
    StringWriter errors = new StringWriter();
    boolean ok = javac.getTask(errors, null, null,
        List.of("-classpath", System.getProperty("java.class.path"), "-d", dir.toString()), null,
        javac.getStandardFileManager(null, null, null).getJavaFileObjects(file)).call();
    assertTrue(ok, () -> errors + "\n" + source);
  }
}
