//! Writes through group commit (`store::group`): decided changes to intents and parked
//! signals, each batch in one SQLite transaction with a savepoint per write.

use rusqlite::{Connection, OptionalExtension, params};

use super::parked::apply_park;
use super::{
    SqliteStore, encode, insert_event, insert_history, provider_ref_key, reconcile_at, to_i64,
};
use crate::error::StoreError;
use crate::store::CommitOutcome;
use crate::store::group::{OwnedCommit, Write, Written, copy_error};
use crate::types::Timestamp;

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

fn apply_write(tx: &Connection, w: &Write) -> Result<Written, StoreError> {
    match w {
        Write::Commit(c) => apply_commit(tx, c).map(Written::Commit),
        Write::Park { event, cap } => apply_park(tx, event, *cap).map(Written::Park),
    }
}

impl SqliteStore {
    /// How many transactions group commit has written, and how many writes they carried: with
    /// concurrent writers the second number grows faster than the first.
    pub fn group_commit_stats(&self) -> (usize, usize) {
        self.group.stats()
    }

    pub(super) fn group_write(&self, write: Write) -> Result<Written, StoreError> {
        self.group.write(write, |batch| self.write_batch(batch))
    }

    /// Writes a batch in one transaction: each write in a savepoint, released if it wrote and
    /// rolled back otherwise (a version conflict, a duplicate or a full account writes nothing).
    /// If the transaction itself fails, every write in it gets the error.
    pub(super) fn write_batch(
        &self,
        batch: Vec<(u64, Write)>,
    ) -> Vec<(u64, Result<Written, StoreError>)> {
        let mut conn = self.writer();
        self.group.count_batch(batch.len());
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
