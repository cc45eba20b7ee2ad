package dev.intentkit.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.intentkit.client.testing.IntentkitTestServer;
import dev.intentkit.v1.CreateDepositRequest;
import dev.intentkit.v1.GetIntentRequest;
import dev.intentkit.v1.Intent;
import dev.intentkit.v1.IntentServiceGrpc;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.TlsServerCredentials;
import io.grpc.stub.StreamObserver;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * Issue 26, item 5: what a Java service configures on its client (a channel of its own or the
 * channel builder, interceptors, deadlines by default and per call, TLS with a private CA and
 * mTLS, an executor, the retry policy) and the CompletableFuture API, on local servers.
 */
class ClientOptionsTest {
  static CreateDepositRequest deposit(String key, long amount) {
    return CreateDepositRequest.newBuilder().setIdempotencyKey(key).setAccount("tr-sandbox").setAmountMinor(amount)
        .setCurrency("TRY").setReference("order-" + key).setUserId("user-42").build();
  }

  /** Answers GetIntent after a delay, and fails the first `failFirst` calls UNAVAILABLE. */
  static final class Slow extends IntentServiceGrpc.IntentServiceImplBase {
    final AtomicInteger calls = new AtomicInteger();
    final CountDownLatch cancelled = new CountDownLatch(1);
    volatile long delayMs;
    volatile int failFirst;

    @Override
    public void getIntent(GetIntentRequest r, StreamObserver<Intent> out) {
      int n = calls.incrementAndGet();
      if (n <= failFirst) {
        out.onError(Status.UNAVAILABLE.withDescription("try again").asRuntimeException());
        return;
      }
      ((io.grpc.stub.ServerCallStreamObserver<Intent>) out).setOnCancelHandler(cancelled::countDown);
      try {
        Thread.sleep(delayMs);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      out.onNext(Intent.newBuilder().setId(r.getId()).build());
      out.onCompleted();
    }
  }

  @Test
  void interceptorsRunOnEveryCallAfterTheToken() throws Exception {
    List<String> seen = new CopyOnWriteArrayList<>();
    ClientInterceptor first = header("x-first", seen);
    ClientInterceptor second = header("x-second", seen);
    try (NetServer server = new NetServer(new Slow());
         IntentkitClient client = IntentkitClient.builder(server.target()).usePlaintext().token("t0ken")
             .intercept(first, second).build()) {
      assertEquals("a", client.getIntent("a").getId());
      assertEquals(List.of("x-first", "x-second"), seen);
      assertEquals("Bearer t0ken", server.lastHeader("authorization"));
      assertEquals("x-first", server.lastHeader("x-first"));
      assertEquals("x-second", server.lastHeader("x-second"));
    }
  }

