package dev.intentkit.client;

import dev.intentkit.v1.AckEventsRequest;
import dev.intentkit.v1.AckEventsResponse;
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
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.function.BiConsumer;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * The gRPC implementation of {@link IntentkitClient}: blocking and async stubs over one channel
 * with the token and the caller's interceptors, each call given the deadline.
 */
final class GrpcIntentkitClient implements IntentkitClient {
  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private final ManagedChannel channel;
  private final boolean ownsChannel;
  private final Channel intercepted;
  private final IntentServiceGrpc.IntentServiceBlockingStub blocking;
  private final IntentServiceGrpc.IntentServiceStub async;
  private final Duration deadline;
  private final Executor executor;

  private GrpcIntentkitClient(ManagedChannel channel, boolean ownsChannel, Channel intercepted, Duration deadline, Executor executor) {
    this.executor = executor;
    this.channel = channel;
    this.ownsChannel = ownsChannel;
    this.intercepted = intercepted;
    this.deadline = deadline;
    IntentServiceGrpc.IntentServiceBlockingStub b = IntentServiceGrpc.newBlockingStub(intercepted);
    IntentServiceGrpc.IntentServiceStub a = IntentServiceGrpc.newStub(intercepted);
    if (executor != null) {
      b = b.withExecutor(executor);
      a = a.withExecutor(executor);
    }
    this.blocking = b;
    this.async = a;
  }

