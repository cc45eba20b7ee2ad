//! The intent: one payment or verification, from the caller's request to the provider's outcome.
//!
//! An [`Intent`] read from the store is a snapshot. Its status only changes through
//! [`crate::Ledger::apply`], which runs the transition table in [`crate::lifecycle`] and commits
//! the new snapshot, its history row and its outbox event together.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::error::CoreError;
use crate::status::IntentStatus;
use crate::types::{
    AccountName, Currency, IdempotencyKey, IntentId, IntentKind, MinorUnits, PartnerReference,
    Provider, Timestamp, UserId, limits,
};

/// The penny a UPI reverse penny drop pulls: INR 1.00, refunded by Decentro within two working
/// days. Recorded as the intent's amount so that every intent has one.
pub const PENNY_PULL_AMOUNT: MinorUnits = MinorUnits::from_const(100);

/// Free-form string pairs the caller attaches to an intent and gets back on every event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// Validates entry count and sizes (limits in [`crate::types::limits`]).
    pub fn new(map: BTreeMap<String, String>) -> Result<Self, CoreError> {
        if map.len() > limits::METADATA_ENTRIES_MAX {
            return Err(CoreError::invalid(
                "metadata",
                format!("at most {} entries", limits::METADATA_ENTRIES_MAX),
            ));
        }
        for (k, v) in &map {
            if k.is_empty() || k.chars().count() > limits::METADATA_KEY_MAX {
                return Err(CoreError::invalid(
                    "metadata",
                    format!("keys must be 1 to {} characters", limits::METADATA_KEY_MAX),
                ));
            }
            if v.chars().count() > limits::METADATA_VALUE_MAX {
                return Err(CoreError::invalid(
                    "metadata",
                    format!(
                        "values must be at most {} characters",
                        limits::METADATA_VALUE_MAX
                    ),
                ));
            }
        }
        Ok(Self(map))
    }

    /// The entries, sorted by key.
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Metadata::new(BTreeMap::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A deposit at a hosted-deposit provider (Pientegra).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositRequest {
    /// The configured provider account.
    pub account: AccountName,
    /// What the payer is asked to transfer.
    pub amount: MinorUnits,
    /// ISO 4217 code.
    pub currency: Currency,
    /// The partner's reference (order or deposit id).
    pub reference: PartnerReference,
    /// The partner's user id (Pientegra `externalUserId`).
    pub user_id: UserId,
    /// A display label for the user (Pientegra `externalUserLabel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_label: Option<String>,
    /// Caller metadata.
    #[serde(default, skip_serializing_if = "is_empty_metadata")]
    pub metadata: Metadata,
}

/// A bank-account verification by UPI reverse penny drop (Decentro).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountVerificationRequest {
    /// The configured provider account.
    pub account: AccountName,
    /// The partner's reference.
    pub reference: PartnerReference,
    /// The partner's user id.
    pub user_id: UserId,
    /// Shown to the payer in their UPI app (Decentro `purpose_message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_message: Option<String>,
    /// Ask for a QR code.
    #[serde(default)]
    pub generate_qr: bool,
    /// Ask for UPI app deep links.
    #[serde(default)]
    pub generate_uri: bool,
    /// Put the platform's logo in the QR code.
    #[serde(default)]
    pub qr_with_logo: bool,
    /// Caller metadata.
    #[serde(default, skip_serializing_if = "is_empty_metadata")]
    pub metadata: Metadata,
}

fn is_empty_metadata(m: &Metadata) -> bool {
    m.0.is_empty()
}

/// What the caller asked for. Stored with the intent as the request payload, and fingerprinted
/// so that a reused idempotency key with different parameters is caught.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IntentRequest {
    /// A Pientegra hosted deposit.
    Deposit(DepositRequest),
    /// A Decentro UPI penny-pull verification.
    AccountVerification(AccountVerificationRequest),
}

impl IntentRequest {
    /// Which provider serves this request.
    pub fn provider(&self) -> Provider {
        match self {
            IntentRequest::Deposit(_) => Provider::Pientegra,
            IntentRequest::AccountVerification(_) => Provider::Decentro,
        }
    }

    /// The configured account.
    pub fn account(&self) -> &AccountName {
        match self {
            IntentRequest::Deposit(r) => &r.account,
            IntentRequest::AccountVerification(r) => &r.account,
        }
    }

    /// A canonical fingerprint of the parameters: SHA-256 over the request's JSON, whose field
    /// order is fixed by the struct and whose metadata is sorted. Optional fields are omitted
    /// when unset, so that adding a field later does not change existing fingerprints.
    pub fn fingerprint(&self) -> Result<String, CoreError> {
        // These types always serialize; an error here is a bug, and must not collapse distinct
        // requests onto one fingerprint.
        let bytes = serde_json::to_vec(self)
            .map_err(|e| CoreError::Internal(format!("fingerprinting a request: {e}")))?;
        Ok(hex::encode(Sha256::digest(&bytes)))
    }
}

