//! Decentro UPI Penny Pull intents: wire types, validation with the provider's own response
//! keys, and the mapping of Decentro statuses to intentkit signals. Follows the provider page
//! and `wire-contract.md`; the choices marked "ours" there are the constants and the mapping
//! functions here.
//!
//! Decentro's callback is unsigned and comes only on `SUCCESS`. A parsed callback is therefore
//! a [`Proof::Claim`]: the engine has it confirmed by the status API, at the moment it would be
//! applied, before it settles anything. Failures and expiries are learned from the status API
//! alone. A status reply confirms an intent only if it names the same transaction, our
//! `reference_id`, and (when it gives one) the penny's amount: [`StatusReply::check`].

use serde::{Deserialize, Serialize};

use super::{Lookup, Notification, Proof, WebhookError, check_id, check_text, json_error};
use crate::intent::{
    AccountVerificationRequest, Intent, PENNY_PULL_AMOUNT, PayerHandoff, ProviderRef, VerifiedPayer,
};
use crate::lifecycle::{Cause, IntentEvent, Signal};
use crate::types::Timestamp;

/// How long a penny-pull link lives (the provider page).
pub const LINK_TTL_MS: i64 = 10 * 60 * 1_000;
/// `reference_id` length bounds (the provider page).
pub const REFERENCE_ID_LEN: std::ops::RangeInclusive<usize> = 5..=50;
/// Characters `purpose_message` must not contain (the provider page).
pub const FORBIDDEN_PURPOSE_CHARS: &[char] = &[
    '.', '@', '#', '$', '%', '^', '&', '*', '!', ';', ':', '\'', '"', '~', '`', '?', '=', '+', ')',
    '(',
];
/// `purpose_message` when the caller gives none (ours).
pub const DEFAULT_PURPOSE_MESSAGE: &str = "Bank account verification";
/// The callback acknowledgement (ours, shape).
pub const CALLBACK_ACK: &str = r#"{"responseCode":"CB_S00000"}"#;
/// The success key of a create.
pub const KEY_LINK_CREATED: &str = "successful_payment_link_created";
/// The status API's key for a transaction id it does not know (ours: the status API's keys
/// are not on the page).
pub const KEY_NO_SUCH_TRANSACTION: &str = "error_invalid_decentro_txn_id";

macro_rules! response_keys {
    ($( $variant:ident = $key:literal, $http:literal, $message:literal; )*) => {
        /// Every error key on Decentro's Penny Pull page, typed. The key itself is the stable
        /// code ([`DecentroError::code`]); a key the page does not list becomes
        /// [`DecentroError::Other`], keeping the key and message.
        #[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum DecentroError {
            $(
                #[doc = $message]
                #[error("decentro {}: {}", $key, $message)]
                $variant,
            )*
            /// A key the provider page does not list.
            #[error("decentro {key}: {message}")]
            Other {
                /// The provider's `responseKey`.
                key: String,
                /// The provider's `message`.
                message: String,
            },
        }

        impl DecentroError {
            /// Every listed key, for tests and the simulator.
            pub const ALL: &'static [DecentroError] = &[$(DecentroError::$variant),*];

            /// The provider's response key: our stable code for this error.
            pub fn code(&self) -> &str {
                match self {
                    $(DecentroError::$variant => $key,)*
                    DecentroError::Other { key, .. } => key,
                }
            }

            /// The HTTP status Decentro answers with (ours, per the wire contract).
            pub fn http_status(&self) -> u16 {
                match self {
                    $(DecentroError::$variant => $http,)*
                    DecentroError::Other { .. } => 400,
                }
            }

            /// The provider page's text for the key.
            pub fn page_message(&self) -> &str {
                match self {
                    $(DecentroError::$variant => $message,)*
                    DecentroError::Other { message, .. } => message,
                }
            }

            /// The typed error for a response key.
            pub fn from_key(key: &str, message: &str) -> Self {
                match key {
                    $($key => DecentroError::$variant,)*
                    _ => DecentroError::Other { key: key.to_string(), message: message.to_string() },
                }
            }
        }
    };
}

