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
import java.util.concurrent.CompletableFuture;

/**
 * The calls of {@link IntentkitClient}, asynchronous ({@link IntentkitClient#async()}). A future
 * fails with an {@link IntentkitException} ({@code join()} wraps it in a
 * {@link java.util.concurrent.CompletionException}, {@code get()} in an
 * {@link java.util.concurrent.ExecutionException}); cancelling a future cancels its call. Futures
 * complete on the channel's executor ({@link IntentkitClient.Builder#executor}), so a dependent
 * stage that blocks should use an {@code ...Async} method with an executor of its own.
 */
public interface AsyncIntentkitClient {
  /**
   * As {@link IntentkitClient#createDeposit}.
   *
   * @param request the deposit
   * @return the intent, or the failure
   */
  CompletableFuture<Intent> createDeposit(CreateDepositRequest request);

  /**
   * As {@link IntentkitClient#createAccountVerification}.
   *
   * @param request the verification
   * @return the intent, or the failure
   */
  CompletableFuture<Intent> createAccountVerification(CreateAccountVerificationRequest request);

  /**
   * As {@link IntentkitClient#getIntent}.
   *
   * @param id the intent's id
   * @return the intent, or the failure
   */
  CompletableFuture<Intent> getIntent(String id);

  /**
   * As {@link IntentkitClient#listIntents}.
   *
   * @param request filters and paging
   * @return the page, or the failure
   */
  CompletableFuture<ListIntentsResponse> listIntents(ListIntentsRequest request);

  /**
   * As {@link IntentkitClient#cancelIntent}.
   *
   * @param id the intent's id
   * @param reason recorded as the intent's reason
   * @return the canceled intent, or the failure
   */
  CompletableFuture<Intent> cancelIntent(String id, String reason);

  /**
   * As {@link IntentkitClient#refreshIntent}.
   *
   * @param id the intent's id
   * @return the intent after the look-up, or the failure
   */
  CompletableFuture<Intent> refreshIntent(String id);

  /**
   * As {@link IntentkitClient#handleWebhook}.
   *
   * @param request the delivery as received
   * @return what to answer the provider, or the failure
   */
  CompletableFuture<HandleWebhookResponse> handleWebhook(HandleWebhookRequest request);

  /**
   * As {@link IntentkitClient#listEvents}.
   *
   * @param request the consumer, cursor and limit
   * @return the page, or the failure
   */
  CompletableFuture<ListEventsResponse> listEvents(ListEventsRequest request);

  /**
   * As {@link IntentkitClient#ackEvents}.
   *
   * @param consumer the consumer's name
   * @param seq the last event handled
   * @return the consumer's acknowledged position, or the failure
   */
  CompletableFuture<Long> ackEvents(String consumer, long seq);
}