/// The provider's own references to the intent, learned from the create response or from a
/// webhook (whichever comes first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum ProviderRef {
    /// Pientegra's ids.
    Pientegra {
        /// `intentId` (UUID).
        intent_id: String,
        /// `referenceNo`, e.g. `D-2026-0000123`, for support.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference_no: Option<String>,
    },
    /// Decentro's id.
    Decentro {
        /// `decentroTxnId`.
        txn_id: String,
    },
}

impl ProviderRef {
    /// The id webhooks and status calls use to find the intent; unique per provider.
    pub fn lookup_key(&self) -> &str {
        match self {
            ProviderRef::Pientegra { intent_id, .. } => intent_id,
            ProviderRef::Decentro { txn_id } => txn_id,
        }
    }

    /// The provider these references belong to.
    pub fn provider(&self) -> Provider {
        match self {
            ProviderRef::Pientegra { .. } => Provider::Pientegra,
            ProviderRef::Decentro { .. } => Provider::Decentro,
        }
    }
}

/// What the payer is handed to pay or verify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PayerHandoff {
    /// A signed, one-time, time-limited hosted page (Pientegra `depositUrl`).
    HostedPage {
        /// The URL to redirect the payer to.
        url: String,
    },
    /// A UPI intent (Decentro): a short link, and optionally a QR and app deep links.
    Upi {
        /// `validationShortLink`.
        short_link: String,
        /// `encodedDynamicQrCode`, when asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        qr_code: Option<String>,
        /// `gpayUri`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gpay_uri: Option<String>,
        /// `phonepeUri`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phonepe_uri: Option<String>,
        /// `paytmUri`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        paytm_uri: Option<String>,
    },
}

/// The bank account a successful verification proved, as the provider reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedPayer {
    /// Account holder's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Masked account number, as the provider masks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked_account_number: Option<String>,
    /// IFSC of the account's branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifsc: Option<String>,
    /// The payer's UPI address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpa: Option<String>,
    /// The bank's reference for the penny transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_reference: Option<String>,
}

/// One payment or verification intent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Our id (UUIDv7, sortable by creation).
    pub id: IntentId,
    /// The provider that serves it.
    pub provider: Provider,
    /// Deposit or account verification.
    pub kind: IntentKind,
    /// The configured provider account.
    pub account: AccountName,
    /// The requested amount.
    pub amount: MinorUnits,
    /// ISO 4217 code.
    pub currency: Currency,
    /// The partner's reference.
    pub reference: PartnerReference,
    /// The partner's user id.
    pub user_id: UserId,
    /// The provider's references, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<ProviderRef>,
    /// What the payer is handed, once the provider issued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<PayerHandoff>,
    /// When the hand-off stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Where the intent is in its lifecycle.
    pub status: IntentStatus,
    /// Why it was rejected, failed or canceled, in the provider's words where it gave some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the provider approved; may differ from `amount`. Credit this, never `amount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_amount: Option<MinorUnits>,
    /// For verifications: the account the payer proved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_payer: Option<VerifiedPayer>,
    /// Caller metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// The last transient failure talking to the provider, while the intent waits in
    /// `created` for a retry or recovery (e.g. `PROVIDER_UNAVAILABLE: timed out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The caller's idempotency key for the create.
    pub idempotency_key: IdempotencyKey,
    /// The key we send the provider so that its create is idempotent too (Pientegra's
    /// `Idempotency-Key`, Decentro's `reference_id`); generated once, stored before any call.
    pub provider_key: String,
    /// The caller's request, as received.
    pub request: IntentRequest,
    /// When we recorded it.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Incremented by every applied transition; the store's optimistic-concurrency guard.
    pub version: u64,
    /// Until when reconciliation sweeps still cover it ([`crate::lifecycle::reconcile_until`]);
    /// `None` once the provider has answered for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_until: Option<Timestamp>,
    /// When the provider's hand-off was applied: close to when the provider created its side
    /// (which recovery after an outage may do long after `created_at`). Sweeps look there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_off_at: Option<Timestamp>,
}

impl Intent {
    /// A new intent in `Created`, before any provider call.
    pub fn new(
        request: IntentRequest,
        idempotency_key: IdempotencyKey,
        now: Timestamp,
    ) -> Result<Self, CoreError> {
        let id = IntentId::generate();
        let provider = request.provider();
        let (amount, currency, reference, user_id, metadata) = match &request {
            IntentRequest::Deposit(r) => {
                if r.amount.get() == 0 {
                    return Err(CoreError::invalid("amount", "must be positive"));
                }
                (
                    r.amount,
                    r.currency,
                    r.reference.clone(),
                    r.user_id.clone(),
                    r.metadata.clone(),
                )
            }
            IntentRequest::AccountVerification(r) => (
                PENNY_PULL_AMOUNT,
                Currency::INR,
                r.reference.clone(),
                r.user_id.clone(),
                r.metadata.clone(),
            ),
        };
        Ok(Intent {
            id,
            provider,
            kind: provider.kind(),
            account: request.account().clone(),
            amount,
            currency,
            reference,
            user_id,
            provider_ref: None,
            handoff: None,
            expires_at: None,
            status: IntentStatus::Created,
            reason: None,
            approved_amount: None,
            verified_payer: None,
            metadata,
            last_error: None,
            idempotency_key,
            provider_key: provider_key_for(provider, id),
            request,
            created_at: now,
            updated_at: now,
            version: 1,
            reconcile_until: None,
            handed_off_at: None,
        })
    }
}

