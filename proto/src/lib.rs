//! `intentkit.v1`: the public schema, generated from `proto/intentkit/v1/*.proto`, with its
//! canonical proto3 JSON mapping, and the one place that maps it to and from core's types.
//! Both façades (the gRPC server and the C ABI) go through this crate, so a field means the
//! same thing in Go, Java, C and PHP.

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/intentkit.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/intentkit.v1.serde.rs"));
}

/// The encoded descriptor set of the schema and its imports, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/intentkit_descriptor.bin"));

pub mod convert;
pub mod ops;
pub mod status;

pub use status::{ApiError, Code};

/// A message as canonical proto3 JSON (lowerCamelCase names, enum names, 64-bit integers as
/// strings, RFC 3339 timestamps).
pub fn to_json<T: serde::Serialize>(message: &T) -> String {
    // The generated impls serialize every message; only a map with non-string keys could fail,
    // and the schema has none.
    serde_json::to_string(message)
        .unwrap_or_else(|e| format!(r#"{{"error":"serializing a message: {e}"}}"#))
}

/// A message from canonical proto3 JSON; unknown fields are refused, so a typo is an error
/// and not a silently missing value.
pub fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, ApiError> {
    serde_json::from_str(json).map_err(|e| {
        ApiError::new(
            Code::InvalidArgument,
            "INVALID_JSON",
            format!("the request is not a valid intentkit.v1 message in JSON: {e}"),
        )
    })
}

#[cfg(test)]
mod json_tests {
    use super::*;

    /// An empty page still has its list, and unset scalars their defaults, so a JSON host reads
    /// every response the same way; an unset message field stays absent.
    #[test]
    fn empty_lists_and_defaults_are_written() {
        let page = v1::ListEventsResponse {
            events: vec![],
            acked_seq: 3,
        };
        assert_eq!(to_json(&page), r#"{"events":[],"ackedSeq":"3"}"#);
        let intents = v1::ListIntentsResponse::default();
        assert_eq!(to_json(&intents), r#"{"intents":[],"nextPageToken":""}"#);
        let intent: serde_json::Value =
            serde_json::from_str(&to_json(&v1::Intent::default())).unwrap();
        assert_eq!(intent["metadata"], serde_json::json!({}));
        assert_eq!(intent["status"], "INTENT_STATUS_UNSPECIFIED");
        assert!(intent.get("handoff").is_none(), "{intent}");
    }
}
