//! Provider adapters: one module per provider, each behind the [`Adapter`] trait, which is all
//! the engine knows of a provider. An adapter owns everything provider-specific: its wire
//! types (which never leave its module), its signature or confirmation rules, the mapping of
//! its statuses to provider-neutral signals (one function per provider), its reconciliation
//! sweep, and the HTTP answer it expects for a delivery.
//!
//! The engine holds one adapter per configured `(provider, account)` and asks it:
//!
//! - [`Adapter::check`] a request before anything is recorded, and [`Adapter::create`] it;
//! - [`Adapter::receive`] an incoming delivery: verify, then parse into an [`Inbound`] signal
//!   bound to this provider and account, saying how much it proves on its own ([`Proof`]);
//! - [`Adapter::look_up`] the provider's own record of an intent, checked to name that intent
//!   (its transaction, our reference, the amount where given). This is how an unsigned claim
//!   is confirmed, how a verification is settled at expiry, and what a refresh reads;
//! - [`Adapter::recovery`] for an intent left `created`, and [`Adapter::reconcile`] for the
//!   account's periodic sweep;
//! - [`Adapter::answer`] with the status and body the provider expects for an outcome.
//!
//! Adding a provider is one new module implementing [`Adapter`], plus registering it in
//! [`registry`]; `docs/adding-a-provider.md` walks through it. An adapter never touches the
//! store: the engine does.

pub mod config;
pub mod decentro;
pub mod http;
pub mod pace;
pub mod pientegra;
pub mod registry;
pub mod secret;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::CoreError;
use crate::intent::{Intent, IntentRequest, ProviderRef};
use crate::lifecycle::IntentEvent;
pub use crate::status::Proof;
use crate::types::{AccountName, IntentId, Provider, Timestamp};

pub use secret::Secret;

/// A boxed future, so that [`Adapter`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A verified, parsed delivery, before it is bound to the account that received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The provider-neutral event; its `provider_ref` says which intent it is about.
    pub event: IntentEvent,
    /// Our own reference as the provider echoes it (Decentro `reference_id`), for matching
    /// when the provider's id is not known yet.
    pub our_reference: Option<String>,
    /// What the delivery proves on its own: signed, or an unsigned claim to confirm.
    pub proof: Proof,
}

/// A delivery received by one account's adapter, bound to that provider and account. It may
/// only ever touch an intent of the same provider and account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// The provider whose adapter received it.
    pub provider: Provider,
    /// The account whose adapter received it (its URL, its secret).
    pub account: AccountName,
    /// The provider reference it names.
    pub reference: ProviderRef,
    /// Our intent, when the provider echoes our own reference (Decentro `reference_id`).
    pub our_intent: Option<IntentId>,
    /// The signal, carrying `reference` as its provider reference.
    pub event: IntentEvent,
    /// What it proves on its own.
    pub proof: Proof,
}

/// What the provider answers to a create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// Accepted: the event that issues the payer hand-off.
    Issued(IntentEvent),
    /// The provider already holds this create (a retry after its answer was lost) and will not
    /// give that answer again. The intent waits for a signal or its deadline; the note is kept
    /// on it for support.
    AlreadyHeld(&'static str),
}

/// What recovery does with an intent still `created`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Create it (again) under its stored provider key.
    Create,
    /// It can no longer be paid: expire it.
    Expire,
    /// Past the provider's idempotency window a create would make a second intent: look for
    /// the one an earlier create may have made ([`Adapter::find_created`]) instead.
    Find,
}

/// The provider's own record of an intent, as the adapter read and checked it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing the intent does not already know: still waiting for the payer.
    Open,
    /// A fact, as a status-poll event carrying the intent's provider reference.
    Fact(IntentEvent),
    /// The record names another intent (another transaction, reference or amount): it proves
    /// nothing about this one.
    Mismatch(String),
    /// The record says too little to tell whether it is this intent's: ask again later.
    Unproven(String),
}

/// What the engine did with a delivery: the answer's `outcome`, and its metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookOutcome {
    /// Applied to its intent.
    Applied,
    /// It contradicted its intent, and was recorded as `intent.anomaly`.
    Anomaly,
    /// Already applied, or older than the intent's state.
    Duplicate,
    /// Its intent is not known yet; kept, and applied when it is.
    Parked,
    /// An event type nothing acts on.
    Ignored,
    /// Refused for good: bad signature, malformed, another account's intent, or a claim the
    /// provider denies.
    Refused,
    /// No such provider account.
    UnknownAccount,
    /// An unsigned claim the provider has not confirmed yet: kept and re-checked; answered so
    /// that the provider sends it again.
    Unconfirmed,
    /// Not stored, or not confirmed because the provider could not be asked: send it again.
    RetryLater,
}

