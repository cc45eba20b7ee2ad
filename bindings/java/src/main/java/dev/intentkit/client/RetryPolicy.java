package dev.intentkit.client;

import io.grpc.ManagedChannelBuilder;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The retries gRPC makes by itself when a call fails with {@code UNAVAILABLE}, for the calls safe
 * to repeat: the creates (idempotent on their key), the reads, {@code HandleWebhook}
 * (deduplicated) and {@code AckEvents}; never {@code CancelIntent} or {@code RefreshIntent}. The
 * waits between attempts grow exponentially (×2) with gRPC's jitter. Immutable.
 */
public final class RetryPolicy {
  private static final String SERVICE = "intentkit.v1.IntentService";
  private static final List<String> SAFE = List.of("CreateDeposit", "CreateAccountVerification", "GetIntent",
      "ListIntents", "HandleWebhook", "ListEvents", "AckEvents");

  private final int maxAttempts;
  private final Duration initialBackoff;
  private final Duration maxBackoff;

  private RetryPolicy(int maxAttempts, Duration initialBackoff, Duration maxBackoff) {
    this.maxAttempts = maxAttempts;
    this.initialBackoff = initialBackoff;
    this.maxBackoff = maxBackoff;
  }

  /**
   * The default, as in the Go client: 4 attempts, waits from 100 ms up to 2 s.
   *
   * @return the default policy
   */
  public static RetryPolicy defaults() {
    return new RetryPolicy(4, Duration.ofMillis(100), Duration.ofSeconds(2));
  }

  /**
   * No retry by gRPC: every failure reaches the caller at once.
   *
   * @return a policy of one attempt
   */
  public static RetryPolicy none() {
    return new RetryPolicy(1, Duration.ofMillis(100), Duration.ofMillis(100));
  }

  /**
   * A policy of your own.
   *
   * @param maxAttempts attempts in all, the first included (2 to 5: gRPC caps it at 5)
   * @param initialBackoff the longest wait before the second attempt (positive)
   * @param maxBackoff the longest wait between two attempts (at least initialBackoff)
   * @return the policy
   * @throws IllegalArgumentException if a bound is out of range
   */
  public static RetryPolicy of(int maxAttempts, Duration initialBackoff, Duration maxBackoff) {
    Objects.requireNonNull(initialBackoff, "initialBackoff");
    Objects.requireNonNull(maxBackoff, "maxBackoff");
    if (maxAttempts < 2 || maxAttempts > 5) {
      throw new IllegalArgumentException("maxAttempts must be 2 to 5 (use none() for 1), got " + maxAttempts);
    }
    if (initialBackoff.isNegative() || initialBackoff.isZero() || maxBackoff.compareTo(initialBackoff) < 0) {
      throw new IllegalArgumentException("need 0 < initialBackoff <= maxBackoff, got " + initialBackoff + ", " + maxBackoff);
    }
    return new RetryPolicy(maxAttempts, initialBackoff, maxBackoff);
  }

  /**
   * Attempts in all, the first included.
   *
   * @return 1 for {@link #none()}
   */
  public int maxAttempts() {
    return maxAttempts;
  }

  void apply(ManagedChannelBuilder<?> b) {
    if (maxAttempts < 2) {
      b.disableRetry();
      return;
    }
    List<Map<String, String>> names = SAFE.stream().map(m -> Map.of("service", SERVICE, "method", m)).toList();
    Map<String, Object> retry = Map.of(
        "maxAttempts", (double) maxAttempts,
        "initialBackoff", seconds(initialBackoff),
        "maxBackoff", seconds(maxBackoff),
        "backoffMultiplier", 2.0,
        "retryableStatusCodes", List.of("UNAVAILABLE"));
    b.defaultServiceConfig(Map.of("methodConfig", List.of(Map.of("name", names, "retryPolicy", retry))))
        .enableRetry();
  }

  private static String seconds(Duration d) {
    return java.math.BigDecimal.valueOf(d.toNanos(), 9).stripTrailingZeros().toPlainString() + "s";
  }

  @Override
  public String toString() {
    return "RetryPolicy[maxAttempts=" + maxAttempts + ", initialBackoff=" + initialBackoff + ", maxBackoff=" + maxBackoff + "]";
  }
}
