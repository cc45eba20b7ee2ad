//! Offline simulators of the providers intentkit integrates with, as real HTTP servers on
//! loopback: for intentkit's own tests, its sandbox mode, and a partner's staging.
//!
//! - [`pientegra::Simulator`]: hosted deposits, idempotent creates, lists and events, the
//!   hosted page, and signed webhooks with controllable delivery.
//! - [`decentro::Simulator`]: UPI penny-pull links, every response key, status and callbacks.
//!
//! Both take a [`intentkit_core::Clock`], so tests move time instead of sleeping, and both
//! inject faults ([`faults::Faults`]) through `POST /_control/faults`.
// Handlers return `Result<_, Response>` to answer early with the provider's error shape;
// boxing every error response would only obscure that.
#![allow(clippy::result_large_err)]

pub mod decentro;
pub mod faults;
pub mod pientegra;

/// Serves `app` on `listener` until `stop` is notified.
fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stop: std::sync::Arc<tokio::sync::Notify>,
) {
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.notified().await })
            .await;
    });
}
