package example;

import dev.intentkit.client.EventConsumer;
import dev.intentkit.client.IntentkitClient;
import dev.intentkit.client.IntentkitException;
import dev.intentkit.client.Reasons;
import dev.intentkit.v1.CreateDepositRequest;
import dev.intentkit.v1.Intent;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A user's code, as a Java service would write it: a checkout that starts deposits and a ledger
 * that credits approved ones exactly once. Its test (CheckoutTest) runs it against
 * IntentkitTestServer; copy both as a starting point.
 */
public final class Checkout implements AutoCloseable {
  private final IntentkitClient intentkit;
  private final Map<String, Long> credited = new ConcurrentHashMap<>(); // your database, keyed by business key
  private final EventConsumer ledger;

  public Checkout(IntentkitClient intentkit) {
    this.intentkit = intentkit;
    this.ledger = intentkit.consume("ledger", e -> {
      if (e.getTypeName().equals("intent.approved")) {
        credited.putIfAbsent(e.getBusinessKey(), e.getIntent().getApprovedAmountMinor());
      }
    });
  }

  /** Starts paying for an order; returns the page to send the payer to. */
  public String startPayment(String orderId, String userId, long amountMinor) {
    try {
      Intent intent = intentkit.createDeposit(CreateDepositRequest.newBuilder()
          .setIdempotencyKey(orderId).setAccount("tr-sandbox").setAmountMinor(amountMinor).setCurrency("TRY")
          .setReference(orderId).setUserId(userId).build());
      return intent.getHandoff().getHostedPage().getUrl();
    } catch (IntentkitException e) {
      if (e.is(Reasons.IDEMPOTENCY_CONFLICT)) {
        throw new IllegalArgumentException("order " + orderId + " was already paid for with another amount (intent "
            + e.intentId().orElse("?") + ")", e);
      }
      throw e;
    }
  }

  /** The total credited so far. */
  public long creditedMinor() {
    return credited.values().stream().mapToLong(Long::longValue).sum();
  }

  /** Whether the ledger stopped on its own (and why). */
  public java.util.Optional<Throwable> ledgerFailure() {
    return ledger.failure();
  }

  @Override
  public void close() {
    ledger.close();
  }
}
