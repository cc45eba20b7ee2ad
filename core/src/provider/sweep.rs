//! What a provider's reconciliation sweep is given (one account's view of the engine) and
//! reports.

use std::time::Duration;

use super::{BoxFuture, ProviderError};
use crate::error::CoreError;
use crate::lifecycle::IntentEvent;
use crate::types::Timestamp;

/// How a provider account's reconciliation sweep reads and writes what the engine holds. The
/// engine implements it for one account; every method keeps to that account.
pub trait ReconcileSink: Send + Sync {
    /// Now, on the engine's clock.
    fn now(&self) -> Timestamp;

    /// When this account's intents that the provider has not answered for good were created,
    /// oldest first (those too young for a webhook to be late are left out). A sweep derives
    /// its windows from these, so that it costs the open work, not the history.
    fn open_created(&self) -> BoxFuture<'_, Result<Vec<Timestamp>, CoreError>>;

    /// Whether this pass has used its time: a sweep that sees `true` stops at the next call,
    /// keeping its place in a cursor, and the next pass goes on from there.
    fn out_of_time(&self) -> bool;

    /// Applies the provider's record of one of this account's intents (found by the event's
    /// provider reference). `Ok(true)` when it moved an intent. An event naming no intent of
    /// ours, a settled one, or another account's changes nothing.
    fn apply(&self, event: IntentEvent) -> BoxFuture<'_, Result<bool, CoreError>>;

    /// Where the named sweep stopped last time, if it ran.
    fn cursor<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, CoreError>>;

    /// Records where the named sweep stopped.
    fn set_cursor<'a>(
        &'a self,
        name: &'a str,
        value: String,
    ) -> BoxFuture<'a, Result<(), CoreError>>;
}

/// What one account's sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Missed deliveries the provider was asked to send again.
    pub replayed: usize,
    /// Intents settled from the provider's records.
    pub settled: usize,
    /// Provider calls made.
    pub calls: usize,
    /// Time windows holding open intents.
    pub windows: usize,
    /// Windows swept in this pass.
    pub windows_swept: usize,
    /// Whether the pass ran out of time before the last window (the next goes on).
    pub cut_short: bool,
}

/// Why a sweep stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Our store failed.
    #[error(transparent)]
    Store(#[from] CoreError),
}

/// Reconciliation tuning, the same for every account. Numbers are ours; see
/// `docs/decisions.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepSettings {
    /// The least time between two sweep calls to one provider account.
    pub call_interval: Duration,
    /// How far back a sweep looks, at most.
    pub max_window_ms: i64,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            call_interval: Duration::from_millis(1_000),
            max_window_ms: 7 * 24 * 60 * 60 * 1_000,
        }
    }
}
