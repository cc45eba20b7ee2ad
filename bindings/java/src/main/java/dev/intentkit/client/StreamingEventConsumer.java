package dev.intentkit.client;

import dev.intentkit.v1.Event;
import dev.intentkit.v1.StreamEventsRequest;
import io.grpc.ConnectivityState;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.Iterator;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The {@link EventConsumer} over {@code StreamEvents}. One backoff, the consumer's: before each
 * reconnect it resets the channel's own connect backoff (so the channel tries at once rather than
 * at the end of a backoff of its own, which grows to 2 minutes) and waits a jittered time that
 * ends early when the channel becomes READY. Once the server is back, the stream is running again
 * within maxBackoff plus the time to connect.
 */
final class StreamingEventConsumer implements EventConsumer {
  private static final Set<Status.Code> REFUSALS = Set.of(Status.Code.UNAUTHENTICATED, Status.Code.PERMISSION_DENIED,
      Status.Code.INVALID_ARGUMENT, Status.Code.NOT_FOUND, Status.Code.UNIMPLEMENTED);

  private final GrpcIntentkitClient client;
  private final String name;
  private final EventHandler handler;
  private final long minBackoffMs;
  private final long maxBackoffMs;
  private final Context.CancellableContext context = Context.current().withCancellation();
  private final CountDownLatch done = new CountDownLatch(1);
  /** Released by close() and by the channel turning READY: ends a backoff wait early. */
  private final Semaphore wake = new Semaphore(0);
  private final AtomicReference<Throwable> failure = new AtomicReference<>();
  private volatile boolean closed;
  private volatile int retries;

  private volatile long handled;
  private boolean started;
  private boolean unacked;

  private StreamingEventConsumer(GrpcIntentkitClient client, String name, EventHandler handler, ConsumerOptions options) {
    this.client = client;
    this.name = java.util.Objects.requireNonNull(name, "consumer");
    this.handler = java.util.Objects.requireNonNull(handler, "handler");
    this.minBackoffMs = Math.max(1, options.minBackoff().toMillis());
    this.maxBackoffMs = Math.max(minBackoffMs, options.maxBackoff().toMillis());
  }

  static EventConsumer start(GrpcIntentkitClient client, String name, EventHandler handler, ConsumerOptions options) {
    StreamingEventConsumer c = new StreamingEventConsumer(client, name, handler, options);
    Thread t;
    if (options.threadFactory().isPresent()) {
      t = options.threadFactory().get().newThread(c::run);
      if (t == null) {
        throw new IllegalStateException("the consumer's ThreadFactory returned no thread");
      }
    } else {
      t = new Thread(c::run, "intentkit-consumer-" + name);
      t.setDaemon(true);
    }
    t.start();
    return c;
  }

