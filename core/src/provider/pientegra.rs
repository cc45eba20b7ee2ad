//! Pientegra hosted deposits: wire types, webhook verification, and the mapping of Pientegra
//! statuses and event types to intentkit signals. Follows `wire-contract.md`; the choices
//! marked "ours" there are the constants and the mapping functions in this module.
//!
//! Webhook verification comes before any parsing: the header is checked, the timestamp must
//! be within five minutes of now in either direction, and the HMAC-SHA256 of
//! `"<t>.<raw body>"` is compared in constant time against the current secret, then the
//! previous one until its rotation window ends (deliveries in flight keep the old secret for
//! about ten minutes after a rotation). The raw bytes are used as received: never
//! re-serialized JSON.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{Notification, Proof, Secret, WebhookError, check_id, check_text, json_error};
use crate::intent::{DepositRequest, ProviderRef};
use crate::lifecycle::{Cause, IntentEvent, Signal};
use crate::types::{Currency, MinorUnits, Timestamp};

/// The webhook signature header.
pub const SIGNATURE_HEADER: &str = "Pientegra-Signature";
/// How far the signed timestamp may be from now, either way (ref).
pub const SIGNATURE_TOLERANCE_MS: i64 = 5 * 60 * 1_000;
/// Smallest deposit, in minor units (ref).
pub const AMOUNT_MIN: i64 = 100;
/// Largest deposit, in minor units (ref).
pub const AMOUNT_MAX: i64 = 100_000_000;
/// Longest `externalUserLabel` (ref).
pub const LABEL_MAX_CHARS: usize = 128;
/// The only active currency (ref).
pub const CURRENCY: Currency = Currency::TRY;

/// The webhook secrets of one account: the current one, and during a rotation the previous.
#[derive(Clone, Debug)]
pub struct WebhookSecrets {
    /// Signs new deliveries.
    pub current: Secret,
    /// Still accepted, until its time, while deliveries signed before the rotation drain.
    pub previous: Option<PreviousSecret>,
}

/// The secret a rotation replaced, and until when deliveries signed with it are accepted.
/// Pientegra keeps signing in-flight deliveries with it for about ten minutes (ref); after
/// `until` it is worth nothing, so a leaked old secret does not stay a key forever.
#[derive(Clone, Debug)]
pub struct PreviousSecret {
    /// The replaced secret.
    pub secret: Secret,
    /// The end of the rotation window.
    pub until: Timestamp,
}

type HmacSha256 = Hmac<Sha256>;

/// The hex HMAC-SHA256 signature of `body` at `t_ms`, as Pientegra computes it. Used by the
/// simulator and by tests; verification compares bytes instead.
pub fn sign(secret: &Secret, t_ms: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, t_ms, body).finalize().into_bytes())
}

/// The full header value for `body` signed at `t_ms`.
pub fn signature_header(secret: &Secret, t_ms: i64, body: &[u8]) -> String {
    format!("t={t_ms},v1={}", sign(secret, t_ms, body))
}

fn mac(secret: &Secret, t_ms: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(t_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Parses `t=<ms>,v1=<hex>[,v1=<hex>...]`. Several `v1` entries are allowed, as Pientegra may
/// sign one delivery with both secrets during a rotation.
fn parse_header(header: &str) -> Result<(i64, Vec<[u8; 32]>), WebhookError> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(WebhookError::MalformedSignature("expected key=value pairs"))?;
        match k {
            "t" => {
                t = Some(
                    v.parse::<i64>()
                        .map_err(|_| WebhookError::MalformedSignature("t is not an integer"))?,
                );
            }
            "v1" => {
                let mut sig = [0u8; 32];
                hex::decode_to_slice(v, &mut sig)
                    .map_err(|_| WebhookError::MalformedSignature("v1 is not 64 hex digits"))?;
                sigs.push(sig);
            }
            // Unknown schemes are skipped so that Pientegra can add v2 without breaking us.
            _ => {}
        }
    }
    let t = t.ok_or(WebhookError::MalformedSignature("no t"))?;
    if sigs.is_empty() {
        return Err(WebhookError::MalformedSignature("no v1 signature"));
    }
    Ok((t, sigs))
}

