//! The engine: the one async API every façade wraps. It joins the ledger (lifecycle, store,
//! outbox) to the provider adapters, so that one call creates an intent at a provider and
//! every outcome reaches the outbox exactly once, across retries, crashes, duplicate and
//! out-of-order deliveries.
//!
//! - Create: the intent is recorded `created` (with the key we send the provider) before any
//!   provider call. A definitive refusal moves it to `failed`; a transient failure leaves it
//!   `created` with the error noted, and the caller may retry with the same key.
//! - Recovery: intents left in `created` are resumed. Pientegra's create is repeated under the
//!   same `Idempotency-Key` (one provider intent, whatever happened before); Decentro's is
//!   retried with the same `reference_id`, and if Decentro already has it but we lost its id,
//!   the intent waits for the callback (which names it) or expires after ten minutes.
//! - Deliveries: webhooks and callbacks are verified, deduplicated on the provider's event
//!   id, and applied in one transaction with history and outbox. An event for an intent we do
//!   not know yet is kept and applied when the intent learns its reference.
//! - Expiry: a timer moves `created`/`pending` intents past their deadline to `expired`,
//!   walking an index of deadlines. A Decentro verification gets exactly one status look-up
//!   at expiry, since Decentro calls back only on success.
//!
//! Store calls are blocking; they run on tokio's blocking pool.

use std::collections::HashMap;
use std::sync::Arc;

use crate::clock::Clock;
use crate::error::CoreError;
use crate::intent::{
    AccountVerificationRequest, DepositRequest, Intent, IntentRequest, ProviderRef,
};
use crate::ledger::{ApplyOutcome, Ledger};
use crate::lifecycle::{Cause, IntentEvent, IntentStatus, Signal};
use crate::provider::config::ProvidersConfig;
use crate::provider::decentro::client::DecentroClient;
use crate::provider::decentro::{self, DecentroError};
use crate::provider::pientegra::client::{
    DeliveryStatus, EventsQuery, IntentsQuery, PientegraClient,
};
use crate::provider::pientegra::{self, SIGNATURE_HEADER};
use crate::provider::{Notification, ProviderError, WebhookError};
use crate::store::{ListCursor, ListFilter};
use crate::types::{AccountName, IdempotencyKey, IntentId, Provider, Timestamp};

/// Engine tuning. Every number here is ours; see `docs/decisions.md`.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// How long an intent may sit in `created` before recovery resumes it.
    pub recover_after_ms: i64,
    /// How many intents one sweep (expiry, recovery) handles.
    pub sweep_batch: usize,
    /// The least time between two reconciliation calls to one provider account.
    pub reconcile_call_interval_ms: u64,
    /// How far back a reconciliation sweep looks, at most.
    pub reconcile_max_window_ms: i64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            recover_after_ms: 30_000,
            sweep_batch: 200,
            reconcile_call_interval_ms: 200,
            reconcile_max_window_ms: 7 * 24 * 60 * 60 * 1_000,
        }
    }
}

/// What one reconciliation pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Missed webhooks asked to be sent again.
    pub replayed: usize,
    /// Local intents settled from the provider's list.
    pub settled: usize,
    /// Provider calls made.
    pub calls: usize,
    /// Accounts whose pass failed, with why; the others went on.
    pub errors: Vec<String>,
}

/// What one maintenance pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Intents resumed out of `created`.
    pub recovered: usize,
    /// Intents settled by the expiry sweep.
    pub expired: usize,
    /// The reconciliation pass.
    pub reconcile: ReconcileReport,
    /// Sweeps that failed, with why; the others still ran.
    pub errors: Vec<String>,
}

/// Spaces one account's reconciliation calls at least `interval` apart.
struct Pacer {
    next: tokio::sync::Mutex<tokio::time::Instant>,
    interval: std::time::Duration,
}

impl Pacer {
    fn new(interval_ms: u64) -> Self {
        Pacer {
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            interval: std::time::Duration::from_millis(interval_ms),
        }
    }

    async fn wait(&self) {
        let mut next = self.next.lock().await;
        tokio::time::sleep_until(*next).await;
        *next = tokio::time::Instant::now() + self.interval;
    }
}

