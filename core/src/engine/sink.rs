//! One account's view of the engine, as its adapter's reconciliation sweep sees it: the open
//! intents it must cover, applying what the provider's list says (to that account's intents
//! only), its cursors in the store, and its time budget.

use super::{Engine, EngineError};
use crate::error::CoreError;
use crate::ledger::ApplyOutcome;
use crate::lifecycle::IntentEvent;
use crate::provider::{BoxFuture, ReconcileSink};
use crate::types::{AccountName, Provider, Timestamp};

/// One account's view of the engine, for its adapter's sweep. Every method keeps to the
/// account.
pub(super) struct Sink<'a> {
    pub(super) engine: &'a Engine,
    pub(super) provider: Provider,
    pub(super) account: AccountName,
    pub(super) deadline: std::time::Instant,
}

impl ReconcileSink for Sink<'_> {
    fn now(&self) -> Timestamp {
        self.engine.inner.clock.now()
    }

    fn open_created(&self) -> BoxFuture<'_, Result<Vec<Timestamp>, CoreError>> {
        let (provider, account) = (self.provider, self.account.clone());
        let s = &self.engine.inner.settings;
        let (min_age, limit) = (s.reconcile_min_age_ms, s.reconcile_open_limit);
        Box::pin(core_of(self.engine.blocking(move |l| {
            l.reconcile_open(provider, &account, min_age, limit)
        })))
    }

    fn out_of_time(&self) -> bool {
        std::time::Instant::now() >= self.deadline
    }

    fn apply(&self, event: IntentEvent) -> BoxFuture<'_, Result<bool, CoreError>> {
        let (provider, account) = (self.provider, self.account.clone());
        Box::pin(core_of(self.engine.blocking(move |l| {
            let Some(key) = event
                .provider_ref
                .as_ref()
                .map(|r| r.lookup_key().to_string())
            else {
                return Ok(false);
            };
            match l.find_by_provider_ref(provider, &key)? {
                Some(i) if i.account == account && !i.status.is_final() => Ok(matches!(
                    l.apply(i.id, event)?,
                    ApplyOutcome::Applied { .. }
                )),
                _ => Ok(false),
            }
        })))
    }

    fn cursor<'b>(&'b self, name: &'b str) -> BoxFuture<'b, Result<Option<String>, CoreError>> {
        let (provider, account, name) = (self.provider, self.account.clone(), name.to_string());
        Box::pin(core_of(
            self.engine
                .blocking(move |l| l.sweep_cursor(provider, &account, &name)),
        ))
    }

    fn set_cursor<'b>(
        &'b self,
        name: &'b str,
        value: String,
    ) -> BoxFuture<'b, Result<(), CoreError>> {
        let (provider, account, name) = (self.provider, self.account.clone(), name.to_string());
        Box::pin(core_of(self.engine.blocking(move |l| {
            l.set_sweep_cursor(provider, &account, &name, &value)
        })))
    }
}

/// An engine result as the core error a sink answers with.
async fn core_of<T>(
    f: impl std::future::Future<Output = Result<T, EngineError>>,
) -> Result<T, CoreError> {
    f.await.map_err(|e| match e {
        EngineError::Core(c) => c,
        other => CoreError::Internal(other.to_string()),
    })
}
