package dev.intentkit.client;

import java.time.Duration;
import java.util.Optional;

/**
 * A running consumer ({@link IntentkitClient#consume}): streams the consumer's events from its
 * acknowledged position, hands each to the handler in seq order on one thread of its own, and
 * acknowledges it once the handler returns. A dropped connection or a server restart is retried
 * with one jittered backoff ({@link ConsumerOptions#backoff}), and the stream resumes after the
 * last event handled, so nothing acknowledged comes again and nothing unacknowledged is lost (an
 * event whose ack did not reach the server may come again after a crash: make the handler
 * idempotent on {@code Event.getBusinessKey()} or {@code getSeq()}). Anything the handler throws
 * ({@link Exception} or {@link Error}) or a non-retryable error (authentication, arguments)
 * stops it; {@link #failure()} says why. Run one consumer per name at a time.
 *
 * <p>It is an interface so that code holding one can be tested with a mock.
 */
public interface EventConsumer extends AutoCloseable {
  /**
   * Why the consumer stopped on its own.
   *
   * @return a {@link HandlerFailed} (its cause is what the handler threw), an
   *     {@link IntentkitException} the consumer cannot retry, or any other throwable that ended its
   *     thread; empty while it runs and after {@link #close()}
   */
  Optional<Throwable> failure();

  /**
   * How many times it reconnected after its stream failed.
   *
   * @return the reconnect count
   */
  int retries();

  /**
   * The last seq the handler returned from and the consumer acknowledged.
   *
   * @return the seq, or 0 before the first event
   */
  long lastHandled();

  /**
   * Waits until it stopped, by {@link #close()} or on its own ({@link #failure()}).
   *
   * @param timeout how long to wait
   * @return true if it stopped within the timeout
   * @throws InterruptedException if the waiting thread is interrupted
   */
  boolean awaitTermination(Duration timeout) throws InterruptedException;

  /**
   * Stops it: the stream is cancelled; an event being handled finishes and is acknowledged.
   * Waits up to 5 s for its thread to end.
   */
  @Override
  void close();

  /** The handler failed on an event, which stays unacknowledged; {@link #getCause()} is why. */
  final class HandlerFailed extends Exception {
    private static final long serialVersionUID = 1L;
    /** The seq of the event the handler failed on. */
    private final long seq;

    /**
     * The handler's failure on one event.
     *
     * @param seq the event's seq
     * @param cause what the handler threw
     */
    public HandlerFailed(long seq, Throwable cause) {
      super("handler failed on event " + seq + ": " + cause, cause);
      this.seq = seq;
    }

    /**
     * The seq of the event the handler failed on.
     *
     * @return the event's seq
     */
    public long seq() {
      return seq;
    }
  }
}
