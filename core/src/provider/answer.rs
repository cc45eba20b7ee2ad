//! The one answer to a webhook or callback: built in core, forwarded unchanged by the receiver,
//! the `HandleWebhook` RPC and the C ABI. Its body never carries internal error text.

use super::WebhookError;

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
