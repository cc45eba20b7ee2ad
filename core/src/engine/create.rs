//! Creating intents at the provider, and the calls that read or command one intent: get,
//! list, cancel, refresh.
//!
//! An intent is recorded `created` (with the key we send the provider) before any provider
//! call. A definitive refusal moves it to `failed`; a transient failure leaves it `created`
//! with the error noted, and the caller may retry with the same key (recovery also resumes it).

use std::sync::Arc;

use super::{Engine, EngineError, failpoint};
use crate::intent::{AccountVerificationRequest, DepositRequest, Intent, IntentRequest};
use crate::ledger::ApplyOutcome;
use crate::lifecycle::{Cause, IntentEvent, IntentStatus, Signal};
use crate::provider::{Adapter, Created, Lookup, Recovery};
use crate::store::{ListCursor, ListFilter};
use crate::types::{IdempotencyKey, IntentId};

/// The reason an intent fails when the provider's idempotency window passed before it was
/// created there, and the provider does not list it under our key.
pub const PROVIDER_WINDOW_PASSED: &str = "provider_window_passed";

impl Engine {
    /// Creates a hosted deposit (Pientegra): recorded first, then created at the provider.
    /// Returns the intent, `pending` with its hosted page when all went well.
    pub async fn create_deposit(
        &self,
        request: DepositRequest,
        key: IdempotencyKey,
    ) -> Result<Intent, EngineError> {
        self.create(IntentRequest::Deposit(request), key).await
    }

    /// Creates a UPI penny-pull verification (Decentro). Returns the intent, `pending` with its
    /// short link, QR and app links when all went well.
    pub async fn create_account_verification(
        &self,
        request: AccountVerificationRequest,
        key: IdempotencyKey,
    ) -> Result<Intent, EngineError> {
        self.create(IntentRequest::AccountVerification(request), key)
            .await
    }

    async fn create(
        &self,
        request: IntentRequest,
        key: IdempotencyKey,
    ) -> Result<Intent, EngineError> {
        let adapter = self.adapter(request.provider(), request.account())?.clone();
        // What the provider would refuse is refused before anything is recorded.
        adapter
            .check(&request)
            .map_err(|source| EngineError::provider(source, None))?;
        let created = self.blocking(move |l| l.create(request, key)).await?;
        self.wrote();
        if created.intent.status != IntentStatus::Created {
            // A replay of a create that already reached the provider.
            return Ok(created.intent);
        }
        // New, or a replay of one still `created`: what recovery would do with it (a retry
        // a day later must not create a second intent at the provider).
        self.resume_created(&adapter, created.intent).await
    }

    /// Takes an intent still `created` on, as its adapter says: create it (again, under its
    /// provider key), look for what an earlier create made past the provider's idempotency
    /// window, or expire it when it can no longer be paid.
    pub(super) async fn resume_created(
        &self,
        adapter: &Arc<dyn Adapter>,
        intent: Intent,
    ) -> Result<Intent, EngineError> {
        let id = intent.id;
        let event = match adapter.recovery(&intent, self.inner.clock.now()) {
            Recovery::Create => return self.drive_create(adapter, intent).await,
            Recovery::Expire => IntentEvent::new(Signal::Expired, Cause::Timer),
            Recovery::Find => match adapter.find_created(&intent).await {
                Ok(Some(found)) => found,
                Ok(None) => IntentEvent::new(
                    Signal::CreateFailed {
                        code: PROVIDER_WINDOW_PASSED.to_string(),
                        message: "not created at the provider within its idempotency window, \
                                  and not found there by our key: never created again (a \
                                  second create would be a second intent)"
                            .to_string(),
                    },
                    Cause::Timer,
                ),
                Err(e) => {
                    let note = format!("{}: {e}", e.code());
                    self.blocking(move |l| l.note_error(id, &note)).await?;
                    return Err(EngineError::RetryWithSameKey {
                        source: e,
                        intent: id,
                    });
                }
            },
        };
        let applied = self.blocking(move |l| l.apply(id, event)).await?;
        let now = applied.intent().clone();
        if matches!(applied, ApplyOutcome::Applied { .. }) {
            self.drain_parked(adapter, now.clone()).await?;
            self.wrote();
        }
        Ok(now)
    }