/// What can go wrong in an engine call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Core refused or failed (validation, idempotency conflict, not found, store).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The provider refused for good; if an intent was recorded it is now `failed`.
    #[error("{source}")]
    Provider {
        /// The provider's error, with its own code.
        source: ProviderError,
        /// The intent it concerns, if one was recorded.
        intent: Option<IntentId>,
    },
    /// The provider failed transiently. The intent stays `created` and recovery will resume
    /// it; calling again with the same idempotency key is safe.
    #[error("{source}; intent {intent} is recorded, retry with the same idempotency key")]
    RetryWithSameKey {
        /// The provider's error.
        source: ProviderError,
        /// The recorded intent.
        intent: IntentId,
    },
    /// No such provider account is configured.
    #[error("no {provider} account named {account} is configured")]
    UnknownAccount {
        /// The provider.
        provider: Provider,
        /// The account asked for.
        account: String,
    },
    /// A background task failed to run (a panic in a store call).
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// The stable machine code: core's, or the provider's own.
    pub fn code(&self) -> &str {
        match self {
            EngineError::Core(e) => e.code(),
            EngineError::Provider { source, .. } | EngineError::RetryWithSameKey { source, .. } => {
                source.code()
            }
            EngineError::UnknownAccount { .. } => "UNKNOWN_ACCOUNT",
            EngineError::Internal(_) => "INTERNAL",
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Core(e) => e.is_retryable(),
            EngineError::Provider { source, .. } => source.is_retryable(),
            EngineError::RetryWithSameKey { .. } => true,
            EngineError::UnknownAccount { .. } | EngineError::Internal(_) => false,
        }
    }
}

/// What a webhook or callback did, and so what the HTTP answer to the provider must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Applied, or recorded as an anomaly: answer 2xx.
    Accepted(&'static str),
    /// Already applied, or older than the intent's state: answer 2xx.
    Duplicate,
    /// For an intent we do not know yet; kept: answer 2xx.
    Parked,
    /// An event type we do not act on: answer 2xx so it is not sent again.
    Ignored,
    /// Refused: bad signature or malformed body. Answer 4xx; the provider should not retry.
    Refused(WebhookError),
    /// No such account: answer 404.
    UnknownAccount,
    /// We could not store it, or could not confirm it: answer 5xx so the provider retries.
    RetryLater(String),
}

impl Delivery {
    /// The HTTP status for the provider.
    pub fn http_status(&self) -> u16 {
        match self {
            Delivery::Accepted(_) | Delivery::Duplicate | Delivery::Parked | Delivery::Ignored => {
                200
            }
            Delivery::Refused(_) => 400,
            Delivery::UnknownAccount => 404,
            Delivery::RetryLater(_) => 503,
        }
    }

    /// The body for the provider: Decentro wants its acknowledgement shape on success.
    pub fn body(&self, provider: Provider) -> String {
        match (self, provider) {
            (
                Delivery::Accepted(_) | Delivery::Duplicate | Delivery::Parked | Delivery::Ignored,
                Provider::Decentro,
            ) => decentro::CALLBACK_ACK.to_string(),
            (Delivery::Refused(e), _) => {
                serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}})
                    .to_string()
            }
            (Delivery::RetryLater(reason), _) => {
                serde_json::json!({"error": {"code": "RETRY_LATER", "message": reason}}).to_string()
            }
            (Delivery::UnknownAccount, _) => {
                serde_json::json!({"error": {"code": "UNKNOWN_ACCOUNT"}}).to_string()
            }
            _ => r#"{"received":true}"#.to_string(),
        }
    }
}

/// A crash point for tests: with the `failpoints` feature and `INTENTKIT_FAILPOINT=<name>`,
/// the process announces `FAILPOINT <name>` on stdout and stops there, so that a test can
/// kill it at exactly this point. Compiled out otherwise.
#[cfg(feature = "failpoints")]
fn failpoint(name: &str) {
    if std::env::var("INTENTKIT_FAILPOINT").as_deref() == Ok(name) {
        use std::io::Write;
        println!("FAILPOINT {name}");
        let _ = std::io::stdout().flush();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
    }
}

#[cfg(not(feature = "failpoints"))]
fn failpoint(_name: &str) {}

