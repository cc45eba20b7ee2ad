package dev.intentkit.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.intentkit.client.testing.IntentkitTestServer;
import dev.intentkit.v1.CreateDepositRequest;
import dev.intentkit.v1.Event;
import dev.intentkit.v1.Intent;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/** The consumer on the in-process fake: what it reports, which thread runs it, how it recovers. */
class EventConsumerTest {
  static CreateDepositRequest deposit(String key) {
    return ClientOptionsTest.deposit(key, 100_00);
  }

  static void waitUntil(String what, java.util.function.BooleanSupplier done) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!done.getAsBoolean()) {
      assertTrue(System.nanoTime() < deadline, "timed out waiting for " + what);
      Thread.sleep(5);
    }
  }

  /** Issue 26, item 7: an Error thrown by the handler used to end the thread with failure() empty. */
  @Test
  void anErrorThrownByTheHandlerIsReportedAndLeavesTheEventUnacked() throws Exception {
    try (IntentkitTestServer server = IntentkitTestServer.start(); IntentkitClient client = server.client()) {
      client.createDeposit(deposit("k"));
      AssertionError boom = new AssertionError("ledger invariant broken");
      try (EventConsumer consumer = client.consume("ledger", e -> {
        throw boom;
      })) {
        assertTrue(consumer.awaitTermination(Duration.ofSeconds(10)));
        EventConsumer.HandlerFailed f = assertInstanceOf(EventConsumer.HandlerFailed.class, consumer.failure().orElseThrow());
        assertSame(boom, f.getCause());
        assertEquals(1, f.seq());
        assertEquals(0, consumer.lastHandled());
      }
      assertEquals(0, server.ackedSeq("ledger"));
    }
  }

  @Test
  void theThreadFactoryMakesTheConsumersThread() throws Exception {
    AtomicReference<Thread> made = new AtomicReference<>();
    AtomicReference<Thread> ran = new AtomicReference<>();
    try (IntentkitTestServer server = IntentkitTestServer.start(); IntentkitClient client = server.client()) {
      client.createDeposit(deposit("k"));
      ConsumerOptions options = ConsumerOptions.defaults().threadFactory(r -> {
        Thread t = new Thread(r, "my-ledger-thread");
        t.setDaemon(true);
        made.set(t);
        return t;
      });
      try (EventConsumer consumer = client.consume("ledger", e -> ran.set(Thread.currentThread()), options)) {
        waitUntil("the first event", () -> consumer.lastHandled() == 2);
        assertSame(made.get(), ran.get());
        assertEquals("my-ledger-thread", ran.get().getName());
      }
      made.get().join(5_000);
      assertTrue(!made.get().isAlive(), "close() left the consumer's thread running");
    }
  }

  @Test
  void eventsArriveInOrderAreAckedAndFollowTheFakesFlows() throws Exception {
    try (IntentkitTestServer server = IntentkitTestServer.start(); IntentkitClient client = server.client()) {
      List<String> got = new CopyOnWriteArrayList<>();
      try (EventConsumer consumer = client.consume("ledger", e -> got.add(e.getTypeName() + " " + e.getIntentId()))) {
        Intent a = client.createDeposit(deposit("a"));
        Intent b = client.createDeposit(deposit("b"));
        server.approve(a.getId());
        server.reject(b.getId(), "insufficient_funds");
        waitUntil("4 + 2 events", () -> got.size() == 6);
        assertEquals(List.of("intent.created " + a.getId(), "intent.pending " + a.getId(), "intent.created " + b.getId(),
            "intent.pending " + b.getId(), "intent.approved " + a.getId(), "intent.rejected " + b.getId()), got);
        waitUntil("the ack", () -> server.ackedSeq("ledger") == 6);
        assertEquals(6, consumer.lastHandled());
      }
    }
  }

  /**
   * Issue 26, item 6, in-process: after an outage long enough for the channel's own backoff to
   * have grown, the consumer streams again within its max backoff (plus 1 s) of the server being
   * back, not after the channel's backoff and its own stacked.
   */
  @Test
  void afterAnOutageTheConsumerIsBackWithinItsMaxBackoff() throws Exception {
    try (IntentkitTestServer server = IntentkitTestServer.start(); IntentkitClient client = server.client()) {
      List<Event> got = new CopyOnWriteArrayList<>();
      try (EventConsumer consumer = client.consume("ledger", got::add, Duration.ofMillis(50), Duration.ofMillis(500))) {
        client.createDeposit(deposit("before"));
        waitUntil("the first events", () -> got.size() == 2);
        server.stop();
        Thread.sleep(4_000);
        server.restart();
        long back = System.nanoTime();
        // Made in the fake directly: the client's own channel is what is being measured.
        server.approve(server.events().get(1).getIntentId());
        waitUntil("intent.approved", () -> got.size() == 3);
        long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - back);
        System.out.println("in-process: the consumer was back " + tookMs + " ms after the server (bound 500 ms + 1 s)");
        assertTrue(tookMs <= 1_500, "back after " + tookMs + " ms");
        assertTrue(consumer.retries() > 0);
        assertTrue(consumer.failure().isEmpty());
      }
    }
  }
}
