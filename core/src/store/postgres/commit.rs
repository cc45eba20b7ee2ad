//! Writes on PostgreSQL: the create, and decided changes and parked signals through group
//! commit (`store::group`), each batch in one transaction with a savepoint per write. Events
//! are inserted without a seq and published as the transaction's last step ([`publish`]).

use postgres::{GenericClient, Transaction};

use super::pool::Statements;
use super::{
    PostgresStore, encode, insert_history, provider_ref_key, reconcile_at, store_error, to_i64,
    to_u64,
};
use crate::error::StoreError;
use crate::outbox::NewEvent;
use crate::store::group::{OwnedCommit, Write, Written, copy_error};
use crate::store::{CommitOutcome, InsertOutcome, NewIntent, ParkOutcome, ParkedEvent};
use crate::types::{AccountName, Timestamp};

/// Inserts the event without a seq unless its business key exists; returns its row id, or
/// `None` if it existed.
fn insert_event(
    tx: &mut impl GenericClient,
    st: &mut Statements,
    e: &NewEvent,
) -> Result<Option<i64>, StoreError> {
    let sql = st.get(
        tx,
        "INSERT INTO outbox (event_id, event_type, intent_id, business_key, created_at, payload)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (business_key) DO NOTHING
         RETURNING id",
    )?;
    let rows = tx
        .query(
            &sql,
            &[
                &e.event_id.hyphenated().to_string(),
                &e.event_type.as_str(),
                &e.intent_id.to_string(),
                &e.business_key,
                &e.created_at.unix_millis(),
                &encode(&e.payload)?,
            ],
        )
        .map_err(store_error)?;
    Ok(rows.first().map(|r| r.get(0)))
}

/// Gives `rows` (outbox row ids, in the order their writes were decided) the next seqs, as the
/// transaction's last statements: the head row stays locked until this transaction commits,
/// so the next publisher waits, and seqs become visible in the order they were assigned.
fn publish(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    rows: &[i64],
) -> Result<Vec<u64>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let n = to_i64(rows.len() as u64)?;
    let head = st.get(tx, "UPDATE outbox_head SET seq = seq + $1 RETURNING seq")?;
    let last: i64 = tx.query_one(&head, &[&n]).map_err(store_error)?.get(0);
    let first = last - n + 1;
    let seqs: Vec<i64> = (first..=last).collect();
    let assign = st.get(
        tx,
        "UPDATE outbox SET seq = v.seq
         FROM unnest($1::BIGINT[], $2::BIGINT[]) AS v(id, seq)
         WHERE outbox.id = v.id",
    )?;
    let updated = tx.execute(&assign, &[&rows, &seqs]).map_err(store_error)?;
    if updated != rows.len() as u64 {
        return Err(StoreError::Backend(format!(
            "published {updated} of {} events",
            rows.len()
        )));
    }
    seqs.into_iter().map(to_u64).collect()
}

