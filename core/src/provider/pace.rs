//! Spacing of one account's provider calls, so that everything intentkit sends to it stays
//! inside the provider's rate limit (Pientegra: 60 requests a minute per key).
//!
//! The budget is the account's, not a process's: every intentkitd instance and every C ABI
//! handle on one store shares it. An adapter never touches the store, so it is handed a
//! [`CallBudget`] (the engine's, kept in the store) and asks it before each call. Calls a
//! caller waits for (a create, a refresh's read) come first: they never wait, they only use
//! budget up; sweeps wait for what those leave. [`Pacer`] is one process's floor between its
//! own sweep calls, and an in-memory budget for adapters built without an engine.

use std::time::Duration;

use super::BoxFuture;

/// What a provider call is for, which decides whether it waits for budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// A call a caller is waiting for (a create, a refresh's read). It never waits for
    /// budget and is never refused by us; it uses budget up, so that sweeps slow down.
    Foreground,
    /// A background call (reconciliation, replays, recovery's search). It waits until the
    /// budget has room, after foreground calls.
    Sweep,
}

/// One provider account's call budget, shared by everything that calls that account.
pub trait CallBudget: Send + Sync + std::fmt::Debug {
    /// Takes budget for one call of `kind`: for a sweep, waits for its turn first.
    fn take(&self, kind: CallKind) -> BoxFuture<'_, ()>;
}

/// Spaces calls at least `interval` apart within one process. Shared by every task that calls
/// one account.
#[derive(Debug)]
pub struct Pacer {
    next: tokio::sync::Mutex<tokio::time::Instant>,
    interval: Duration,
}

impl Pacer {
    /// A pacer whose first call goes at once.
    pub fn new(interval: Duration) -> Self {
        Pacer {
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            interval,
        }
    }

    /// Waits for this call's turn.
    pub async fn wait(&self) {
        if self.interval.is_zero() {
            return;
        }
        let mut next = self.next.lock().await;
        tokio::time::sleep_until(*next).await;
        *next = tokio::time::Instant::now() + self.interval;
    }
}

impl CallBudget for Pacer {
    /// In memory, for one process: sweeps are spaced by the interval; foreground calls go at
    /// once and take nothing.
    fn take(&self, kind: CallKind) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if kind == CallKind::Sweep {
                self.wait().await;
            }
        })
    }
}
