//! Cross-language end-to-end tests for intentkit: one server, clients in several languages.
//!
//! Nothing lives here: each cross-process test sits beside what it exercises, where its
//! binaries and fixtures are at hand:
//! `sandbox/tests/crash.rs` (the engine killed with SIGKILL and restarted),
//! `grpc-server/tests/sandbox_process.rs` (`intentkitd --sandbox` as its own process),
//! `grpc-server/tests/two_instances.rs` (two intentkitd processes on one PostgreSQL, one of
//! them SIGKILLed mid-load), `bindings/go` and `bindings/java` (the gRPC clients against the
//! real intentkitd), and
//! `bindings/` (the C ABI from C and from forked PHP processes, run by `scripts/test.sh`).
