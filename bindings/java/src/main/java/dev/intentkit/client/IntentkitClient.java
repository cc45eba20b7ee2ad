package dev.intentkit.client;

import dev.intentkit.v1.CreateAccountVerificationRequest;
import dev.intentkit.v1.CreateDepositRequest;
import dev.intentkit.v1.HandleWebhookRequest;
import dev.intentkit.v1.HandleWebhookResponse;
import dev.intentkit.v1.Intent;
import dev.intentkit.v1.ListEventsRequest;
import dev.intentkit.v1.ListEventsResponse;
import dev.intentkit.v1.ListIntentsRequest;
import dev.intentkit.v1.ListIntentsResponse;
import io.grpc.ManagedChannel;
import java.time.Duration;

/**
 * A client of one intentkitd. Build one per process with {@link #builder(String)} and share it:
 * it is thread-safe. Every call gets the default deadline (10 s unless set;
 * {@link #withDeadline(Duration)} for one call). Calls that are safe to repeat (the creates,
 * idempotent on their key; reads; {@code HandleWebhook}, deduplicated; {@code AckEvents}) are
 * retried by gRPC on {@code UNAVAILABLE}. Failures are {@link IntentkitException}s.
 *
 * <p>It is an interface so that code using it can be tested with a mock, or against
 * {@link dev.intentkit.client.testing.IntentkitTestServer}, an in-process fake intentkitd.
 */
public interface IntentkitClient extends AutoCloseable {

  /**
   * A builder for a client of target, which opens and owns its channel.
   *
   * @param target {@code host:port}, or any gRPC target such as {@code dns:///intentkit:50051}
   * @return a builder; choose {@link Builder#useTransportSecurity()} or
   *     {@link Builder#usePlaintext()} before {@link Builder#build()}
   */
  static Builder builder(String target) {
    return new Builder(target, null);
  }

  /**
   * A builder for a client over a channel the caller made and keeps: the client never shuts it
   * down, and the channel's own settings (transport, TLS, keepalive, executor, retries) are the
   * caller's; the builder's token, interceptors and deadline still apply.
   *
   * @param channel an open channel to intentkitd
   * @return a builder
   */
  static Builder builder(ManagedChannel channel) {
    return new Builder(null, channel);
  }

  /**
   * Creates a Pientegra hosted deposit. Idempotent on its key: repeat it after a retryable error.
   *
   * @param request the deposit; {@code idempotency_key} is your operation's id
   * @return the intent, {@code PENDING} with its hosted page when all went well
   * @throws IntentkitException {@code IDEMPOTENCY_CONFLICT} for the same key with other
   *     parameters ({@link IntentkitException#intentId()} names the existing intent), or any
   *     other failure
   */
  Intent createDeposit(CreateDepositRequest request);

  /**
   * Creates a Decentro UPI penny-pull verification (idempotent on its key).
   *
   * @param request the verification
   * @return the intent, {@code PENDING} with its UPI hand-off when all went well
   * @throws IntentkitException on failure; Decentro's refusals keep Decentro's reason
   */
  Intent createAccountVerification(CreateAccountVerificationRequest request);

  /**
   * One intent by intentkit's id.
   *
   * @param id the intent's id ({@link Intent#getId()})
   * @return the intent as it is now
   * @throws IntentkitException {@code INTENT_NOT_FOUND} if there is none
   */
  Intent getIntent(String id);

  /**
   * One page of intents, newest first.
   *
   * @param request filters, page size and the previous page's token
   * @return the page and the next page's token (empty on the last)
   * @throws IntentkitException on failure
   */
  ListIntentsResponse listIntents(ListIntentsRequest request);

  /**
   * Cancels an intent before payment (not retried for you).
   *
   * @param id the intent's id
   * @param reason recorded as the intent's reason; may be empty
   * @return the canceled intent
   * @throws IntentkitException {@code INVALID_TRANSITION} once the payer confirmed or the intent
   *     is final
   */
  Intent cancelIntent(String id, String reason);

