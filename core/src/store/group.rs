//! Group commit, for every store: writes that arrive while another batch is being written
//! wait, and the next leader writes them all in one transaction (each in its own savepoint),
//! with one durable commit. Under load this turns a queue of N commits into one, which keeps
//! the tail latency of webhook handling close to a single commit's. The store supplies how a
//! batch is written; this module only queues, elects and hands results back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::StoreError;
use crate::intent::Intent;
use crate::lifecycle::Transition;
use crate::outbox::NewEvent;
use crate::store::{Commit, CommitOutcome, ParkOutcome, ParkedEvent};
use crate::types::{IntentId, Provider, Timestamp};

/// A [`Commit`] with its data owned, so that another thread can write it (group commit).
#[derive(Debug)]
pub(crate) struct OwnedCommit {
    pub(crate) intent_id: IntentId,
    pub(crate) expected_version: u64,
    pub(crate) update: Option<(Intent, Transition)>,
    pub(crate) event: NewEvent,
    pub(crate) delivery: Option<(Provider, String)>,
    pub(crate) now: Timestamp,
}

impl From<Commit<'_>> for OwnedCommit {
    fn from(c: Commit<'_>) -> Self {
        OwnedCommit {
            intent_id: c.intent_id,
            expected_version: c.expected_version,
            update: c.update.map(|(i, t)| (i.clone(), t.clone())),
            event: c.event.clone(),
            delivery: c.delivery.map(|d| (d.provider, d.event_id.to_string())),
            now: c.now,
        }
    }
}

/// One write that goes through group commit.
#[derive(Debug)]
pub(crate) enum Write {
    /// A decided change to an intent.
    Commit(Box<OwnedCommit>),
    /// A provider event to keep, under its account's cap.
    Park { event: Box<ParkedEvent>, cap: usize },
}

/// What a grouped write did.
#[derive(Debug)]
pub(crate) enum Written {
    Commit(CommitOutcome),
    Park(ParkOutcome),
}

impl Written {
    /// Whether its savepoint is kept (anything else wrote nothing and is rolled back).
    pub(crate) fn keeps_savepoint(&self) -> bool {
        matches!(
            self,
            Written::Commit(CommitOutcome::Committed { .. }) | Written::Park(ParkOutcome::Parked)
        )
    }
}

/// Group commit: writes that arrive while another is being written wait, and the next
/// leader writes them all in one transaction, each in its own savepoint, with one fsync. Under
/// load this turns a queue of N fsyncs into one, which is what keeps the tail latency of
/// webhook handling close to a single commit's.
#[derive(Debug, Default)]
pub(crate) struct Group {
    state: Mutex<GroupState>,
    done: Condvar,
    /// Transactions written, and the writes they carried (for tests and diagnostics).
    stats: GroupStats,
}

/// Counters of group commit.
#[derive(Debug, Default)]
struct GroupStats {
    transactions: AtomicUsize,
    writes: AtomicUsize,
}

#[derive(Debug, Default)]
struct GroupState {
    queue: Vec<(u64, Write)>,
    results: HashMap<u64, Result<Written, StoreError>>,
    leading: bool,
    next: u64,
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        // The state is plain data updated under the lock; a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Group {
    /// How many transactions have been written, and how many writes they carried.
    pub(crate) fn stats(&self) -> (usize, usize) {
        (
            self.stats.transactions.load(Ordering::Relaxed),
            self.stats.writes.load(Ordering::Relaxed),
        )
    }

    /// Counts one transaction carrying `writes` writes.
    pub(crate) fn count_batch(&self, writes: usize) {
        self.stats.transactions.fetch_add(1, Ordering::Relaxed);
        self.stats.writes.fetch_add(writes, Ordering::Relaxed);
    }

    /// Queues `write` and returns its result, writing the queue with `write_batch` when this
    /// caller becomes the leader. `write_batch` must answer every ticket it is given.
    pub(crate) fn write(
        &self,
        write: Write,
        write_batch: impl Fn(Vec<(u64, Write)>) -> Vec<(u64, Result<Written, StoreError>)>,
    ) -> Result<Written, StoreError> {
        let mut state = self.lock();
        let ticket = state.next;
        state.next += 1;
        state.queue.push((ticket, write));
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                return result;
            }
            if state.leading {
                state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            state.leading = true;
            let batch = std::mem::take(&mut state.queue);
            drop(state);
            let tickets: Vec<u64> = batch.iter().map(|(t, _)| *t).collect();
            let results =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_batch(batch)))
                    .unwrap_or_else(|_| {
                        tickets
                            .iter()
                            .map(|t| (*t, Err(StoreError::Backend("a commit panicked".into()))))
                            .collect()
                    });
            state = self.lock();
            state.results.extend(results);
            state.leading = false;
            self.done.notify_all();
        }
    }
}

/// The same error for every write of a batch whose transaction failed.
pub(crate) fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Busy => StoreError::Busy,
        StoreError::Constraint(m) => StoreError::Constraint(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        other => StoreError::Backend(other.to_string()),
    }
}
