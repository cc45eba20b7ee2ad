package dev.intentkit.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.intentkit.v1.CreateAccountVerificationRequest;
import dev.intentkit.v1.CreateDepositRequest;
import dev.intentkit.v1.Intent;
import dev.intentkit.v1.IntentStatus;
import dev.intentkit.v1.ListEventsRequest;
import dev.intentkit.v1.VerifiedPayer;
import io.grpc.Status;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Over the network against the real intentkitd: what a Java backend calls, and what it gets. */
@Tag("integration")
class IntentkitClientTest {
  private static final AtomicLong COUNTER = new AtomicLong();
  private static Path sharedDir;
  private static Sandbox shared;
  private static IntentkitClient client;

  @BeforeAll
  static void start() throws Exception {
    sharedDir = java.nio.file.Files.createTempDirectory("intentkit-java-");
    shared = Sandbox.start(sharedDir, null);
    client = shared.client();
  }

  @AfterAll
  static void stop() throws Exception {
    client.close();
    shared.close();
  }

  static String unique(String prefix) {
    return prefix + "-" + System.nanoTime() + "-" + COUNTER.incrementAndGet();
  }

  static CreateDepositRequest deposit(String key, long amount) {
    return CreateDepositRequest.newBuilder()
        .setIdempotencyKey(key).setAccount("tr-sandbox").setAmountMinor(amount).setCurrency("TRY")
        .setReference("order-" + key).setUserId("user-42").build();
  }

