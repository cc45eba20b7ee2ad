package dev.intentkit.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.Code;
import com.google.rpc.ErrorInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import org.junit.jupiter.api.Test;

/** How a server's status becomes an IntentkitException, without a server. */
class IntentkitExceptionTest {
  static StatusRuntimeException withInfo(Code code, String message, ErrorInfo info) {
    return StatusProto.toStatusRuntimeException(com.google.rpc.Status.newBuilder()
        .setCode(code.getNumber()).setMessage(message).addDetails(Any.pack(info)).build());
  }

  @Test
  void errorInfoBecomesTheExceptionsFields() {
    IntentkitException e = IntentkitException.from(withInfo(Code.UNAVAILABLE, "pientegra unreachable",
        ErrorInfo.newBuilder().setReason("PROVIDER_UNAVAILABLE").setDomain("intentkit")
            .putMetadata("retryable", "true").putMetadata("intent_id", "01J0ABC").build()));
    assertEquals(Status.Code.UNAVAILABLE, e.code());
    assertEquals(Reasons.PROVIDER_UNAVAILABLE, e.reason());
    assertTrue(e.retryable());
    assertEquals("01J0ABC", e.intentId().orElseThrow());
    assertTrue(e.getMessage().contains("pientegra unreachable"));
  }

  @Test
  void anotherDomainsErrorInfoIsNotTakenForOurs() {
    IntentkitException e = IntentkitException.from(withInfo(Code.PERMISSION_DENIED, "proxy says no",
        ErrorInfo.newBuilder().setReason("IDEMPOTENCY_CONFLICT").setDomain("proxy.example").build()));
    assertEquals("PERMISSION_DENIED", e.reason());
    assertFalse(e.retryable());
    assertTrue(e.intentId().isEmpty());
  }

  @Test
  void transportFailuresGetTheCodesName() {
    IntentkitException e = IntentkitException.from(Status.DEADLINE_EXCEEDED.withDescription("x").asRuntimeException());
    assertEquals(Reasons.DEADLINE_EXCEEDED, e.reason());
    assertTrue(e.retryable());
    e = IntentkitException.from(Status.UNAUTHENTICATED.asRuntimeException());
    assertEquals("UNAUTHENTICATED", e.reason());
    assertFalse(e.retryable());
  }

  @Test
  void aBuilderWithoutATransportChoiceIsRefusedAndNeverPrintsTheToken() {
    IntentkitClient.Builder b = IntentkitClient.builder("127.0.0.1:1").token("s3cret-token");
    assertThrows(IllegalStateException.class, b::build);
    assertFalse(b.toString().contains("s3cret"), b.toString());
  }
}