response_keys! {
    InvalidReferenceId = "error_invalid_reference_id", 400, "Reference URL is not of type string";
    DuplicateReferenceId = "error_duplicate_reference_id", 409, "Duplicate Request Reference ID";
    MalformedRequest = "error_malformed_request", 400, "Malformed request detected.";
    UnsanitizedValues = "error_unsanitized_values", 400, "Unsanitized values detected for key(s): purpose_message. Kindly sanitize the corresponding values by removing special characters such as . @ # $ % ^ & * ! ; : ' \" ~ ` ? = + ) ( and retry.";
    InvalidGenerateQrValue = "error_invalid_generate_QR_value", 400, "Invalid value entered for Generate QR. Generate QR can be either 0 or 1. Hint : generate_qr (int)";
    InvalidGenerateUriValue = "error_invalid_generate_uri_value", 400, "Invalid value entered for Generate URI flag. Generate URI can be either 0 or 1. Hint : generate_uri (int)";
    InvalidCustomizedQrWithLogo = "error_invalid_customized_qr_with_logo", 400, "Invalid value entered for Customized QR with logo flag. Value can be either 0 or 1. Hint : generate_customized_qr_with_logo (int)";
    MissingReferenceId = "error_missing_reference_id", 400, "Request reference id cannot be null or empty. Hint: reference_id (string)";
    InvalidCredentials = "error_invalid_credentials", 401, "Invalid authentication credentials";
    MissingCredentials = "error_missing_credentials", 401, "No API key found in request";
    InvalidClientCredentials = "error_invalid_client_credentials", 401, "Authentication failed. Please use valid Client ID and Client Secret.";
    EmptyClientSecret = "error_empty_client_secret", 401, "Client Secret cannot be empty. Hint: client_secret (string)";
    UnauthorizedModule = "error_unauthorized_module", 403, "Authentication failed for accessing the module";
    EmptyModuleSecret = "error_empty_module_secret", 401, "Module Secret cannot be empty. Hint: module_secret (string)";
    AccountDisabled = "error_company/account_disabled", 403, "UPI Credit transactions are disabled for the company/account.";
    InvalidMethod = "error_invalid_method", 405, "The method is not allowed for the requested URL.";
    InvalidClientId = "error_invalid_client_id", 401, "Authentication failed. Please use a valid Client ID.";
    EmptyClientId = "error_empty_client_id", 401, "Client ID cannot be empty. Hint: client_id (string)";
    InvalidFormatClientId = "error_invalid_format_client_id", 401, "Client ID is not of type string. Hint: client_id (string)";
    InvalidClientSecret = "error_invalid_client_secret", 401, "Authentication failed. Please use a valid Client Secret.";
    InvalidFormatClientSecret = "error_invalid_format_client_secret", 401, "Client Secret is not of type string. Hint: client_secret (string)";
    IncorrectLengthReferenceId = "error_incorrect_length_reference_id", 400, "Reference ID needs to be between 5 and 50 characters";
}

impl DecentroError {
    /// Whether the same request may succeed later. Only an unknown key is given the benefit
    /// of the doubt by the engine; every listed key is definitive.
    pub fn is_definitive(&self) -> bool {
        !matches!(self, DecentroError::Other { .. })
    }
}

/// The create body (the provider page). Flags are integers; anything but 0 or 1 is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PennyPullBody {
    /// Our reference, 5 to 50 characters, never reused.
    pub reference_id: String,
    /// Shown in the payer's UPI app; sanitized.
    pub purpose_message: String,
    /// 1 for a QR code.
    pub generate_qr: i64,
    /// 1 for UPI app deep links.
    pub generate_uri: i64,
    /// 1 for a QR with the platform's logo.
    pub customized_qr_with_logo: i64,
}