    /// Calls the provider for an intent in `created`, and applies what it answers.
    pub(super) async fn drive_create(
        &self,
        adapter: &Arc<dyn Adapter>,
        intent: Intent,
    ) -> Result<Intent, EngineError> {
        let id = intent.id;
        let result = adapter.create(&intent, self.inner.clock.now()).await;
        let outcome = match result {
            Ok(Created::Issued(event)) => {
                failpoint("after_provider_create");
                let applied = self.blocking(move |l| l.apply(id, event)).await?;
                // Signals that beat the create response wait for the reference it taught us.
                self.drain_parked(adapter, applied.intent().clone()).await?;
                self.blocking(move |l| l.get(id)).await
            }
            Ok(Created::AlreadyHeld(note)) => self.blocking(move |l| l.note_error(id, note)).await,
            Err(e) if e.is_retryable() => {
                let note = format!("{}: {e}", e.code());
                self.blocking(move |l| l.note_error(id, &note)).await?;
                Err(EngineError::RetryWithSameKey {
                    source: e,
                    intent: id,
                })
            }
            Err(e) => {
                let event = IntentEvent::new(
                    Signal::CreateFailed {
                        code: e.code().to_string(),
                        message: e.to_string(),
                    },
                    Cause::Api,
                );
                self.blocking(move |l| l.apply(id, event)).await?;
                Err(EngineError::provider(e, Some(id)))
            }
        };
        self.wrote();
        outcome
    }

    /// One intent.
    pub async fn get(&self, id: IntentId) -> Result<Intent, EngineError> {
        // On SQLite an indexed point read on a reader connection, which a writer never blocks
        // in WAL mode: microseconds, less than the hand-off to the blocking pool would cost,
        // so it runs in place. A network store's read, and everything that writes or scans,
        // goes to the pool.
        if self.inner.ledger.store().reads_in_place() {
            return self.inner.ledger.get(id).map_err(EngineError::from);
        }
        self.blocking(move |l| l.get(id)).await
    }

    /// A page of intents, newest first, and the next page's cursor.
    pub async fn list(
        &self,
        filter: ListFilter,
        after: Option<ListCursor>,
        limit: usize,
    ) -> Result<(Vec<Intent>, Option<ListCursor>), EngineError> {
        self.blocking(move |l| l.list(&filter, after.as_ref(), limit))
            .await
    }

    /// Cancels an intent before payment. Neither provider has a cancel call: the intent stops
    /// being offered, and a provider approval that still comes is applied (money moved).
    pub async fn cancel(
        &self,
        id: IntentId,
        reason: Option<String>,
    ) -> Result<Intent, EngineError> {
        let event = IntentEvent::new(Signal::Cancel { reason }, Cause::Api);
        let intent = self
            .blocking(move |l| l.apply(id, event).map(|o| o.intent().clone()))
            .await?;
        self.wrote();
        Ok(intent)
    }

    /// One look-up at the provider, on demand (support), applied as a status poll. An intent
    /// the provider has not answered for yet is created (again, under the same key) instead.
    pub async fn refresh(&self, id: IntentId) -> Result<Intent, EngineError> {
        let intent = self.get(id).await?;
        let adapter = self.adapter(intent.provider, &intent.account)?.clone();
        if intent.status == IntentStatus::Created && intent.provider_ref.is_none() {
            return self.resume_created(&adapter, intent).await;
        }
        let looked = adapter
            .look_up(&intent, None)
            .await
            .map_err(|source| EngineError::provider(source, Some(id)))?;
        let intent = match looked {
            Lookup::Fact(event) => {
                self.blocking(move |l| l.apply(id, event).map(|o| o.intent().clone()))
                    .await?
            }
            Lookup::Open | Lookup::Mismatch(_) | Lookup::Unproven(_) => intent,
        };
        self.wrote();
        Ok(intent)
    }
}
