package dev.intentkit.client;

import io.grpc.BindableService;
import io.grpc.Grpc;
import io.grpc.InsecureServerCredentials;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerCredentials;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

/** A gRPC server on a free port (the tests reach it on 127.0.0.1 only), recording each call's headers: for builder tests. */
final class NetServer implements AutoCloseable {
  final Server server;
  final List<Metadata> headers = new CopyOnWriteArrayList<>();

  NetServer(BindableService service) throws Exception {
    this(service, InsecureServerCredentials.create());
  }

  NetServer(BindableService service, ServerCredentials credentials) throws Exception {
    ServerInterceptor record = new ServerInterceptor() {
      @Override
      public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata h, ServerCallHandler<Q, R> next) {
        headers.add(h);
        return next.startCall(call, h);
      }
    };
    server = Grpc.newServerBuilderForPort(0, credentials)
        .addService(ServerInterceptors.intercept(service, record)).build().start();
  }

  String target() {
    return "127.0.0.1:" + server.getPort();
  }

  String lastHeader(String name) {
    return headers.get(headers.size() - 1).get(Metadata.Key.of(name, Metadata.ASCII_STRING_MARSHALLER));
  }

  @Override
  public void close() throws InterruptedException {
    server.shutdownNow();
    server.awaitTermination(5, TimeUnit.SECONDS);
  }
}