  /**
   * One status look-up at the provider, applied (for support tools; not retried for you).
   *
   * @param id the intent's id
   * @return the intent after the look-up
   * @throws IntentkitException on failure
   */
  Intent refreshIntent(String id);

  /**
   * A provider delivery your own HTTP server received; answer the provider with the response's
   * status and body.
   *
   * @param request the provider, account, headers and raw body as received
   * @return what to answer the provider, and what happened
   * @throws IntentkitException on failure (answer the provider 503 then: it retries)
   */
  HandleWebhookResponse handleWebhook(HandleWebhookRequest request);

  /**
   * One page of a consumer's events after a cursor, and the consumer's acknowledged position
   * ({@link #consume(String, EventHandler)} is the usual way to read events).
   *
   * @param request the consumer, {@code after_seq} (default: its last ack) and a limit
   * @return the events in seq order and {@code acked_seq}
   * @throws IntentkitException on failure
   */
  ListEventsResponse listEvents(ListEventsRequest request);

  /**
   * Acknowledges every event of a consumer up to and including seq. Acknowledging an earlier seq
   * again is a no-op.
   *
   * @param consumer the consumer's name
   * @param seq the last event handled
   * @return the consumer's acknowledged position after the call
   * @throws IntentkitException {@code INVALID_ARGUMENT} past the newest event, or any failure
   */
  long ackEvents(String consumer, long seq);

  /**
   * Starts delivering a consumer's events to a handler on a thread of its own, with the default
   * options ({@link ConsumerOptions#defaults()}): see {@link EventConsumer}.
   *
   * @param consumer the consumer's name; one running consumer per name
   * @param handler called once per event, in seq order; returning acknowledges the event
   * @return the running consumer; close it to stop it
   */
  EventConsumer consume(String consumer, EventHandler handler);

  /**
   * As {@link #consume(String, EventHandler)}, with the reconnect backoff's bounds.
   *
   * @param consumer the consumer's name
   * @param handler called once per event
   * @param minBackoff the first wait before reconnecting, after the stream failed (default 100 ms)
   * @param maxBackoff the longest wait between two reconnect attempts (default 5 s): once the
   *     server is back, the consumer streams again within it
   * @return the running consumer
   */
  EventConsumer consume(String consumer, EventHandler handler, Duration minBackoff, Duration maxBackoff);

  /**
   * As {@link #consume(String, EventHandler)}, with options (backoff, thread factory).
   *
   * @param consumer the consumer's name
   * @param handler called once per event
   * @param options how it reconnects and which thread runs it
   * @return the running consumer
   */
  EventConsumer consume(String consumer, EventHandler handler, ConsumerOptions options);

  /**
   * The same client with another deadline for each call made through it (a view over the same
   * channel: closing it does nothing).
   *
   * @param deadline the time each call may take, from when it starts
   * @return a client whose calls have that deadline
   */
  IntentkitClient withDeadline(Duration deadline);

  /**
   * The same calls, asynchronous: each returns a {@link java.util.concurrent.CompletableFuture}
   * (a view over the same channel, with the same deadline).
   *
   * @return the asynchronous view
   */
  AsyncIntentkitClient async();

  /**
   * Stops the client: shuts down the channel it opened (waiting up to 5 s for calls in flight),
   * or nothing for a channel passed to {@link #builder(ManagedChannel)}.
   */
  @Override
  void close();

  /**
   * How to reach intentkitd: the target or channel, the token, the transport, and the channel's
   * settings. Not thread-safe; {@link #build()} may be called more than once.
   */
  final class Builder {
    private final String target;
    private final ManagedChannel channel;
    private String token;
    private Boolean plaintext;
    private java.nio.file.Path trustedCertificates;
    private java.nio.file.Path clientCertificateChain;
    private java.nio.file.Path clientPrivateKey;
    private Duration deadline = Duration.ofSeconds(10);
    private final java.util.List<io.grpc.ClientInterceptor> interceptors = new java.util.ArrayList<>();
    private Duration keepAliveTime;
    private Duration keepAliveTimeout;
    private java.util.concurrent.Executor executor;
    private java.util.function.Consumer<io.grpc.ManagedChannelBuilder<?>> customizer;
    private RetryPolicy retryPolicy = RetryPolicy.defaults();
    private boolean channelOption;