/// The intent a provider reference names: by the provider's id, or (Decentro echoes our
/// `reference_id`, the intent id in simple form) by ours.
fn find_intent(
    l: &Ledger,
    provider: Provider,
    lookup: &str,
    our_reference: Option<&str>,
) -> Result<Option<Intent>, CoreError> {
    if let Some(i) = l.find_by_provider_ref(provider, lookup)? {
        return Ok(Some(i));
    }
    let by_ours = our_reference
        .and_then(|s| uuid::Uuid::try_parse(s).ok())
        .map(|u| {
            u.hyphenated()
                .to_string()
                .parse::<IntentId>()
                .and_then(|id| l.get(id))
        })
        .transpose();
    match by_ours {
        Ok(i) => Ok(i.filter(|i| i.provider == provider)),
        Err(CoreError::IntentNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn delivery_for(outcome: &ApplyOutcome) -> Delivery {
    match outcome {
        ApplyOutcome::Applied { .. } => Delivery::Accepted("applied"),
        ApplyOutcome::Anomaly { .. } => Delivery::Accepted("anomaly"),
        ApplyOutcome::Duplicate { .. } | ApplyOutcome::Stale { .. } => Delivery::Duplicate,
    }
}

/// The engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    pientegra: Arc<HashMap<AccountName, PientegraClient>>,
    decentro: Arc<HashMap<AccountName, DecentroClient>>,
    confirm_callbacks: Arc<HashMap<AccountName, bool>>,
    pacers: Arc<HashMap<AccountName, Pacer>>,
    events_swept_to: Arc<std::sync::Mutex<HashMap<AccountName, Timestamp>>>,
    settings: EngineSettings,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field(
                "pientegra_accounts",
                &self.pientegra.keys().collect::<Vec<_>>(),
            )
            .field(
                "decentro_accounts",
                &self.decentro.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `ledger` with a client per configured account.
    pub fn new(
        ledger: Ledger,
        clock: Arc<dyn Clock>,
        providers: &ProvidersConfig,
        settings: EngineSettings,
    ) -> Result<Self, ProviderError> {
        let mut pientegra = HashMap::new();
        for (name, acc) in &providers.pientegra {
            pientegra.insert(name.clone(), PientegraClient::new(acc.clone())?);
        }
        let mut decentro = HashMap::new();
        let mut confirm = HashMap::new();
        for (name, acc) in &providers.decentro {
            decentro.insert(name.clone(), DecentroClient::new(acc.clone())?);
            confirm.insert(name.clone(), acc.confirm_callbacks);
        }
        let pacers = pientegra
            .keys()
            .map(|k: &AccountName| (k.clone(), Pacer::new(settings.reconcile_call_interval_ms)))
            .collect();
        Ok(Engine {
            ledger,
            clock,
            pacers: Arc::new(pacers),
            events_swept_to: Arc::default(),
            pientegra: Arc::new(pientegra),
            decentro: Arc::new(decentro),
            confirm_callbacks: Arc::new(confirm),
            settings,
        })
    }

    /// An engine on the SQLite file at `path` (created if needed), on the system clock, with
    /// default settings: what a façade opens. Call it inside the tokio runtime that will run
    /// the engine.
    pub fn open_sqlite(
        path: &std::path::Path,
        providers: &ProvidersConfig,
    ) -> Result<Self, EngineError> {
        let store = crate::store::sqlite::SqliteStore::open(path, Default::default())
            .map_err(|e| EngineError::Core(CoreError::Store(e)))?;
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let ledger = Ledger::new(Arc::new(store), clock.clone());
        Engine::new(ledger, clock, providers, EngineSettings::default()).map_err(|source| {
            EngineError::Provider {
                source,
                intent: None,
            }
        })
    }

    /// The ledger underneath (outbox polling, history).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<T, CoreError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || f(&ledger))
            .await
            .map_err(|e| EngineError::Internal(format!("store task: {e}")))?
            .map_err(EngineError::from)
    }

    fn pientegra_client(&self, account: &AccountName) -> Result<&PientegraClient, EngineError> {
        self.pientegra
            .get(account)
            .ok_or_else(|| EngineError::UnknownAccount {
                provider: Provider::Pientegra,
                account: account.to_string(),
            })
    }

    fn decentro_client(&self, account: &AccountName) -> Result<&DecentroClient, EngineError> {
        self.decentro
            .get(account)
            .ok_or_else(|| EngineError::UnknownAccount {
                provider: Provider::Decentro,
                account: account.to_string(),
            })
    }

    /// Creates a Pientegra hosted deposit: recorded first, then created at Pientegra. Returns
    /// the intent, `pending` with its `depositUrl` when all went well.
    pub async fn create_deposit(
        &self,
        request: DepositRequest,
        key: IdempotencyKey,
    ) -> Result<Intent, EngineError> {
        self.pientegra_client(&request.account)?;
        // What Pientegra would refuse is refused before anything is recorded.
        pientegra::create_body(&request).map_err(|r| EngineError::Provider {
            source: ProviderError::Pientegra {
                status: 0,
                code: r.code.to_string(),
                message: r.message,
                retry_after: None,
            },
            intent: None,
        })?;
        self.create(IntentRequest::Deposit(request), key).await
    }

    /// Creates a Decentro UPI penny-pull verification. Returns the intent, `pending` with its
    /// short link, QR and app links when all went well.
    pub async fn create_account_verification(
        &self,
        request: AccountVerificationRequest,
        key: IdempotencyKey,
    ) -> Result<Intent, EngineError> {
        self.decentro_client(&request.account)?;
        decentro::check_request(&request).map_err(|e| EngineError::Provider {
            source: e.into(),
            intent: None,
        })?;
        self.create(IntentRequest::AccountVerification(request), key)
            .await
    }

    async fn create(
        &self,
        request: IntentRequest,
        key: IdempotencyKey,
    ) -> Result<Intent, EngineError> {
        let created = self.blocking(move |l| l.create(request, key)).await?;
        if created.intent.status != IntentStatus::Created {
            // A replay of a create that already reached the provider.
            return Ok(created.intent);
        }
        self.drive_create(created.intent).await
    }

    /// Calls the provider for an intent in `created`, and applies what it answers.
    async fn drive_create(&self, intent: Intent) -> Result<Intent, EngineError> {
        let id = intent.id;
        let result = match intent.provider {
            Provider::Pientegra => {
                self.pientegra_client(&intent.account)?
                    .create_deposit(&intent)
                    .await
            }
            Provider::Decentro => {
                self.decentro_client(&intent.account)?
                    .create(&intent, self.clock.now())
                    .await
            }
        };
        match result {
            Ok(event) => {
                failpoint("after_provider_create");
                self.blocking(move |l| {
                    l.apply(id, event)?;
                    // Events that beat the create response are waiting for this reference.
                    l.apply_parked(id)?;
                    l.get(id)
                })
                .await
            }
            Err(ProviderError::Decentro(DecentroError::DuplicateReferenceId)) => {
                // Decentro has it, but the answer carrying its id was lost. The callback names
                // it (by reference_id); otherwise the link runs out and expiry settles it.
                let note = "Decentro already holds this reference_id; waiting for its callback \
                            or the link's expiry";
                self.blocking(move |l| l.note_error(id, note)).await
            }
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
                Err(EngineError::Provider {
                    source: e,
                    intent: Some(id),
                })
            }
        }
    }

    /// One intent.
    pub async fn get(&self, id: IntentId) -> Result<Intent, EngineError> {
        // An indexed point read on a reader connection, which a writer never blocks in WAL
        // mode: microseconds, less than the hand-off to the blocking pool would cost, so it
        // runs in place. Everything that writes or scans goes to the pool.
        self.ledger.get(id).map_err(EngineError::from)
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
        self.blocking(move |l| l.apply(id, event).map(|o| o.intent().clone()))
            .await
    }

    /// One status look-up at the provider, on demand (support), applied as a status poll.
    pub async fn refresh(&self, id: IntentId) -> Result<Intent, EngineError> {
        let intent = self.get(id).await?;
        let event = match (&intent.provider_ref, intent.provider) {
            (Some(ProviderRef::Pientegra { intent_id, .. }), Provider::Pientegra) => self
                .pientegra_client(&intent.account)?
                .get_intent(intent_id)
                .await
                .and_then(|item| item.event()),
            (Some(ProviderRef::Decentro { txn_id }), Provider::Decentro) => {
                self.decentro_client(&intent.account)?.status(txn_id).await
            }
            // Not at the provider yet: resuming the create is the look-up.
            _ if intent.status == IntentStatus::Created => {
                return self.drive_create(intent).await;
            }
            _ => Ok(None),
        }
        .map_err(|source| EngineError::Provider {
            source,
            intent: Some(id),
        })?;
        match event {
            Some(ev) => {
                self.blocking(move |l| l.apply(id, ev).map(|o| o.intent().clone()))
                    .await
            }
            None => Ok(intent),
        }
    }

    /// Handles a provider webhook or callback: verify, then dedup, apply, history and outbox
    /// in one transaction. `header` looks a request header up by name (case-insensitively).
    pub async fn handle_webhook(
        &self,
        provider: Provider,
        account: &AccountName,
        header: impl Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Delivery {
        let now = self.clock.now();
        let notification = match provider {
            Provider::Pientegra => {
                let Ok(client) = self.pientegra_client(account) else {
                    return Delivery::UnknownAccount;
                };
                match client.parse_webhook(header(SIGNATURE_HEADER).as_deref(), body, now) {
                    Ok(Some(n)) => n,
                    Ok(None) => return Delivery::Ignored,
                    Err(e) => return Delivery::Refused(e),
                }
            }
            Provider::Decentro => {
                let Ok(client) = self.decentro_client(account) else {
                    return Delivery::UnknownAccount;
                };
                match client.parse_callback(body) {
                    Ok(n) => n,
                    Err(e) => return Delivery::Refused(e),
                }
            }
        };
        match self.route(account, notification).await {
            Ok(d) => d,
            Err(e) if e.is_retryable() => Delivery::RetryLater(e.to_string()),
            Err(e) => Delivery::RetryLater(format!("{}: {e}", e.code())),
        }
    }

    /// Finds the intent a notification is about and applies it, confirming unsigned ones.
    async fn route(&self, account: &AccountName, n: Notification) -> Result<Delivery, EngineError> {
        let Some(r) = n.event.provider_ref.clone() else {
            return Ok(Delivery::Refused(WebhookError::MalformedBody(
                "no provider reference".into(),
            )));
        };
        let provider = r.provider();
        let lookup = r.lookup_key().to_string();
        let our_reference = n.our_reference.clone();
        let confirm =
            n.needs_confirmation && self.confirm_callbacks.get(account).copied().unwrap_or(true);
        if !confirm {
            // The common case (a signed webhook): find, apply and drain parked events in one
            // trip to the blocking pool.
            let event = n.event;
            let outcome = self
                .blocking(move |l| {
                    let Some(intent) = find_intent(l, provider, &lookup, our_reference.as_deref())?
                    else {
                        l.park(provider, &lookup, &event)?;
                        return Ok(None);
                    };
                    let outcome = l.apply(intent.id, event)?;
                    l.apply_parked(intent.id)?;
                    Ok(Some(outcome))
                })
                .await?;
            return Ok(outcome.map_or(Delivery::Parked, |o| delivery_for(&o)));
        }
        let found = self
            .blocking(move |l| find_intent(l, provider, &lookup, our_reference.as_deref()))
            .await?;
        let Some(intent) = found else {
            let event = n.event.clone();
            let key = r.lookup_key().to_string();
            self.blocking(move |l| l.park(provider, &key, &event))
                .await?;
            return Ok(Delivery::Parked);
        };
        // A callback to confirm with the status API first (Decentro).
        let id = intent.id;
        let mut event = n.event;
        let txn = r.lookup_key().to_string();
        let confirmed = self
            .decentro_client(account)?
            .status(&txn)
            .await
            .map_err(|source| EngineError::Provider {
                source,
                intent: Some(id),
            })?;
        match confirmed {
            Some(status) if status.signal.kind() == event.signal.kind() => {
                // The provider's own record is what we apply; the callback's id dedups it.
                event.signal = status.signal;
            }
            other => {
                let said = other.map_or("PENDING".to_string(), |e| e.signal.kind().to_string());
                let detail = format!(
                    "callback says {}, the status API says {said}",
                    event.signal.kind()
                );
                let outcome = self
                    .blocking(move |l| l.record_anomaly(id, &event, &detail))
                    .await?;
                return Ok(delivery_for(&outcome));
            }
        }
        let outcome = self
            .blocking(move |l| {
                let outcome = l.apply(id, event)?;
                l.apply_parked(id)?;
                Ok(outcome)
            })
            .await?;
        Ok(delivery_for(&outcome))
    }

    /// Expires what is past its deadline; returns how many intents it settled. A Decentro
    /// verification gets its one status look-up here: Decentro calls back only on success, so
    /// a failure or a late success is learned now. If the look-up fails, the intent still
    /// expires, and a later callback or refresh settles it.
    pub async fn expire_due(&self) -> Result<usize, EngineError> {
        let batch = self.settings.sweep_batch;
        let due = self.blocking(move |l| l.due_for_expiry(batch)).await?;
        let mut settled = 0;
        for intent in due {
            let id = intent.id;
            let looked_up = match (&intent.provider_ref, intent.provider) {
                (Some(ProviderRef::Decentro { txn_id }), Provider::Decentro) => {
                    match self.decentro_client(&intent.account) {
                        Ok(c) => c.status(txn_id).await.ok().flatten(),
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            let event =
                looked_up.unwrap_or_else(|| IntentEvent::new(Signal::Expired, Cause::Timer));
            let outcome = self.blocking(move |l| l.apply(id, event)).await?;
            if matches!(outcome, ApplyOutcome::Applied { .. }) {
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// Resumes intents left in `created` (a crash between recording and the provider's
    /// answer, or a transient failure). Returns how many reached the provider.
    pub async fn recover_created(&self) -> Result<usize, EngineError> {
        let (age, batch) = (self.settings.recover_after_ms, self.settings.sweep_batch);
        let stuck = self
            .blocking(move |l| l.stuck_in_created(age, batch))
            .await?;
        let mut resumed = 0;
        for intent in stuck {
            let id = intent.id;
            let (provider, created_at) = (intent.provider, intent.created_at);
            match self.drive_create(intent).await {
                Ok(i) if i.status != IntentStatus::Created => resumed += 1,
                // Still unknown at Decentro past the link's life: it can no longer be paid.
                Ok(_)
                    if provider == Provider::Decentro
                        && self.clock.now() >= created_at.plus_millis(decentro::LINK_TTL_MS) =>
                {
                    let ev = IntentEvent::new(Signal::Expired, Cause::Timer);
                    self.blocking(move |l| l.apply(id, ev)).await?;
                }
                Ok(_)
                | Err(EngineError::RetryWithSameKey { .. } | EngineError::Provider { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(resumed)
    }

    /// Reconciliation, cheap by design: Pientegra's status endpoints are for reconciliation,
    /// never a polling loop per intent. For each Pientegra account it (1) asks Pientegra to
    /// resend every webhook whose delivery `FAILED` or went `DEAD` since the last pass, so it
    /// arrives verified like any other; and (2) if any local intent is still unsettled, reads
    /// the provider's settled intents over one time window (from the oldest unsettled one),
    /// page by page, and applies what differs as status polls. Calls are spaced per account.
    /// Decentro needs no sweep: each verification gets its look-up when it expires.
    pub async fn reconcile(&self) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        for (account, client) in self.pientegra.iter() {
            if let Err(e) = self.reconcile_pientegra(account, client, &mut report).await {
                report.errors.push(format!("pientegra/{account}: {e}"));
            }
        }
        report
    }

    async fn paced<T>(
        &self,
        account: &AccountName,
        report: &mut ReconcileReport,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, EngineError> {
        if let Some(p) = self.pacers.get(account) {
            p.wait().await;
        }
        report.calls += 1;
        call.await.map_err(|source| EngineError::Provider {
            source,
            intent: None,
        })
    }

    async fn reconcile_pientegra(
        &self,
        account: &AccountName,
        client: &PientegraClient,
        report: &mut ReconcileReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let earliest = now.plus_millis(-self.settings.reconcile_max_window_ms);
        // (1) Missed webhooks since the last pass.
        let since = self
            .events_swept_to
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(account)
            .copied()
            .unwrap_or_else(|| now.plus_millis(-24 * 60 * 60 * 1_000));
        let mut cursor = None;
        loop {
            let q = EventsQuery {
                created_from: Some(since.plus_millis(-60_000).max(earliest)),
                delivery_statuses: vec![DeliveryStatus::Failed, DeliveryStatus::Dead],
                cursor: cursor.take(),
                limit: Some(100),
                ..Default::default()
            };
            let page = self.paced(account, report, client.list_events(&q)).await?;
            for e in &page.data {
                self.paced(account, report, client.replay_event(&e.event_id))
                    .await?;
                report.replayed += 1;
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        self.events_swept_to
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(account.clone(), now);

        // (2) One window over the provider's settled intents, if anything is unsettled here.
        let open = ListFilter {
            statuses: vec![
                IntentStatus::Pending,
                IntentStatus::PayerConfirmed,
                IntentStatus::Expired,
                IntentStatus::LateArrival,
                IntentStatus::Canceled,
            ],
            provider: Some(Provider::Pientegra),
            account: Some(account.clone()),
            ..Default::default()
        };
        let Some(oldest) = self.blocking(move |l| l.oldest_created(&open)).await? else {
            return Ok(());
        };
        let mut cursor = None;
        loop {
            let q = IntentsQuery {
                // A minute of margin for the two clocks.
                created_from: Some(oldest.plus_millis(-60_000).max(earliest)),
                statuses: vec![
                    pientegra::Status::PendingReview,
                    pientegra::Status::Approved,
                    pientegra::Status::Rejected,
                    pientegra::Status::AutoCancelled,
                    pientegra::Status::LateArrival,
                ],
                cursor: cursor.take(),
                limit: Some(100),
                ..Default::default()
            };
            let page = self.paced(account, report, client.list_intents(&q)).await?;
            for item in page.data {
                let Some(event) = item.event().map_err(|source| EngineError::Provider {
                    source,
                    intent: None,
                })?
                else {
                    continue;
                };
                let key = item.intent_id.clone();
                let outcome = self
                    .blocking(
                        move |l| match l.find_by_provider_ref(Provider::Pientegra, &key)? {
                            Some(i) if !i.status.is_final() => l.apply(i.id, event).map(Some),
                            _ => Ok(None),
                        },
                    )
                    .await?;
                if matches!(outcome, Some(ApplyOutcome::Applied { .. })) {
                    report.settled += 1;
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(())
    }

    /// One maintenance pass: recovery, expiry, reconciliation. A failing sweep does not stop
    /// the others; its error is in the report.
    pub async fn maintain(&self) -> MaintenanceReport {
        let mut report = MaintenanceReport::default();
        match self.recover_created().await {
            Ok(n) => report.recovered = n,
            Err(e) => report.errors.push(format!("recovery: {e}")),
        }
        match self.expire_due().await {
            Ok(n) => report.expired = n,
            Err(e) => report.errors.push(format!("expiry: {e}")),
        }
        report.reconcile = self.reconcile().await;
        report
    }

    /// Runs [`Engine::maintain`] at once (crash recovery on start) and then every `every`,
    /// giving each report to `on_report`, until `stop` completes. A pass in progress finishes
    /// first, so nothing is left half-applied.
    pub async fn run_maintenance(
        &self,
        every: std::time::Duration,
        stop: impl std::future::Future<Output = ()>,
        on_report: impl Fn(MaintenanceReport),
    ) {
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = &mut stop => return,
                _ = ticks.tick() => on_report(self.maintain().await),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_codes_are_documented() {
        let doc = include_str!("../../docs/errors.md");
        let e = EngineError::UnknownAccount {
            provider: Provider::Pientegra,
            account: "x".into(),
        };
        assert!(!e.is_retryable());
        assert!(doc.contains(&format!("| `{}` |", e.code())));
        assert!(doc.contains("| `INTERNAL` |"));
    }

    #[test]
    fn deliveries_answer_the_status_the_provider_needs() {
        assert_eq!(Delivery::Accepted("applied").http_status(), 200);
        assert_eq!(Delivery::Parked.http_status(), 200);
        assert_eq!(
            Delivery::Refused(WebhookError::SignatureMismatch).http_status(),
            400
        );
        assert_eq!(Delivery::RetryLater("disk".into()).http_status(), 503);
        assert_eq!(
            Delivery::Duplicate.body(Provider::Decentro),
            decentro::CALLBACK_ACK
        );
        assert!(
            Delivery::Refused(WebhookError::SignatureMismatch)
                .body(Provider::Pientegra)
                .contains("WEBHOOK_SIGNATURE_MISMATCH")
        );
    }
}
