//! The one mapping from an engine error to what a caller sees: a status code (gRPC's numbers,
//! which are also the C ABI's), the stable reason code, the message, and whether to retry.
//! The gRPC server turns an [`ApiError`] into a `tonic::Status` with a `google.rpc.ErrorInfo`;
//! the C ABI into its status enum and error out-parameter. Neither decides a code itself.

use intentkit_core::provider::ProviderError;
use intentkit_core::{CoreError, EngineError, StoreError};

/// Status codes: gRPC's, with the same numbers, which are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Code {
    /// Success.
    Ok = 0,
    /// The call was canceled (by the caller, or by shutdown).
    Cancelled = 1,
    /// An error with no better code.
    Unknown = 2,
    /// The request is invalid; do not retry it unchanged.
    InvalidArgument = 3,
    /// The call's deadline passed.
    DeadlineExceeded = 4,
    /// No such intent, or no such account.
    NotFound = 5,
    /// The idempotency key is in use with other parameters.
    AlreadyExists = 6,
    /// Not allowed.
    PermissionDenied = 7,
    /// A rate limit or quota; retry after a while.
    ResourceExhausted = 8,
    /// The intent's state (or the configuration) does not allow this.
    FailedPrecondition = 9,
    /// A concurrent update won; retry.
    Aborted = 10,
    /// Out of range.
    OutOfRange = 11,
    /// Not implemented.
    Unimplemented = 12,
    /// A bug or an unexpected failure.
    Internal = 13,
    /// Transient: the store or the provider is unavailable. Retry (with the same key).
    Unavailable = 14,
    /// Stored data is corrupt.
    DataLoss = 15,
    /// No valid credentials.
    Unauthenticated = 16,
}

impl Code {
    /// Every code, in number order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The gRPC name, e.g. `NOT_FOUND`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// The `ErrorInfo.domain` of every intentkit error.
pub const ERROR_DOMAIN: &str = "intentkit";

/// An error as every façade reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The status code.
    pub code: Code,
    /// The stable machine code (`ErrorInfo.reason`), e.g. `IDEMPOTENCY_CONFLICT`, `error_unsanitized_values`.
    pub reason: String,
    /// For people; never contains a secret (core's errors do not carry any).
    pub message: String,
    /// Whether the same call may succeed later.
    pub retryable: bool,
    /// The intent the error concerns, when one was recorded.
    pub intent_id: Option<String>,
}

impl ApiError {
    /// An error of the façade's own (e.g. a missing token), not core's.
    pub fn new(code: Code, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            retryable: matches!(
                code,
                Code::Unavailable | Code::Aborted | Code::DeadlineExceeded
            ),
            intent_id: None,
        }
    }

    /// `ErrorInfo.metadata`: `retryable`, and `intent_id` when set.
    pub fn metadata(&self) -> Vec<(&'static str, String)> {
        let mut m = vec![("retryable", self.retryable.to_string())];
        if let Some(id) = &self.intent_id {
            m.push(("intent_id", id.clone()));
        }
        m
    }
}

fn store_code(e: &StoreError) -> Code {
    match e {
        StoreError::Busy | StoreError::Backend(_) => Code::Unavailable,
        StoreError::SchemaTooNew { .. } => Code::FailedPrecondition,
        StoreError::Corrupt(_) => Code::DataLoss,
        StoreError::Constraint(_) => Code::Internal,
        _ => Code::Internal,
    }
}

fn core_code(e: &CoreError) -> Code {
    match e {
        CoreError::InvalidArgument { .. } => Code::InvalidArgument,
        CoreError::IdempotencyConflict { .. } => Code::AlreadyExists,
        CoreError::IntentNotFound(_) => Code::NotFound,
        CoreError::InvalidTransition { .. } => Code::FailedPrecondition,
        CoreError::Contention(_) => Code::Aborted,
        CoreError::Store(s) => store_code(s),
        _ => Code::Internal,
    }
}

/// A provider's answer by its HTTP status: its validation refusals are the caller's to fix; its
/// auth refusals are our configuration's.
fn http_code(status: u16) -> Code {
    match status {
        0 | 400 | 422 => Code::InvalidArgument,
        401 | 403 => Code::FailedPrecondition,
        404 => Code::NotFound,
        409 => Code::Aborted,
        429 => Code::ResourceExhausted,
        500..=599 => Code::Unavailable,
        _ => Code::FailedPrecondition,
    }
}