impl WebhookOutcome {
    /// The stable snake_case name (the `outcome` of `HandleWebhookResponse`).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Applied => "applied",
            WebhookOutcome::Anomaly => "anomaly",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Parked => "parked",
            WebhookOutcome::Ignored => "ignored",
            WebhookOutcome::Refused => "refused",
            WebhookOutcome::UnknownAccount => "unknown_account",
            WebhookOutcome::Unconfirmed => "unconfirmed",
            WebhookOutcome::RetryLater => "retry_later",
        }
    }

    /// The HTTP status a provider gets: 2xx when it must not send again, 4xx when sending
    /// again cannot help, 5xx when it should.
    pub fn http_status(self) -> u16 {
        match self {
            WebhookOutcome::Applied
            | WebhookOutcome::Anomaly
            | WebhookOutcome::Duplicate
            | WebhookOutcome::Parked
            | WebhookOutcome::Ignored => 200,
            WebhookOutcome::Refused => 400,
            WebhookOutcome::UnknownAccount => 404,
            WebhookOutcome::Unconfirmed | WebhookOutcome::RetryLater => 503,
        }
    }

    /// Whether the provider is told the delivery was taken.
    pub fn is_success(self) -> bool {
        self.http_status() < 300
    }
}

/// The one answer to a webhook or callback, built in core. The receiver, the `HandleWebhook`
/// RPC and the C ABI forward it unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookAnswer {
    /// The HTTP status for the provider.
    pub status: u16,
    /// The body for the provider. Never carries internal error text.
    pub body: String,
    /// What happened.
    pub outcome: WebhookOutcome,
    /// The stable code of a refusal or a retry (e.g. `WEBHOOK_SIGNATURE_MISMATCH`,
    /// `RETRY_LATER`); `None` on success.
    pub reason: Option<&'static str>,
    /// What went wrong inside, for our logs only: never sent to the provider.
    pub detail: Option<String>,
}

/// The reason code of an answer that asks the provider to send again.
pub const RETRY_LATER: &str = "RETRY_LATER";
/// The reason code of an answer for an unconfigured account.
pub const UNKNOWN_ACCOUNT: &str = "UNKNOWN_ACCOUNT";
/// The reason code of an unsigned claim the provider has not confirmed yet.
pub const NOT_CONFIRMED_YET: &str = "CLAIM_NOT_CONFIRMED_YET";

impl WebhookAnswer {
    /// The answer most providers expect: `{"received":true}` on success, the reason's code
    /// otherwise (with a fixed description for a refusal, never the caller's input).
    pub fn standard(outcome: WebhookOutcome, refusal: Option<&WebhookError>) -> Self {
        let reason = match outcome {
            WebhookOutcome::Refused => refusal.map(WebhookError::code),
            WebhookOutcome::UnknownAccount => Some(UNKNOWN_ACCOUNT),
            WebhookOutcome::Unconfirmed => Some(NOT_CONFIRMED_YET),
            WebhookOutcome::RetryLater => Some(RETRY_LATER),
            _ => None,
        };
        let body = match (reason, refusal) {
            (None, _) => r#"{"received":true}"#.to_string(),
            (Some(code), Some(e)) => {
                serde_json::json!({"error": {"code": code, "message": e.to_string()}}).to_string()
            }
            (Some(code), None) => serde_json::json!({"error": {"code": code}}).to_string(),
        };
        WebhookAnswer {
            status: outcome.http_status(),
            body,
            outcome,
            reason,
            detail: None,
        }
    }

    /// With an internal detail for the logs.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// How a provider account's reconciliation sweep reads and writes what the engine holds. The
/// engine implements it for one account; every method keeps to that account.
pub trait ReconcileSink: Send + Sync {
    /// Now, on the engine's clock.
    fn now(&self) -> Timestamp;

    /// When this account's intents that the provider has not answered for good were created,
    /// oldest first (those too young for a webhook to be late are left out). A sweep derives
    /// its windows from these, so that it costs the open work, not the history.
    fn open_created(&self) -> BoxFuture<'_, Result<Vec<Timestamp>, CoreError>>;

