//! Maintenance: what runs on a timer rather than on a request, one task per provider account,
//! so that a provider that hangs delays only its own account's work.
//!
//! Each account's pass runs four jobs, each within its own time budget:
//!
//! - **recovery** resumes intents left in `created` (a crash between recording and the
//!   provider's answer, or a transient failure), or settles those the provider can no longer
//!   take;
//! - **expiry** moves `created`/`pending` intents past their deadline to `expired`. An adapter
//!   that never announces failures (Decentro) gets a look-up first, a few at a time, each
//!   bounded; if it fails, the intent still expires and a re-check is parked;
//! - **parked** applies or confirms the account's parked signals, one look-up per intent;
//! - **reconcile** runs the account's sweep, which keeps its place if it runs out of time.
//!
//! A pass reports, per job, what it did and what is left (the backlog), so that metrics show a
//! stalled account. A whole-engine job prunes parked signals past their time to live and
//! settles those kept before signals carried their account.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deliver::{apply_signed_parked, find_intent};
use super::report::{Job, JobReport, MaintenanceReport, ReconcileReport};
use super::sink::Sink;
use super::{Engine, EngineError};
use crate::error::CoreError;
use crate::intent::Intent;
use crate::ledger::ApplyOutcome;
use crate::lifecycle::{Cause, IntentEvent, IntentStatus, Signal};
use crate::provider::{Adapter, Lookup, Proof, SweepStats};
use crate::store::ParkedEvent;
use crate::types::{AccountName, IntentId, Provider};

/// What a job's body returns: how much it did, and whether it stopped at its budget.
type JobResult = Result<(usize, bool), EngineError>;

/// How much longer than a job's bound its lease lasts: clocks of instances on other hosts
/// may differ by this much before two could run one job at once.
const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// How long past its deadline a job may take to stop by itself before it is cut.
const JOB_SLACK: Duration = Duration::from_secs(5);

/// `job`, cut at `bound` (reported as stopped at its budget, having done nothing counted).
async fn bounded(bound: Instant, job: impl std::future::Future<Output = JobResult>) -> JobResult {
    tokio::time::timeout_at(bound.into(), job)
        .await
        .unwrap_or(Ok((0, true)))
}

impl Engine {
    /// One pass of every account's jobs, the accounts side by side, and the whole-engine job.
    /// A failing job does not stop the others; its error is in the report.
    pub async fn maintain(&self) -> MaintenanceReport {
        let mut passes = tokio::task::JoinSet::new();
        for adapter in self.adapters() {
            let engine = self.clone();
            passes.spawn(async move { engine.maintain_account(&adapter).await });
        }
        let mut report = self.maintain_shared().await;
        while let Some(pass) = passes.join_next().await {
            match pass {
                Ok(r) => report.merge(r),
                Err(e) => report.errors.push(format!("maintenance task: {e}")),
            }
        }
        report
    }

    /// Takes the lease of one job for this pass, for `hold`: its fence and the holder name to
    /// give it back with; `None` if another instance, or another pass here (two concurrent
    /// `intentkit_run_maintenance` calls on one handle), holds it. Each pass is its own holder,
    /// so one pass giving a lease back never frees it under another that still runs.
    async fn claim(
        &self,
        name: String,
        hold: Duration,
    ) -> Result<Option<(u64, String)>, EngineError> {
        let holder = format!("{}/{}", self.inner.instance, uuid::Uuid::now_v7().simple());
        let now = self.inner.clock.now();
        let until = now.plus_millis(i64::try_from(hold.as_millis()).unwrap_or(i64::MAX));
        self.blocking(move |l| {
            Ok(l.store()
                .acquire_lease(&name, &holder, now, until)?
                .map(|fence| (fence, holder)))
        })
        .await
    }

