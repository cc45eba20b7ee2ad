//! Cross-language end-to-end tests for intentkit: one server, clients in several languages.
//!
//! Nothing lives here yet. The Go and Java clients that these tests would drive are not
//! written; until they are, the cross-process tests sit beside what they exercise:
//! `sandbox/tests/crash.rs` (the engine killed with SIGKILL and restarted),
//! `grpc-server/tests/sandbox_process.rs` (`intentkitd --sandbox` as its own process),
//! `grpc-server/tests/two_instances.rs` (two intentkitd processes on one PostgreSQL, one of
//! them SIGKILLed mid-load), `bindings/go` and `bindings/java` (the gRPC clients against the
//! real intentkitd), and
//! `bindings/` (the C ABI from C and from forked PHP processes, run by `scripts/test.sh`).