    /// Whether this pass has used its time: a sweep that sees `true` stops at the next call,
    /// keeping its place in a cursor, and the next pass goes on from there.
    fn out_of_time(&self) -> bool;

    /// Applies the provider's record of one of this account's intents (found by the event's
    /// provider reference). `Ok(true)` when it moved an intent. An event naming no intent of
    /// ours, a settled one, or another account's changes nothing.
    fn apply(&self, event: IntentEvent) -> BoxFuture<'_, Result<bool, CoreError>>;

    /// Where the named sweep stopped last time, if it ran.
    fn cursor<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, CoreError>>;

    /// Records where the named sweep stopped.
    fn set_cursor<'a>(
        &'a self,
        name: &'a str,
        value: String,
    ) -> BoxFuture<'a, Result<(), CoreError>>;
}

/// What one account's sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Missed deliveries the provider was asked to send again.
    pub replayed: usize,
    /// Intents settled from the provider's records.
    pub settled: usize,
    /// Provider calls made.
    pub calls: usize,
    /// Time windows holding open intents.
    pub windows: usize,
    /// Windows swept in this pass.
    pub windows_swept: usize,
    /// Whether the pass ran out of time before the last window (the next goes on).
    pub cut_short: bool,
}

/// Why a sweep stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Our store failed.
    #[error(transparent)]
    Store(#[from] CoreError),
}

/// Reconciliation tuning, the same for every account. Numbers are ours; see
/// `docs/decisions.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepSettings {
    /// The least time between two sweep calls to one provider account.
    pub call_interval: Duration,
    /// How far back a sweep looks, at most.
    pub max_window_ms: i64,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            call_interval: Duration::from_millis(1_000),
            max_window_ms: 7 * 24 * 60 * 60 * 1_000,
        }
    }
}

/// One provider account, as the engine sees it. Implemented once per provider; see the module
/// documentation for what each method is for.
pub trait Adapter: Send + Sync + std::fmt::Debug {
    /// The provider.
    fn provider(&self) -> Provider;

    /// The configured account this adapter serves.
    fn account(&self) -> &AccountName;

    /// Refuses what the provider would refuse, with its own code, before anything is recorded.
    fn check(&self, request: &IntentRequest) -> Result<(), ProviderError>;

    /// Creates `intent` at the provider under its stored provider key. `now` is when the
    /// request is sent.
    fn create<'a>(
        &'a self,
        intent: &'a Intent,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Created, ProviderError>>;

    /// What recovery does with `intent`, still `created` at `now`.
    fn recovery(&self, _intent: &Intent, _now: Timestamp) -> Recovery {
        Recovery::Create
    }

    /// Reads the provider's record of `intent`. `claimed` is the provider reference an
    /// unsigned claim names, used when the intent holds none yet. The answer is checked to
    /// name this intent; a record of another is [`Lookup::Mismatch`], never a fact.
    fn look_up<'a>(
        &'a self,
        intent: &'a Intent,
        claimed: Option<&'a ProviderRef>,
    ) -> BoxFuture<'a, Result<Lookup, ProviderError>>;

    /// The provider's intent an earlier create of `intent` made, found by our provider key,
    /// as the event that settles ours (carrying the provider's reference); `None` if the
    /// provider has none. Only for adapters whose [`Adapter::recovery`] answers
    /// [`Recovery::Find`].
    fn find_created<'a>(
        &'a self,
        _intent: &'a Intent,
    ) -> BoxFuture<'a, Result<Option<IntentEvent>, ProviderError>> {
        Box::pin(async { Ok(None) })
    }

    /// Whether an intent reaching its deadline is looked up before our timer expires it (a
    /// provider that never announces failures or expiries).
    fn looks_up_at_expiry(&self) -> bool {
        false
    }

    /// Verifies and parses a delivery to this account. `Ok(None)` is an event type nothing
    /// acts on. Verification comes before any parsing.
    fn receive(
        &self,
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Option<Inbound>, WebhookError>;

    /// The answer the provider expects for `outcome`.
    fn answer(&self, outcome: WebhookOutcome, refusal: Option<&WebhookError>) -> WebhookAnswer {
        WebhookAnswer::standard(outcome, refusal)
    }

    /// The account's reconciliation sweep. The default sweeps nothing (a provider whose every
    /// open intent is looked up at its deadline needs none).
    fn reconcile<'a>(
        &'a self,
        _sink: &'a dyn ReconcileSink,
        _stats: &'a mut SweepStats,
    ) -> BoxFuture<'a, Result<(), SweepError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Bounds on what providers send (ours): every id and text field from outside is checked
