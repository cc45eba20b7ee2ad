package example;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.intentkit.client.IntentkitClient;
import dev.intentkit.client.testing.IntentkitTestServer;
import dev.intentkit.v1.Event;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The unit test a user writes for their own code (Checkout) against the in-process fake: no
 * server, no network. The payer's and provider's part is played with server.approve/reject.
 */
class CheckoutTest {
  @Test
  void anApprovedDepositIsCreditedOnceAndARejectedOneNever() throws Exception {
    try (IntentkitTestServer server = IntentkitTestServer.start();
         IntentkitClient client = server.client();
         Checkout checkout = new Checkout(client)) {
      String page = checkout.startPayment("order-1", "user-42", 150_000);
      assertTrue(page.startsWith("https://"), page);
      checkout.startPayment("order-1", "user-42", 150_000); // a retry: the same intent
      checkout.startPayment("order-2", "user-7", 99_00);

      String first = server.events().get(0).getIntentId();
      String second = server.events().get(2).getIntentId();
      server.approve(first);
      server.reject(second, "card_declined");

      waitFor(() -> server.ackedSeq("ledger") == server.events().size());
      assertEquals(150_000, checkout.creditedMinor());
      assertTrue(checkout.ledgerFailure().isEmpty());
      assertEquals(6, server.events().stream().map(Event::getTypeName).count());
    }
  }

  @Test
  void theSameOrderWithAnotherAmountIsRefusedNamingTheIntent() throws Exception {
    try (IntentkitTestServer server = IntentkitTestServer.start();
         IntentkitClient client = server.client();
         Checkout checkout = new Checkout(client)) {
      checkout.startPayment("order-1", "user-42", 150_000);
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> checkout.startPayment("order-1", "user-42", 160_000));
      assertTrue(e.getMessage().contains(server.events().get(0).getIntentId()), e.getMessage());
    }
  }

  static void waitFor(java.util.function.BooleanSupplier done) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!done.getAsBoolean()) {
      assertTrue(System.nanoTime() < deadline, "timed out");
      Thread.sleep(5);
    }
  }
}
