package dev.intentkit.client;

import com.google.rpc.ErrorInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.util.Locale;
import java.util.Optional;

/**
 * Every failure of an {@link IntentkitClient} call. Branch on {@link #reason()}, the stable code
 * listed in intentkit's {@code docs/errors.md} (or a provider's own code), never on the message.
 * When the failure came from the transport and carries no {@code ErrorInfo} (a deadline, a
 * dropped connection) the reason is the status code's name, e.g. {@code DEADLINE_EXCEEDED}.
 */
public final class IntentkitException extends RuntimeException {
  private static final long serialVersionUID = 1L;
  private static final String DOMAIN = "intentkit";

  /** The gRPC status code. */
  private final Status.Code code;
  /** The stable reason (ErrorInfo's, or the status code's name). */
  private final String reason;
  /** Whether the same call may succeed later. */
  private final boolean retryable;
  /** The intent the error is about, or null. */
  private final String intentId;

  IntentkitException(Status.Code code, String reason, String message, boolean retryable, String intentId, Throwable cause) {
    super(reason + " (" + code + "): " + message + (intentId == null ? "" : " [intent " + intentId + "]"), cause);
    this.code = code;
    this.reason = reason;
    this.retryable = retryable;
    this.intentId = intentId;
  }

  /**
   * The gRPC status code.
   *
   * @return the status code, e.g. {@code ALREADY_EXISTS} for {@code IDEMPOTENCY_CONFLICT}
   */
  public Status.Code code() {
    return code;
  }

  /**
   * The stable reason to branch on.
   *
   * @return e.g. {@link Reasons#IDEMPOTENCY_CONFLICT}, a provider's {@code error_unsanitized_values},
   *     or the status code's name when the server sent no ErrorInfo
   */
  public String reason() {
    return reason;
  }

  /**
   * Whether the same call, unchanged (same idempotency key), may succeed.
   *
   * @return true to retry later with the same key
   */
  public boolean retryable() {
    return retryable;
  }

  /**
   * The intent the error is about: for {@code IDEMPOTENCY_CONFLICT}, the intent the key already
   * names; for a retryable failure of a create, the intent it still recorded (retrying with the
   * same key finishes it).
   *
   * @return the intent's id, or empty when the server named none
   */
  public Optional<String> intentId() {
    return Optional.ofNullable(intentId);
  }

  /**
   * Whether this is the given reason.
   *
   * @param reason a reason, e.g. {@link Reasons#IDEMPOTENCY_CONFLICT}
   * @return true if {@link #reason()} equals it
   */
  public boolean is(String reason) {
    return this.reason.equals(reason);
  }

  /**
   * Turns what a gRPC stub threw into an IntentkitException (for code that calls the generated
   * stubs itself).
   *
   * @param t a {@link StatusRuntimeException}, {@link io.grpc.StatusException} or any throwable
   * @return t itself if it is one, else the exception its status describes
   */
  public static IntentkitException from(Throwable t) {
    if (t instanceof IntentkitException e) {
      return e;
    }
    Status status = Status.fromThrowable(t);
    String message = status.getDescription() == null ? "" : status.getDescription();
    com.google.rpc.Status details = StatusProto.fromThrowable(t);
    if (details != null) {
      for (com.google.protobuf.Any any : details.getDetailsList()) {
        if (!any.is(ErrorInfo.class)) {
          continue;
        }
        try {
          ErrorInfo info = any.unpack(ErrorInfo.class);
          if (DOMAIN.equals(info.getDomain())) {
            String id = info.getMetadataOrDefault("intent_id", "");
            return new IntentkitException(status.getCode(), info.getReason(), message,
                "true".equals(info.getMetadataOrDefault("retryable", "false")), id.isEmpty() ? null : id, t);
          }
        } catch (com.google.protobuf.InvalidProtocolBufferException ignored) {
          // A detail that does not decode is not ours; fall through to the status code.
        }
      }
    }
    Status.Code c = status.getCode();
    boolean transientFailure = c == Status.Code.UNAVAILABLE || c == Status.Code.DEADLINE_EXCEEDED
        || c == Status.Code.RESOURCE_EXHAUSTED || c == Status.Code.ABORTED;
    return new IntentkitException(c, c.name().toUpperCase(Locale.ROOT), message, transientFailure, null, t);
  }

  static IntentkitException from(StatusRuntimeException e) {
    return from((Throwable) e);
  }
}
