package dev.intentkit.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.intentkit.client.testing.IntentkitTestServer;
import dev.intentkit.v1.CreateAccountVerificationRequest;
import dev.intentkit.v1.Intent;
import dev.intentkit.v1.IntentStatus;
import dev.intentkit.v1.ListEventsRequest;
import dev.intentkit.v1.ListIntentsRequest;
import io.grpc.Status;
import org.junit.jupiter.api.Test;

/** The fake answers as intentkitd does, for what a client can see. */
class IntentkitTestServerTest {
  @Test
  void createsAreIdempotentAndAConflictNamesTheExistingIntent() throws Exception {
    try (IntentkitTestServer server = IntentkitTestServer.start(); IntentkitClient client = server.client()) {
      Intent first = client.createDeposit(ClientOptionsTest.deposit("order-1", 150_000));
      assertEquals(IntentStatus.INTENT_STATUS_PENDING, first.getStatus());
      assertTrue(first.getHandoff().getHostedPage().getUrl().startsWith("https://"));
      assertEquals(first.getId(), client.createDeposit(ClientOptionsTest.deposit("order-1", 150_000)).getId());
      IntentkitException e = assertThrows(IntentkitException.class,
          () -> client.createDeposit(ClientOptionsTest.deposit("order-1", 150_001)));
      assertEquals(Reasons.IDEMPOTENCY_CONFLICT, e.reason());
      assertEquals(Status.Code.ALREADY_EXISTS, e.code());
      assertEquals(first.getId(), e.intentId().orElseThrow());
      assertEquals(2, server.events().size());
    }
  }

  @Test
  void flowsApproveRejectExpireAndCancelAsTheLifecycleAllows() throws Exception {
    try (IntentkitTestServer server = IntentkitTestServer.start(); IntentkitClient client = server.client()) {
      Intent v = client.createAccountVerification(CreateAccountVerificationRequest.newBuilder().setIdempotencyKey("kyc-1")
          .setAccount("in-sandbox").setReference("kyc-1").setUserId("u").setPurposeMessage("Verify").build());
      assertEquals("Test Payer", server.approve(v.getId()).getVerifiedPayer().getName());
      assertEquals(IntentStatus.INTENT_STATUS_APPROVED, client.getIntent(v.getId()).getStatus());
      Intent d = client.createDeposit(ClientOptionsTest.deposit("d", 100));
      assertEquals("card_declined", server.reject(d.getId(), "card_declined").getReason());
      assertThrows(IllegalStateException.class, () -> server.approve(d.getId()));
      IntentkitException e = assertThrows(IntentkitException.class, () -> client.cancelIntent(d.getId(), "changed mind"));
      assertEquals(Reasons.INVALID_TRANSITION, e.reason());
      Intent c = client.createDeposit(ClientOptionsTest.deposit("c", 100));
      assertEquals(IntentStatus.INTENT_STATUS_CANCELED, client.cancelIntent(c.getId(), "changed mind").getStatus());
      Intent x = client.createDeposit(ClientOptionsTest.deposit("x", 100));
      assertEquals(IntentStatus.INTENT_STATUS_EXPIRED, server.expire(x.getId()).getStatus());
      assertEquals(1, client.listIntents(ListIntentsRequest.newBuilder()
          .addStatuses(IntentStatus.INTENT_STATUS_CANCELED).build()).getIntentsCount());
      assertEquals(Reasons.INTENT_NOT_FOUND, assertThrows(IntentkitException.class, () -> client.getIntent("nope")).reason());
      assertEquals(Reasons.UNKNOWN_ACCOUNT, assertThrows(IntentkitException.class,
          () -> client.createDeposit(ClientOptionsTest.deposit("y", 100).toBuilder().setAccount("tr-main").build())).reason());
    }
  }

  @Test
  void injectedFailuresAndPollingConsumers() throws Exception {
    try (IntentkitTestServer server = IntentkitTestServer.start(); IntentkitClient client = server.client()) {
      server.failNext(Status.Code.UNAVAILABLE, Reasons.PROVIDER_UNAVAILABLE, true);
      IntentkitException e = assertThrows(IntentkitException.class, () -> client.createDeposit(ClientOptionsTest.deposit("k", 1)));
      assertEquals(Reasons.PROVIDER_UNAVAILABLE, e.reason());
      assertTrue(e.retryable());
      client.createDeposit(ClientOptionsTest.deposit("k", 1));
      assertEquals(2, client.listEvents(ListEventsRequest.newBuilder().setConsumer("poller").build()).getEventsCount());
      assertEquals(2, client.ackEvents("poller", 2));
      assertEquals(2, client.listEvents(ListEventsRequest.newBuilder().setConsumer("poller").build()).getAckedSeq());
      assertEquals(Reasons.INVALID_ARGUMENT, assertThrows(IntentkitException.class, () -> client.ackEvents("poller", 3)).reason());
    }
  }
}
