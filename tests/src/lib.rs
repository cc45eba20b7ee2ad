//! Cross-process and cross-language end-to-end tests for intentkit.
//!
//! Empty until the façades exist (gRPC server, C ABI); core's own cross-process tests live in
//! `core/tests/`.