pub(super) fn insert_intent(
    store: &PostgresStore,
    new: NewIntent<'_>,
) -> Result<InsertOutcome, StoreError> {
    let mut c = store.conn()?;
    let c = &mut *c;
    let st = &mut c.statements;
    let mut tx = c.client.transaction().map_err(store_error)?;
    let i = new.intent;
    // A concurrent insert of the same key makes this one wait for it, then do nothing.
    let insert = st.get(
        &mut tx,
        "INSERT INTO intents (id, idempotency_key, fingerprint, provider, account, kind, status,
                              provider_ref, expires_at, created_at, updated_at, version, body,
                              reconcile_until, reconcile_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )?;
    let inserted = tx
        .execute(
            &insert,
            &[
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
        )
        .map_err(store_error)?;
    if inserted == 0 {
        let existing = st.get(
            &mut tx,
            "SELECT body, fingerprint FROM intents WHERE idempotency_key = $1",
        )?;
        let row = tx
            .query_one(&existing, &[&i.idempotency_key.as_str()])
            .map_err(store_error)?;
        return Ok(InsertOutcome::Existing {
            intent: Box::new(super::decode_intent(row.get(0))?),
            fingerprint: row.get::<_, &str>(1).to_string(),
        });
    }
    insert_history(&mut tx, st, i.id, new.transition)?;
    let row = insert_event(&mut tx, st, new.event)?.ok_or_else(|| {
        StoreError::Constraint(format!("event {} already exists", new.event.business_key))
    })?;
    let seq = publish(&mut tx, st, &[row])?[0];
    tx.commit().map_err(store_error)?;
    Ok(InsertOutcome::Inserted { seq })
}

/// What one write of a batch did; a commit's event waits for its seq.
enum Applied {
    Commit(Result<i64, CommitOutcome>),
    Park(ParkOutcome),
}

fn apply_commit(
    tx: &mut impl GenericClient,
    st: &mut Statements,
    c: &OwnedCommit,
) -> Result<Result<i64, CommitOutcome>, StoreError> {
    let id = c.intent_id.to_string();
    if let Some((provider, event_id)) = &c.delivery {
        let sql = st.get(
            tx,
            "INSERT INTO provider_events (provider, event_id, intent_id, received_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )?;
        let fresh = tx
            .execute(
                &sql,
                &[&provider.as_str(), event_id, &id, &c.now.unix_millis()],
            )
            .map_err(store_error)?;
        if fresh == 0 {
            return Ok(Err(CommitOutcome::AlreadyRecorded));
        }
    }
    match &c.update {
        Some((intent, transition)) => {
            let sql = st.get(
                tx,
                "UPDATE intents SET status = $1, provider_ref = $2, expires_at = $3,
                                    updated_at = $4, version = $5, body = $6,
                                    reconcile_until = $9, reconcile_at = $10
                 WHERE id = $7 AND version = $8",
            )?;
            let changed = tx
                .execute(
                    &sql,
                    &[
                        &intent.status.as_str(),
                        &provider_ref_key(intent),
                        &intent.expires_at.map(Timestamp::unix_millis),
                        &intent.updated_at.unix_millis(),
                        &to_i64(intent.version)?,
                        &encode(intent)?,
                        &id,
                        &to_i64(c.expected_version)?,
                        &intent.reconcile_until.map(Timestamp::unix_millis),
                        &reconcile_at(intent),
                    ],
                )
                .map_err(store_error)?;
            if changed == 0 {
                return Ok(Err(CommitOutcome::VersionConflict));
            }
            insert_history(tx, st, c.intent_id, transition)?;
        }
        None => {
            // An anomaly changes nothing, but is decided on a version: lock the row so that
            // the version cannot move before this transaction ends.
            let sql = st.get(tx, "SELECT version FROM intents WHERE id = $1 FOR SHARE")?;
            let version: Option<i64> = tx
                .query(&sql, &[&id])
                .map_err(store_error)?
                .first()
                .map(|r| r.get(0));
            if version != Some(to_i64(c.expected_version)?) {
                return Ok(Err(CommitOutcome::VersionConflict));
            }
        }
    }
    match insert_event(tx, st, &c.event)? {
        Some(row) => Ok(Ok(row)),
        // The same anomaly was recorded before (same business key).
        None if c.update.is_none() => Ok(Err(CommitOutcome::AlreadyRecorded)),
        // The transition table allows one entry per status; a second event of the same type
        // for an intent means a bug, and the database refuses to let it through.
        None => Err(StoreError::Constraint(format!(
            "refusing a second {} event for intent {}",
            c.event.event_type, c.intent_id
        ))),
    }
}

/// Whether `e` is kept already, or its account is full; `None` when it may be kept.
pub(super) fn park_verdict(
    c: &mut impl GenericClient,
    st: &mut Statements,
    e: &ParkedEvent,
    cap: usize,
) -> Result<Option<ParkOutcome>, StoreError> {
    let account = e.account.as_ref().map(AccountName::as_str);
    let kept = st.get(
        c,
        "SELECT 1 FROM parked_events WHERE provider = $1 AND COALESCE(account, '') = $2
             AND lookup_key = $3 AND dedup_key = $4",
    )?;
    if !c
        .query(
            &kept,
            &[
                &e.provider.as_str(),
                &account.unwrap_or(""),
                &e.lookup_key,
                &e.dedup_key(),
            ],
        )
        .map_err(store_error)?
        .is_empty()
    {
        return Ok(Some(ParkOutcome::AlreadyParked));
    }
    // Counting walks the account's index entries, at most `cap` of them.
    let count = st.get(
        c,
        "SELECT COUNT(*) FROM (SELECT 1 FROM parked_events
             WHERE provider = $1 AND account IS NOT DISTINCT FROM $2 LIMIT $3) AS kept",
    )?;
    let n: i64 = c
        .query_one(
            &count,
            &[&e.provider.as_str(), &account, &super::limit_param(cap)],
        )
        .map_err(store_error)?
        .get(0);
    if usize::try_from(n).unwrap_or(usize::MAX) >= cap {
        return Ok(Some(ParkOutcome::Full));
    }
    Ok(None)
}

fn apply_park(
    tx: &mut impl GenericClient,
    st: &mut Statements,
    e: &ParkedEvent,
    cap: usize,
) -> Result<ParkOutcome, StoreError> {
    // One writer per account while it counts and inserts, across instances, so the cap holds
    // exactly; the lock ends with the transaction.
    let lock = st.get(
        tx,
        "SELECT pg_advisory_xact_lock(hashtextextended('intentkit.parked:' || $1 || ':' || $2, 0))",
    )?;
    tx.execute(
        &lock,
        &[
            &e.provider.as_str(),
            &e.account.as_ref().map_or("", AccountName::as_str),
        ],
    )
    .map_err(store_error)?;
    if let Some(verdict) = park_verdict(tx, st, e, cap)? {
        return Ok(verdict);
    }
    let insert = st.get(
        tx,
        "INSERT INTO parked_events
             (provider, account, lookup_key, intent_id, proof, dedup_key, received_at, event)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )?;
    let inserted = tx
        .execute(
            &insert,
            &[
                &e.provider.as_str(),
                &e.account.as_ref().map(AccountName::as_str),
                &e.lookup_key,
                &e.intent_id.map(|i| i.to_string()),
                &e.proof.as_str(),
                &e.dedup_key(),
                &e.received_at.unix_millis(),
                &encode(&e.event)?,
            ],
        )
        .map_err(store_error)?;
    Ok(if inserted == 1 {
        ParkOutcome::Parked
    } else {
        ParkOutcome::AlreadyParked
    })
}

/// Writes a batch in one transaction: each write in a savepoint, released if it wrote and
/// rolled back otherwise; then the events of those kept are published, and the transaction
/// commits. If the transaction fails, every write in it gets the error.
pub(super) fn write_batch(
    store: &PostgresStore,
    batch: Vec<(u64, Write)>,
) -> Vec<(u64, Result<Written, StoreError>)> {
    store.group.count_batch(batch.len());
    let fail_all = |e: &StoreError, batch: &[(u64, Write)]| {
        batch
            .iter()
            .map(|(t, _)| (*t, Err(copy_error(e))))
            .collect::<Vec<_>>()
    };
    let mut conn = match store.conn() {
        Ok(c) => c,
        Err(e) => return fail_all(&e, &batch),
    };
    let c = &mut *conn;
    let st = &mut c.statements;
    let mut tx = match c.client.transaction() {
        Ok(tx) => tx,
        Err(e) => return fail_all(&store_error(e), &batch),
    };
    let mut applied: Vec<(u64, Result<Applied, StoreError>)> = Vec::with_capacity(batch.len());
    for (ticket, write) in &batch {
        let result = (|| {
            let mut sp = tx.savepoint("write").map_err(store_error)?;
            let r = match write {
                Write::Commit(c) => apply_commit(&mut sp, st, c).map(Applied::Commit),
                Write::Park { event, cap } => {
                    apply_park(&mut sp, st, event, *cap).map(Applied::Park)
                }
            };
            if matches!(
                r,
                Ok(Applied::Commit(Ok(_)) | Applied::Park(ParkOutcome::Parked))
            ) {
                sp.commit().map_err(store_error)?;
            }
            // Dropping an uncommitted savepoint rolls it back.
            r
        })();
        applied.push((*ticket, result));
    }
    let rows: Vec<i64> = applied
        .iter()
        .filter_map(|(_, r)| match r {
            Ok(Applied::Commit(Ok(row))) => Some(*row),
            _ => None,
        })
        .collect();
    let seqs = match publish(&mut tx, st, &rows).and_then(|seqs| {
        tx.commit().map_err(store_error)?;
        Ok(seqs)
    }) {
        Ok(seqs) => seqs,
        Err(e) => return fail_all(&e, &batch),
    };
    let mut seqs = seqs.into_iter();
    applied
        .into_iter()
        .map(|(ticket, r)| {
            let written = r.and_then(|a| match a {
                Applied::Commit(Ok(_)) => seqs
                    .next()
                    .map(|seq| Written::Commit(CommitOutcome::Committed { seq }))
                    .ok_or_else(|| StoreError::Backend("an event got no seq".into())),
                Applied::Commit(Err(outcome)) => Ok(Written::Commit(outcome)),
                Applied::Park(p) => Ok(Written::Park(p)),
            });
            (ticket, written)
        })
        .collect()
}