/// Checks a body as Decentro would, answering the key Decentro would answer.
pub fn validate(body: &PennyPullBody) -> Result<(), DecentroError> {
    if body.reference_id.is_empty() {
        return Err(DecentroError::MissingReferenceId);
    }
    if !REFERENCE_ID_LEN.contains(&body.reference_id.chars().count()) {
        return Err(DecentroError::IncorrectLengthReferenceId);
    }
    for (value, err) in [
        (body.generate_qr, DecentroError::InvalidGenerateQrValue),
        (body.generate_uri, DecentroError::InvalidGenerateUriValue),
        (
            body.customized_qr_with_logo,
            DecentroError::InvalidCustomizedQrWithLogo,
        ),
    ] {
        if !matches!(value, 0 | 1) {
            return Err(err);
        }
    }
    if body.purpose_message.contains(FORBIDDEN_PURPOSE_CHARS) {
        return Err(DecentroError::UnsanitizedValues);
    }
    Ok(())
}

/// Checks a verification request against Decentro's rules before any intent is recorded. The
/// `reference_id` is ours (generated with the intent, always 32 characters), so only the
/// caller's fields can fail here.
pub fn check_request(request: &AccountVerificationRequest) -> Result<(), DecentroError> {
    const OUR_REFERENCE_SHAPE: &str = "00000000000000000000000000000000";
    create_body(request, OUR_REFERENCE_SHAPE).map(|_| ())
}

/// Builds and validates the create body for a verification. `reference_id` is the intent's
/// provider key.
pub fn create_body(
    request: &AccountVerificationRequest,
    reference_id: &str,
) -> Result<PennyPullBody, DecentroError> {
    let body = PennyPullBody {
        reference_id: reference_id.to_string(),
        purpose_message: request
            .purpose_message
            .clone()
            .unwrap_or_else(|| DEFAULT_PURPOSE_MESSAGE.to_string()),
        generate_qr: i64::from(request.generate_qr),
        generate_uri: i64::from(request.generate_uri),
        customized_qr_with_logo: i64::from(request.qr_with_logo),
    };
    validate(&body)?;
    Ok(body)
}

/// The response envelope (ref).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<D> {
    /// Decentro's transaction id.
    #[serde(default)]
    pub decentro_txn_id: Option<String>,
    /// `SUCCESS` or `FAILURE`: of the API call, not of the payment.
    #[serde(default)]
    pub status: Option<String>,
    /// Decentro's response code.
    #[serde(default)]
    pub response_code: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
    /// The response key.
    #[serde(default)]
    pub response_key: Option<String>,
    /// The payload.
    #[serde(default)]
    pub data: Option<D>,
}

/// The create response's `data` (ours, nesting).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkData {
    /// The short link.
    pub validation_short_link: String,
    /// `PENDING`.
    #[serde(default)]
    pub validation_status: Option<String>,
    /// Decentro's description.
    #[serde(default)]
    pub validation_description: Option<String>,
    /// When `generate_qr=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoded_dynamic_qr_code: Option<String>,
    /// When `generate_uri=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpay_uri: Option<String>,
    /// When `generate_uri=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phonepe_uri: Option<String>,
    /// When `generate_uri=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paytm_uri: Option<String>,
}

/// The payment status Decentro reports (ref).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionStatus {
    /// Not paid yet, link still live.
    Pending,
    /// Paid: the account is verified.
    Success,
    /// The payment failed.
    Failure,
    /// The link expired unpaid.
    Expired,
}

/// The status response's `data`, and the callback's body fields (ours, names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayerData {
    /// The payment status.
    #[serde(default)]
    pub transaction_status: Option<TransactionStatus>,
    /// Account holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_name: Option<String>,
    /// UPI address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_vpa: Option<String>,
    /// Masked account number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_account_number: Option<String>,
    /// IFSC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_ifsc: Option<String>,
    /// Bank reference of the penny transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_reference_number: Option<String>,
}

impl PayerData {
    fn verified_payer(&self) -> VerifiedPayer {
        VerifiedPayer {
            name: self.payer_name.clone(),
            masked_account_number: self.payer_account_number.clone(),
            ifsc: self.payer_ifsc.clone(),
            vpa: self.payer_vpa.clone(),
            bank_reference: self.bank_reference_number.clone(),
        }
    }
}

