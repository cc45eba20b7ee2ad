package dev.intentkit.client.testing;

import com.google.protobuf.Any;
import com.google.protobuf.Timestamp;
import com.google.rpc.ErrorInfo;
import dev.intentkit.client.IntentkitClient;
import dev.intentkit.v1.AckEventsRequest;
import dev.intentkit.v1.AckEventsResponse;
import dev.intentkit.v1.CancelIntentRequest;
import dev.intentkit.v1.Cause;
import dev.intentkit.v1.CreateAccountVerificationRequest;
import dev.intentkit.v1.CreateDepositRequest;
import dev.intentkit.v1.DecentroRef;
import dev.intentkit.v1.Event;
import dev.intentkit.v1.EventType;
import dev.intentkit.v1.GetIntentRequest;
import dev.intentkit.v1.HandleWebhookRequest;
import dev.intentkit.v1.HandleWebhookResponse;
import dev.intentkit.v1.HostedPage;
import dev.intentkit.v1.Intent;
import dev.intentkit.v1.IntentKind;
import dev.intentkit.v1.IntentServiceGrpc;
import dev.intentkit.v1.IntentStatus;
import dev.intentkit.v1.ListEventsRequest;
import dev.intentkit.v1.ListEventsResponse;
import dev.intentkit.v1.ListIntentsRequest;
import dev.intentkit.v1.ListIntentsResponse;
import dev.intentkit.v1.PayerHandoff;
import dev.intentkit.v1.PientegraRef;
import dev.intentkit.v1.Provider;
import dev.intentkit.v1.ProviderRef;
import dev.intentkit.v1.RefreshIntentRequest;
import dev.intentkit.v1.StreamEventsRequest;
import dev.intentkit.v1.Transition;
import dev.intentkit.v1.UpiHandoff;
import dev.intentkit.v1.VerifiedPayer;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

/**
 * An in-process fake intentkitd for unit tests of code that uses {@link IntentkitClient}: no
 * network, no provider, no Rust build. It keeps intents and the outbox in memory with the real
 * server's rules for what a client sees: creates idempotent on their key (the same key with other
 * parameters fails {@code IDEMPOTENCY_CONFLICT}, naming the existing intent), intents
 * {@code PENDING} with a hand-off once created, one outbox event per transition
 * ({@code intent.created}, {@code intent.pending}, {@code intent.approved}, ...), streamed and
 * acknowledged per consumer. The test plays the payer and provider with {@link #approve},
 * {@link #reject} and {@link #expire}, and makes calls fail with {@link #failNext}.
 *
 * <pre>{@code
 * try (IntentkitTestServer server = IntentkitTestServer.start();
 *      IntentkitClient client = server.client()) {
 *   Intent it = client.createDeposit(request);
 *   server.approve(it.getId());
 *   // ... a consumer started with client.consume(...) receives intent.approved
 * }
 * }</pre>
 *
 * <p>Accounts {@code tr-sandbox} (Pientegra) and {@code in-sandbox} (Decentro) exist, as in
 * {@code intentkitd --sandbox}; any token is accepted. Not a provider simulator: webhooks passed
 * to {@code handleWebhook} are answered 200 {@code ignored}. Thread-safe.
 */
public final class IntentkitTestServer implements AutoCloseable {
  /** The Pientegra account, as in the sandbox. */
  public static final String DEPOSIT_ACCOUNT = "tr-sandbox";
  /** The Decentro account, as in the sandbox. */
  public static final String VERIFICATION_ACCOUNT = "in-sandbox";

  private final String name = "intentkit-test-" + UUID.randomUUID();
  private final Object lock = new Object();
  private final Map<String, Intent> intents = new HashMap<>();
  private final Map<String, String> byKey = new HashMap<>();
  private final Map<String, Object> requestsByKey = new HashMap<>();
  private final List<Event> outbox = new ArrayList<>();
  private final Map<String, Long> acked = new HashMap<>();
  private final List<Subscriber> subscribers = new ArrayList<>();
  private final List<ManagedChannel> channels = new CopyOnWriteArrayList<>();
  private final List<StatusRuntimeException> failures = new ArrayList<>();
  private Server server;
  private long nextIntent = 1;

