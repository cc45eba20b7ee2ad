//! Maintenance: what runs on a timer rather than on a request.
//!
//! - Recovery resumes intents left in `created` (a crash between recording and the provider's
//!   answer, or a transient failure), or expires those the provider can no longer take.
//! - Expiry moves `created`/`pending` intents past their deadline to `expired`, walking an
//!   index of deadlines. An adapter that never announces failures (Decentro) gets one look-up
//!   first; if that fails, the intent still expires and a re-check is parked.
//! - Parked signals are applied or confirmed once their intent is known, one look-up per
//!   intent per pass, and forgotten after their time to live.
//! - Reconciliation runs each account's sweep (see the adapters).

use std::collections::BTreeMap;

use super::deliver::{apply_signed_parked, find_intent};
use super::{Engine, EngineError};
use crate::error::CoreError;
use crate::intent::Intent;
use crate::ledger::ApplyOutcome;
use crate::lifecycle::{Cause, IntentEvent, IntentStatus, Signal};
use crate::provider::{BoxFuture, Lookup, Proof, ReconcileSink, Recovery, SweepStats};
use crate::store::{ListFilter, ParkedEvent};
use crate::types::{AccountName, IntentId, Provider, Timestamp};

/// What one reconciliation pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Missed webhooks asked to be sent again.
    pub replayed: usize,
    /// Local intents settled from the provider's records.
    pub settled: usize,
    /// Provider calls made.
    pub calls: usize,
    /// Accounts whose pass failed, with why; the others went on.
    pub errors: Vec<String>,
}

/// What one maintenance pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Intents resumed out of `created` (or expired there).
    pub recovered: usize,
    /// Intents settled by the expiry sweep.
    pub expired: usize,
    /// Parked signals applied, or claims the provider answered for good.
    pub parked_settled: usize,
    /// Parked signals forgotten after their time to live.
    pub parked_pruned: usize,
    /// The reconciliation pass.
    pub reconcile: ReconcileReport,
    /// Sweeps that failed, with why; the others still ran.
    pub errors: Vec<String>,
}

impl MaintenanceReport {
    /// Whether the pass changed anything.
    pub fn changed_anything(&self) -> bool {
        self.recovered + self.expired + self.parked_settled + self.reconcile.settled > 0
    }
}

/// The intents still open at the provider, which a sweep must cover.
const OPEN_AT_PROVIDER: [IntentStatus; 5] = [
    IntentStatus::Pending,
    IntentStatus::PayerConfirmed,
    IntentStatus::Expired,
    IntentStatus::LateArrival,
    IntentStatus::Canceled,
];

/// One account's view of the engine, for its adapter's sweep. Every method keeps to the
/// account.
struct Sink<'a> {
    engine: &'a Engine,
    provider: Provider,
    account: AccountName,
}

impl ReconcileSink for Sink<'_> {
    fn now(&self) -> Timestamp {
        self.engine.inner.clock.now()
    }

    fn oldest_open(&self) -> BoxFuture<'_, Result<Option<Timestamp>, CoreError>> {
        let filter = ListFilter {
            statuses: OPEN_AT_PROVIDER.to_vec(),
            provider: Some(self.provider),
            account: Some(self.account.clone()),
            ..Default::default()
        };
        Box::pin(core_of(
            self.engine.blocking(move |l| l.oldest_created(&filter)),
        ))
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

impl Engine {
    /// Expires what is past its deadline; returns how many intents it settled. An adapter that
    /// never announces failures gets its look-up first; if it fails, the intent still expires
    /// and a re-check is parked for the next passes (a late success still settles it).
    pub async fn expire_due(&self) -> Result<usize, EngineError> {
        let batch = self.inner.settings.sweep_batch;
        let due = self.blocking(move |l| l.due_for_expiry(batch)).await?;
        let mut settled = 0;
        for intent in due {
            let id = intent.id;
            let mut event = IntentEvent::new(Signal::Expired, Cause::Timer);
            let mut recheck = false;
            if let Ok(adapter) = self.adapter(intent.provider, &intent.account)
                && adapter.looks_up_at_expiry()
            {
                match adapter.look_up(&intent, None).await {
                    Ok(Lookup::Fact(fact)) => event = fact,
                    Ok(Lookup::Open | Lookup::Mismatch(_)) => {}
                    Ok(Lookup::Unproven(_)) | Err(_) => recheck = true,
                }
            }
            if recheck {
                self.park_recheck(&intent).await?;
            }
            let outcome = self.blocking(move |l| l.apply(id, event)).await?;
            if matches!(outcome, ApplyOutcome::Applied { .. }) {
                settled += 1;
            }
        }
        self.wrote();
        Ok(settled)
    }

    /// Keeps a re-check of `intent` (our own, not a claim from outside) for maintenance.
    async fn park_recheck(&self, intent: &Intent) -> Result<(), EngineError> {
        let Some(r) = intent.provider_ref.clone() else {
            return Ok(());
        };
        let row = ParkedEvent {
            id: 0,
            provider: intent.provider,
            account: Some(intent.account.clone()),
            lookup_key: r.lookup_key().to_string(),
            intent_id: Some(intent.id),
            proof: Proof::Claim,
            received_at: self.inner.clock.now(),
            event: IntentEvent::new(Signal::Expired, Cause::Timer).with_provider_ref(r),
        };
        // Our own re-checks are bounded by the expiry batch, not by what a flood left: they
        // are not subject to the account's cap.
        self.blocking(move |l| l.park(&row, usize::MAX)).await?;
        Ok(())
    }