/// What a Decentro transaction status says, as a signal: the one place statuses map.
pub fn signal_for_status(data: &PayerData, message: Option<&str>) -> Option<Signal> {
    match data.transaction_status? {
        TransactionStatus::Pending => None,
        TransactionStatus::Success => Some(Signal::Approved {
            amount: PENNY_PULL_AMOUNT,
            payer: Some(data.verified_payer()),
        }),
        TransactionStatus::Failure => Some(Signal::Rejected {
            reason: message.map(str::to_string),
        }),
        TransactionStatus::Expired => Some(Signal::Expired),
    }
}

/// A parsed create response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkCreated {
    /// The event that moves the intent to `pending`.
    pub event: IntentEvent,
}

/// Interprets a create response: the hand-off on success, the typed error otherwise.
/// `created_at` is when the request was sent; the link expires ten minutes after it.
pub fn parse_create_response(
    body: &[u8],
    created_at: Timestamp,
) -> Result<LinkCreated, DecentroError> {
    let env: Envelope<LinkData> =
        serde_json::from_slice(body).map_err(|_| DecentroError::MalformedRequest)?;
    let key = env.response_key.as_deref().unwrap_or_default();
    let (Some(txn_id), Some(data), KEY_LINK_CREATED) = (env.decentro_txn_id, env.data, key) else {
        return Err(DecentroError::from_key(
            key,
            env.message.as_deref().unwrap_or_default(),
        ));
    };
    let event = IntentEvent::new(
        Signal::HandoffIssued {
            handoff: PayerHandoff::Upi {
                short_link: data.validation_short_link,
                qr_code: data.encoded_dynamic_qr_code,
                gpay_uri: data.gpay_uri,
                phonepe_uri: data.phonepe_uri,
                paytm_uri: data.paytm_uri,
            },
            expires_at: Some(created_at.plus_millis(LINK_TTL_MS)),
        },
        Cause::Api,
    )
    .with_provider_ref(ProviderRef::Decentro { txn_id });
    Ok(LinkCreated { event })
}

/// A status response, read but not yet checked against an intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusReply {
    /// The transaction the reply is about.
    pub txn_id: String,
    /// The `reference_id` it was created with (ours, name: `data.referenceId`).
    pub reference_id: Option<String>,
    /// The amount paid, as Decentro writes it (ours, name: `data.transactionAmount`, rupees).
    pub amount: Option<String>,
    /// What the status says, as a status-poll event; `None` while pending.
    pub event: Option<IntentEvent>,
}

impl StatusReply {
    /// What this reply proves about `intent`, which names (or, for a claim, is claimed to
    /// name) transaction `txn_id`: a fact only if the reply names the same transaction, the
    /// intent's own `reference_id`, and the penny's amount where it gives one.
    pub fn check(self, intent: &Intent, txn_id: &str) -> Lookup {
        if self.txn_id != txn_id {
            return Lookup::Mismatch(format!(
                "the status reply names transaction {:?}, not the one asked for",
                self.txn_id
            ));
        }
        match &self.reference_id {
            Some(r) if *r == intent.provider_key => {}
            Some(_) => {
                return Lookup::Mismatch(
                    "the transaction belongs to another reference_id".to_string(),
                );
            }
            // Not a denial: the reply says too little to confirm anything. The caller is told
            // to ask again (see the adapter), never to give up on the claim.
            None => return Lookup::Unproven("the status reply names no referenceId".into()),
        }
        if let Some(a) = &self.amount
            && rupees_to_paise(a) != Some(PENNY_PULL_AMOUNT.get())
        {
            return Lookup::Mismatch(format!("the transaction is for INR {a}, not the penny"));
        }
        self.event.map_or(Lookup::Open, Lookup::Fact)
    }
}

