package dev.intentkit.client;

import dev.intentkit.v1.AckEventsRequest;
import dev.intentkit.v1.CancelIntentRequest;
import dev.intentkit.v1.CreateAccountVerificationRequest;
import dev.intentkit.v1.CreateDepositRequest;
import dev.intentkit.v1.GetIntentRequest;
import dev.intentkit.v1.HandleWebhookRequest;
import dev.intentkit.v1.HandleWebhookResponse;
import dev.intentkit.v1.Intent;
import dev.intentkit.v1.IntentServiceGrpc;
import dev.intentkit.v1.ListEventsRequest;
import dev.intentkit.v1.ListEventsResponse;
import dev.intentkit.v1.ListIntentsRequest;
import dev.intentkit.v1.ListIntentsResponse;
import dev.intentkit.v1.RefreshIntentRequest;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ClientInterceptors;
import io.grpc.ForwardingClientCall;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * A client of one intentkitd. Build one per process with {@link #builder(String)} and share it:
 * it is thread-safe. Every call gets the default deadline (10 s unless set). Calls that are safe
 * to repeat (the creates, idempotent on their key; reads; {@code HandleWebhook}, deduplicated;
 * {@code AckEvents}) are retried by gRPC on {@code UNAVAILABLE}. Failures are
 * {@link IntentkitException}s.
 */
public final class IntentkitClient implements AutoCloseable {
  private static final String SERVICE = "intentkit.v1.IntentService";
  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private final ManagedChannel channel;
  private final IntentServiceGrpc.IntentServiceBlockingStub stub;
  private final Duration deadline;

  private IntentkitClient(ManagedChannel channel, Channel intercepted, Duration deadline) {
    this.channel = channel;
    this.stub = IntentServiceGrpc.newBlockingStub(intercepted);
    this.deadline = deadline;
  }

  /** A builder for target ({@code host:port}, or any gRPC target such as {@code dns:///...}). */
  public static Builder builder(String target) {
    return new Builder(target);
  }

  /** How to reach intentkitd. */
  public static final class Builder {
    private final String target;
    private String token;
    private Boolean plaintext;
    private Duration deadline = Duration.ofSeconds(10);

    private Builder(String target) {
      this.target = Objects.requireNonNull(target, "target");
    }

    /** Sends {@code authorization: Bearer <token>} on every call. */
    public Builder token(String token) {
      this.token = Objects.requireNonNull(token, "token");
      return this;
    }

    /** TLS with the JVM's trust store (production). */
    public Builder useTransportSecurity() {
      this.plaintext = false;
      return this;
    }

    /** No TLS: loopback, a sidecar, or the sandbox only. */
    public Builder usePlaintext() {
      this.plaintext = true;
      return this;
    }

    /** The default per-call deadline. */
    public Builder defaultDeadline(Duration deadline) {
      this.deadline = Objects.requireNonNull(deadline, "deadline");
      return this;
    }

    public IntentkitClient build() {
      if (plaintext == null) {
        throw new IllegalStateException("choose useTransportSecurity() (production) or usePlaintext() (loopback, sandbox)");
      }
      ManagedChannelBuilder<?> b = ManagedChannelBuilder.forTarget(target)
          .defaultServiceConfig(retryPolicy())
          .enableRetry();
      if (plaintext) {
        b.usePlaintext();
      } else {
        b.useTransportSecurity();
      }
      ManagedChannel channel = b.build();
      Channel intercepted = token == null ? channel : ClientInterceptors.intercept(channel, new Bearer(token));
      return new IntentkitClient(channel, intercepted, deadline);
    }

    @Override
    public String toString() {
      return "IntentkitClient.Builder[" + target + ", token=" + (token == null ? "none" : "[redacted]") + "]";
    }
  }

  /** The same policy as the Go client: which methods gRPC retries by itself, and how. */
  private static Map<String, ?> retryPolicy() {
    List<Map<String, String>> names = List.of("CreateDeposit", "CreateAccountVerification", "GetIntent",
            "ListIntents", "HandleWebhook", "ListEvents", "AckEvents").stream()
        .map(m -> Map.of("service", SERVICE, "method", m))
        .toList();
    Map<String, Object> retry = Map.of(
        "maxAttempts", 4.0,
        "initialBackoff", "0.1s",
        "maxBackoff", "2s",
        "backoffMultiplier", 2.0,
        "retryableStatusCodes", List.of("UNAVAILABLE"));
    return Map.of("methodConfig", List.of(Map.of("name", names, "retryPolicy", retry)));
  }

  /** Adds the bearer token; it never appears in toString or errors. */
  private static final class Bearer implements ClientInterceptor {
    private final String header;

    Bearer(String token) {
      this.header = "Bearer " + token;
    }

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
        @Override
        public void start(Listener<R> listener, Metadata headers) {
          headers.put(AUTHORIZATION, header);
          super.start(listener, headers);
        }
      };
    }

    @Override
    public String toString() {
      return "Bearer[redacted]";
    }
  }

  IntentServiceGrpc.IntentServiceBlockingStub stub() {
    return stub.withDeadlineAfter(deadline.toMillis(), TimeUnit.MILLISECONDS);
  }

  /** The stub without a deadline, for the event stream. */
  IntentServiceGrpc.IntentServiceBlockingStub streamingStub() {
    return stub;
  }

  private static <T> T call(Supplier<T> f) {
    try {
      return f.get();
    } catch (StatusRuntimeException e) {
      throw IntentkitException.from(e);
    }
  }

  /** Creates a Pientegra hosted deposit (idempotent on its key: repeat it after a retryable error). */
  public Intent createDeposit(CreateDepositRequest request) {
    return call(() -> stub().createDeposit(request));
  }

  /** Creates a Decentro UPI penny-pull verification (idempotent on its key). */
  public Intent createAccountVerification(CreateAccountVerificationRequest request) {
    return call(() -> stub().createAccountVerification(request));
  }

  /** One intent by intentkit's id. */
  public Intent getIntent(String id) {
    return call(() -> stub().getIntent(GetIntentRequest.newBuilder().setId(id).build()));
  }

  /** One page of intents, newest first. */
  public ListIntentsResponse listIntents(ListIntentsRequest request) {
    return call(() -> stub().listIntents(request));
  }

  /** Cancels an intent before payment (not retried for you). */
  public Intent cancelIntent(String id, String reason) {
    return call(() -> stub().cancelIntent(CancelIntentRequest.newBuilder().setId(id).setReason(reason).build()));
  }

  /** One status look-up at the provider, applied (for support tools; not retried for you). */
  public Intent refreshIntent(String id) {
    return call(() -> stub().refreshIntent(RefreshIntentRequest.newBuilder().setId(id).build()));
  }

  /** A provider delivery your own HTTP server received; answer with the response's status and body. */
  public HandleWebhookResponse handleWebhook(HandleWebhookRequest request) {
    return call(() -> stub().handleWebhook(request));
  }

  /** One page of a consumer's events ({@link #consume} is the usual way). */
  public ListEventsResponse listEvents(ListEventsRequest request) {
    return call(() -> stub().listEvents(request));
  }

  /** Acknowledges every event up to and including seq; returns the consumer's position. */
  public long ackEvents(String consumer, long seq) {
    return call(() -> stub().ackEvents(AckEventsRequest.newBuilder().setConsumer(consumer).setSeq(seq).build()))
        .getAckedSeq();
  }

  /**
   * Starts delivering consumer's events to handler on a thread of its own: see
   * {@link EventConsumer}. Close the returned consumer to stop it.
   */
  public EventConsumer consume(String consumer, EventHandler handler) {
    return EventConsumer.start(this, consumer, handler, Duration.ofMillis(100), Duration.ofSeconds(5));
  }

  /** As {@link #consume(String, EventHandler)}, with the reconnect backoff's bounds. */
  public EventConsumer consume(String consumer, EventHandler handler, Duration minBackoff, Duration maxBackoff) {
    return EventConsumer.start(this, consumer, handler, minBackoff, maxBackoff);
  }

  /** Stops the channel, waiting up to 5 s for calls in flight. */
  @Override
  public void close() {
    channel.shutdown();
    try {
      if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
        channel.shutdownNow();
      }
    } catch (InterruptedException e) {
      channel.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }
}
