//! Writes on PostgreSQL: the create, and decided changes and parked signals through group
//! commit (`store::group`). A write alone is one autocommit statement that takes its seq from
//! the head row last; a batch writes its events without seqs and publishes them all as its
//! transaction's last step ([`publish`]), as a create does.

use super::pool::{PgConn, Run, Tx, params};
use super::{
    PostgresStore, encode, insert_history, provider_ref_key, reconcile_at, to_i64, to_u64,
};
use crate::error::StoreError;
use crate::outbox::NewEvent;
use crate::store::group::{OwnedCommit, Write, Written, copy_error};
use crate::store::{CommitOutcome, InsertOutcome, NewIntent, ParkOutcome, ParkedEvent};
use crate::types::{AccountName, Timestamp};

/// Inserts the event without a seq unless its business key exists; returns its row id, or
/// `None` if it existed.
fn insert_event(tx: &mut impl Run, e: &NewEvent) -> Result<Option<i64>, StoreError> {
    let rows = tx.query(
        "INSERT INTO outbox (event_id, event_type, intent_id, business_key, created_at, payload)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (business_key) DO NOTHING
         RETURNING id",
        params![
            &e.event_id.hyphenated().to_string(),
            &e.event_type.as_str(),
            &e.intent_id.to_string(),
            &e.business_key,
            &e.created_at.unix_millis(),
            &encode(&e.payload)?,
        ],
    )?;
    Ok(rows.first().map(|r| r.get(0)))
}

