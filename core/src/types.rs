//! Value types that name the domain. Each is parsed once, at the edge, and carries its
//! invariant inward: a `MinorUnits` is never a float, a `Currency` is always three upper-case
//! letters, an `IdempotencyKey` always fits the column it is stored in.
//!
//! This is the bottom of core: it imports nothing from the crate. A value that fails to parse
//! is an [`InvalidValue`], which [`crate::CoreError`] (one floor up) turns into
//! `INVALID_ARGUMENT`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// A value from outside that does not parse into its domain type. Names the field as the
/// public schema does, and says what would be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidValue {
    /// The field, as named in the public schema.
    pub field: &'static str,
    /// What is wrong with it, in words a developer can act on.
    pub reason: String,
}

impl InvalidValue {
    /// An invalid `field`, and why.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        InvalidValue {
            field,
            reason: reason.into(),
        }
    }

    /// The stable machine code, the same as [`crate::CoreError::InvalidArgument`]'s.
    pub fn code(&self) -> &'static str {
        "INVALID_ARGUMENT"
    }
}

/// Validation limits that are our own choice (the provider pages are silent on them). They
/// live here, in one place, so that they can change. Documented in `docs/decisions.md`.
pub mod limits {
    /// Longest caller idempotency key, as Stripe and most payment APIs allow.
    pub const IDEMPOTENCY_KEY_MAX: usize = 255;
    /// Longest configured account name.
    pub const ACCOUNT_MAX: usize = 64;
    /// Longest partner reference or user id.
    pub const REFERENCE_MAX: usize = 128;
    /// Most metadata entries on one intent.
    pub const METADATA_ENTRIES_MAX: usize = 50;
    /// Longest metadata key.
    pub const METADATA_KEY_MAX: usize = 40;
    /// Longest metadata value.
    pub const METADATA_VALUE_MAX: usize = 500;
}

/// Our id for an intent: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IntentId(Uuid);

impl IntentId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for IntentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for IntentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IntentId({self})")
    }
}

impl FromStr for IntentId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| InvalidValue::new("intent_id", "must be a UUID"))
    }
}

/// A provider we integrate with. Adding one means adding a variant here and one adapter module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Pientegra hosted deposits (TRY bank transfers behind a hosted page).
    Pientegra,
    /// Decentro UPI Penny Pull intents (reverse penny drop account verification).
    Decentro,
}

impl Provider {
    /// Every provider, for iteration in tests and config.
    pub const ALL: [Provider; 2] = [Provider::Pientegra, Provider::Decentro];

    /// The stable lower-case name used in storage, config and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Pientegra => "pientegra",
            Provider::Decentro => "decentro",
        }
    }

    /// The kind of intent this provider serves.
    pub fn kind(self) -> IntentKind {
        match self {
            Provider::Pientegra => IntentKind::Deposit,
            Provider::Decentro => IntentKind::AccountVerification,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| InvalidValue::new("provider", "must be one of: pientegra, decentro"))
    }
}

/// What an intent is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentKind {
    /// Money in: the payer transfers funds that the host credits to the user.
    Deposit,
    /// A one-rupee reverse penny drop that proves the payer owns a bank account.
    AccountVerification,
}

impl IntentKind {
    /// The stable lower-case name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            IntentKind::Deposit => "deposit",
            IntentKind::AccountVerification => "account_verification",
        }
    }
}

impl FromStr for IntentKind {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "deposit" => Ok(IntentKind::Deposit),
            "account_verification" => Ok(IntentKind::AccountVerification),
            _ => Err(InvalidValue::new(
                "kind",
                "must be deposit or account_verification",
            )),
        }
    }
}

/// An amount in the currency's minor units (kuruş, paise). Never a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MinorUnits(i64);

impl MinorUnits {
    /// A non-negative amount; negative amounts have no meaning for an intent.
    pub fn new(value: i64) -> Result<Self, InvalidValue> {
        if value < 0 {
            return Err(InvalidValue::new("amount", "must not be negative"));
        }
        Ok(Self(value))
    }

    /// For constants known to be non-negative.
    pub(crate) const fn from_const(value: i64) -> Self {
        assert!(value >= 0);
        Self(value)
    }

    /// The raw count of minor units.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for MinorUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An ISO 4217 alphabetic code, e.g. `TRY`, `INR`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Turkish lira, Pientegra's only active currency.
    pub const TRY: Currency = Currency(*b"TRY");
    /// Indian rupee, the currency of a UPI penny pull.
    pub const INR: Currency = Currency(*b"INR");

    /// The three-letter code.
    pub fn as_str(&self) -> &str {
        // The constructor admits only ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl FromStr for Currency {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(InvalidValue::new(
                "currency",
                "must be a three-letter upper-case ISO 4217 code",
            ));
        }
        Ok(Currency([bytes[0], bytes[1], bytes[2]]))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Defines a validated string newtype: non-empty, bounded, and free of control characters.
