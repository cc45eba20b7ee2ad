//! Fault injection, shared by both simulators: what a flaky provider does to its clients.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use serde::{Deserialize, Serialize};

/// Faults to inject, set through `POST /_control/faults`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every API answer.
    pub latency_ms: u64,
    /// Share (0 to 1) of API calls answered `503` before doing anything.
    pub error_rate: f64,
    /// The next N creates commit, then the connection drops before the answer is complete,
    /// so the client must retry with the same key and must get the same intent.
    pub drop_after_commit: u32,
    /// How long a create stays "in flight" after it is claimed, to provoke a concurrent
    /// duplicate (`409 duplicate_idempotency_key`). A client that hangs up meanwhile leaves
    /// the intent committed and the key answered: its retry gets the same intent.
    pub create_hold_ms: u64,
    /// The next N answers carry `429` with this many seconds of `Retry-After`.
    pub rate_limit_next: u32,
    /// The `Retry-After` seconds sent with those `429`s.
    pub retry_after_secs: u64,
}

impl Faults {
    /// Sleeps the configured latency and decides whether this call fails with a `503`.
    pub async fn before_call(&self) -> bool {
        if self.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.latency_ms)).await;
        }
        self.error_rate > 0.0 && fastrand::f64() < self.error_rate
    }
}

/// A response whose headers go out and whose body then fails, so that the connection is cut
/// before the client has the answer.
pub fn dropped_connection() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection drop after commit",
        ))
    });
    Response::new(Body::from_stream(stream))
}
