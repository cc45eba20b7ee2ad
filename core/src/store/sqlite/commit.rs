//! Writes through group commit: decided changes to intents and parked signals. Writes that
//! arrive while another batch is being written wait, and the next leader writes them all in
//! one transaction, each in its own savepoint, with one fsync.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use super::parked::apply_park;
use super::{
    SqliteStore, encode, insert_event, insert_history, provider_ref_key, reconcile_at, to_i64,
};
use crate::error::StoreError;
use crate::intent::Intent;
use crate::lifecycle::Transition;
use crate::outbox::NewEvent;
use crate::store::{Commit, CommitOutcome, ParkOutcome, ParkedEvent};
use crate::types::{IntentId, Provider, Timestamp};

fn apply_commit(tx: &Connection, c: &OwnedCommit) -> Result<CommitOutcome, StoreError> {
    let id = c.intent_id.to_string();
    if let Some((provider, event_id)) = &c.delivery {
        let fresh = tx
            .prepare_cached(
                "INSERT INTO provider_events (provider, event_id, intent_id, received_at)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                provider.as_str(),
                event_id,
                id,
                c.now.unix_millis()
            ])?;
        if fresh == 0 {
            return Ok(CommitOutcome::AlreadyRecorded);
        }
    }
    match &c.update {
        Some((intent, transition)) => {
            let changed = tx
                .prepare_cached(
                    "UPDATE intents SET status = ?1, provider_ref = ?2, expires_at = ?3,
                                        updated_at = ?4, version = ?5, body = ?6,
                                        reconcile_until = ?9, reconcile_at = ?10
                     WHERE id = ?7 AND version = ?8",
                )?
                .execute(params![
                    intent.status.as_str(),
                    provider_ref_key(intent),
                    intent.expires_at.map(Timestamp::unix_millis),
                    intent.updated_at.unix_millis(),
                    to_i64(intent.version)?,
                    encode(intent)?,
                    id,
                    to_i64(c.expected_version)?,
                    intent.reconcile_until.map(Timestamp::unix_millis),
                    reconcile_at(intent),
                ])?;
            if changed == 0 {
                return Ok(CommitOutcome::VersionConflict);
            }
            insert_history(tx, c.intent_id, transition)?;
        }
        None => {
            let version: Option<i64> = tx
                .prepare_cached("SELECT version FROM intents WHERE id = ?1")?
                .query_row([&id], |r| r.get(0))
                .optional()?;
            if version != Some(to_i64(c.expected_version)?) {
                return Ok(CommitOutcome::VersionConflict);
            }
        }
    }
    let Some(seq) = insert_event(tx, &c.event)? else {
        if c.update.is_none() {
            // The same anomaly was recorded before (same business key).
            return Ok(CommitOutcome::AlreadyRecorded);
        }
        // The transition table allows one entry per status; a second event of the same
        // type for an intent means a bug, and the database refuses to let it through.
        return Err(StoreError::Constraint(format!(
            "refusing a second {} event for intent {}",
            c.event.event_type, c.intent_id
        )));
    };
    Ok(CommitOutcome::Committed { seq })
}

/// A [`Commit`] with its data owned, so that another thread can write it (group commit).
#[derive(Debug)]
pub(super) struct OwnedCommit {
    pub(super) intent_id: IntentId,
    pub(super) expected_version: u64,
    pub(super) update: Option<(Intent, Transition)>,
    pub(super) event: NewEvent,
    pub(super) delivery: Option<(Provider, String)>,
    pub(super) now: Timestamp,
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
pub(super) enum Write {
    /// A decided change to an intent.
    Commit(Box<OwnedCommit>),
    /// A provider event to keep, under its account's cap.
    Park { event: Box<ParkedEvent>, cap: usize },
}

/// What a grouped write did.
#[derive(Debug)]
pub(super) enum Written {
    Commit(CommitOutcome),
    Park(ParkOutcome),
}

impl Written {
    /// Whether its savepoint is kept (anything else wrote nothing and is rolled back).
    fn keeps_savepoint(&self) -> bool {
        matches!(
            self,
            Written::Commit(CommitOutcome::Committed { .. }) | Written::Park(ParkOutcome::Parked)
        )
    }
}

fn apply_write(tx: &Connection, w: &Write) -> Result<Written, StoreError> {
    match w {
        Write::Commit(c) => apply_commit(tx, c).map(Written::Commit),
        Write::Park { event, cap } => apply_park(tx, event, *cap).map(Written::Park),
    }
}

/// Group commit: writes that arrive while another is being written wait, and the next
/// leader writes them all in one transaction, each in its own savepoint, with one fsync. Under
/// load this turns a queue of N fsyncs into one, which is what keeps the tail latency of
/// webhook handling close to a single commit's.
#[derive(Debug, Default)]
pub(super) struct Group {
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

fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Busy => StoreError::Busy,
        StoreError::Constraint(m) => StoreError::Constraint(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        other => StoreError::Backend(other.to_string()),
    }
}

impl SqliteStore {
    /// How many transactions group commit has written, and how many writes they carried: with
    /// concurrent writers the second number grows faster than the first.
    pub fn group_commit_stats(&self) -> (usize, usize) {
        (
            self.group.stats.transactions.load(Ordering::Relaxed),
            self.group.stats.writes.load(Ordering::Relaxed),
        )
    }

    pub(super) fn group_write(&self, write: Write) -> Result<Written, StoreError> {
        let mut state = self.group.lock();
        let ticket = state.next;
        state.next += 1;
        state.queue.push((ticket, write));
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                return result;
            }
            if state.leading {
                state = self
                    .group
                    .done
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            state.leading = true;
            let batch = std::mem::take(&mut state.queue);
            drop(state);
            let tickets: Vec<u64> = batch.iter().map(|(t, _)| *t).collect();
            let results =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.write_batch(batch)))
                    .unwrap_or_else(|_| {
                        tickets
                            .iter()
                            .map(|t| (*t, Err(StoreError::Backend("a commit panicked".into()))))
                            .collect()
                    });
            state = self.group.lock();
            state.results.extend(results);
            state.leading = false;
            self.group.done.notify_all();
        }
    }

    /// Writes a batch in one transaction: each write in a savepoint, released if it wrote and
    /// rolled back otherwise (a version conflict, a duplicate or a full account writes nothing).
    /// If the transaction itself fails, every write in it gets the error.
    pub(super) fn write_batch(
        &self,
        batch: Vec<(u64, Write)>,
    ) -> Vec<(u64, Result<Written, StoreError>)> {
        let mut conn = self.writer();
        self.group
            .stats
            .transactions
            .fetch_add(1, Ordering::Relaxed);
        self.group
            .stats
            .writes
            .fetch_add(batch.len(), Ordering::Relaxed);
        let mut tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => {
                let e = StoreError::from(e);
                return batch
                    .into_iter()
                    .map(|(t, _)| (t, Err(copy_error(&e))))
                    .collect();
            }
        };
        let mut results = Vec::with_capacity(batch.len());
        for (ticket, write) in &batch {
            let result = (|| {
                let sp = tx.savepoint()?;
                let r = apply_write(&sp, write);
                if r.as_ref().is_ok_and(Written::keeps_savepoint) {
                    sp.commit()?;
                }
                // Dropping an uncommitted savepoint rolls it back.
                r
            })();
            results.push((*ticket, result));
        }
        if let Err(e) = tx.commit() {
            let e = StoreError::from(e);
            return results
                .into_iter()
                .map(|(t, _)| (t, Err(copy_error(&e))))
                .collect();
        }
        results
    }
}