macro_rules! bounded_string {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidValue> {
                let value = value.into();
                let allowed: fn(char) -> bool = $allowed;
                if value.is_empty() {
                    return Err(InvalidValue::new($field, "must not be empty"));
                }
                if value.chars().count() > $max {
                    return Err(InvalidValue::new(
                        $field,
                        format!("must be at most {} characters", $max),
                    ));
                }
                if !value.chars().all(allowed) {
                    return Err(InvalidValue::new($field, "contains characters that are not allowed"));
                }
                Ok(Self(value))
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

bounded_string!(
    /// The caller's idempotency key for a create: printable ASCII without spaces.
    IdempotencyKey,
    "idempotency_key",
    limits::IDEMPOTENCY_KEY_MAX,
    |c| c.is_ascii_graphic()
);

bounded_string!(
    /// Which configured provider account an intent belongs to (platforms may have several).
    AccountName,
    "account",
    limits::ACCOUNT_MAX,
    |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
);

bounded_string!(
    /// The partner's own reference for the intent (an order or deposit id).
    PartnerReference,
    "reference",
    limits::REFERENCE_MAX,
    |c| !c.is_control()
);

bounded_string!(
    /// The partner's id for the paying user.
    UserId,
    "user_id",
    limits::REFERENCE_MAX,
    |c| !c.is_control()
);

bounded_string!(
    /// A named outbox consumer; it resumes where it last acknowledged.
    ConsumerName,
    "consumer",
    limits::ACCOUNT_MAX,
    |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
);

/// A point in time, in milliseconds since the Unix epoch (UTC). Serialized as RFC 3339 with
/// millisecond precision, which is what both providers and proto3's JSON mapping use.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// From milliseconds since the epoch.
    pub const fn from_unix_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// This time plus `ms` milliseconds (saturating).
    pub const fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Parses RFC 3339 (`2026-11-22T10:00:00.123Z`, any offset).
    pub fn parse_rfc3339(s: &str) -> Result<Self, InvalidValue> {
        let dt = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|_| InvalidValue::new("timestamp", "must be an RFC 3339 date-time"))?;
        let ms = dt.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(ms)
            .map(Self)
            .map_err(|_| InvalidValue::new("timestamp", "out of range"))
    }

    /// Formats as RFC 3339 UTC with milliseconds.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(dt) => {
                let fmt = time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
                );
                dt.format(&fmt).unwrap_or_else(|_| self.0.to_string())
            }
            Err(_) => self.0.to_string(),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trips_through_rfc3339_with_millis() {
        let t = Timestamp::from_unix_millis(1_795_000_000_123);
        let s = t.to_rfc3339();
        assert!(s.ends_with(".123Z"), "{s}");
        assert_eq!(Timestamp::parse_rfc3339(&s).unwrap(), t);
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-22T13:00:00.500+03:00").unwrap(),
            Timestamp::parse_rfc3339("2026-11-22T10:00:00.500Z").unwrap()
        );
    }

    #[test]
    fn currency_accepts_only_three_upper_case_letters() {
        assert_eq!("TRY".parse::<Currency>().unwrap(), Currency::TRY);
        for bad in ["try", "TR", "TRYY", "T1Y", ""] {
            let err = bad.parse::<Currency>().unwrap_err();
            assert_eq!(err.code(), "INVALID_ARGUMENT", "{bad}");
        }
    }

    #[test]
    fn minor_units_refuse_negative_amounts() {
        assert!(MinorUnits::new(-1).is_err());
        assert_eq!(MinorUnits::new(0).unwrap().get(), 0);
    }

    #[test]
    fn bounded_strings_enforce_their_limits() {
        assert!(IdempotencyKey::new("k".repeat(255)).is_ok());
        assert!(IdempotencyKey::new("k".repeat(256)).is_err());
        assert!(IdempotencyKey::new("has space").is_err());
        assert!(IdempotencyKey::new("").is_err());
        assert!(AccountName::new("tr-main_1.a").is_ok());
        assert!(AccountName::new("tr/main").is_err());
        assert!(PartnerReference::new("order #42 — ü").is_ok());
        assert!(PartnerReference::new("line\nbreak").is_err());
        let err = serde_json::from_str::<UserId>("\"\"").unwrap_err();
        assert!(err.to_string().contains("user_id"), "{err}");
    }

    #[test]
    fn provider_names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>().unwrap(), p);
        }
        assert_eq!(
            "paypal".parse::<Provider>().unwrap_err().code(),
            "INVALID_ARGUMENT"
        );
    }
}