    /// Resumes intents left in `created`, or expires those their provider can no longer take.
    /// Returns how many left `created`.
    pub async fn recover_created(&self) -> Result<usize, EngineError> {
        let s = &self.inner.settings;
        let (age, batch) = (s.recover_after_ms, s.sweep_batch);
        let stuck = self
            .blocking(move |l| l.stuck_in_created(age, batch))
            .await?;
        let mut resumed = 0;
        for intent in stuck {
            let Ok(adapter) = self.adapter(intent.provider, &intent.account).cloned() else {
                continue;
            };
            let id = intent.id;
            match adapter.recovery(&intent, self.inner.clock.now()) {
                Recovery::Expire => {
                    let ev = IntentEvent::new(Signal::Expired, Cause::Timer);
                    if let ApplyOutcome::Applied { .. } =
                        self.blocking(move |l| l.apply(id, ev)).await?
                    {
                        resumed += 1;
                    }
                }
                Recovery::Create => match self.drive_create(&adapter, intent).await {
                    Ok(i) if i.status != IntentStatus::Created => resumed += 1,
                    Ok(_)
                    | Err(EngineError::RetryWithSameKey { .. } | EngineError::Provider { .. }) => {}
                    Err(e) => return Err(e),
                },
            }
        }
        self.wrote();
        Ok(resumed)
    }

    /// Applies parked signals whose intent is known now, and asks the provider about parked
    /// claims: one look-up per intent per pass, whatever the number of claims naming it. A
    /// signal kept by another account than its intent's is never applied; it ages out.
    pub async fn settle_parked_signals(&self) -> Result<usize, EngineError> {
        let batch = self.inner.settings.sweep_batch.max(1);
        // Which intents have something parked: the whole table, a page at a time (it is
        // bounded by the per-account cap), grouped so that each intent is handled once.
        let mut after = 0;
        let mut intents: BTreeMap<IntentId, Intent> = BTreeMap::new();
        loop {
            let rows = self.blocking(move |l| l.parked_after(after, batch)).await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.id;
            let found = self
                .blocking(move |l| {
                    let mut out = Vec::new();
                    for row in rows {
                        let intent = match row.intent_id {
                            Some(id) => match l.get(id) {
                                Ok(i) => Some(i),
                                Err(CoreError::IntentNotFound(_)) => None,
                                Err(e) => return Err(e),
                            },
                            None => find_intent(l, row.provider, &row.lookup_key, None)?,
                        };
                        // A signal kept by another account than its intent's is never
                        // applied; it ages out.
                        if let Some(i) = intent
                            && row.account.as_ref().is_none_or(|a| *a == i.account)
                        {
                            out.push(i);
                        }
                    }
                    Ok(out)
                })
                .await?;
            for i in found {
                intents.entry(i.id).or_insert(i);
            }
        }
        let mut settled = 0;
        for intent in intents.into_values() {
            let Ok(adapter) = self.adapter(intent.provider, &intent.account).cloned() else {
                continue;
            };
            let (i, claims) = self
                .blocking(move |l| {
                    let claims = apply_signed_parked(l, &intent)?;
                    Ok((l.get(intent.id)?, claims))
                })
                .await?;
            if claims.is_empty() || self.settle_parked(&adapter, &i, claims).await? {
                settled += 1;
            }
        }
        self.wrote();
        Ok(settled)
    }

    /// Reconciliation: each account's sweep, as its adapter defines it, calls spaced per
    /// account. A failing account does not stop the others; its error is in the report.
    pub async fn reconcile(&self) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        for adapter in self.adapters() {
            let sink = Sink {
                engine: self,
                provider: adapter.provider(),
                account: adapter.account().clone(),
            };
            let mut stats = SweepStats::default();
            let result = adapter.reconcile(&sink, &mut stats).await;
            report.replayed += stats.replayed;
            report.settled += stats.settled;
            report.calls += stats.calls;
            if let Err(e) = result {
                report
                    .errors
                    .push(format!("{}/{}: {e}", adapter.provider(), adapter.account()));
            }
        }
        self.wrote();
        report
    }

    /// One maintenance pass: recovery, expiry, parked signals, reconciliation. A failing
    /// sweep does not stop the others; its error is in the report.
    pub async fn maintain(&self) -> MaintenanceReport {
        let mut report = MaintenanceReport::default();
        match self.recover_created().await {
            Ok(n) => report.recovered = n,
            Err(e) => report.errors.push(format!("recovery: {e}")),
        }
        match self.expire_due().await {
            Ok(n) => report.expired = n,
            Err(e) => report.errors.push(format!("expiry: {e}")),
        }
        match self.settle_parked_signals().await {
            Ok(n) => report.parked_settled = n,
            Err(e) => report.errors.push(format!("parked signals: {e}")),
        }
        let ttl = self.inner.settings.parked_ttl_ms;
        match self.blocking(move |l| l.prune_parked(ttl)).await {
            Ok(n) => report.parked_pruned = n,
            Err(e) => report.errors.push(format!("pruning parked signals: {e}")),
        }
        report.reconcile = self.reconcile().await;
        report
    }

    /// Runs [`Engine::maintain`] at once (crash recovery on start) and then every `every`,
    /// giving each report to `on_report`, until `stop` completes. A pass in progress finishes
    /// first, so nothing is left half-applied.
    pub async fn run_maintenance(
        &self,
        every: std::time::Duration,
        stop: impl std::future::Future<Output = ()>,
        on_report: impl Fn(MaintenanceReport),
    ) {
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = &mut stop => return,
                _ = ticks.tick() => on_report(self.maintain().await),
            }
        }
    }
}