/// Gives `rows` (outbox row ids, in the order their writes were decided) the next seqs, as the
/// transaction's last statements: the head row stays locked until this transaction commits,
/// so the next publisher waits, and seqs become visible in the order they were assigned.
fn publish(tx: &mut Tx<'_>, rows: &[i64]) -> Result<Vec<u64>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let n = to_i64(rows.len() as u64)?;
    // One round trip: the head moves by n, and the rows, in the order given, take the n seqs
    // below the new head.
    let assigned: std::collections::HashMap<i64, i64> = tx
        .query(
            "WITH head AS (UPDATE outbox_head SET seq = seq + $2 RETURNING seq)
         UPDATE outbox SET seq = head.seq - $2 + v.n
         FROM head, unnest($1::BIGINT[]) WITH ORDINALITY AS v(id, n)
         WHERE outbox.id = v.id
         RETURNING outbox.id, outbox.seq",
            params![&rows, &n],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    rows.iter()
        .map(|row| {
            assigned.get(row).copied().map(to_u64).unwrap_or_else(|| {
                Err(StoreError::Backend(format!(
                    "published {} of {} events",
                    assigned.len(),
                    rows.len()
                )))
            })
        })
        .collect()
}

pub(super) fn insert_intent(
    store: &PostgresStore,
    new: NewIntent<'_>,
) -> Result<InsertOutcome, StoreError> {
    let mut c = store.conn()?;
    let mut tx = c.transaction()?;
    let i = new.intent;
    // A concurrent insert of the same key makes this one wait for it, then do nothing.
    let inserted = tx.execute(
        "INSERT INTO intents (id, idempotency_key, fingerprint, provider, account, kind, status,
                              provider_ref, expires_at, created_at, updated_at, version, body,
                              reconcile_until, reconcile_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (idempotency_key) DO NOTHING",
        params![
            &i.id.to_string(),
            &i.idempotency_key.as_str(),
            &new.fingerprint,
            &i.provider.as_str(),
            &i.account.as_str(),
            &i.kind.as_str(),
            &i.status.as_str(),
            &provider_ref_key(i),
            &i.expires_at.map(Timestamp::unix_millis),
            &i.created_at.unix_millis(),
            &i.updated_at.unix_millis(),
            &to_i64(i.version)?,
            &encode(i)?,
            &i.reconcile_until.map(Timestamp::unix_millis),
            &reconcile_at(i),
        ],
    )?;
    if inserted == 0 {
        let row = tx.query_one(
            "SELECT body, fingerprint FROM intents WHERE idempotency_key = $1",
            params![&i.idempotency_key.as_str()],
        )?;
        return Ok(InsertOutcome::Existing {
            intent: Box::new(super::decode_intent(row.get(0))?),
            fingerprint: row.get::<_, &str>(1).to_string(),
        });
    }
    insert_history(&mut tx, i.id, new.transition)?;
    let row = insert_event(&mut tx, new.event)?.ok_or_else(|| {
        StoreError::Constraint(format!("event {} already exists", new.event.business_key))
    })?;
    let seq = publish(&mut tx, &[row])?[0];
    tx.commit()?;
    Ok(InsertOutcome::Inserted { seq })
}

/// The parts of a decided change before its event: the version-checked update and the
/// delivery's dedup row and history row, each only if the one before it wrote. A delivery
/// seen before writes nothing (`AlreadyRecorded`); a version that moved writes nothing, not
/// even the dedup row, so the ledger's retry on the new version still applies it
/// (`VersionConflict`). Two deliveries racing for one intent serialize on its row: the second
/// finds the version moved.
macro_rules! transition_head {
    () => {
        "WITH
    seen AS (
        SELECT EXISTS (SELECT 1 FROM provider_events
                       WHERE provider = $1 AND intent_id = $3 AND event_id = $2) AS yes
    ),
    upd AS (
        UPDATE intents SET status = $5, provider_ref = $6, expires_at = $7, updated_at = $8,
                           version = $9, body = $10, reconcile_until = $11, reconcile_at = $12
        WHERE id = $3 AND version = $13 AND NOT (SELECT yes FROM seen)
        RETURNING id
    ),
    dedup AS (
        INSERT INTO provider_events (provider, event_id, intent_id, received_at)
        SELECT $1, $2, $3, $4 FROM upd WHERE $2::TEXT IS NOT NULL
    ),
    hist AS (
        INSERT INTO intent_history (intent_id, from_status, to_status, cause, at, provider_event_id)
        SELECT id, $14, $15, $16, $17, $18 FROM upd
    ),"
    };
}

/// A decided change alone, as one statement that also takes its seq from the head row (one
/// round trip plus the commit: on a network store round trips, not the disk, are what a
/// transition costs). The head row stays locked from here to the commit, which follows at
/// once (autocommit). Answers (seen, version matched, seq).
const TRANSITION_SQL: &str = concat!(
    transition_head!(),
    "
    head AS (
        UPDATE outbox_head SET seq = seq + 1 WHERE EXISTS (SELECT 1 FROM upd) RETURNING seq
    ),
    ev AS (
        INSERT INTO outbox (seq, event_id, event_type, intent_id, business_key, created_at, payload)
        SELECT head.seq, $19, $20, $3, $21, $22, $23 FROM head
        RETURNING seq
    )
SELECT (SELECT yes FROM seen), EXISTS (SELECT 1 FROM upd), (SELECT seq FROM ev)"
);

/// The same inside a batch: the event is written without its seq (answers its row id), and
/// the batch publishes all its events as its last step, so the head row is locked only for
/// the commit, never while the batch still takes intent row locks (which would let two
/// instances deadlock).
const TRANSITION_UNPUBLISHED_SQL: &str = concat!(
    transition_head!(),
    "
    ev AS (
        INSERT INTO outbox (event_id, event_type, intent_id, business_key, created_at, payload)
        SELECT $19, $20, $3, $21, $22, $23 FROM upd
        RETURNING id
    )
SELECT (SELECT yes FROM seen), EXISTS (SELECT 1 FROM upd), (SELECT id FROM ev)"
);

/// The parts of an anomaly before its event: it changes no intent, but is decided on a
/// version (held with a share lock to commit) and recorded once per business key, with the
/// delivery's dedup row.
macro_rules! anomaly_head {
    () => {
        "WITH
    seen AS (
        SELECT EXISTS (SELECT 1 FROM provider_events
                       WHERE provider = $1 AND intent_id = $3 AND event_id = $2) AS yes
    ),
    cur AS (SELECT version FROM intents WHERE id = $3 FOR SHARE),
    fresh AS (
        SELECT NOT (SELECT yes FROM seen)
           AND EXISTS (SELECT 1 FROM cur WHERE version = $5)
           AND NOT EXISTS (SELECT 1 FROM outbox WHERE business_key = $8) AS ok
    ),
    dedup AS (
        INSERT INTO provider_events (provider, event_id, intent_id, received_at)
        SELECT $1, $2, $3, $4 WHERE $2::TEXT IS NOT NULL AND (SELECT ok FROM fresh)
    ),"
    };
}

/// An anomaly alone, with its seq. Two identical anomalies racing (no delivery id) may leave
/// a seq unused: seqs only ever grow. With a delivery id, the loser's dedup row fails the
/// statement, which [`apply_commit`] answers as `AlreadyRecorded`.
const ANOMALY_SQL: &str = concat!(
    anomaly_head!(),
    "
    head AS (
        UPDATE outbox_head SET seq = seq + 1 WHERE (SELECT ok FROM fresh) RETURNING seq
    ),
    ev AS (
        INSERT INTO outbox (seq, event_id, event_type, intent_id, business_key, created_at, payload)
        SELECT head.seq, $6, $7, $3, $8, $9, $10 FROM head
        ON CONFLICT (business_key) DO NOTHING
        RETURNING seq
    )
SELECT (SELECT yes FROM seen), EXISTS (SELECT 1 FROM cur WHERE version = $5), (SELECT seq FROM ev)"
);

/// An anomaly inside a batch: its event without a seq, as [`TRANSITION_UNPUBLISHED_SQL`].
const ANOMALY_UNPUBLISHED_SQL: &str = concat!(
    anomaly_head!(),
    "
    ev AS (
        INSERT INTO outbox (event_id, event_type, intent_id, business_key, created_at, payload)
        SELECT $6, $7, $3, $8, $9, $10 WHERE (SELECT ok FROM fresh)
        ON CONFLICT (business_key) DO NOTHING
        RETURNING id
    )
SELECT (SELECT yes FROM seen), EXISTS (SELECT 1 FROM cur WHERE version = $5), (SELECT id FROM ev)"
);

/// What a decided change did: written (with its seq, or in a batch its unpublished row), or
/// not.
enum Decided {
    Written(i64),
    Not(CommitOutcome),
}

/// Writes one decided change: `published` takes its seq in the same statement (alone);
/// otherwise the event waits for the batch's [`publish`].
fn apply_commit(
    tx: &mut impl Run,
    c: &OwnedCommit,
    published: bool,
) -> Result<Decided, StoreError> {
    let id = c.intent_id.to_string();
    let (provider, event_id) = match &c.delivery {
        Some((p, e)) => (p.as_str(), Some(e.as_str())),
        None => ("", None),
    };
    let e = &c.event;
    let event_uuid = e.event_id.hyphenated().to_string();
    let payload = encode(&e.payload)?;
    let row = match &c.update {
        Some((intent, t)) => tx.query_one(
            if published {
                TRANSITION_SQL
            } else {
                TRANSITION_UNPUBLISHED_SQL
            },
            params![
                &provider,
                &event_id,
                &id,
                &c.now.unix_millis(),
                &intent.status.as_str(),
                &provider_ref_key(intent),
                &intent.expires_at.map(Timestamp::unix_millis),
                &intent.updated_at.unix_millis(),
                &to_i64(intent.version)?,
                &encode(intent)?,
                &intent.reconcile_until.map(Timestamp::unix_millis),
                &reconcile_at(intent),
                &to_i64(c.expected_version)?,
                &t.from.map(crate::lifecycle::IntentStatus::as_str),
                &t.to.as_str(),
                &t.cause.as_str(),
                &t.at.unix_millis(),
                &t.provider_event_id,
                &event_uuid,
                &e.event_type.as_str(),
                &e.business_key,
                &e.created_at.unix_millis(),
                &payload,
            ],
        ),
        None => tx.query_one(
            if published {
                ANOMALY_SQL
            } else {
                ANOMALY_UNPUBLISHED_SQL
            },
            params![
                &provider,
                &event_id,
                &id,
                &c.now.unix_millis(),
                &to_i64(c.expected_version)?,
                &event_uuid,
                &e.event_type.as_str(),
                &e.business_key,
                &e.created_at.unix_millis(),
                &payload,
            ],
        ),
    };
    let row = match row {
        Ok(row) => row,
        // PostgreSQL names the constraint in its message: `violates unique constraint "x"`.
        Err(StoreError::Constraint(msg)) if msg.contains("\"provider_events_pkey\"") => {
            // The same delivery was recorded by a writer that committed after this
            // statement's snapshot; the whole statement rolled back.
            return Ok(Decided::Not(CommitOutcome::AlreadyRecorded));
        }
        Err(StoreError::Constraint(msg)) if msg.contains("\"outbox_business_key_key\"") => {
            // The transition table allows one event per status; a second event of the same
            // type for an intent means a bug, and the database refuses to let it through.
            return Err(StoreError::Constraint(format!(
                "refusing a second {} event for intent {}",
                e.event_type, c.intent_id
            )));
        }
        Err(other) => return Err(other),
    };
    let (seen, version_ok, written): (bool, bool, Option<i64>) =
        (row.get(0), row.get(1), row.get(2));
    Ok(match written {
        Some(n) => Decided::Written(n),
        None if seen => Decided::Not(CommitOutcome::AlreadyRecorded),
        None if !version_ok => Decided::Not(CommitOutcome::VersionConflict),
        // An anomaly whose business key was recorded before.
        None => Decided::Not(CommitOutcome::AlreadyRecorded),
    })
}

/// Whether `e` is kept already, or its account is full; `None` when it may be kept.
pub(super) fn park_verdict(
    c: &mut impl Run,
    e: &ParkedEvent,
    cap: usize,
) -> Result<Option<ParkOutcome>, StoreError> {
    let account = e.account.as_ref().map(AccountName::as_str);
    if !c
        .query(
            "SELECT 1 FROM parked_events WHERE provider = $1 AND COALESCE(account, '') = $2
             AND lookup_key = $3 AND dedup_key = $4",
            params![
                &e.provider.as_str(),
                &account.unwrap_or(""),
                &e.lookup_key,
                &e.dedup_key(),
            ],
        )?
        .is_empty()
    {
        return Ok(Some(ParkOutcome::AlreadyParked));
    }
    // Counting walks the account's index entries, at most `cap` of them.
    let n: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM (SELECT 1 FROM parked_events
             WHERE provider = $1 AND account IS NOT DISTINCT FROM $2 LIMIT $3) AS kept",
            params![&e.provider.as_str(), &account, &super::limit_param(cap)],
        )?
        .get(0);
    if usize::try_from(n).unwrap_or(usize::MAX) >= cap {
        return Ok(Some(ParkOutcome::Full));
    }
    Ok(None)
}