  static ClientInterceptor header(String name, List<String> seen) {
    Metadata.Key<String> key = Metadata.Key.of(name, Metadata.ASCII_STRING_MARSHALLER);
    return new ClientInterceptor() {
      @Override
      public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> m, CallOptions o, Channel next) {
        return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(m, o)) {
          @Override
          public void start(Listener<R> l, Metadata h) {
            seen.add(name);
            h.put(key, name);
            super.start(l, h);
          }
        };
      }
    };
  }

  @Test
  void theDefaultDeadlineAndAPerCallDeadlineBothApply() throws Exception {
    Slow slow = new Slow();
    slow.delayMs = 600;
    try (NetServer server = new NetServer(slow);
         IntentkitClient client = IntentkitClient.builder(server.target()).usePlaintext()
             .defaultDeadline(Duration.ofMillis(200)).build()) {
      IntentkitException e = assertThrows(IntentkitException.class, () -> client.getIntent("a"));
      assertEquals(Reasons.DEADLINE_EXCEEDED, e.reason());
      // The same client, a longer deadline for one call.
      assertEquals("a", client.withDeadline(Duration.ofSeconds(5)).getIntent("a").getId());
      // And a shorter one than the default, asynchronously too.
      slow.delayMs = 300;
      CompletionException ce = assertThrows(CompletionException.class,
          () -> client.withDeadline(Duration.ofMillis(50)).async().getIntent("b").join());
      assertEquals(Reasons.DEADLINE_EXCEEDED, assertInstanceOf(IntentkitException.class, ce.getCause()).reason());
    }
  }

  @Test
  void theExecutorRunsTheCallbacksAndTheChannelBuilderCanBeCustomised() throws Exception {
    AtomicInteger ran = new AtomicInteger();
    ExecutorService pool = Executors.newFixedThreadPool(2);
    AtomicInteger customised = new AtomicInteger();
    try (NetServer server = new NetServer(new Slow());
         IntentkitClient client = IntentkitClient.builder(server.target()).usePlaintext()
             .executor(r -> {
               ran.incrementAndGet();
               pool.execute(r);
             })
             .keepAlive(Duration.ofSeconds(30), Duration.ofSeconds(5))
             .configureChannel(b -> {
               customised.incrementAndGet();
               b.userAgent("ledger-service/1.0");
             }).build()) {
      assertEquals("x", client.async().getIntent("x").get(5, TimeUnit.SECONDS).getId());
      assertTrue(ran.get() > 0, "the executor ran nothing");
      assertEquals(1, customised.get());
      assertTrue(server.lastHeader("user-agent").startsWith("ledger-service/1.0"), server.lastHeader("user-agent"));
    } finally {
      pool.shutdownNow();
    }
  }

  @Test
  void theRetryPolicyIsTheCallersChoice() throws Exception {
    Slow flaky = new Slow();
    flaky.failFirst = 1;
    try (NetServer server = new NetServer(flaky);
         IntentkitClient retrying = IntentkitClient.builder(server.target()).usePlaintext().build();
         IntentkitClient once = IntentkitClient.builder(server.target()).usePlaintext().retryPolicy(RetryPolicy.none()).build()) {
      assertEquals("a", retrying.getIntent("a").getId());
      assertEquals(2, flaky.calls.get(), "the default policy retries UNAVAILABLE");
      flaky.calls.set(0);
      IntentkitException e = assertThrows(IntentkitException.class, () -> once.getIntent("a"));
      assertEquals(Reasons.UNAVAILABLE, e.reason());
      assertEquals(1, flaky.calls.get());
    }
    assertThrows(IllegalArgumentException.class, () -> RetryPolicy.of(6, Duration.ofMillis(10), Duration.ofMillis(10)));
  }

  @Test
  void aChannelOfTheCallersIsUsedAndNeverClosedByTheClient() throws Exception {
    try (IntentkitTestServer fake = IntentkitTestServer.start()) {
      ManagedChannel channel = fake.channel();
      try (IntentkitClient client = IntentkitClient.builder(channel).token("t").build()) {
        assertEquals(IntentkitTestServer.DEPOSIT_ACCOUNT, client.createDeposit(deposit("k1", 100)).getAccount());
      }
      assertFalse(channel.isShutdown(), "the client shut down the caller's channel");
      assertThrows(IllegalStateException.class, () -> IntentkitClient.builder(channel).usePlaintext().build());
      assertThrows(IllegalStateException.class, () -> IntentkitClient.builder(channel).executor(Runnable::run).build());
    }
  }

  @Test
  void futuresCompleteFailAsIntentkitExceptionsAndCancelTheirCall() throws Exception {
    try (IntentkitTestServer fake = IntentkitTestServer.start(); IntentkitClient client = fake.client()) {
      Intent first = client.async().createDeposit(deposit("order-9", 500)).get(5, TimeUnit.SECONDS);
      CompletableFuture<Intent> conflict = client.async().createDeposit(deposit("order-9", 501));
      CompletionException e = assertThrows(CompletionException.class, conflict::join);
      IntentkitException ie = assertInstanceOf(IntentkitException.class, e.getCause());
      assertEquals(Reasons.IDEMPOTENCY_CONFLICT, ie.reason());
      assertEquals(first.getId(), ie.intentId().orElseThrow());
      assertEquals(first.getId(), client.async().getIntent(first.getId()).thenApply(Intent::getId).get(5, TimeUnit.SECONDS));
    }
    Slow slow = new Slow();
    slow.delayMs = 2_000;
    try (NetServer server = new NetServer(slow);
         IntentkitClient client = IntentkitClient.builder(server.target()).usePlaintext().build()) {
      CompletableFuture<Intent> f = client.async().getIntent("slow");
      Thread.sleep(200);
      assertTrue(f.cancel(true));
      assertTrue(slow.cancelled.await(5, TimeUnit.SECONDS), "the server never saw the call cancelled");
    }
  }

  static Path tls(String file) {
    return Path.of("src/test/resources/tls", file).toAbsolutePath();
  }

  @Test
  void tlsWithAPrivateCaAndMutualTls() throws Exception {
    TlsServerCredentials.Builder creds = TlsServerCredentials.newBuilder()
        .keyManager(tls("server.pem").toFile(), tls("server.key").toFile())
        .trustManager(tls("ca.pem").toFile())
        .clientAuth(TlsServerCredentials.ClientAuth.REQUIRE);
    try (NetServer server = new NetServer(new Slow(), creds.build())) {
      String target = "localhost:" + server.server.getPort();
      try (IntentkitClient mtls = IntentkitClient.builder(target).trustedCertificates(tls("ca.pem"))
          .clientCertificate(tls("client.pem"), tls("client.key")).build()) {
        assertEquals("a", mtls.getIntent("a").getId());
      }
      try (IntentkitClient noCert = IntentkitClient.builder(target).trustedCertificates(tls("ca.pem"))
          .retryPolicy(RetryPolicy.none()).build()) {
        assertEquals(Reasons.UNAVAILABLE, assertThrows(IntentkitException.class, () -> noCert.getIntent("a")).reason());
      }
      try (IntentkitClient otherCa = IntentkitClient.builder(target).trustedCertificates(tls("other-ca.pem"))
          .clientCertificate(tls("client.pem"), tls("client.key")).retryPolicy(RetryPolicy.none()).build()) {
        assertEquals(Reasons.UNAVAILABLE, assertThrows(IntentkitException.class, () -> otherCa.getIntent("a")).reason());
      }
    }
    assertThrows(IllegalStateException.class,
        () -> IntentkitClient.builder("localhost:1").usePlaintext().trustedCertificates(tls("ca.pem")).build());
    assertThrows(IllegalArgumentException.class,
        () -> IntentkitClient.builder("localhost:1").trustedCertificates(tls("missing.pem")).build());
  }
}
