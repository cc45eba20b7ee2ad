package dev.intentkit.client;

import dev.intentkit.v1.Event;
import dev.intentkit.v1.StreamEventsRequest;
import io.grpc.Context;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.Iterator;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * A running consumer: streams the consumer's events from its acknowledged position, hands each
 * to the handler in seq order, and acknowledges it once the handler returns. A dropped
 * connection or a server restart is retried with jittered backoff and resumes after the last
 * event handled, so nothing acknowledged comes again and nothing unacknowledged is lost (an
 * event whose ack did not reach the server may come again after a crash: make the handler
 * idempotent on {@code Event.getSeq()} or {@code getEventId()}). A handler exception or a
 * non-retryable error (authentication, arguments) stops it; {@link #failure()} says why.
 * Run one consumer per name at a time.
 */
public final class EventConsumer implements AutoCloseable {
  private final IntentkitClient client;
  private final String name;
  private final EventHandler handler;
  private final long minBackoffMs;
  private final long maxBackoffMs;
  private final Context.CancellableContext context = Context.current().withCancellation();
  private final CountDownLatch done = new CountDownLatch(1);
  private final CountDownLatch stop = new CountDownLatch(1);
  private final AtomicReference<Throwable> failure = new AtomicReference<>();
  private volatile boolean closed;
  private volatile int retries;

  private volatile long handled;
  private boolean started;
  private boolean unacked;

  private EventConsumer(IntentkitClient client, String name, EventHandler handler, Duration min, Duration max) {
    this.client = client;
    this.name = name;
    this.handler = handler;
    this.minBackoffMs = Math.max(1, min.toMillis());
    this.maxBackoffMs = Math.max(minBackoffMs, max.toMillis());
  }

  static EventConsumer start(IntentkitClient client, String name, EventHandler handler, Duration min, Duration max) {
    EventConsumer c = new EventConsumer(client, name, handler, min, max);
    Thread t = new Thread(c::run, "intentkit-consumer-" + name);
    t.setDaemon(true);
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
        } catch (HandlerFailed e) {
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
        // Full jitter: consumers cut off by one restart do not come back in step.
        long sleep = 1 + ThreadLocalRandom.current().nextLong(wait);
        if (stop.await(sleep, TimeUnit.MILLISECONDS) || closed) {
          return;
        }
        wait = Math.min(wait * 2, maxBackoffMs);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      done.countDown();
    }
  }

  /**
   * A failure of the connection rather than a refusal by the server (no ErrorInfo, so the
   * reason is the status code's name): a stream cut by a server that died can end with
   * INTERNAL or UNKNOWN as well as UNAVAILABLE. Reconnecting is right for those; not for what
   * says the consumer itself is wrong (credentials, arguments, a server without the method).
   */
  static boolean transport(IntentkitException e) {
    return e.reason().equals(e.code().name())
        && !java.util.Set.of(io.grpc.Status.Code.UNAUTHENTICATED, io.grpc.Status.Code.PERMISSION_DENIED,
            io.grpc.Status.Code.INVALID_ARGUMENT, io.grpc.Status.Code.NOT_FOUND,
            io.grpc.Status.Code.UNIMPLEMENTED).contains(e.code());
  }

  /** One stream; returns normally when the server ended it, true if any event came. */
  private boolean streamOnce() throws HandlerFailed {
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
      } catch (StatusRuntimeException | IntentkitException e) {
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
        } catch (Exception ex) {
          throw new HandlerFailed(e.getSeq(), ex);
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

  /** The handler failed on an event, which stays unacknowledged. */
  public static final class HandlerFailed extends Exception {
    private static final long serialVersionUID = 1L;
    private final long seq;

    HandlerFailed(long seq, Throwable cause) {
      super("handler failed on event " + seq, cause);
      this.seq = seq;
    }

    public long seq() {
      return seq;
    }
  }

  /** Why the consumer stopped on its own: the handler's exception or a non-retryable error. */
  public Optional<Throwable> failure() {
    return Optional.ofNullable(failure.get());
  }

  /** How many times it reconnected. */
  public int retries() {
    return retries;
  }

  /** The last seq handled and acknowledged (0 before the first). */
  public long lastHandled() {
    return handled;
  }

  /** Waits until it stopped (closed, or failed); true if it did within the timeout. */
  public boolean awaitTermination(Duration timeout) throws InterruptedException {
    return done.await(timeout.toMillis(), TimeUnit.MILLISECONDS);
  }

  /** Stops it: the stream is cancelled; an event being handled finishes and is acknowledged. */
  @Override
  public void close() {
    closed = true;
    stop.countDown();
    context.cancel(null);
    try {
      done.await(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