  static GrpcIntentkitClient create(ManagedChannel channel, boolean owns, String token, List<ClientInterceptor> interceptors,
      Duration deadline, Executor executor) {
    List<ClientInterceptor> all = new ArrayList<>();
    // ClientInterceptors.intercept runs the last one first: the token first, then the caller's in order.
    for (int i = interceptors.size() - 1; i >= 0; i--) {
      all.add(interceptors.get(i));
    }
    if (token != null) {
      all.add(new Bearer(token));
    }
    return new GrpcIntentkitClient(channel, owns, ClientInterceptors.intercept(channel, all), deadline, executor);
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

  private IntentServiceGrpc.IntentServiceBlockingStub stub() {
    return blocking.withDeadlineAfter(deadline.toNanos(), TimeUnit.NANOSECONDS);
  }

  /** The stub without a deadline, for the event stream. */
  IntentServiceGrpc.IntentServiceBlockingStub streamingStub() {
    return blocking;
  }

  ManagedChannel channel() {
    return channel;
  }

  private static <T> T call(Supplier<T> f) {
    try {
      return f.get();
    } catch (StatusRuntimeException e) {
      throw IntentkitException.from(e);
    }
  }

  @Override
  public Intent createDeposit(CreateDepositRequest request) {
    return call(() -> stub().createDeposit(request));
  }

  @Override
  public Intent createAccountVerification(CreateAccountVerificationRequest request) {
    return call(() -> stub().createAccountVerification(request));
  }

  @Override
  public Intent getIntent(String id) {
    return call(() -> stub().getIntent(GetIntentRequest.newBuilder().setId(id).build()));
  }

  @Override
  public ListIntentsResponse listIntents(ListIntentsRequest request) {
    return call(() -> stub().listIntents(request));
  }

  @Override
  public Intent cancelIntent(String id, String reason) {
    return call(() -> stub().cancelIntent(CancelIntentRequest.newBuilder().setId(id).setReason(reason).build()));
  }

  @Override
  public Intent refreshIntent(String id) {
    return call(() -> stub().refreshIntent(RefreshIntentRequest.newBuilder().setId(id).build()));
  }

  @Override
  public HandleWebhookResponse handleWebhook(HandleWebhookRequest request) {
    return call(() -> stub().handleWebhook(request));
  }

  @Override
  public ListEventsResponse listEvents(ListEventsRequest request) {
    return call(() -> stub().listEvents(request));
  }

  @Override
  public long ackEvents(String consumer, long seq) {
    return call(() -> stub().ackEvents(AckEventsRequest.newBuilder().setConsumer(consumer).setSeq(seq).build()))
        .getAckedSeq();
  }

  @Override
  public EventConsumer consume(String consumer, EventHandler handler) {
    return consume(consumer, handler, ConsumerOptions.defaults());
  }

  @Override
  public EventConsumer consume(String consumer, EventHandler handler, Duration minBackoff, Duration maxBackoff) {
    return consume(consumer, handler, ConsumerOptions.defaults().backoff(minBackoff, maxBackoff));
  }

  @Override
  public EventConsumer consume(String consumer, EventHandler handler, ConsumerOptions options) {
    return StreamingEventConsumer.start(this, consumer, handler, options);
  }

  @Override
  public IntentkitClient withDeadline(Duration deadline) {
    java.util.Objects.requireNonNull(deadline, "deadline");
    if (deadline.isNegative() || deadline.isZero()) {
      throw new IllegalArgumentException("deadline must be positive, got " + deadline);
    }
    return new GrpcIntentkitClient(channel, false, intercepted, deadline, executor);
  }

  @Override
  public AsyncIntentkitClient async() {
    return new Async();
  }

  /** Completes a CompletableFuture from one unary call; cancelling the future cancels the call. */
  private <Q, R, T> CompletableFuture<T> future(BiConsumer<Q, io.grpc.stub.StreamObserver<R>> method, Q request,
      Function<R, T> map) {
    CompletableFuture<T> f = new CompletableFuture<>();
    method.accept(request, new ClientResponseObserver<Q, R>() {
      @Override
      public void beforeStart(ClientCallStreamObserver<Q> call) {
        f.whenComplete((v, e) -> {
          if (f.isCancelled()) {
            call.cancel("the caller cancelled the future", null);
          }
        });
      }

      @Override
      public void onNext(R value) {
        f.complete(map.apply(value));
      }

      @Override
      public void onError(Throwable t) {
        f.completeExceptionally(IntentkitException.from(t));
      }

      @Override
      public void onCompleted() {
        // onNext completed it
      }
    });
    return f;
  }

  /** The asynchronous view: the same channel and deadline. */
  private final class Async implements AsyncIntentkitClient {
    private IntentServiceGrpc.IntentServiceStub stub() {
      return async.withDeadlineAfter(deadline.toNanos(), TimeUnit.NANOSECONDS);
    }

    @Override
    public CompletableFuture<Intent> createDeposit(CreateDepositRequest request) {
      return future(stub()::createDeposit, request, r -> r);
    }

    @Override
    public CompletableFuture<Intent> createAccountVerification(CreateAccountVerificationRequest request) {
      return future(stub()::createAccountVerification, request, r -> r);
    }

    @Override
    public CompletableFuture<Intent> getIntent(String id) {
      return future(stub()::getIntent, GetIntentRequest.newBuilder().setId(id).build(), r -> r);
    }

    @Override
    public CompletableFuture<ListIntentsResponse> listIntents(ListIntentsRequest request) {
      return future(stub()::listIntents, request, r -> r);
    }

    @Override
    public CompletableFuture<Intent> cancelIntent(String id, String reason) {
      return future(stub()::cancelIntent, CancelIntentRequest.newBuilder().setId(id).setReason(reason).build(), r -> r);
    }

    @Override
    public CompletableFuture<Intent> refreshIntent(String id) {
      return future(stub()::refreshIntent, RefreshIntentRequest.newBuilder().setId(id).build(), r -> r);
    }

    @Override
    public CompletableFuture<HandleWebhookResponse> handleWebhook(HandleWebhookRequest request) {
      return future(stub()::handleWebhook, request, r -> r);
    }

    @Override
    public CompletableFuture<ListEventsResponse> listEvents(ListEventsRequest request) {
      return future(stub()::listEvents, request, r -> r);
    }

    @Override
    public CompletableFuture<Long> ackEvents(String consumer, long seq) {
      return future(stub()::ackEvents, AckEventsRequest.newBuilder().setConsumer(consumer).setSeq(seq).build(),
          AckEventsResponse::getAckedSeq);
    }
  }

  @Override
  public void close() {
    if (!ownsChannel) {
      return;
    }
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

  @Override
  public String toString() {
    return "IntentkitClient[" + channel + ", deadline " + deadline + "]";
  }
}