fn provider_code(e: &ProviderError) -> Code {
    match e {
        ProviderError::Pientegra { status, .. } => http_code(*status),
        ProviderError::Decentro(d) => http_code(d.http_status()),
        ProviderError::Unavailable { .. } => Code::Unavailable,
        ProviderError::BadResponse { .. } => Code::Unavailable,
        _ => Code::Internal,
    }
}

impl From<&EngineError> for ApiError {
    fn from(e: &EngineError) -> Self {
        let (code, intent_id) = match e {
            // The key already names an intent (of the caller's own account): the caller may
            // fetch it by id instead of parsing the message.
            EngineError::Core(c @ CoreError::IdempotencyConflict { existing, .. }) => {
                (core_code(c), Some(*existing))
            }
            EngineError::Core(c) => (core_code(c), None),
            EngineError::Provider { source, intent } => (provider_code(source), *intent),
            // Recorded, outcome unknown: the one answer that must say "retry, same key".
            EngineError::RetryWithSameKey { intent, .. } => (Code::Unavailable, Some(*intent)),
            EngineError::UnknownAccount { .. } => (Code::NotFound, None),
            _ => (Code::Internal, None),
        };
        ApiError {
            code,
            reason: e.code().to_string(),
            message: e.to_string(),
            retryable: e.is_retryable(),
            intent_id: intent_id.map(|i| i.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError::from(&e)
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError::from(&EngineError::Core(e))
    }
}

impl From<intentkit_core::InvalidValue> for ApiError {
    fn from(e: intentkit_core::InvalidValue) -> Self {
        ApiError::from(CoreError::from(e))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.name(),
            self.reason,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;
    use intentkit_core::provider::decentro::DecentroError;
    use intentkit_core::{IntentId, Provider};

    fn api(e: EngineError) -> ApiError {
        ApiError::from(&e)
    }

    #[test]
    fn codes_keep_grpc_numbers() {
        for (i, c) in Code::ALL.into_iter().enumerate() {
            assert_eq!(c as i32, i as i32, "{c:?}");
        }
        assert_eq!(Code::Unauthenticated.name(), "UNAUTHENTICATED");
    }

    #[test]
    fn core_errors_map_to_their_codes() {
        let cases = [
            (CoreError::invalid("amount", "x"), Code::InvalidArgument),
            (
                CoreError::IntentNotFound(IntentId::generate()),
                Code::NotFound,
            ),
            (CoreError::Store(StoreError::Busy), Code::Unavailable),
            (
                CoreError::Store(StoreError::Corrupt("x".into())),
                Code::DataLoss,
            ),
            (CoreError::Internal("x".into()), Code::Internal),
        ];
        for (e, code) in cases {
            let reason = e.code().to_string();
            let a = ApiError::from(e);
            assert_eq!(a.code, code, "{reason}");
            assert_eq!(a.reason, reason);
        }
    }

    #[test]
    fn provider_errors_keep_the_providers_code() {
        let id = IntentId::generate();
        let a = api(EngineError::Provider {
            source: ProviderError::Decentro(DecentroError::Other {
                key: "E99999".into(),
                message: "odd".into(),
            }),
            intent: Some(id),
        });
        assert_eq!(a.reason, "E99999");
        assert_eq!(a.intent_id, Some(id.to_string()));

        let a = api(EngineError::Provider {
            source: ProviderError::Pientegra {
                status: 422,
                code: "amount_below_min".into(),
                message: "too small".into(),
                retry_after: None,
            },
            intent: None,
        });
        assert_eq!(
            (a.code, a.reason.as_str()),
            (Code::InvalidArgument, "amount_below_min")
        );
        assert!(!a.retryable);

        let a = api(EngineError::RetryWithSameKey {
            source: ProviderError::Unavailable {
                provider: Provider::Pientegra,
                reason: "timed out".into(),
                retry_after: None,
            },
            intent: id,
        });
        assert_eq!(a.code, Code::Unavailable);
        assert_eq!(a.reason, "PROVIDER_UNAVAILABLE");
        assert!(a.retryable);
        assert!(a.metadata().contains(&("intent_id", id.to_string())));

        let a = api(EngineError::Core(CoreError::IdempotencyConflict {
            key: intentkit_core::IdempotencyKey::new("k").unwrap(),
            existing: id,
        }));
        assert_eq!(a.reason, "IDEMPOTENCY_CONFLICT");
        assert!(a.metadata().contains(&("intent_id", id.to_string())));

        let a = api(EngineError::UnknownAccount {
            provider: Provider::Decentro,
            account: "nope".into(),
        });
        assert_eq!(
            (a.code, a.reason.as_str()),
            (Code::NotFound, "UNKNOWN_ACCOUNT")
        );
    }
}
