//! Provider adapters: one module per provider, each turning the provider's wire format into
//! provider-neutral [`IntentEvent`]s and typed errors. Provider wire types never leave their
//! module; each maps its statuses to signals in one function.
//!
//! A provider adapter never touches the store: the ledger (and, later, the engine) does.

pub mod config;
pub mod decentro;
pub mod http;
pub mod pientegra;
pub mod secret;

use std::time::Duration;

use crate::lifecycle::IntentEvent;
use crate::types::Provider;

pub use secret::Secret;

/// A verified, parsed webhook or callback, ready for the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The provider-neutral event; its `provider_ref` says which intent it is about.
    pub event: IntentEvent,
    /// Our own reference as the provider echoes it (Decentro `reference_id`), for matching
    /// when the provider's id is not known yet.
    pub our_reference: Option<String>,
    /// The notification is unsigned and must be confirmed by a status look-up before it may
    /// settle the intent (Decentro callbacks).
    pub needs_confirmation: bool,
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