/// Verifies a delivery's `Pientegra-Signature` over the raw body. Parse nothing before this.
pub fn verify_signature(
    header: Option<&str>,
    body: &[u8],
    secrets: &WebhookSecrets,
    now: Timestamp,
) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::MissingSignature(SIGNATURE_HEADER))?;
    let (t, sigs) = parse_header(header)?;
    let skew_ms = now.unix_millis().saturating_sub(t);
    if skew_ms.unsigned_abs() > SIGNATURE_TOLERANCE_MS.unsigned_abs() {
        return Err(WebhookError::TimestampOutOfTolerance {
            skew_ms,
            tolerance_ms: SIGNATURE_TOLERANCE_MS,
        });
    }
    let previous = secrets
        .previous
        .as_ref()
        .filter(|p| now < p.until)
        .map(|p| &p.secret);
    for secret in std::iter::once(&secrets.current).chain(previous) {
        let expected = mac(secret, t, body);
        // `verify_slice` compares in constant time; try every v1 with every secret.
        if sigs
            .iter()
            .any(|sig| expected.clone().verify_slice(sig).is_ok())
        {
            return Ok(());
        }
    }
    Err(WebhookError::SignatureMismatch)
}

/// A Pientegra intent status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Hand-off issued, awaiting the payer.
    Reserved,
    /// The payer pressed "I made the payment"; under review.
    PendingReview,
    /// Approved: credit the `amount`.
    Approved,
    /// Rejected.
    Rejected,
    /// Expired unpaid.
    AutoCancelled,
    /// Funds arrived after expiry.
    LateArrival,
}

/// Amounts travel as decimal strings of minor units.
fn parse_amount(s: &str) -> Result<MinorUnits, WebhookError> {
    s.parse::<i64>()
        .ok()
        .and_then(|v| MinorUnits::new(v).ok())
        .ok_or_else(|| WebhookError::MalformedBody("amount is not minor units".into()))
}

/// What a Pientegra status says, as a signal. `Reserved` says nothing the intent does not
/// already know from the create response. The one place statuses map to signals.
pub fn signal_for_status(
    status: Status,
    amount: MinorUnits,
    rejected_reason: Option<String>,
) -> Option<Signal> {
    match status {
        Status::Reserved => None,
        Status::PendingReview => Some(Signal::PayerConfirmed),
        Status::Approved => Some(Signal::Approved {
            amount,
            payer: None,
        }),
        Status::Rejected => Some(Signal::Rejected {
            reason: rejected_reason,
        }),
        Status::AutoCancelled => Some(Signal::Expired),
        Status::LateArrival => Some(Signal::LateArrival),
    }
}

/// The webhook body (ref).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookBody {
    event_id: String,
    event_type: String,
    #[allow(dead_code)] // part of the contract; our own clock stamps history
    occurred_at: Option<String>,
    intent: WebhookIntent,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookIntent {
    id: String,
    reference_no: Option<String>,
    amount: String,
    currency: Option<String>,
    status: Option<Status>,
    rejected_reason: Option<String>,
}

/// Verifies, then parses a webhook into a notification. `Ok(None)` is an event type we do not
/// act on (acknowledge it, so the provider stops sending it).
pub fn parse_webhook(
    signature: Option<&str>,
    body: &[u8],
    secrets: &WebhookSecrets,
    now: Timestamp,
) -> Result<Option<Notification>, WebhookError> {
    verify_signature(signature, body, secrets, now)?;
    let parsed: WebhookBody =
        serde_json::from_slice(body).map_err(|e| WebhookError::MalformedBody(json_error(&e)))?;
    // Every id is bounded and plain before it is stored, matched or put in a URL.
    check_id("eventId", &parsed.event_id)?;
    check_id("intent.id", &parsed.intent.id)?;
    if let Some(no) = &parsed.intent.reference_no {
        check_id("intent.referenceNo", no)?;
    }
    if let Some(reason) = &parsed.intent.rejected_reason {
        check_text("intent.rejectedReason", reason)?;
    }
    if let Some(c) = &parsed.intent.currency
        && c != CURRENCY.as_str()
    {
        return Err(WebhookError::MalformedBody(format!(
            "currency is not {CURRENCY}"
        )));
    }
    let amount = parse_amount(&parsed.intent.amount)?;
    // Event type names the transition; the status in the body must not contradict it.
    let (signal, implied) = match parsed.event_type.as_str() {
        "intent.approved" => (
            signal_for_status(Status::Approved, amount, None),
            Status::Approved,
        ),
        "intent.rejected" => (
            signal_for_status(Status::Rejected, amount, parsed.intent.rejected_reason),
            Status::Rejected,
        ),
        "intent.late_arrival" => (
            signal_for_status(Status::LateArrival, amount, None),
            Status::LateArrival,
        ),
        "intent.auto_cancelled" => (
            signal_for_status(Status::AutoCancelled, amount, None),
            Status::AutoCancelled,
        ),
        _ => return Ok(None),
    };
    if let Some(status) = parsed.intent.status
        && status != implied
    {
        return Err(WebhookError::MalformedBody(format!(
            "eventType {} with intent.status {status:?}",
            parsed.event_type
        )));
    }
    let Some(signal) = signal else {
        return Ok(None);
    };
    Ok(Some(Notification {
        event: IntentEvent::new(signal, Cause::Webhook)
            .with_event_id(parsed.event_id)
            .with_provider_ref(ProviderRef::Pientegra {
                intent_id: parsed.intent.id,
                reference_no: parsed.intent.reference_no,
            }),
        our_reference: None,
        proof: Proof::Signed,
    }))
}

