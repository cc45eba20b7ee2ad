//! The engine end to end against both simulators: creates, webhooks and callbacks over real
//! HTTP into `Engine::handle_webhook`, expiry, late arrival, reordering, a lost create
//! response, and a forged callback.

#[path = "../common/mod.rs"]
mod common;
mod world;

mod deposits;
mod maintenance;
mod verifications;
