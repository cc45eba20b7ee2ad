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
 * The checkout README's Java snippet compiles as pasted (inside a main, with a credit method).
 * docs/guide/java.md's blocks are run, not only compiled: GuideTest.
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
}