/// before it is used, stored or put in a URL.
pub mod bounds {
    /// Longest provider id (intent, event, transaction, reference number).
    pub const ID_MAX: usize = 64;
    /// Longest free text (names, reasons, bank references).
    pub const TEXT_MAX: usize = 512;
}

/// Checks a provider id: 1 to [`bounds::ID_MAX`] of `A-Z a-z 0-9 - _ .`, at least one of them
/// a letter or digit: the characters every provider id we know uses. Anything else is refused
/// before it reaches a query or a URL.
pub fn check_id(field: &'static str, value: &str) -> Result<(), WebhookError> {
    let ok = value.chars().any(|c| c.is_ascii_alphanumeric())
        && value.len() <= bounds::ID_MAX
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(WebhookError::MalformedBody(format!(
            "{field} is not a provider id (1 to {} of A-Z a-z 0-9 - _ .)",
            bounds::ID_MAX
        )))
    }
}

/// Checks free text from a provider: at most [`bounds::TEXT_MAX`] characters, no control
/// characters.
pub fn check_text(field: &'static str, value: &str) -> Result<(), WebhookError> {
    if value.chars().count() > bounds::TEXT_MAX || value.chars().any(char::is_control) {
        return Err(WebhookError::MalformedBody(format!(
            "{field} is longer than {} characters or holds control characters",
            bounds::TEXT_MAX
        )));
    }
    Ok(())
}

/// A JSON parse error, said without the input's values: serde quotes offending string values,
/// and a body may hold anything. Field names (in backticks) and the position are kept.
pub fn json_error(e: &serde_json::Error) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in e.to_string().chars() {
        match (c, quoted) {
            ('"', false) => {
                quoted = true;
                out.push_str("\"…\"");
            }
            ('"', true) => quoted = false,
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// Why a webhook or callback was refused. Every variant is the provider's fault or an
/// attacker's, never ours: the HTTP answer is 4xx and the provider should not retry.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookError {
    /// The signature header is absent.
    #[error("missing {0} header")]
    MissingSignature(&'static str),
    /// The signature header does not parse.
    #[error("malformed signature header: {0}")]
    MalformedSignature(&'static str),
    /// The signed timestamp is more than the tolerance away from now, either way.
    #[error("signature timestamp is {skew_ms} ms from now, beyond the {tolerance_ms} ms window")]
    TimestampOutOfTolerance {
        /// `now - t`, signed.
        skew_ms: i64,
        /// The window.
        tolerance_ms: i64,
    },
    /// No configured secret produces the signature.
    #[error("signature does not match the current or previous webhook secret")]
    SignatureMismatch,
    /// The body is not what the contract describes.
    #[error("malformed body: {0}")]
    MalformedBody(String),
    /// The delivery names an intent of another account than the one it was sent to.
    #[error("the delivery names an intent of another account")]
    AccountMismatch,
    /// An unsigned claim the provider's own records deny.
    #[error("the provider's records do not confirm this delivery")]
    NotConfirmed,
    /// An unsigned claim naming no intent of this account.
    #[error("the delivery names no intent of this account")]
    UnknownIntent,
}

impl WebhookError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::MissingSignature(_) => "WEBHOOK_SIGNATURE_MISSING",
            WebhookError::MalformedSignature(_) => "WEBHOOK_SIGNATURE_MALFORMED",
            WebhookError::TimestampOutOfTolerance { .. } => "WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE",
            WebhookError::SignatureMismatch => "WEBHOOK_SIGNATURE_MISMATCH",
            WebhookError::MalformedBody(_) => "WEBHOOK_MALFORMED",
            WebhookError::AccountMismatch => "WEBHOOK_ACCOUNT_MISMATCH",
            WebhookError::NotConfirmed => "WEBHOOK_NOT_CONFIRMED",
            WebhookError::UnknownIntent => "WEBHOOK_UNKNOWN_INTENT",
        }
    }
}