/// The idempotency key we send the provider, fixed once per intent. Pientegra wants a UUID v4
/// or v7 per business operation; Decentro's `reference_id` must be 5 to 50 characters and never
/// reused, so our intent id in its 32-character simple form serves.
fn provider_key_for(provider: Provider, id: IntentId) -> String {
    match provider {
        Provider::Pientegra => uuid::Uuid::now_v7().hyphenated().to_string(),
        Provider::Decentro => id.as_uuid().simple().to_string(),
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub(crate) fn deposit_request(amount: i64) -> IntentRequest {
        IntentRequest::Deposit(DepositRequest {
            account: AccountName::new("tr-main").unwrap(),
            amount: MinorUnits::new(amount).unwrap(),
            currency: Currency::TRY,
            reference: PartnerReference::new("order-42").unwrap(),
            user_id: UserId::new("user-12345").unwrap(),
            user_label: Some("Alex M.".into()),
            metadata: Metadata::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::deposit_request;
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_sensitive_to_every_parameter() {
        let a = deposit_request(100_000);
        assert_eq!(
            a.fingerprint().unwrap(),
            deposit_request(100_000).fingerprint().unwrap()
        );
        assert_ne!(
            a.fingerprint().unwrap(),
            deposit_request(100_001).fingerprint().unwrap()
        );
        let IntentRequest::Deposit(mut d) = a.clone() else {
            unreachable!()
        };
        d.metadata = Metadata::new([("cart".to_string(), "7".to_string())].into()).unwrap();
        assert_ne!(
            a.fingerprint().unwrap(),
            IntentRequest::Deposit(d).fingerprint().unwrap()
        );
    }

    #[test]
    fn fingerprint_ignores_metadata_insertion_order() {
        let mut m1 = BTreeMap::new();
        m1.insert("b".to_string(), "2".to_string());
        m1.insert("a".to_string(), "1".to_string());
        let mut m2 = BTreeMap::new();
        m2.insert("a".to_string(), "1".to_string());
        m2.insert("b".to_string(), "2".to_string());
        let with = |m| {
            let IntentRequest::Deposit(mut d) = deposit_request(500) else {
                unreachable!()
            };
            d.metadata = Metadata::new(m).unwrap();
            IntentRequest::Deposit(d).fingerprint().unwrap()
        };
        assert_eq!(with(m1), with(m2));
    }

    #[test]
    fn new_intent_starts_created_with_a_provider_key() {
        let key = IdempotencyKey::new("k-1").unwrap();
        let now = Timestamp::from_unix_millis(1_000);
        let i = Intent::new(deposit_request(100_000), key, now).unwrap();
        assert_eq!(i.status, IntentStatus::Created);
        assert_eq!(i.version, 1);
        assert_eq!(i.provider, Provider::Pientegra);
        assert!(uuid::Uuid::parse_str(&i.provider_key).is_ok());
    }

    #[test]
    fn verification_records_the_penny_and_a_decentro_sized_reference() {
        let req = IntentRequest::AccountVerification(AccountVerificationRequest {
            account: AccountName::new("in-main").unwrap(),
            reference: PartnerReference::new("kyc-9").unwrap(),
            user_id: UserId::new("u-9").unwrap(),
            purpose_message: None,
            generate_qr: true,
            generate_uri: true,
            qr_with_logo: false,
            metadata: Metadata::default(),
        });
        let i = Intent::new(
            req,
            IdempotencyKey::new("k-2").unwrap(),
            Timestamp::from_unix_millis(0),
        )
        .unwrap();
        assert_eq!((i.amount.get(), i.currency), (100, Currency::INR));
        assert!((5..=50).contains(&i.provider_key.len()));
    }

    #[test]
    fn metadata_limits_are_enforced() {
        let too_many: BTreeMap<_, _> = (0..=limits::METADATA_ENTRIES_MAX)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(Metadata::new(too_many).is_err());
        let long_value = [("k".to_string(), "v".repeat(501))].into();
        assert!(Metadata::new(long_value).is_err());
    }

    #[test]
    fn zero_amount_deposit_is_refused() {
        let err = Intent::new(
            deposit_request(0),
            IdempotencyKey::new("k").unwrap(),
            Timestamp::from_unix_millis(0),
        )
        .unwrap_err();
        assert_eq!(err.code(), "INVALID_ARGUMENT");
    }
}
