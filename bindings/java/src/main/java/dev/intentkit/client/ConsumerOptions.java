package dev.intentkit.client;

import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.ThreadFactory;

/**
 * How an {@link EventConsumer} reconnects and which thread runs it. Immutable; each setter
 * returns a copy.
 *
 * <pre>{@code
 * ConsumerOptions options = ConsumerOptions.defaults()
 *     .backoff(Duration.ofMillis(100), Duration.ofSeconds(5))
 *     .threadFactory(r -> new Thread(r, "ledger"));
 * }</pre>
 */
public final class ConsumerOptions {
  private final Duration minBackoff;
  private final Duration maxBackoff;
  private final ThreadFactory threadFactory;

  private ConsumerOptions(Duration minBackoff, Duration maxBackoff, ThreadFactory threadFactory) {
    this.minBackoff = minBackoff;
    this.maxBackoff = maxBackoff;
    this.threadFactory = threadFactory;
  }

  /**
   * Backoff from 100 ms to 5 s; a daemon thread named {@code intentkit-consumer-<name>}.
   *
   * @return the defaults
   */
  public static ConsumerOptions defaults() {
    return new ConsumerOptions(Duration.ofMillis(100), Duration.ofSeconds(5), null);
  }

  /**
   * The reconnect backoff's bounds. After the stream fails the consumer waits a random time up
   * to min, then up to twice that on the next failure, and so on up to max; it tries at once
   * when the channel reconnects first. So once the server is back, the consumer streams again
   * within max (plus the time to connect). Events handled reset it to min.
   *
   * @param min the first wait's bound (at least 1 ms)
   * @param max the longest wait's bound (at least min)
   * @return a copy with those bounds
   */
  public ConsumerOptions backoff(Duration min, Duration max) {
    Objects.requireNonNull(min, "min");
    Objects.requireNonNull(max, "max");
    if (min.toMillis() < 1 || max.compareTo(min) < 0) {
      throw new IllegalArgumentException("need 1 ms <= min <= max, got " + min + ", " + max);
    }
    return new ConsumerOptions(min, max, threadFactory);
  }

  /**
   * The factory of the consumer's one thread (a virtual thread, a named or monitored one).
   *
   * @param factory makes the thread that runs the consumer
   * @return a copy with that factory
   */
  public ConsumerOptions threadFactory(ThreadFactory factory) {
    return new ConsumerOptions(minBackoff, maxBackoff, Objects.requireNonNull(factory, "factory"));
  }

  /**
   * The first wait's bound.
   *
   * @return the minimum backoff
   */
  public Duration minBackoff() {
    return minBackoff;
  }

  /**
   * The longest wait's bound: the consumer streams again within it once the server is back.
   *
   * @return the maximum backoff
   */
  public Duration maxBackoff() {
    return maxBackoff;
  }

  /**
   * The thread factory, if one was set.
   *
   * @return the factory, or empty for the default daemon thread
   */
  public java.util.Optional<ThreadFactory> threadFactory() {
    return java.util.Optional.ofNullable(threadFactory);
  }

  @Override
  public String toString() {
    return "ConsumerOptions[backoff " + minBackoff + ".." + maxBackoff + (threadFactory == null ? "" : ", " + threadFactory) + "]";
  }
}