    Builder(String target, ManagedChannel channel) {
      if (target == null && channel == null) {
        throw new NullPointerException("target");
      }
      this.target = target;
      this.channel = channel;
    }

    private Builder channelOption() {
      channelOption = true;
      return this;
    }

    /**
     * Sends {@code authorization: Bearer <token>} on every call. The token never appears in
     * {@code toString()} or in errors.
     *
     * @param token the server's token
     * @return this builder
     */
    public Builder token(String token) {
      this.token = java.util.Objects.requireNonNull(token, "token");
      return this;
    }

    /**
     * TLS, trusting the JVM's trust store unless {@link #trustedCertificates} is set (production).
     *
     * @return this builder
     */
    public Builder useTransportSecurity() {
      this.plaintext = false;
      return channelOption();
    }

    /**
     * No TLS: loopback, a sidecar, or the sandbox only.
     *
     * @return this builder
     */
    public Builder usePlaintext() {
      this.plaintext = true;
      return channelOption();
    }

    /**
     * TLS trusting only the CA certificates in a PEM file (a private CA) instead of the JVM's trust
     * store. Implies {@link #useTransportSecurity()}.
     *
     * @param caPem a PEM file of one or more CA certificates
     * @return this builder
     */
    public Builder trustedCertificates(java.nio.file.Path caPem) {
      this.trustedCertificates = java.util.Objects.requireNonNull(caPem, "caPem");
      return channelOption();
    }

    /**
     * Mutual TLS: presents this client certificate to the server. Implies
     * {@link #useTransportSecurity()}.
     *
     * @param certificateChainPem a PEM file: the client's certificate, then any intermediates
     * @param privateKeyPem a PEM file: the certificate's private key (PKCS#8, unencrypted)
     * @return this builder
     */
    public Builder clientCertificate(java.nio.file.Path certificateChainPem, java.nio.file.Path privateKeyPem) {
      this.clientCertificateChain = java.util.Objects.requireNonNull(certificateChainPem, "certificateChainPem");
      this.clientPrivateKey = java.util.Objects.requireNonNull(privateKeyPem, "privateKeyPem");
      return channelOption();
    }

    /**
     * The deadline of each call (10 s by default; the event stream has none).
     * {@link IntentkitClient#withDeadline(Duration)} sets another for some calls.
     *
     * @param deadline the time each call may take
     * @return this builder
     */
    public Builder defaultDeadline(Duration deadline) {
      this.deadline = positive(deadline, "deadline");
      return this;
    }

    /**
     * Adds interceptors to every call (tracing, metrics, headers of your own), run in the order
     * given, after the one that adds the token.
     *
     * @param interceptors the interceptors
     * @return this builder
     */
    public Builder intercept(io.grpc.ClientInterceptor... interceptors) {
      for (io.grpc.ClientInterceptor i : interceptors) {
        this.interceptors.add(java.util.Objects.requireNonNull(i, "interceptor"));
      }
      return this;
    }

    /**
     * HTTP/2 keepalive pings: one after time without reads, the connection closed if no answer
     * comes within timeout. Off by default; mind the server's minimum ping interval.
     *
     * @param time the idle time before a ping
     * @param timeout how long to wait for its answer
     * @return this builder
     */
    public Builder keepAlive(Duration time, Duration timeout) {
      this.keepAliveTime = positive(time, "time");
      this.keepAliveTimeout = positive(timeout, "timeout");
      return channelOption();
    }

    /**
     * The executor that runs the channel's callbacks and completes the asynchronous calls'
     * futures (by default, a cached thread pool gRPC shares). The client does not shut it down.
     *
     * @param executor the executor
     * @return this builder
     */
    public Builder executor(java.util.concurrent.Executor executor) {
      this.executor = java.util.Objects.requireNonNull(executor, "executor");
      return channelOption();
    }