/// Pientegra's error codes (ref, and the contract's shape), each a stable code of ours too.
pub mod codes {
    /// `400`: a field failed validation.
    pub const VALIDATION_FAILED: &str = "validation_failed";
    /// `400`: amount below 100 minor units.
    pub const AMOUNT_BELOW_MIN: &str = "amount_below_min";
    /// `400`: amount above 100,000,000 minor units.
    pub const AMOUNT_ABOVE_MAX: &str = "amount_above_max";
    /// `401`.
    pub const INVALID_API_KEY: &str = "invalid_api_key";
    /// `409`: same idempotency key, different body.
    pub const KEY_REUSE_WITH_DIFFERENT_BODY: &str = "idempotency_key_reuse_with_different_body";
    /// `409`: same idempotency key still in flight; retry later with the same key.
    pub const DUPLICATE_IDEMPOTENCY_KEY: &str = "duplicate_idempotency_key";
    /// `429`, with `Retry-After` seconds.
    pub const RATE_LIMITED: &str = "rate_limited";
}

/// A refusal before sending: the same code Pientegra would answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("pientegra would refuse this deposit ({code}): {message}")]
pub struct Refusal {
    /// Pientegra's error code.
    pub code: &'static str,
    /// What to change.
    pub message: String,
}

/// The create body (ref). Amount is a decimal string of minor units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDepositBody {
    /// The partner's user id.
    pub external_user_id: String,
    /// A display label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_user_label: Option<String>,
    /// Minor units, as a string.
    pub amount: String,
    /// `TRY`.
    pub currency: String,
}

/// Checks a deposit against Pientegra's rules and builds the body it will be sent as.
pub fn create_body(request: &DepositRequest) -> Result<CreateDepositBody, Refusal> {
    let amount = request.amount.get();
    if amount < AMOUNT_MIN {
        return Err(Refusal {
            code: codes::AMOUNT_BELOW_MIN,
            message: format!("amount {amount} is below the minimum of {AMOUNT_MIN} minor units"),
        });
    }
    if amount > AMOUNT_MAX {
        return Err(Refusal {
            code: codes::AMOUNT_ABOVE_MAX,
            message: format!("amount {amount} is above the maximum of {AMOUNT_MAX} minor units"),
        });
    }
    if request.currency != CURRENCY {
        return Err(Refusal {
            code: codes::VALIDATION_FAILED,
            message: format!(
                "currency {} is not supported; Pientegra accepts {CURRENCY}",
                request.currency
            ),
        });
    }
    if let Some(label) = &request.user_label
        && label.chars().count() > LABEL_MAX_CHARS
    {
        return Err(Refusal {
            code: codes::VALIDATION_FAILED,
            message: format!("user_label is longer than {LABEL_MAX_CHARS} characters"),
        });
    }
    Ok(CreateDepositBody {
        external_user_id: request.user_id.as_str().to_string(),
        external_user_label: request.user_label.clone(),
        amount: amount.to_string(),
        currency: CURRENCY.as_str().to_string(),
    })
}

pub mod adapter;
pub mod client;

#[cfg(test)]
mod tests;