  static Intent waitStatus(IntentkitClient c, String id, IntentStatus want) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (true) {
      Intent it = c.getIntent(id);
      if (it.getStatus() == want) {
        return it;
      }
      if (System.nanoTime() > deadline) {
        fail("intent " + id + " is " + it.getStatus() + ", want " + want);
      }
      Thread.sleep(20);
    }
  }

  /** The payer opens the hosted page; the simulator then signs and sends intent.approved. */
  static void approve(Sandbox s, Intent it) throws Exception {
    assertEquals(200, Sandbox.open(it.getHandoff().getHostedPage().getUrl()));
    Sandbox.control(s.pientegra + "/_control/intents/" + it.getProviderRef().getPientegra().getIntentId() + "/approve", "");
  }

  /** A consumer JVM that can be SIGKILLed; its lines are "EVENT seq type intentId". */
  static final class ConsumerProcess implements AutoCloseable {
    final Process process;
    final List<String[]> events = Collections.synchronizedList(new ArrayList<>());

    ConsumerProcess(Sandbox s, String name) throws Exception {
      String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
      process = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"),
          ConsumerMain.class.getName(), s.grpcAddr, name).redirectError(ProcessBuilder.Redirect.INHERIT).start();
      Thread reader = new Thread(() -> {
        try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
          String line;
          while ((line = r.readLine()) != null) {
            if (line.startsWith("EVENT ")) {
              events.add(line.split(" "));
            }
          }
        } catch (java.io.IOException ignored) {
          // killed
        }
      });
      reader.setDaemon(true);
      reader.start();
    }

    List<String[]> events() {
      synchronized (events) {
        return new ArrayList<>(events);
      }
    }

    long waitFor(String type, String intentId) throws InterruptedException {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (System.nanoTime() < deadline) {
        for (String[] e : events()) {
          if (e[2].equals(type) && e[3].equals(intentId)) {
            return Long.parseLong(e[1]);
          }
        }
        Thread.sleep(20);
      }
      throw new AssertionError("the consumer did not receive " + type + " for " + intentId);
    }

    @Override
    public void close() throws InterruptedException {
      process.destroyForcibly();
      process.waitFor(15, TimeUnit.SECONDS);
    }
  }

  @Test
  void anApprovedDepositReachesTheConsumerExactlyOnceAcrossAKill() throws Exception {
    String consumer = unique("ledger");
    long approvedSeq;
    Intent first;
    List<String[]> before;
    try (ConsumerProcess one = new ConsumerProcess(shared, consumer)) {
      first = client.createDeposit(deposit(unique("dep"), 150_000));
      assertEquals(IntentStatus.INTENT_STATUS_PENDING, first.getStatus());
      assertFalse(first.getHandoff().getHostedPage().getUrl().isEmpty());
      approve(shared, first);
      waitStatus(client, first.getId(), IntentStatus.INTENT_STATUS_APPROVED);
      approvedSeq = one.waitFor("intent.approved", first.getId());
      // Kill only once the ack of intent.approved reached the server.
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while (client.listEvents(ListEventsRequest.newBuilder().setConsumer(consumer).setLimit(1).build()).getAckedSeq() < approvedSeq) {
        assertTrue(System.nanoTime() < deadline, "the consumer never acked " + approvedSeq);
        Thread.sleep(20);
      }
      one.close();
      before = one.events();
    }
    try (ConsumerProcess two = new ConsumerProcess(shared, consumer)) {
      Intent next = client.createDeposit(deposit(unique("dep"), 99_00));
      approve(shared, next);
      two.waitFor("intent.approved", next.getId());
      for (String[] e : two.events()) {
        assertTrue(Long.parseLong(e[1]) > approvedSeq, "the restarted consumer received seq " + e[1] + " at or before its ack");
        assertNotEquals(first.getId(), e[3], "the restarted consumer received the first deposit again");
      }
      List<String[]> all = new ArrayList<>(before);
      all.addAll(two.events());
      long approvals = all.stream().filter(e -> e[2].equals("intent.approved") && e[3].equals(first.getId())).count();
      assertEquals(1, approvals);
    }
  }

  @Test
  void theConsumerResumesAcrossAServerRestart(@TempDir Path dir) throws Exception {
    String addr = Sandbox.freeAddr();
    Sandbox s = Sandbox.start(dir, addr);
    Map<String, List<Long>> got = new HashMap<>();
    try (IntentkitClient c = IntentkitClient.builder(addr).usePlaintext().token(Sandbox.TOKEN)
            .defaultDeadline(Duration.ofSeconds(3)).build();
         EventConsumer consumer = c.consume("restart", e -> {
           synchronized (got) {
             got.computeIfAbsent(e.getTypeName() + "/" + e.getIntentId(), k -> new ArrayList<>()).add(e.getSeq());
           }
         }, Duration.ofMillis(50), Duration.ofMillis(500))) {
      Intent before = createRetrying(c, deposit(unique("before"), 10_00));
      approve(s, before);
      waitHas(got, "intent.approved/" + before.getId());

      // A crash, then the same server back on the same port and database.
      s.kill();
      s = Sandbox.start(dir, addr);
      Intent after = createRetrying(c, deposit(unique("after"), 20_00));
      approve(s, after);
      waitHas(got, "intent.approved/" + after.getId());
      assertTrue(consumer.retries() > 0, "the consumer never had to reconnect");
      assertTrue(consumer.failure().isEmpty(), () -> "consumer failed: " + consumer.failure());

      synchronized (got) {
        got.forEach((k, seqs) -> assertEquals(1, seqs.size(), k + " handled " + seqs));
        int total = got.size();
        int outbox = c.listEvents(ListEventsRequest.newBuilder().setConsumer("audit").setAfterSeq(0).setLimit(500).build()).getEventsCount();
        assertEquals(outbox, total, "handled events vs the outbox");
      }
    } finally {
      s.close();
    }
  }

  /** A create retried with the same key while it fails retryably (the channel connecting). */
  static Intent createRetrying(IntentkitClient c, CreateDepositRequest req) throws InterruptedException {
    for (int attempt = 0; ; attempt++) {
      try {
        return c.createDeposit(req);
      } catch (IntentkitException e) {
        if (!e.retryable() || attempt == 50) {
          throw e;
        }
        Thread.sleep(100);
      }
    }
  }

    static void waitHas(Map<String, List<Long>> got, String key) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (true) {
      synchronized (got) {
        if (got.containsKey(key)) {
          return;
        }
        if (System.nanoTime() > deadline) {
          fail("no " + key + "; got " + got.keySet());
        }
      }
      Thread.sleep(20);
    }
  }

  @Test
  void aVerificationReturnsTheVerifiedPayer() throws Exception {
    Intent it = client.createAccountVerification(CreateAccountVerificationRequest.newBuilder()
        .setIdempotencyKey(unique("ver")).setAccount("in-sandbox").setReference(unique("kyc")).setUserId("user-7")
        .setPurposeMessage("Verify your account").setGenerateQr(true).setGenerateUri(true).build());
    assertEquals(IntentStatus.INTENT_STATUS_PENDING, it.getStatus());
    assertFalse(it.getHandoff().getUpi().getShortLink().isEmpty());
    Sandbox.control(shared.decentro + "/_control/transactions/" + it.getProviderRef().getDecentro().getTxnId() + "/pay",
        "{\"payerName\":\"Asha Rao\",\"payerVpa\":\"asha@oksbi\",\"payerAccountNumber\":\"XXXXXXXX1234\",\"payerIfsc\":\"SBIN0000042\"}");
    VerifiedPayer p = waitStatus(client, it.getId(), IntentStatus.INTENT_STATUS_APPROVED).getVerifiedPayer();
    assertEquals("Asha Rao", p.getName());
    assertEquals("asha@oksbi", p.getVpa());
    assertEquals("XXXXXXXX1234", p.getMaskedAccountNumber());
    assertEquals("SBIN0000042", p.getIfsc());
  }

  @Test
  void theSameKeyReplaysAndOtherParametersConflict() {
    String key = unique("idem");
    Intent first = client.createDeposit(deposit(key, 500_00));
    Intent again = client.createDeposit(deposit(key, 500_00));
    assertEquals(first.getId(), again.getId());
    assertEquals(first.getProviderRef().getPientegra().getIntentId(), again.getProviderRef().getPientegra().getIntentId());
    IntentkitException e = assertThrows(IntentkitException.class, () -> client.createDeposit(deposit(key, 501_00)));
    assertEquals(Reasons.IDEMPOTENCY_CONFLICT, e.reason());
    assertEquals(Status.Code.ALREADY_EXISTS, e.code());
    assertFalse(e.retryable());
    assertTrue(e.is(Reasons.IDEMPOTENCY_CONFLICT));
    // Issue 26, item 7: the typed error names the intent the key already has (ErrorInfo
    // metadata intent_id), not only its message.
    assertEquals(first.getId(), e.intentId().orElseThrow(() -> new AssertionError("no intentId in " + e)));
  }

  /**
   * Issue 26, item 6: after each of three 8 s outages (long enough for a channel's own reconnect backoff to
   * have grown past 4 s), the consumer streams again within its maximum backoff (500 ms here; the
   * documented bound) plus 1 s of the server being back: one backoff, not the channel's and the
   * consumer's stacked.
   */
  @Test
  void afterAnEightSecondOutageTheConsumerIsBackWithinItsMaxBackoff(@TempDir Path dir) throws Exception {
    String addr = Sandbox.freeAddr();
    Sandbox s = Sandbox.start(dir, addr);
    Map<String, List<Long>> got = new HashMap<>();
    Duration maxBackoff = Duration.ofMillis(500);
    try (IntentkitClient c = IntentkitClient.builder(addr).usePlaintext().token(Sandbox.TOKEN).build();
         EventConsumer consumer = c.consume("recovery", e -> {
           synchronized (got) {
             got.computeIfAbsent(e.getTypeName() + "/" + e.getIntentId(), k -> new ArrayList<>()).add(e.getSeq());
           }
         }, Duration.ofMillis(100), maxBackoff)) {
      Intent before = createRetrying(c, deposit(unique("before"), 10_00));
      waitHas(got, "intent.created/" + before.getId());
      // Three outages: each recovery depends on where the backoffs stand when the server comes
      // back, and every one must be within the bound.
      List<Long> took = new ArrayList<>();
      for (int outage = 1; outage <= 3; outage++) {
        s.kill();
        Thread.sleep(8_000);
        s = Sandbox.start(dir, addr);
        long back = System.nanoTime();
        Intent after;
        try (IntentkitClient fresh = s.client()) {
          after = fresh.createDeposit(deposit(unique("after"), 20_00));
        }
        waitHas(got, "intent.created/" + after.getId());
        took.add(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - back));
      }
      System.out.println("recovery: the consumer handled the first new event " + took
          + " ms after intentkitd was back from each of three 8 s outages (bound: max backoff "
          + maxBackoff.toMillis() + " ms + 1 s)");
      assertTrue(Collections.max(took) <= maxBackoff.toMillis() + 1_000, "the consumer was back after " + took + " ms");
      assertTrue(consumer.failure().isEmpty(), () -> "consumer failed: " + consumer.failure());
    } finally {
      s.close();
    }
  }

  /**
   * intentkit sends its own intent id as Decentro's reference_id (the caller's reference stays
   * ours), so a caller cannot send a bad one; what a caller can get wrong, and what Decentro
   * itself refuses, comes back under Decentro's own response key.
   */
  @Test
  void decentroRefusalsKeepDecentrosReason() throws Exception {
    CreateAccountVerificationRequest.Builder req = CreateAccountVerificationRequest.newBuilder()
        .setAccount("in-sandbox").setUserId("user-7");
    IntentkitException e = assertThrows(IntentkitException.class, () -> client.createAccountVerification(
        req.setIdempotencyKey(unique("refused")).setReference(unique("kyc")).setPurposeMessage("pay @ once").build()));
    assertEquals("error_unsanitized_values", e.reason());
    assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
    Sandbox.control(shared.decentro + "/_control/account", "{\"disabled\":true}");
    try {
      e = assertThrows(IntentkitException.class, () -> client.createAccountVerification(
          req.setIdempotencyKey(unique("refused")).setReference(unique("kyc")).setPurposeMessage("Verify").build()));
      assertEquals("error_company/account_disabled", e.reason());
      assertEquals(Status.Code.FAILED_PRECONDITION, e.code());
    } finally {
      Sandbox.control(shared.decentro + "/_control/account", "{\"disabled\":false}");
    }
  }

  @Test
  void noTokenIsUnauthenticated() {
    try (IntentkitClient anonymous = IntentkitClient.builder(shared.grpcAddr).usePlaintext().build();
         IntentkitClient wrong = IntentkitClient.builder(shared.grpcAddr).usePlaintext().token("not-the-token").build()) {
      IntentkitException e = assertThrows(IntentkitException.class, () -> anonymous.getIntent("anything"));
      assertEquals(Reasons.AUTH_MISSING, e.reason());
      assertEquals(Status.Code.UNAUTHENTICATED, e.code());
      e = assertThrows(IntentkitException.class, () -> wrong.getIntent("anything"));
      assertEquals(Reasons.AUTH_INVALID, e.reason());
      assertFalse(e.getMessage().contains("not-the-token"), e.getMessage());
    }
  }

  @Test
  void aSlowProviderExceedsTheCallDeadline() throws Exception {
    Sandbox.control(shared.pientegra + "/_control/faults", "{\"latency_ms\":3000}");
    String key = unique("slow");
    try (IntentkitClient impatient = IntentkitClient.builder(shared.grpcAddr).usePlaintext().token(Sandbox.TOKEN)
        .defaultDeadline(Duration.ofMillis(300)).build()) {
      long start = System.nanoTime();
      IntentkitException e = assertThrows(IntentkitException.class, () -> impatient.createDeposit(deposit(key, 100_00)));
      long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
      assertEquals(Reasons.DEADLINE_EXCEEDED, e.reason());
      assertEquals(Status.Code.DEADLINE_EXCEEDED, e.code());
      assertTrue(e.retryable());
      assertTrue(tookMs < 2_000, "took " + tookMs + " ms");
    } finally {
      Sandbox.control(shared.pientegra + "/_control/faults", "{\"latency_ms\":0}");
    }
    // Retrying with the same key once the provider is back gives the one intent.
    assertEquals(key, client.createDeposit(deposit(key, 100_00)).getIdempotencyKey());
  }

  @Test
  void aFailingHandlerStopsTheConsumerAndLeavesTheEventUnacked() throws Exception {
    String name = unique("picky");
    Intent it = client.createDeposit(deposit(unique("dep"), 1_00));
    try (EventConsumer consumer = client.consume(name, e -> {
      throw new IllegalStateException("ledger down");
    })) {
      assertTrue(consumer.awaitTermination(Duration.ofSeconds(10)));
      Throwable f = consumer.failure().orElseThrow();
      assertTrue(f instanceof EventConsumer.HandlerFailed, f.toString());
      assertEquals("ledger down", f.getCause().getMessage());
    }
    assertEquals(0, client.listEvents(ListEventsRequest.newBuilder().setConsumer(name).setLimit(1).build()).getAckedSeq());
    assertFalse(it.getId().isEmpty());
  }
}