fn apply_park(tx: &mut impl Run, e: &ParkedEvent, cap: usize) -> Result<ParkOutcome, StoreError> {
    // One writer per account while it counts and inserts, across instances, so the cap holds
    // exactly; the lock ends with the transaction.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('intentkit.parked:' || $1 || ':' || $2, 0))",
        params![
            &e.provider.as_str(),
            &e.account.as_ref().map_or("", AccountName::as_str),
        ],
    )?;
    if let Some(verdict) = park_verdict(tx, e, cap)? {
        return Ok(verdict);
    }
    let inserted = tx.execute(
        "INSERT INTO parked_events
             (provider, account, lookup_key, intent_id, proof, dedup_key, received_at, event)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        params![
            &e.provider.as_str(),
            &e.account.as_ref().map(AccountName::as_str),
            &e.lookup_key,
            &e.intent_id.map(|i| i.to_string()),
            &e.proof.as_str(),
            &e.dedup_key(),
            &e.received_at.unix_millis(),
            &encode(&e.event)?,
        ],
    )?;
    Ok(if inserted == 1 {
        ParkOutcome::Parked
    } else {
        ParkOutcome::AlreadyParked
    })
}

/// One write of a batch (`published` false: a decided change's event waits for the batch's
/// [`publish`]).
fn apply_write(
    c: &mut impl Run,
    w: &Write,
    published: bool,
) -> Result<(Option<i64>, Written), StoreError> {
    match w {
        Write::Commit(commit) => Ok(match apply_commit(c, commit, published)? {
            Decided::Written(n) if published => (
                None,
                Written::Commit(CommitOutcome::Committed { seq: to_u64(n)? }),
            ),
            // A placeholder until the batch publishes: the row id stands in for the seq.
            Decided::Written(row) => (
                Some(row),
                Written::Commit(CommitOutcome::Committed { seq: 0 }),
            ),
            Decided::Not(outcome) => (None, Written::Commit(outcome)),
        }),
        Write::Park { event, cap } => Ok((None, Written::Park(apply_park(c, event, *cap)?))),
    }
}