/// `"1.00"` or `"1"` rupees as paise; `None` for anything else.
fn rupees_to_paise(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, "0"));
    if whole.is_empty() || frac.is_empty() || frac.len() > 2 {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(frac)
}

/// The status response's `data` (ours, names): the payer's fields, and what the transaction
/// was created with.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusData {
    #[serde(flatten)]
    payer: PayerData,
    #[serde(default)]
    reference_id: Option<String>,
    #[serde(default)]
    transaction_amount: Option<String>,
}

/// Reads a status response. Check it against the intent with [`StatusReply::check`] before
/// anything of it is applied.
pub fn parse_status_reply(body: &[u8]) -> Result<StatusReply, DecentroError> {
    let env: Envelope<StatusData> =
        serde_json::from_slice(body).map_err(|_| DecentroError::MalformedRequest)?;
    let (Some(txn_id), Some(data)) = (env.decentro_txn_id.clone(), env.data) else {
        return Err(DecentroError::from_key(
            env.response_key.as_deref().unwrap_or_default(),
            env.message.as_deref().unwrap_or_default(),
        ));
    };
    let event = signal_for_status(&data.payer, env.message.as_deref()).map(|signal| {
        IntentEvent::new(signal, Cause::StatusPoll).with_provider_ref(ProviderRef::Decentro {
            txn_id: txn_id.clone(),
        })
    });
    Ok(StatusReply {
        txn_id,
        reference_id: data.reference_id,
        amount: data.transaction_amount,
        event,
    })
}

/// Interprets a status response as an event with cause "status poll"; `Ok(None)` while the
/// transaction is still pending. Says nothing of which intent it is about: the engine goes
/// through [`StatusReply::check`].
pub fn parse_status_response(body: &[u8]) -> Result<Option<IntentEvent>, DecentroError> {
    parse_status_reply(body).map(|r| r.event)
}

/// The callback body (ours, names).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallbackBody {
    decentro_txn_id: String,
    #[serde(default)]
    reference_id: Option<String>,
    #[serde(flatten)]
    payer: PayerData,
}

/// Parses a callback. It is unsigned, so the notification needs confirmation by the status
/// API before it may settle anything. Only `SUCCESS` is ever sent; anything else is refused.
pub fn parse_callback(body: &[u8]) -> Result<Notification, WebhookError> {
    let cb: CallbackBody =
        serde_json::from_slice(body).map_err(|e| WebhookError::MalformedBody(json_error(&e)))?;
    // The id goes into the status API's URL and the store: bounded and plain, or refused
    // before any request.
    check_id("decentroTxnId", &cb.decentro_txn_id)?;
    if let Some(r) = &cb.reference_id {
        check_id("referenceId", r)?;
    }
    for (field, value) in [
        ("payerName", &cb.payer.payer_name),
        ("payerVpa", &cb.payer.payer_vpa),
        ("payerAccountNumber", &cb.payer.payer_account_number),
        ("payerIfsc", &cb.payer.payer_ifsc),
        ("bankReferenceNumber", &cb.payer.bank_reference_number),
    ] {
        if let Some(v) = value {
            check_text(field, v)?;
        }
    }
    if cb.payer.transaction_status != Some(TransactionStatus::Success) {
        return Err(WebhookError::MalformedBody(format!(
            "callbacks come only for SUCCESS, got {:?}",
            cb.payer.transaction_status
        )));
    }
    let signal = signal_for_status(&cb.payer, None).ok_or_else(|| {
        WebhookError::MalformedBody("callback without a transaction status".into())
    })?;
    Ok(Notification {
        // One success per transaction: the id dedups redelivered callbacks.
        event: IntentEvent::new(signal, Cause::Callback)
            .with_event_id(format!("callback:{}:SUCCESS", cb.decentro_txn_id))
            .with_provider_ref(ProviderRef::Decentro {
                txn_id: cb.decentro_txn_id,
            }),
        our_reference: cb.reference_id,
        proof: Proof::Claim,
    })
}

pub mod adapter;
pub mod client;

#[cfg(test)]
mod tests;
