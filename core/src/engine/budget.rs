//! Each provider account's call budget, kept in the store so that every instance and every
//! C ABI handle on it shares one: a GCRA rate slot per account ([`Store::take_slot`]) that
//! allows `provider_call_budget` calls per `provider_call_period_ms`.
//!
//! Foreground calls (creates, a refresh's read) take a slot with a tolerance of one whole
//! period: they never wait and are never refused by us, they only move the account's slot
//! ahead. Sweeps take it with no tolerance and sleep until it is free: they get what
//! foreground calls leave. The budget's time is the system clock, whatever the engine's:
//! a provider counts its rate limit in real time.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::provider::BoxFuture;
use crate::provider::pace::{CallBudget, CallKind};
use crate::store::Store;
use crate::types::{AccountName, Provider};

/// One account's budget over the store.
pub(super) struct StoreBudget {
    store: Arc<dyn Store>,
    key: String,
    /// The period divided by the budget: the rate's interval between two calls.
    interval_ms: i64,
    /// How far ahead of the rate foreground calls may run: one period.
    ahead_ms: i64,
}

impl std::fmt::Debug for StoreBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBudget")
            .field("key", &self.key)
            .field("interval_ms", &self.interval_ms)
            .finish_non_exhaustive()
    }
}

impl StoreBudget {
    /// `calls` per `period_ms` for one account. A budget of more than one call a millisecond
    /// is no budget.
    pub(super) fn new(
        store: Arc<dyn Store>,
        provider: Provider,
        account: &AccountName,
        calls: u32,
        period_ms: u64,
    ) -> Self {
        let period = i64::try_from(period_ms).unwrap_or(i64::MAX);
        StoreBudget {
            store,
            key: format!("calls:{provider}:{account}"),
            interval_ms: period / i64::from(calls.max(1)),
            ahead_ms: period,
        }
    }

    /// Takes a slot with `tolerance_ms`: `Ok(Err(wait_ms))` when it is not free.
    async fn slot(&self, tolerance_ms: i64) -> Result<Result<(), i64>, String> {
        let (store, key, interval) = (self.store.clone(), self.key.clone(), self.interval_ms);
        tokio::task::spawn_blocking(move || {
            store.take_slot(&key, SystemClock.now(), interval, tolerance_ms)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
}

impl CallBudget for StoreBudget {
    fn take(&self, kind: CallKind) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.interval_ms <= 0 {
                return;
            }
            match kind {
                // Whatever the answer: a foreground call goes now. A slot refused (the budget
                // is a whole period behind) or a store failure only means it is not counted.
                CallKind::Foreground => {
                    let _ = self.slot(self.ahead_ms).await;
                }
                CallKind::Sweep => loop {
                    match self.slot(0).await {
                        Ok(Ok(())) => return,
                        Ok(Err(wait_ms)) => {
                            let wait = u64::try_from(wait_ms).unwrap_or(1).max(1);
                            tokio::time::sleep(Duration::from_millis(wait)).await;
                        }
                        // The store cannot say: keep to the budget's rate in this process
                        // rather than stop the sweep (its errors surface on its own calls).
                        Err(_) => {
                            let wait = u64::try_from(self.interval_ms).unwrap_or(1);
                            tokio::time::sleep(Duration::from_millis(wait)).await;
                            return;
                        }
                    }
                },
            }
        })
    }
}