/// Writes a batch: one write alone is one statement in its own transaction (one round trip);
/// several share one transaction, in intent order (so two instances' batches lock intent rows
/// in the same order and cannot deadlock), publish their events as the last step, and commit
/// once. A statement that fails aborts its whole transaction on PostgreSQL, so if any does,
/// the batch is rolled back and each write is written again in a transaction of its own, and
/// only the failing one fails.
pub(super) fn write_batch(
    store: &PostgresStore,
    mut batch: Vec<(u64, Write)>,
) -> Vec<(u64, Result<Written, StoreError>)> {
    store.group.count_batch(batch.len());
    let mut conn = match store.conn() {
        Ok(c) => c,
        Err(e) => return fail_all(&e, &batch),
    };
    if batch.len() > 1 {
        batch.sort_by_key(|(_, w)| match w {
            Write::Commit(c) => c.intent_id.to_string(),
            Write::Park { event, .. } => event.lookup_key.clone(),
        });
        if let Some(results) = together(&mut conn, &batch) {
            return results;
        }
    }
    batch
        .iter()
        .map(|(ticket, write)| (*ticket, alone(&mut conn, write)))
        .collect()
}

/// The batch in one transaction; `None` if a write failed (nothing of it was written).
fn together(
    conn: &mut PgConn,
    batch: &[(u64, Write)],
) -> Option<Vec<(u64, Result<Written, StoreError>)>> {
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return Some(fail_all(&e, batch)),
    };
    let mut applied = Vec::with_capacity(batch.len());
    for (ticket, write) in batch {
        // Dropping the transaction on a failure rolls it back.
        applied.push((*ticket, apply_write(&mut tx, write, false).ok()?));
    }
    let rows: Vec<i64> = applied.iter().filter_map(|(_, (row, _))| *row).collect();
    let published = publish(&mut tx, &rows).and_then(|seqs| {
        // A failed commit may or may not have happened: every write gets the error.
        tx.commit()?;
        Ok(seqs)
    });
    let seqs = match published {
        Ok(seqs) => seqs,
        Err(e) => return Some(fail_all(&e, batch)),
    };
    let mut seqs = seqs.into_iter();
    Some(
        applied
            .into_iter()
            .map(|(ticket, (row, written))| {
                let written = match row {
                    Some(_) => seqs
                        .next()
                        .map(|seq| Written::Commit(CommitOutcome::Committed { seq }))
                        .ok_or_else(|| StoreError::Backend("an event got no seq".into())),
                    None => Ok(written),
                };
                (ticket, written)
            })
            .collect(),
    )
}

/// One write in a transaction of its own: a decided change is one statement (autocommit);
/// parking takes a transaction-scoped lock, so it runs in an explicit transaction.
fn alone(conn: &mut PgConn, write: &Write) -> Result<Written, StoreError> {
    match write {
        Write::Commit(_) => apply_write(conn, write, true).map(|(_, w)| w),
        Write::Park { .. } => {
            let mut tx = conn.transaction()?;
            let (_, written) = apply_write(&mut tx, write, true)?;
            tx.commit()?;
            Ok(written)
        }
    }
}

fn fail_all(e: &StoreError, batch: &[(u64, Write)]) -> Vec<(u64, Result<Written, StoreError>)> {
    batch
        .iter()
        .map(|(t, _)| (*t, Err(copy_error(e))))
        .collect()
}
