//! What maintenance passes report: per account and job, what was done and what is left, so
//! that a stalled account shows in the metrics.

use std::time::Duration;

use crate::provider::SweepStats;
use crate::types::{AccountName, Provider};

/// A maintenance job of one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Job {
    /// Resuming intents left in `created`.
    Recovery,
    /// Expiring intents past their deadline.
    Expiry,
    /// Applying and confirming parked signals.
    Parked,
    /// The account's reconciliation sweep.
    Reconcile,
}

impl Job {
    /// Every job, in the order a pass runs them.
    pub const ALL: [Job; 4] = [Job::Recovery, Job::Expiry, Job::Parked, Job::Reconcile];

    /// The stable name (a metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Recovery => "recovery",
            Job::Expiry => "expiry",
            Job::Parked => "parked",
            Job::Reconcile => "reconcile",
        }
    }
}

/// What one job did in one account's pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobReport {
    /// The provider.
    pub provider: Provider,
    /// The account.
    pub account: AccountName,
    /// The job.
    pub job: Job,
    /// Intents it settled or resumed, signals it applied or settled.
    pub done: usize,
    /// What is left waiting after it: intents due or stuck, signals parked, windows unswept.
    pub backlog: usize,
    /// Whether it stopped at its time budget.
    pub cut_short: bool,
    /// Whether another instance held this job's lease, so this one did not run it (the
    /// other's report has it).
    pub held_elsewhere: bool,
    /// Why it failed, if it did (the other jobs still ran).
    pub error: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// What one reconciliation pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Missed webhooks asked to be sent again.
    pub replayed: usize,
    /// Local intents settled from the provider's records.
    pub settled: usize,
    /// Provider calls made.
    pub calls: usize,
    /// Time windows holding open intents (summed over accounts).
    pub windows: usize,
    /// Windows swept in this pass.
    pub windows_swept: usize,
    /// Whether some account's sweep ran out of time (its next pass goes on from there).
    pub cut_short: bool,
    /// Accounts whose pass failed, with why; the others went on.
    pub errors: Vec<String>,
}

impl ReconcileReport {
    pub(super) fn add(&mut self, stats: &SweepStats) {
        self.replayed += stats.replayed;
        self.settled += stats.settled;
        self.calls += stats.calls;
        self.windows += stats.windows;
        self.windows_swept += stats.windows_swept;
        self.cut_short |= stats.cut_short;
    }
}

/// What a maintenance pass did: one account's, or every account's together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Intents resumed out of `created` (or settled there).
    pub recovered: usize,
    /// Intents settled by the expiry job.
    pub expired: usize,
    /// Intents whose parked signals were applied, or claims the provider answered for good.
    pub parked_settled: usize,
    /// Parked signals forgotten after their time to live.
    pub parked_pruned: usize,
    /// The reconciliation sweeps.
    pub reconcile: ReconcileReport,
    /// Each account's jobs.
    pub jobs: Vec<JobReport>,
    /// Jobs that failed, with why; the others still ran.
    pub errors: Vec<String>,
}

impl MaintenanceReport {
    /// Whether the pass changed anything.
    pub fn changed_anything(&self) -> bool {
        self.recovered
            + self.expired
            + self.parked_settled
            + self.parked_pruned
            + self.reconcile.settled
            + self.reconcile.replayed
            > 0
    }

    pub(super) fn merge(&mut self, other: MaintenanceReport) {
        self.recovered += other.recovered;
        self.expired += other.expired;
        self.parked_settled += other.parked_settled;
        self.parked_pruned += other.parked_pruned;
        let r = other.reconcile;
        self.reconcile.replayed += r.replayed;
        self.reconcile.settled += r.settled;
        self.reconcile.calls += r.calls;
        self.reconcile.windows += r.windows;
        self.reconcile.windows_swept += r.windows_swept;
        self.reconcile.cut_short |= r.cut_short;
        self.reconcile.errors.extend(r.errors);
        self.jobs.extend(other.jobs);
        self.errors.extend(other.errors);
    }
}
