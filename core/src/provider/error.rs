//! Why a delivery was refused ([`WebhookError`]) and why a provider call did not succeed
//! ([`ProviderError`]), each with its stable code.

use std::time::Duration;

use super::{decentro, pientegra};
use crate::types::Provider;

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