  private void run() {
    long wait = minBackoffMs;
    try {
      while (!closed) {
        boolean progressed;
        try {
          progressed = streamOnce();
        } catch (EventConsumer.HandlerFailed e) {
          failure.set(e);
          return;
        } catch (IntentkitException e) {
          if (closed) {
            return;
          }
          if (!e.retryable() && !transport(e)) {
            failure.set(e);
            return;
          }
          progressed = e.getSuppressed().length > 0;
        }
        if (closed) {
          return;
        }
        if (progressed) {
          wait = minBackoffMs;
        }
        retries++;
        backoff(wait);
        wait = Math.min(wait * 2, maxBackoffMs);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (Throwable t) {
      // Nothing may end the thread unreported: an Error from gRPC or the JVM included.
      if (!closed) {
        failure.set(t);
      }
    } finally {
      done.countDown();
    }
  }

  /**
   * Waits up to a random time in (0, wait] (full jitter: consumers cut off by one restart do not
   * come back in step), returning early when the channel turns READY. A channel that is not
   * READY is told to connect now, dropping its own backoff.
   */
  private void backoff(long wait) throws InterruptedException {
    wake.drainPermits();
    if (closed) {
      return;
    }
    long sleepNanos = TimeUnit.MILLISECONDS.toNanos(1 + ThreadLocalRandom.current().nextLong(wait));
    long until = System.nanoTime() + sleepNanos;
    ManagedChannel channel = client.channel();
    ConnectivityState state;
    try {
      state = channel.getState(true);
    } catch (UnsupportedOperationException e) {
      wake.tryAcquire(sleepNanos, TimeUnit.NANOSECONDS);
      return;
    }
    if (state == ConnectivityState.READY) {
      // Connected, yet the stream failed (a server refusing for now): a plain wait.
      wake.tryAcquire(sleepNanos, TimeUnit.NANOSECONDS);
      return;
    }
    channel.resetConnectBackoff();
    while (!closed) {
      long left = until - System.nanoTime();
      if (left <= 0) {
        return;
      }
      ConnectivityState now = channel.getState(false);
      if (now == ConnectivityState.READY) {
        return;
      }
      if (now == ConnectivityState.SHUTDOWN) {
        wake.tryAcquire(left, TimeUnit.NANOSECONDS);
        return;
      }
      channel.notifyWhenStateChanged(now, wake::release);
      wake.tryAcquire(left, TimeUnit.NANOSECONDS);
    }
  }

  /**
   * A failure of the connection rather than a refusal by the server (no ErrorInfo, so the
   * reason is the status code's name): a stream cut by a server that died can end with
   * INTERNAL or UNKNOWN as well as UNAVAILABLE. Reconnecting is right for those; not for what
   * says the consumer itself is wrong (credentials, arguments, a server without the method).
   */
  static boolean transport(IntentkitException e) {
    return e.reason().equals(e.code().name()) && !REFUSALS.contains(e.code());
  }

  /** One stream; returns normally when the server ended it, true if any event came. */
  private boolean streamOnce() throws EventConsumer.HandlerFailed {
    if (unacked) {
      client.ackEvents(name, handled);
      unacked = false;
    }
    StreamEventsRequest.Builder req = StreamEventsRequest.newBuilder().setConsumer(name);
    if (started) {
      req.setAfterSeq(handled);
    }
    boolean progressed = false;
    try {
      // Only the stream is bound to the cancellable context: close() cuts it, while an ack
      // for an event already handled still goes out.
      Iterator<Event> events;
      try {
        events = context.call(() -> client.streamingStub().streamEvents(req.build()));
      } catch (RuntimeException e) {
        throw e;
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
      while (events.hasNext()) {
        Event e = events.next();
        progressed = true;
        if (started && e.getSeq() <= handled) {
          continue;
        }
        try {
          handler.handle(e);
        } catch (Throwable t) {
          // Errors too (an AssertionError, an OutOfMemoryError): the event stays unacknowledged
          // and failure() says why, rather than a thread that ends in silence.
          throw new EventConsumer.HandlerFailed(e.getSeq(), t);
        }
        handled = e.getSeq();
        started = true;
        unacked = true;
        client.ackEvents(name, handled);
        unacked = false;
      }
      return progressed;
    } catch (StatusRuntimeException e) {
      IntentkitException ie = IntentkitException.from(e);
      if (progressed) {
        ie.addSuppressed(new IllegalStateException("events were handled before the stream failed"));
      }
      throw ie;
    } catch (IntentkitException e) {
      if (progressed) {
        e.addSuppressed(new IllegalStateException("events were handled before the ack failed"));
      }
      throw e;
    }
  }

  @Override
  public Optional<Throwable> failure() {
    return Optional.ofNullable(failure.get());
  }

  @Override
  public int retries() {
    return retries;
  }

  @Override
  public long lastHandled() {
    return handled;
  }

  @Override
  public boolean awaitTermination(Duration timeout) throws InterruptedException {
    return done.await(timeout.toMillis(), TimeUnit.MILLISECONDS);
  }

  @Override
  public void close() {
    closed = true;
    wake.release();
    context.cancel(null);
    try {
      done.await(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public String toString() {
    return "EventConsumer[" + name + ", lastHandled " + handled + ", retries " + retries + "]";
  }
}
