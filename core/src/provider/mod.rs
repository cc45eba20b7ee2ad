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

mod answer;
pub mod config;
pub mod decentro;
mod error;
pub mod http;
mod input;
pub mod pace;
pub mod pientegra;
pub mod registry;
pub mod secret;
mod sweep;

pub use answer::{NOT_CONFIRMED_YET, RETRY_LATER, UNKNOWN_ACCOUNT, WebhookAnswer, WebhookOutcome};
pub use error::{ProviderError, WebhookError};
pub use input::{bounds, check_id, check_text, json_error, redact_values};
pub use sweep::{ReconcileSink, SweepError, SweepSettings, SweepStats};

use std::future::Future;
use std::pin::Pin;

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

impl Notification {
    /// This notification as received by `provider`'s adapter for `account`; `our_intent` is
    /// the intent our echoed reference names, if the adapter found one.
    pub fn bind(
        self,
        provider: Provider,
        account: AccountName,
        our_intent: Option<IntentId>,
    ) -> Result<Inbound, WebhookError> {
        let reference = self
            .event
            .provider_ref
            .clone()
            .ok_or_else(|| WebhookError::MalformedBody("no provider reference".into()))?;
        Ok(Inbound {
            provider,
            account,
            reference,
            our_intent,
            event: self.event,
            proof: self.proof,
        })
    }
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