  private IntentkitTestServer() {}

  /**
   * Starts a fake intentkitd in this process.
   *
   * @return the running server; close it after the test
   * @throws IOException if the in-process server cannot start
   */
  public static IntentkitTestServer start() throws IOException {
    IntentkitTestServer s = new IntentkitTestServer();
    s.startServer();
    return s;
  }

  private void startServer() throws IOException {
    server = InProcessServerBuilder.forName(name).addService(new Service()).build().start();
  }

  /**
   * A client of this server, with the default deadline (10 s); closed when the server is.
   *
   * @return a client connected in-process
   */
  public IntentkitClient client() {
    return client(b -> { });
  }

  /**
   * A client of this server, configured further (a token, interceptors, a deadline); closed
   * when the server is.
   *
   * @param configure called with the builder before it builds
   * @return a client connected in-process
   */
  public IntentkitClient client(java.util.function.Consumer<IntentkitClient.Builder> configure) {
    IntentkitClient.Builder b = IntentkitClient.builder(channel());
    configure.accept(b);
    return b.build();
  }

  /**
   * A new in-process channel to this server, for {@link IntentkitClient#builder(ManagedChannel)}
   * or the generated stubs; shut down when the server is closed.
   *
   * @return the channel
   */
  public ManagedChannel channel() {
    ManagedChannel c = InProcessChannelBuilder.forName(name).build();
    channels.add(c);
    return c;
  }