    /// Gives a job's lease back once the job is done, so that any instance can take the next
    /// pass (a failure to do so only delays that pass until the lease runs out).
    async fn unclaim(
        &self,
        name: String,
        (fence, holder): (u64, String),
        report: &mut MaintenanceReport,
    ) {
        let what = name.clone();
        let released = self
            .blocking(move |l| {
                l.store()
                    .release_lease(&name, &holder, fence)
                    .map_err(Into::into)
            })
            .await;
        if let Err(e) = released {
            report
                .errors
                .push(format!("releasing the lease {what}: {e}"));
        }
    }

    /// One pass of one account's jobs, each within its budget, each under its lease: with
    /// several instances on one store, each job of each account runs on one at a time.
    pub async fn maintain_account(&self, adapter: &Arc<dyn Adapter>) -> MaintenanceReport {
        let mut report = MaintenanceReport::default();
        let budget = Duration::from_millis(self.inner.settings.job_budget_ms);
        for job in Job::ALL {
            let started = Instant::now();
            let deadline = started + budget;
            let lease = format!(
                "maintenance:{}:{}:{}",
                job.as_str(),
                adapter.provider(),
                adapter.account()
            );
            let hold = match job {
                Job::Reconcile => Duration::from_millis(self.inner.settings.reconcile_budget_ms),
                _ => budget,
            } + JOB_SLACK
                + LEASE_MARGIN;
            let claimed = match self.claim(lease.clone(), hold).await {
                Ok(Some(claimed)) => claimed,
                claimed => {
                    let error = claimed.err().map(|e| e.to_string());
                    if let Some(e) = &error {
                        report.errors.push(format!(
                            "{} {}/{}: claiming: {e}",
                            job.as_str(),
                            adapter.provider(),
                            adapter.account()
                        ));
                    }
                    report.jobs.push(JobReport {
                        provider: adapter.provider(),
                        account: adapter.account().clone(),
                        job,
                        done: 0,
                        backlog: 0,
                        cut_short: false,
                        held_elsewhere: error.is_none(),
                        error,
                        elapsed: started.elapsed(),
                    });
                    continue;
                }
            };
            // Each job stops itself at its deadline; this bounds one that cannot (a call that
            // hangs past its own timeouts). Cut there, nothing is half-written: every write is
            // its own transaction, and a create is safe to repeat.
            let bound = deadline + JOB_SLACK;
            let result = match job {
                Job::Recovery => bounded(bound, self.recover_account(adapter, deadline)).await,
                Job::Expiry => bounded(bound, self.expire_account(adapter, deadline)).await,
                Job::Parked => bounded(bound, self.settle_parked_of(adapter, deadline)).await,
                Job::Reconcile => {
                    let mut stats = SweepStats::default();
                    let sweep_deadline = started
                        + Duration::from_millis(self.inner.settings.reconcile_budget_ms)
                        + JOB_SLACK;
                    let r = tokio::time::timeout_at(
                        sweep_deadline.into(),
                        self.sweep_account(adapter, &mut stats),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        stats.cut_short = true;
                        Ok(())
                    });
                    report.reconcile.add(&stats);
                    if let Err(e) = &r {
                        report.reconcile.errors.push(format!(
                            "{}/{}: {e}",
                            adapter.provider(),
                            adapter.account()
                        ));
                    }
                    r.map(|()| (stats.settled, stats.cut_short))
                }
            };
            let (done, cut_short, error) = match result {
                Ok((n, cut)) => (n, cut, None),
                Err(e) => (0, false, Some(e.to_string())),
            };
            match job {
                Job::Recovery => report.recovered += done,
                Job::Expiry => report.expired += done,
                Job::Parked => report.parked_settled += done,
                Job::Reconcile => {}
            }
            if let (Some(e), false) = (&error, job == Job::Reconcile) {
                report.errors.push(format!(
                    "{} {}/{}: {e}",
                    job.as_str(),
                    adapter.provider(),
                    adapter.account()
                ));
            }
            self.unclaim(lease, claimed, &mut report).await;
            report.jobs.push(JobReport {
                provider: adapter.provider(),
                account: adapter.account().clone(),
                job,
                done,
                backlog: 0,
                cut_short,
                held_elsewhere: false,
                error,
                elapsed: started.elapsed(),
            });
        }
        self.fill_backlog(adapter, &mut report).await;
        if report.changed_anything() {
            self.wrote();
        }
        report
    }

    /// What each job of `adapter`'s account left waiting.
    async fn fill_backlog(&self, adapter: &Arc<dyn Adapter>, report: &mut MaintenanceReport) {
        let (provider, account) = (adapter.provider(), adapter.account().clone());
        let age = self.inner.settings.recover_after_ms;
        let backlog = self
            .blocking(move |l| l.backlog(provider, &account, age))
            .await;
        let windows_left = report
            .reconcile
            .windows
            .saturating_sub(report.reconcile.windows_swept);
        for j in &mut report.jobs {
            j.backlog = match (j.job, &backlog) {
                (Job::Recovery, Ok(b)) => b.stuck_in_created,
                (Job::Expiry, Ok(b)) => b.due_for_expiry,
                (Job::Parked, Ok(b)) => b.parked,
                (Job::Reconcile, _) if report.reconcile.cut_short => windows_left,
                _ => 0,
            };
        }
    }

    /// The whole-engine job: forget parked signals past their time to live, and settle those
    /// kept before signals carried their account.
    async fn maintain_shared(&self) -> MaintenanceReport {
        let mut report = MaintenanceReport::default();
        let hold = Duration::from_millis(self.inner.settings.job_budget_ms)
            * u32::try_from(Provider::ALL.len() + 1).unwrap_or(u32::MAX)
            + JOB_SLACK
            + LEASE_MARGIN;
        let claimed = match self.claim("maintenance:shared".into(), hold).await {
            Ok(Some(claimed)) => claimed,
            Ok(None) => return report,
            Err(e) => {
                report.errors.push(format!("claiming the shared job: {e}"));
                return report;
            }
        };
        self.shared_job(&mut report).await;
        self.unclaim("maintenance:shared".into(), claimed, &mut report)
            .await;
        report
    }

    async fn shared_job(&self, report: &mut MaintenanceReport) {
        let ttl = self.inner.settings.parked_ttl_ms;
        match self.blocking(move |l| l.prune_parked(ttl)).await {
            Ok(n) => report.parked_pruned = n,
            Err(e) => report.errors.push(format!("pruning parked signals: {e}")),
        }
        // Rate slots whose time passed are free anyway; a minute's margin for the clocks of
        // instances (the look-up gaps follow the engine's clock, the call budgets real time).
        let now = self
            .inner
            .clock
            .now()
            .min(crate::clock::Clock::now(&crate::clock::SystemClock));
        let free_before = now.plus_millis(-60_000);
        if let Err(e) = self
            .blocking(move |l| Ok(l.store().prune_slots(free_before)?))
            .await
        {
            report.errors.push(format!("pruning rate slots: {e}"));
        }
        for provider in Provider::ALL {
            let deadline =
                Instant::now() + Duration::from_millis(self.inner.settings.job_budget_ms);
            match self.settle_parked_rows(provider, None, deadline).await {
                Ok((n, _)) => report.parked_settled += n,
                Err(e) => report
                    .errors
                    .push(format!("parked signals of {provider}: {e}")),
            }
        }
    }

    /// Every account's expiry job at once; returns how many intents it settled. (One pass of
    /// [`Engine::maintain`] does this too.)
    pub async fn expire_due(&self) -> Result<usize, EngineError> {
        let mut settled = 0;
        for adapter in self.adapters() {
            let deadline =
                Instant::now() + Duration::from_millis(self.inner.settings.job_budget_ms);
            settled += self.expire_account(&adapter, deadline).await?.0;
        }
        if settled > 0 {
            self.wrote();
        }
        Ok(settled)
    }

    /// Every account's recovery job at once; returns how many intents left `created`.
    pub async fn recover_created(&self) -> Result<usize, EngineError> {
        let mut resumed = 0;
        for adapter in self.adapters() {
            let deadline =
                Instant::now() + Duration::from_millis(self.inner.settings.job_budget_ms);
            resumed += self.recover_account(&adapter, deadline).await?.0;
        }
        if resumed > 0 {
            self.wrote();
        }
        Ok(resumed)
    }

    /// Every account's reconciliation sweep, one after the other.
    pub async fn reconcile(&self) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        for adapter in self.adapters() {
            let mut stats = SweepStats::default();
            let result = self.sweep_account(&adapter, &mut stats).await;
            report.add(&stats);
            if let Err(e) = result {
                report
                    .errors
                    .push(format!("{}/{}: {e}", adapter.provider(), adapter.account()));
            }
        }
        if report.settled > 0 {
            self.wrote();
        }
        report
    }

    async fn sweep_account(
        &self,
        adapter: &Arc<dyn Adapter>,
        stats: &mut SweepStats,
    ) -> Result<(), EngineError> {
        let sink = Sink {
            engine: self,
            provider: adapter.provider(),
            account: adapter.account().clone(),
            deadline: Instant::now()
                + Duration::from_millis(self.inner.settings.reconcile_budget_ms),
        };
        adapter
            .reconcile(&sink, stats)
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))
    }

    /// Resumes `adapter`'s intents left in `created`, or settles those it can no longer take.
    async fn recover_account(&self, adapter: &Arc<dyn Adapter>, deadline: Instant) -> JobResult {
        let s = &self.inner.settings;
        let (age, batch) = (s.recover_after_ms, s.sweep_batch);
        let (provider, account) = (adapter.provider(), adapter.account().clone());
        let stuck = self
            .blocking(move |l| l.stuck_in_created(provider, &account, age, batch))
            .await?;
        let mut resumed = 0;
        for intent in stuck {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ok((resumed, true));
            };
            // Cut at the budget, any of these is safe to repeat: a create goes under the
            // same provider key, a look-up changes nothing.
            match tokio::time::timeout(left, self.resume_created(adapter, intent)).await {
                Ok(Ok(i)) if i.status != IntentStatus::Created => resumed += 1,
                Ok(
                    Ok(_)
                    | Err(EngineError::RetryWithSameKey { .. } | EngineError::Provider { .. }),
                ) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok((resumed, true)),
            }
        }
        Ok((resumed, false))
    }

    /// Expires `adapter`'s intents past their deadline. Where the adapter looks up at expiry,
    /// the look-ups run a few at a time, each within what is left of the budget; one that
    /// fails or runs out still expires its intent, and parks a re-check.
    async fn expire_account(&self, adapter: &Arc<dyn Adapter>, deadline: Instant) -> JobResult {
        let batch = self.inner.settings.sweep_batch;
        let (provider, account) = (adapter.provider(), adapter.account().clone());
        let due = self
            .blocking(move |l| l.due_for_expiry(provider, &account, batch))
            .await?;
        let slots = Arc::new(tokio::sync::Semaphore::new(
            self.inner.settings.lookup_concurrency.max(1),
        ));
        let mut work = tokio::task::JoinSet::new();
        let mut cut_short = false;
        for intent in due {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            if Instant::now() >= deadline {
                cut_short = true;
                break;
            }
            let (engine, adapter) = (self.clone(), adapter.clone());
            work.spawn(async move {
                let _permit = permit;
                engine.expire_one(&adapter, intent, deadline).await
            });
        }
        let mut settled = 0;
        while let Some(done) = work.join_next().await {
            match done {
                Ok(Ok(true)) => settled += 1,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(EngineError::Internal(format!("expiry task: {e}"))),
            }
        }
        Ok((settled, cut_short))
    }

    /// Expires one intent, after the adapter's look-up if it wants one. `Ok(true)` when it
    /// moved.
    async fn expire_one(
        &self,
        adapter: &Arc<dyn Adapter>,
        intent: Intent,
        deadline: Instant,
    ) -> Result<bool, EngineError> {
        let id = intent.id;
        let mut event = IntentEvent::new(Signal::Expired, Cause::Timer);
        if adapter.looks_up_at_expiry() {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, adapter.look_up(&intent, None)).await {
                Ok(Ok(Lookup::Fact(fact))) => event = fact,
                Ok(Ok(Lookup::Open | Lookup::Mismatch(_))) => {}
                Ok(Ok(Lookup::Unproven(_)) | Err(_)) | Err(_) => {
                    self.park_recheck(&intent).await?;
                }
            }
        }
        let outcome = self.blocking(move |l| l.apply(id, event)).await?;
        Ok(matches!(outcome, ApplyOutcome::Applied { .. }))
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

    /// Applies and confirms `adapter`'s account's parked signals.
    async fn settle_parked_of(&self, adapter: &Arc<dyn Adapter>, deadline: Instant) -> JobResult {
        self.settle_parked_rows(
            adapter.provider(),
            Some(adapter.account().clone()),
            deadline,
        )
        .await
    }

    /// Applies parked signals whose intent is known now, and asks the provider about parked
    /// claims: one look-up per intent per pass, whatever the number of claims naming it. A
    /// signal kept by another account than its intent's is never applied; it ages out.
    /// `account` `None` walks the rows kept before signals carried their account.
    async fn settle_parked_rows(
        &self,
        provider: Provider,
        account: Option<AccountName>,
        deadline: Instant,
    ) -> JobResult {
        let batch = self.inner.settings.sweep_batch.max(1);
        // Which intents have something parked: every row of the account, a page at a time
        // (bounded by the per-account cap), grouped so that each intent is handled once.
        let mut after = 0;
        let mut intents: BTreeMap<IntentId, Intent> = BTreeMap::new();
        loop {
            let acc = account.clone();
            let rows = self
                .blocking(move |l| l.parked_after(provider, acc.as_ref(), after, batch))
                .await?;
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
            if Instant::now() >= deadline {
                return Ok((settled, true));
            }
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
        Ok((settled, false))
    }

    /// Runs maintenance until `stop` completes: one task per account, each running its pass
    /// at once (crash recovery on start) and then every `every`, and one whole-engine task.
    /// Each pass's report goes to `on_report`. A stop cuts a pass in progress: nothing is left
    /// half-applied, since every write is its own transaction and every step is safe to
    /// repeat in the next pass.
    pub async fn run_maintenance(
        &self,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
        on_report: impl Fn(MaintenanceReport) + Send + Sync + 'static,
    ) {
        let on_report = Arc::new(on_report);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let mut loops: Vec<Option<Arc<dyn Adapter>>> =
            self.adapters().into_iter().map(Some).collect();
        loops.push(None);
        for adapter in loops {
            let (engine, on_report, mut stop) = (self.clone(), on_report.clone(), stop_rx.clone());
            tasks.spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        biased;
                        () = stopped(&mut stop) => return,
                        _ = ticks.tick() => {}
                    }
                    let pass = async {
                        match &adapter {
                            Some(a) => engine.maintain_account(a).await,
                            None => engine.maintain_shared().await,
                        }
                    };
                    // A stop cuts a pass short rather than wait out its budgets (shutdown has
                    // a grace period of its own); every write is its own transaction.
                    tokio::select! {
                        biased;
                        () = stopped(&mut stop) => return,
                        report = pass => on_report(report),
                    }
                }
            });
        }
        stop.await;
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
    }
}

/// Resolves once `rx` turns true (the guard `wait_for` returns is not `Send`: dropped here).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
