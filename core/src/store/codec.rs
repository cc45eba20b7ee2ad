//! How both SQL stores turn domain values into columns and back: integers, the JSON snapshot,
//! enum columns, and the derived columns an intent row keeps for its indexes. One place, so
//! that the two backends cannot drift apart in what they store.

use std::str::FromStr;

use crate::error::StoreError;
use crate::intent::Intent;

/// A counter as a 64-bit signed column.
pub(super) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Backend(format!("{v} exceeds a 64-bit signed integer column")))
}

/// A counter read back; a negative one is corruption.
pub(super) fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative counter {v}")))
}

/// A value as its JSON text.
pub(super) fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encoding: {e}")))
}

/// An intent's snapshot from its JSON text.
pub(super) fn decode_intent(body: &str) -> Result<Intent, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("intent body: {e}")))
}

/// An enum (or id) column.
pub(super) fn parse_col<T: FromStr>(what: &str, s: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown {what} {s:?}")))
}

/// A `LIMIT` parameter.
pub(super) fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The provider's id for the intent, the column the unique index maps back to ours.
pub(super) fn provider_ref_key(intent: &Intent) -> Option<&str> {
    intent.provider_ref.as_ref().map(|r| r.lookup_key())
}

/// Where a sweep's window for `intent` goes: when the provider's side was created (the
/// hand-off), else when the intent was.
pub(super) fn reconcile_at(intent: &Intent) -> i64 {
    intent
        .handed_off_at
        .unwrap_or(intent.created_at)
        .unix_millis()
}