    /**
     * The retries gRPC makes by itself on {@code UNAVAILABLE}, for the calls safe to repeat.
     *
     * @param policy {@link RetryPolicy#defaults()}, {@link RetryPolicy#none()}, or
     *     {@link RetryPolicy#of}
     * @return this builder
     */
    public Builder retryPolicy(RetryPolicy policy) {
      this.retryPolicy = java.util.Objects.requireNonNull(policy, "policy");
      return channelOption();
    }

    /**
     * Customises the channel builder after the client set its own options (transport, retries,
     * keepalive, executor), just before it is built: for what this builder does not name (a
     * proxy, message sizes, a user agent, a load-balancing policy).
     *
     * @param customizer called once per {@link #build()} with the channel builder
     * @return this builder
     */
    public Builder configureChannel(java.util.function.Consumer<io.grpc.ManagedChannelBuilder<?>> customizer) {
      this.customizer = java.util.Objects.requireNonNull(customizer, "customizer");
      return channelOption();
    }

    /**
     * The client.
     *
     * @return a client; close it at shutdown
     * @throws IllegalStateException if no transport was chosen for a target, if plaintext was
     *     chosen with certificates, or if channel options were set with a channel of the caller's
     * @throws IllegalArgumentException if a certificate or key file cannot be read
     */
    public IntentkitClient build() {
      if (channel != null) {
        if (channelOption) {
          throw new IllegalStateException("the channel passed to builder(ManagedChannel) is configured by its own builder: "
              + "set the transport, TLS, keepalive, executor and retries there");
        }
        return GrpcIntentkitClient.create(channel, false, token, interceptors, deadline, null);
      }
      boolean certificates = trustedCertificates != null || clientCertificateChain != null;
      if (plaintext == null && !certificates) {
        throw new IllegalStateException("choose useTransportSecurity() (production) or usePlaintext() (loopback, sandbox)");
      }
      if (Boolean.TRUE.equals(plaintext) && certificates) {
        throw new IllegalStateException("usePlaintext() with certificates: choose one");
      }
      boolean plaintext = Boolean.TRUE.equals(this.plaintext);
      io.grpc.ChannelCredentials credentials;
      if (plaintext) {
        credentials = io.grpc.InsecureChannelCredentials.create();
      } else {
        io.grpc.TlsChannelCredentials.Builder tls = io.grpc.TlsChannelCredentials.newBuilder();
        try {
          if (trustedCertificates != null) {
            tls.trustManager(trustedCertificates.toFile());
          }
          if (clientCertificateChain != null) {
            tls.keyManager(clientCertificateChain.toFile(), clientPrivateKey.toFile());
          }
        } catch (java.io.IOException e) {
          throw new IllegalArgumentException("cannot read the TLS files: " + e.getMessage(), e);
        }
        credentials = tls.build();
      }
      io.grpc.ManagedChannelBuilder<?> b = io.grpc.Grpc.newChannelBuilder(target, credentials);
      retryPolicy.apply(b);
      if (keepAliveTime != null) {
        b.keepAliveTime(keepAliveTime.toNanos(), java.util.concurrent.TimeUnit.NANOSECONDS)
            .keepAliveTimeout(keepAliveTimeout.toNanos(), java.util.concurrent.TimeUnit.NANOSECONDS);
      }
      if (executor != null) {
        b.executor(executor);
      }
      if (customizer != null) {
        customizer.accept(b);
      }
      return GrpcIntentkitClient.create(b.build(), true, token, interceptors, deadline, executor);
    }

    private static Duration positive(Duration d, String name) {
      java.util.Objects.requireNonNull(d, name);
      if (d.isNegative() || d.isZero()) {
        throw new IllegalArgumentException(name + " must be positive, got " + d);
      }
      return d;
    }

    @Override
    public String toString() {
      return "IntentkitClient.Builder[" + (target != null ? target : channel) + ", token="
          + (token == null ? "none" : "[redacted]") + "]";
    }
  }
}