  /**
   * Stops serving, as a server that went down: calls fail {@code UNAVAILABLE} and streams end,
   * until {@link #restart()}. Intents and events are kept.
   */
  public void stop() {
    Server s;
    synchronized (lock) {
      s = server;
      server = null;
      for (Subscriber sub : subscribers) {
        sub.fail(Status.UNAVAILABLE.withDescription("the test server stopped"));
      }
      subscribers.clear();
    }
    if (s != null) {
      s.shutdownNow();
      try {
        s.awaitTermination(5, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }

  /**
   * Serves again after {@link #stop()}, with the same intents and events.
   *
   * @throws IOException if the in-process server cannot start
   */
  public void restart() throws IOException {
    synchronized (lock) {
      if (server != null) {
        return;
      }
      startServer();
    }
  }

  /**
   * The payer paid (a deposit) or verified (a verification): the intent becomes {@code APPROVED}
   * for its full amount, and {@code intent.approved} is emitted.
   *
   * @param intentId the intent's id
   * @return the intent after the transition
   * @throws IllegalStateException if the intent does not exist or is final
   */
  public Intent approve(String intentId) {
    synchronized (lock) {
      Intent it = existing(intentId);
      return approve(intentId, it.getAmountMinor());
    }
  }

  /**
   * As {@link #approve(String)}, for another amount than asked (Pientegra lets the payer change
   * it).
   *
   * @param intentId the intent's id
   * @param approvedAmountMinor the amount approved, in minor units
   * @return the intent after the transition
   * @throws IllegalStateException if the intent does not exist or is final
   */
  public Intent approve(String intentId, long approvedAmountMinor) {
    synchronized (lock) {
      Intent it = existing(intentId);
      Intent.Builder b = it.toBuilder().setApprovedAmountMinor(approvedAmountMinor);
      if (it.getKind() == IntentKind.INTENT_KIND_ACCOUNT_VERIFICATION) {
        b.setVerifiedPayer(VerifiedPayer.newBuilder().setName("Test Payer").setVpa("test@upi")
            .setMaskedAccountNumber("XXXXXXXX1234").setIfsc("TEST0000001").setBankReference("TESTREF1").build());
      }
      return transition(b.build(), IntentStatus.INTENT_STATUS_APPROVED, Cause.CAUSE_WEBHOOK, "");
    }
  }

  /**
   * The provider rejected the payment: the intent becomes {@code REJECTED} with that reason, and
   * {@code intent.rejected} is emitted.
   *
   * @param intentId the intent's id
   * @param reason the provider's reason, recorded on the intent
   * @return the intent after the transition
   * @throws IllegalStateException if the intent does not exist or is final
   */
  public Intent reject(String intentId, String reason) {
    synchronized (lock) {
      return transition(existing(intentId), IntentStatus.INTENT_STATUS_REJECTED, Cause.CAUSE_WEBHOOK, reason);
    }
  }

  /**
   * The payer never paid: the intent becomes {@code EXPIRED}, and {@code intent.expired} is
   * emitted.
   *
   * @param intentId the intent's id
   * @return the intent after the transition
   * @throws IllegalStateException if the intent does not exist or is final
   */
  public Intent expire(String intentId) {
    synchronized (lock) {
      return transition(existing(intentId), IntentStatus.INTENT_STATUS_EXPIRED, Cause.CAUSE_TIMER, "expired");
    }
  }

  /**
   * Makes the next call (any method but the event stream) fail with this status and an
   * intentkit ErrorInfo, as the real server's errors do. Calls queue: each failure is used once.
   *
   * @param code the status code, e.g. {@code UNAVAILABLE}
   * @param reason the ErrorInfo reason, e.g. {@code PROVIDER_UNAVAILABLE}
   * @param retryable the ErrorInfo's {@code retryable}
   */
  public void failNext(Status.Code code, String reason, boolean retryable) {
    synchronized (lock) {
      failures.add(error(code, reason, "failure injected by the test", retryable, null));
    }
  }

  /**
   * Every event emitted so far, in seq order.
   *
   * @return a copy of the outbox
   */
  public List<Event> events() {
    synchronized (lock) {
      return List.copyOf(outbox);
    }
  }

  /**
   * A consumer's acknowledged position.
   *
   * @param consumer the consumer's name
   * @return its last acknowledged seq, 0 if none
   */
  public long ackedSeq(String consumer) {
    synchronized (lock) {
      return acked.getOrDefault(consumer, 0L);
    }
  }

  /** Stops the server and shuts down every channel and client it gave. */
  @Override
  public void close() {
    stop();
    for (ManagedChannel c : channels) {
      c.shutdownNow();
    }
  }

  // The fake's state, always under lock.

  private Intent existing(String id) {
    Intent it = intents.get(id);
    if (it == null) {
      throw new IllegalStateException("no intent " + id);
    }
    return it;
  }

  private static boolean isFinal(IntentStatus s) {
    return switch (s) {
      case INTENT_STATUS_APPROVED, INTENT_STATUS_REJECTED, INTENT_STATUS_EXPIRED, INTENT_STATUS_FAILED,
          INTENT_STATUS_CANCELED, INTENT_STATUS_LATE_ARRIVAL -> true;
      default -> false;
    };
  }

  private Intent transition(Intent it, IntentStatus to, Cause cause, String reason) {
    if (isFinal(it.getStatus())) {
      throw new IllegalStateException("intent " + it.getId() + " is already " + it.getStatus());
    }
    return apply(it, to, cause, reason);
  }

  private Intent apply(Intent it, IntentStatus to, Cause cause, String reason) {
    Timestamp now = now();
    Intent next = it.toBuilder().setStatus(to).setReason(reason).setUpdatedAt(now).setVersion(it.getVersion() + 1).build();
    intents.put(next.getId(), next);
    EventType type = EventType.forNumber(to.getNumber());
    String typeName = "intent." + (to == IntentStatus.INTENT_STATUS_CANCELED ? "canceled"
        : to.name().substring("INTENT_STATUS_".length()).toLowerCase(java.util.Locale.ROOT));
    Event e = Event.newBuilder().setSeq(outbox.size() + 1).setEventId(UUID.randomUUID().toString()).setType(type)
        .setTypeName(typeName).setIntentId(next.getId()).setBusinessKey(typeName + ":" + next.getId())
        .setCreatedAt(now).setIntent(next)
        .setTransition(Transition.newBuilder().setFrom(it.getStatus()).setTo(to).setCause(cause).setAt(now).build())
        .build();
    outbox.add(e);
    for (Subscriber s : subscribers) {
      s.offer(e);
    }
    return next;
  }

  private static Timestamp now() {
    Instant i = Instant.now();
    return Timestamp.newBuilder().setSeconds(i.getEpochSecond()).setNanos(i.getNano()).build();
  }

  private static StatusRuntimeException error(Status.Code code, String reason, String message, boolean retryable,
      String intentId) {
    ErrorInfo.Builder info = ErrorInfo.newBuilder().setDomain("intentkit").setReason(reason)
        .putMetadata("retryable", Boolean.toString(retryable));
    if (intentId != null) {
      info.putMetadata("intent_id", intentId);
    }
    return StatusProto.toStatusRuntimeException(com.google.rpc.Status.newBuilder().setCode(code.value())
        .setMessage(message).addDetails(Any.pack(info.build())).build());
  }

  private static StatusRuntimeException invalid(String message) {
    return error(Status.Code.INVALID_ARGUMENT, "INVALID_ARGUMENT", message, false, null);
  }

  private void checkFailure() {
    if (!failures.isEmpty()) {
      throw failures.remove(0);
    }
  }

  private Intent create(String key, String account, Object request, Intent.Builder fresh, String wantAccount) {
    if (key.isEmpty() || key.length() > 255) {
      throw invalid("idempotency_key must be 1 to 255 characters");
    }
    if (!account.equals(wantAccount)) {
      throw (error(Status.Code.NOT_FOUND, "UNKNOWN_ACCOUNT", "no account " + account + " is configured", false, null));
    }
    String existing = byKey.get(key);
    if (existing != null) {
      if (!requestsByKey.get(key).equals(request)) {
        throw (error(Status.Code.ALREADY_EXISTS, "IDEMPOTENCY_CONFLICT",
            "idempotency key " + key + " was used with other parameters (intent " + existing
                + "): a new operation needs a new key", false, existing));
      }
      return intents.get(existing);
    }
    String id = String.format("ik_test_%06d", nextIntent++);
    Timestamp now = now();
    Intent created = fresh.setId(id).setAccount(account).setIdempotencyKey(key).setStatus(IntentStatus.INTENT_STATUS_CREATED)
        .setCreatedAt(now).setUpdatedAt(now)
        .setExpiresAt(Timestamp.newBuilder().setSeconds(now.getSeconds() + 600).build()).setVersion(1).build();
    byKey.put(key, id);
    requestsByKey.put(key, request);
    intents.put(id, created);
    Intent.Builder initial = created.toBuilder().setStatus(IntentStatus.INTENT_STATUS_UNSPECIFIED);
    // intent.created then intent.pending, as the real server emits them.
    apply(initial.build(), IntentStatus.INTENT_STATUS_CREATED, Cause.CAUSE_API, "");
    return apply(intents.get(id), IntentStatus.INTENT_STATUS_PENDING, Cause.CAUSE_API, "");
  }

  /** One open StreamEvents call: events after its cursor, in order. */
  private static final class Subscriber {
    final ServerCallStreamObserver<Event> observer;
    long cursor;

    Subscriber(ServerCallStreamObserver<Event> observer, long cursor) {
      this.observer = observer;
      this.cursor = cursor;
    }

    void offer(Event e) {
      if (e.getSeq() > cursor && !observer.isCancelled()) {
        observer.onNext(e);
        cursor = e.getSeq();
      }
    }

    void fail(Status s) {
      if (!observer.isCancelled()) {
        observer.onError(s.asRuntimeException());
      }
    }
  }

  /** The fake service: each method validates, then reads or changes the state under lock. */
  private final class Service extends IntentServiceGrpc.IntentServiceImplBase {
    private <T> void unary(StreamObserver<T> out, java.util.function.Supplier<T> f) {
      T value;
      try {
        synchronized (lock) {
          checkFailure();
          value = f.get();
        }
      } catch (StatusRuntimeException e) {
        out.onError(e);
        return;
      }
      out.onNext(value);
      out.onCompleted();
    }

    @Override
    public void createDeposit(CreateDepositRequest r, StreamObserver<Intent> out) {
      unary(out, () -> {
        if (r.getAmountMinor() <= 0) {
          throw invalid("amount_minor must be > 0");
        }
        if (r.getCurrency().isEmpty() || r.getReference().isEmpty() || r.getUserId().isEmpty()) {
          throw invalid("currency, reference and user_id are required");
        }
        String url = "https://pientegra.test/pay/" + byKey.size();
        Intent.Builder b = Intent.newBuilder().setProvider(Provider.PROVIDER_PIENTEGRA).setKind(IntentKind.INTENT_KIND_DEPOSIT)
            .setAmountMinor(r.getAmountMinor()).setCurrency(r.getCurrency()).setReference(r.getReference())
            .setUserId(r.getUserId()).putAllMetadata(r.getMetadataMap())
            .setProviderRef(ProviderRef.newBuilder().setPientegra(PientegraRef.newBuilder()
                .setIntentId("pi_test_" + byKey.size()).setReferenceNo(r.getReference())))
            .setHandoff(PayerHandoff.newBuilder().setHostedPage(HostedPage.newBuilder().setUrl(url)));
        return create(r.getIdempotencyKey(), r.getAccount(), r.toBuilder().clearIdempotencyKey().build(), b, DEPOSIT_ACCOUNT);
      });
    }

    @Override
    public void createAccountVerification(CreateAccountVerificationRequest r, StreamObserver<Intent> out) {
      unary(out, () -> {
        if (r.getReference().isEmpty() || r.getUserId().isEmpty()) {
          throw invalid("reference and user_id are required");
        }
        if (r.getPurposeMessage().matches(".*[.@#$%^&*!;:'\"~`?=+()].*")) {
          throw (error(Status.Code.INVALID_ARGUMENT, "error_unsanitized_values",
              "purpose_message has characters Decentro refuses", false, null));
        }
        String link = "https://upi.test/" + byKey.size();
        Intent.Builder b = Intent.newBuilder().setProvider(Provider.PROVIDER_DECENTRO)
            .setKind(IntentKind.INTENT_KIND_ACCOUNT_VERIFICATION).setAmountMinor(100).setCurrency("INR")
            .setReference(r.getReference()).setUserId(r.getUserId()).putAllMetadata(r.getMetadataMap())
            .setProviderRef(ProviderRef.newBuilder().setDecentro(DecentroRef.newBuilder().setTxnId("txn_test_" + byKey.size())))
            .setHandoff(PayerHandoff.newBuilder().setUpi(UpiHandoff.newBuilder().setShortLink(link)
                .setQrCode(r.getGenerateQr() ? "data:image/png;base64," : "")
                .setGpayUri(r.getGenerateUri() ? "gpay://upi/pay" : "")));
        return create(r.getIdempotencyKey(), r.getAccount(), r.toBuilder().clearIdempotencyKey().build(), b, VERIFICATION_ACCOUNT);
      });
    }

    @Override
    public void getIntent(GetIntentRequest r, StreamObserver<Intent> out) {
      unary(out, () -> found(r.getId()));
    }

    private Intent found(String id) {
      Intent it = intents.get(id);
      if (it == null) {
        throw (error(Status.Code.NOT_FOUND, "INTENT_NOT_FOUND", "no intent " + id, false, null));
      }
      return it;
    }

    @Override
    public void listIntents(ListIntentsRequest r, StreamObserver<ListIntentsResponse> out) {
      unary(out, () -> {
        List<Intent> all = new ArrayList<>(intents.values());
        all.sort((a, b) -> b.getId().compareTo(a.getId()));
        int size = r.getPageSize() == 0 ? 50 : Math.min(r.getPageSize(), 500);
        int from = r.getPageToken().isEmpty() ? 0 : Integer.parseInt(r.getPageToken());
        List<Intent> matching = all.stream()
            .filter(i -> r.getStatusesList().isEmpty() || r.getStatusesList().contains(i.getStatus()))
            .filter(i -> r.getProvider() == Provider.PROVIDER_UNSPECIFIED || r.getProvider() == i.getProvider())
            .filter(i -> r.getAccount().isEmpty() || r.getAccount().equals(i.getAccount()))
            .toList();
        int to = Math.min(matching.size(), from + size);
        return ListIntentsResponse.newBuilder().addAllIntents(matching.subList(Math.min(from, to), to))
            .setNextPageToken(to < matching.size() ? Integer.toString(to) : "").build();
      });
    }

    @Override
    public void cancelIntent(CancelIntentRequest r, StreamObserver<Intent> out) {
      unary(out, () -> {
        Intent it = found(r.getId());
        if (it.getStatus() != IntentStatus.INTENT_STATUS_CREATED && it.getStatus() != IntentStatus.INTENT_STATUS_PENDING) {
          throw (error(Status.Code.FAILED_PRECONDITION, "INVALID_TRANSITION",
              "intent " + it.getId() + " is " + it.getStatus() + ": it can no longer be canceled", false, it.getId()));
        }
        return apply(it, IntentStatus.INTENT_STATUS_CANCELED, Cause.CAUSE_API, r.getReason());
      });
    }

    @Override
    public void refreshIntent(RefreshIntentRequest r, StreamObserver<Intent> out) {
      unary(out, () -> found(r.getId()));
    }

    @Override
    public void handleWebhook(HandleWebhookRequest r, StreamObserver<HandleWebhookResponse> out) {
      unary(out, () -> HandleWebhookResponse.newBuilder().setHttpStatus(200).setHttpBody("{}").setOutcome("ignored").build());
    }

    private void checkConsumer(String consumer) {
      if (consumer.isEmpty()) {
        throw invalid("consumer is required");
      }
    }

    @Override
    public void streamEvents(StreamEventsRequest r, StreamObserver<Event> out) {
      ServerCallStreamObserver<Event> call = (ServerCallStreamObserver<Event>) out;
      synchronized (lock) {
        try {
          checkConsumer(r.getConsumer());
        } catch (StatusRuntimeException e) {
          out.onError(e);
          return;
        }
        Subscriber s = new Subscriber(call, r.hasAfterSeq() ? r.getAfterSeq() : acked.getOrDefault(r.getConsumer(), 0L));
        call.setOnCancelHandler(() -> {
          synchronized (lock) {
            subscribers.remove(s);
          }
        });
        for (Event e : outbox) {
          s.offer(e);
        }
        subscribers.add(s);
      }
    }

    @Override
    public void listEvents(ListEventsRequest r, StreamObserver<ListEventsResponse> out) {
      unary(out, () -> {
        checkConsumer(r.getConsumer());
        long ack = acked.getOrDefault(r.getConsumer(), 0L);
        long after = r.hasAfterSeq() ? r.getAfterSeq() : ack;
        int limit = r.getLimit() == 0 ? 100 : Math.min(r.getLimit(), 500);
        return ListEventsResponse.newBuilder().setAckedSeq(ack)
            .addAllEvents(outbox.stream().filter(e -> e.getSeq() > after).limit(limit).toList()).build();
      });
    }

    @Override
    public void ackEvents(AckEventsRequest r, StreamObserver<AckEventsResponse> out) {
      unary(out, () -> {
        checkConsumer(r.getConsumer());
        if (r.getSeq() > outbox.size()) {
          throw invalid("seq " + r.getSeq() + " is past the newest event (" + outbox.size() + ")");
        }
        long now = Math.max(acked.getOrDefault(r.getConsumer(), 0L), r.getSeq());
        acked.put(r.getConsumer(), now);
        return AckEventsResponse.newBuilder().setAckedSeq(now).build();
      });
    }
  }

  @Override
  public String toString() {
    return "IntentkitTestServer[" + name + "]";
  }
}
