//! Core's one error enum. Every variant has a stable machine code (`code()`) that reaches gRPC
//! `ErrorInfo.reason`, the C ABI's error out-parameter and every binding unchanged, and says
//! whether retrying the same call can succeed (`is_retryable()`).
//!
//! Codes are never renamed or reused; a retired code stays listed in `docs/errors.md`.
//!
//! Layering: this module sits above the value types ([`crate::types`]) and the status names
//! ([`crate::status`]) and below everything else, so it imports only those two.

use crate::status::{IntentStatus, SignalKind};
use crate::types::{IdempotencyKey, IntentId, InvalidValue};

/// What can go wrong in core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A request field failed validation; nothing was stored.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field, as named in the public schema.
        field: &'static str,
        /// What is wrong with it, in words a developer can act on.
        reason: String,
    },

    /// The idempotency key was used before with different parameters.
    #[error(
        "idempotency key {key} was already used for intent {existing} with different parameters; \
         use a new key for a new operation"
    )]
    IdempotencyConflict {
        /// The reused key.
        key: IdempotencyKey,
        /// The intent the key already names.
        existing: IntentId,
    },

    /// No intent with this id.
    #[error("intent {0} not found")]
    IntentNotFound(IntentId),

    /// A command (not a provider event) that the intent's current status does not allow,
    /// e.g. cancelling an intent the payer already paid.
    #[error("intent {id} is {from} and cannot take {signal}")]
    InvalidTransition {
        /// The intent.
        id: IntentId,
        /// Its status when the command arrived.
        from: IntentStatus,
        /// The refused command.
        signal: SignalKind,
    },

    /// Concurrent writers kept changing the intent; the caller may retry.
    #[error("intent {0} is being updated concurrently; retry")]
    Contention(IntentId),

    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// A bug in intentkit, not in the caller's input; the message says where.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<InvalidValue> for CoreError {
    fn from(e: InvalidValue) -> Self {
        CoreError::InvalidArgument {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl CoreError {
    /// Shorthand for [`CoreError::InvalidArgument`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        CoreError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::InvalidArgument { .. } => "INVALID_ARGUMENT",
            CoreError::IdempotencyConflict { .. } => "IDEMPOTENCY_CONFLICT",
            CoreError::IntentNotFound(_) => "INTENT_NOT_FOUND",
            CoreError::InvalidTransition { .. } => "INVALID_TRANSITION",
            CoreError::Contention(_) => "CONCURRENT_UPDATE",
            CoreError::Store(e) => e.code(),
            CoreError::Internal(_) => "INTERNAL",
        }
    }

    /// Whether the same call, repeated unchanged, may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            CoreError::Contention(_) => true,
            CoreError::Store(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// What can go wrong in a store. Dialect details stay inside the store; this is what leaks out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another writer held the database longer than the busy timeout.
    #[error("the store is busy (another writer held the lock past the busy timeout); retry")]
    Busy,

    /// The database was written by a newer intentkit whose schema this build does not know.
    #[error(
        "the database schema is version {found}, newer than this build supports ({supported}); \
         upgrade intentkit"
    )]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },

    /// A stored row could not be decoded: corruption or a bug, never caller input.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),

    /// An invariant the database enforces was violated (e.g. a provider reference already
    /// mapped to another intent).
    #[error("store constraint violated: {0}")]
    Constraint(String),

    /// Any other backend failure (I/O, disk full, permissions).
    #[error("store failure: {0}")]
    Backend(String),
}

impl StoreError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Busy => "STORE_BUSY",
            StoreError::SchemaTooNew { .. } => "SCHEMA_TOO_NEW",
            StoreError::Corrupt(_) => "STORE_CORRUPT",
            StoreError::Constraint(_) => "STORE_CONSTRAINT",
            StoreError::Backend(_) => "STORE_UNAVAILABLE",
        }
    }

    /// Whether the same call, repeated unchanged, may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Busy | StoreError::Backend(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::IdempotencyKey;

    fn every_error() -> Vec<CoreError> {
        let id = IntentId::generate();
        vec![
            CoreError::invalid("amount", "must be positive"),
            CoreError::IdempotencyConflict {
                key: IdempotencyKey::new("k").unwrap(),
                existing: id,
            },
            CoreError::IntentNotFound(id),
            CoreError::InvalidTransition {
                id,
                from: IntentStatus::Approved,
                signal: SignalKind::Cancel,
            },
            CoreError::Contention(id),
            StoreError::Busy.into(),
            StoreError::SchemaTooNew {
                found: 2,
                supported: 1,
            }
            .into(),
            StoreError::Corrupt("x".into()).into(),
            StoreError::Constraint("x".into()).into(),
            StoreError::Backend("x".into()).into(),
            CoreError::Internal("x".into()),
        ]
    }

    #[test]
    fn every_code_is_documented_with_its_retry_advice() {
        let doc = include_str!("../../docs/errors.md");
        for e in every_error() {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", e.code())))
                .unwrap_or_else(|| panic!("{} missing from docs/errors.md", e.code()));
            let advice = if e.is_retryable() {
                "| yes |"
            } else {
                "| no |"
            };
            assert!(row.ends_with(advice), "{}: docs say otherwise", e.code());
        }
    }

    #[test]
    fn codes_are_distinct_and_upper_snake_case() {
        let codes: Vec<_> = every_error().iter().map(CoreError::code).collect();
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), codes.len());
        assert!(
            codes
                .iter()
                .all(|c| c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'))
        );
    }
}
