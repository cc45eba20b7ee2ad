package dev.intentkit.client;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The real intentkitd in sandbox mode, as a separate process on free ports. */
final class Sandbox implements AutoCloseable {
  static final String TOKEN = "sandbox-token";
  private static final Pattern GRPC = Pattern.compile("^\\s*gRPC\\s+(\\S+)");
  private static final Pattern SIMS = Pattern.compile("^\\s*simulators\\s+pientegra\\s+(\\S+)\\s+decentro\\s+(\\S+)");
  private static final HttpClient HTTP = HttpClient.newHttpClient();

  final Process process;
  final String grpcAddr;
  final String pientegra;
  final String decentro;

  private Sandbox(Process process, String grpcAddr, String pientegra, String decentro) {
    this.process = process;
    this.grpcAddr = grpcAddr;
    this.pientegra = pientegra;
    this.decentro = decentro;
  }

  /** $INTENTKITD (CI builds it once for every suite), or the workspace's debug build. */
  static Path binary() {
    String env = System.getenv("INTENTKITD");
    Path p = env != null && !env.isEmpty() ? Path.of(env) : Path.of("../../target/debug/intentkitd").toAbsolutePath();
    if (!Files.isExecutable(p)) {
      throw new IllegalStateException("no intentkitd at " + p + ": run `cargo build -p intentkit-grpc-server` or set INTENTKITD");
    }
    return p;
  }

  static String freeAddr() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      return "127.0.0.1:" + s.getLocalPort();
    }
  }

  static Sandbox start(Path dataDir, String grpcAddr) throws Exception {
    ProcessBuilder pb = new ProcessBuilder(binary().toString(), "--sandbox", "--data-dir", dataDir.toString());
    Map<String, String> env = pb.environment();
    env.put("INTENTKIT_SERVER_GRPC_ADDR", grpcAddr == null ? "127.0.0.1:0" : grpcAddr);
    env.put("INTENTKIT_SERVER_HTTP_ADDR", "127.0.0.1:0");
    env.put("INTENTKIT_SERVER_METRICS_ADDR", "");
    env.put("INTENTKIT_SANDBOX_PIENTEGRA_ADDR", "127.0.0.1:0");
    env.put("INTENTKIT_SANDBOX_DECENTRO_ADDR", "127.0.0.1:0");
    pb.redirectError(ProcessBuilder.Redirect.appendTo(dataDir.resolve("intentkitd.log").toFile()));
    Process p = pb.start();
    // One reader for the process's whole life: it finds the addresses, then keeps draining, so
    // the server never writes to a closed or full pipe (a broken pipe makes intentkitd panic).
    CompletableFuture<String[]> ready = new CompletableFuture<>();
    Thread reader = new Thread(() -> {
      List<String> seen = new ArrayList<>();
      String grpc = null;
      try {
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        String line;
        while ((line = r.readLine()) != null) {
          if (ready.isDone()) {
            continue;
          }
          seen.add(line);
          Matcher g = GRPC.matcher(line);
          if (g.find()) {
            grpc = g.group(1);
          }
          Matcher s = SIMS.matcher(line);
          if (s.find()) {
            ready.complete(new String[] {grpc, s.group(1).replaceFirst("/api/v1$", ""), s.group(2)});
          }
        }
      } catch (IOException e) {
        // the process ended
      }
      ready.completeExceptionally(new IllegalStateException("intentkitd exited before it was ready: " + seen));
    }, "intentkitd-stdout");
    reader.setDaemon(true);
    reader.start();
    String[] r = ready.get(30, TimeUnit.SECONDS);
    if (grpcAddr != null && !grpcAddr.equals(r[0])) {
      throw new IllegalStateException("asked for gRPC on " + grpcAddr + ", intentkitd serves " + r[0]);
    }
    // Printed means listening; still, a test must not start against a server that is not
    // taking connections, and if it died the failure should say why (its log).
    String[] hostPort = r[0].split(":");
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (true) {
      try (java.net.Socket probe = new java.net.Socket(hostPort[0], Integer.parseInt(hostPort[1]))) {
        break;
      } catch (IOException e) {
        if (!p.isAlive() || System.nanoTime() > deadline) {
          throw new IllegalStateException("intentkitd on " + r[0] + " is not taking connections (alive: "
              + p.isAlive() + "); its log:\n" + Files.readString(dataDir.resolve("intentkitd.log")), e);
        }
        Thread.sleep(20);
      }
    }
    return new Sandbox(p, r[0], r[1], r[2]);
  }

  IntentkitClient client() {
    return IntentkitClient.builder(grpcAddr).usePlaintext().token(TOKEN).build();
  }

  /** POSTs to a simulator's control endpoint; fails unless 2xx. */
  static void control(String url, String body) throws Exception {
    HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create(url))
        .header("content-type", "application/json")
        .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    if (r.statusCode() / 100 != 2) {
      throw new AssertionError("POST " + url + ": " + r.statusCode() + " " + r.body());
    }
  }

  /** GETs a page (the payer opening the hosted page); returns the status. */
  static int open(String url) throws Exception {
    return HTTP.send(HttpRequest.newBuilder(URI.create(url)).GET().build(), HttpResponse.BodyHandlers.discarding()).statusCode();
  }

  /** SIGKILL, as a crash. */
  void kill() throws InterruptedException {
    process.destroyForcibly();
    process.waitFor(15, TimeUnit.SECONDS);
  }

  /** SIGTERM, a clean stop. */
  @Override
  public void close() throws InterruptedException {
    process.destroy();
    if (!process.waitFor(15, TimeUnit.SECONDS)) {
      process.destroyForcibly();
      process.waitFor();
    }
  }
}