/// A provider call that did not succeed. `code()` is the provider's own code where it gave one
/// (Pientegra's `error.code`, Decentro's `responseKey`), so the same words reach every façade.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// Pientegra answered with an error (before sending, the adapter answers the same codes).
    #[error("pientegra refused the request ({code}, HTTP {status}): {message}")]
    Pientegra {
        /// HTTP status (0 when refused before sending).
        status: u16,
        /// Pientegra's `error.code`.
        code: String,
        /// Pientegra's `error.message`.
        message: String,
        /// `Retry-After`, on `429`.
        retry_after: Option<Duration>,
    },
    /// Decentro answered with (or would answer with) one of its response keys.
    #[error(transparent)]
    Decentro(#[from] decentro::DecentroError),
    /// The provider could not be reached, timed out, or failed on its side (5xx) after the
    /// retries the operation allows. The outcome of the call is unknown.
    #[error("{provider} is unavailable: {reason}")]
    Unavailable {
        /// The provider.
        provider: Provider,
        /// What happened.
        reason: String,
        /// The provider's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// The provider answered 2xx with a body that does not match its contract.
    #[error("{provider} answered something unexpected: {reason}")]
    BadResponse {
        /// The provider.
        provider: Provider,
        /// What was wrong.
        reason: String,
    },
}

impl ProviderError {
    /// The stable machine code.
    pub fn code(&self) -> &str {
        match self {
            ProviderError::Pientegra { code, .. } => code,
            ProviderError::Decentro(e) => e.code(),
            ProviderError::Unavailable { .. } => "PROVIDER_UNAVAILABLE",
            ProviderError::BadResponse { .. } => "PROVIDER_BAD_RESPONSE",
        }
    }

    /// Whether the same call may succeed later: the provider was unreachable, overloaded,
    /// rate-limiting, or still working on the same idempotency key.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Pientegra { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || code == pientegra::codes::DUPLICATE_IDEMPOTENCY_KEY
            }
            ProviderError::Decentro(e) => !e.is_definitive(),
            ProviderError::Unavailable { .. } | ProviderError::BadResponse { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_asking_to_retry_gives_its_code_and_never_the_reason_inside() {
        let inside = "store failure: disk I/O error at /var/lib/intentkit/intentkit.db";
        for outcome in [WebhookOutcome::RetryLater, WebhookOutcome::Unconfirmed] {
            let a = WebhookAnswer::standard(outcome, None).with_detail(inside);
            assert_eq!(a.status, 503);
            assert!(!a.body.contains("disk"), "{}", a.body);
            assert!(!a.body.contains("/var"), "{}", a.body);
            assert_eq!(a.detail.as_deref(), Some(inside), "kept for our logs");
            let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
            assert_eq!(body["error"]["code"], a.reason.unwrap());
        }
    }

    #[test]
    fn every_generic_provider_code_is_documented_with_its_retry_advice() {
        let doc = include_str!("../../../docs/errors.md");
        let rows: Vec<(String, bool)> = vec![
            (
                ProviderError::Unavailable {
                    provider: Provider::Pientegra,
                    reason: String::new(),
                    retry_after: None,
                }
                .code()
                .to_string(),
                true,
            ),
            (
                ProviderError::BadResponse {
                    provider: Provider::Decentro,
                    reason: String::new(),
                }
                .code()
                .to_string(),
                true,
            ),
            (
                WebhookError::MissingSignature("x").code().to_string(),
                false,
            ),
            (
                WebhookError::MalformedSignature("x").code().to_string(),
                false,
            ),
            (
                WebhookError::TimestampOutOfTolerance {
                    skew_ms: 0,
                    tolerance_ms: 0,
                }
                .code()
                .to_string(),
                false,
            ),
            (WebhookError::SignatureMismatch.code().to_string(), false),
            (WebhookError::AccountMismatch.code().to_string(), false),
            (WebhookError::NotConfirmed.code().to_string(), false),
            (WebhookError::UnknownIntent.code().to_string(), false),
            (
                WebhookError::MalformedBody(String::new())
                    .code()
                    .to_string(),
                false,
            ),
            (
                config::ConfigError::AccountName(String::new())
                    .code()
                    .to_string(),
                false,
            ),
        ];
        for (code, retry) in rows {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{code}` |")))
                .unwrap_or_else(|| panic!("{code} missing from docs/errors.md"));
            let advice = if retry { "| yes |" } else { "| no |" };
            assert!(row.ends_with(advice), "{code}: docs say otherwise");
        }
    }
}
