//! Parked signals in SQLite: kept under their account's cap, one row per dedup key.

use rusqlite::{Connection, OptionalExtension, params};

use super::{encode, limit_param, parse_col};
use crate::error::StoreError;
use crate::store::{ParkOutcome, ParkedEvent};
use crate::types::{AccountName, Timestamp};

/// Whether `e` is kept already, or its account is full; `None` when it may be kept.
pub(super) fn park_verdict(
    conn: &Connection,
    e: &ParkedEvent,
    cap: usize,
) -> Result<Option<ParkOutcome>, StoreError> {
    let account = e.account.as_ref().map(AccountName::as_str);
    let kept: Option<i64> = conn
        .prepare_cached(
            "SELECT 1 FROM parked_events WHERE provider = ?1 AND COALESCE(account, '') = ?2
                 AND lookup_key = ?3 AND dedup_key = ?4",
        )?
        .query_row(
            params![
                e.provider.as_str(),
                account.unwrap_or(""),
                e.lookup_key,
                e.dedup_key()
            ],
            |r| r.get(0),
        )
        .optional()?;
    if kept.is_some() {
        return Ok(Some(ParkOutcome::AlreadyParked));
    }
    // Counting walks the account's index entries, at most `cap` of them.
    let count: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM parked_events
                 WHERE provider = ?1 AND account IS ?2 LIMIT ?3)",
        )?
        .query_row(
            params![e.provider.as_str(), account, limit_param(cap)],
            |r| r.get(0),
        )?;
    if usize::try_from(count).unwrap_or(usize::MAX) >= cap {
        return Ok(Some(ParkOutcome::Full));
    }
    Ok(None)
}

pub(super) fn apply_park(
    tx: &Connection,
    e: &ParkedEvent,
    cap: usize,
) -> Result<ParkOutcome, StoreError> {
    if let Some(verdict) = park_verdict(tx, e, cap)? {
        return Ok(verdict);
    }
    let inserted = tx
        .prepare_cached(
            "INSERT INTO parked_events
                 (provider, account, lookup_key, intent_id, proof, dedup_key, received_at, event)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            e.provider.as_str(),
            e.account.as_ref().map(AccountName::as_str),
            e.lookup_key,
            e.intent_id.map(|i| i.to_string()),
            e.proof.as_str(),
            e.dedup_key(),
            e.received_at.unix_millis(),
            encode(&e.event)?,
        ])?;
    Ok(if inserted == 1 {
        ParkOutcome::Parked
    } else {
        ParkOutcome::AlreadyParked
    })
}

fn parked_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ParkedRow> {
    Ok(ParkedRow {
        id: r.get(0)?,
        provider: r.get(1)?,
        account: r.get(2)?,
        lookup_key: r.get(3)?,
        intent_id: r.get(4)?,
        proof: r.get(5)?,
        received_at: r.get(6)?,
        event: r.get(7)?,
    })
}

pub(super) const PARKED_COLUMNS: &str =
    "id, provider, account, lookup_key, intent_id, proof, received_at, event";

/// A parked row as stored, decoded in [`ParkedRow::decode`].
struct ParkedRow {
    id: i64,
    provider: String,
    account: Option<String>,
    lookup_key: String,
    intent_id: Option<String>,
    proof: String,
    received_at: i64,
    event: String,
}

impl ParkedRow {
    fn decode(self) -> Result<ParkedEvent, StoreError> {
        Ok(ParkedEvent {
            id: self.id,
            provider: parse_col("provider", &self.provider)?,
            account: self
                .account
                .as_deref()
                .map(|a| parse_col("account", a))
                .transpose()?,
            lookup_key: self.lookup_key,
            intent_id: self
                .intent_id
                .as_deref()
                .map(|i| parse_col("intent id", i))
                .transpose()?,
            proof: parse_col("proof", &self.proof)?,
            received_at: Timestamp::from_unix_millis(self.received_at),
            event: serde_json::from_str(&self.event)
                .map_err(|e| StoreError::Corrupt(format!("parked event: {e}")))?,
        })
    }
}

pub(super) fn query_parked(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<ParkedEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, parked_row)?;
    rows.map(|r| r?.decode()).collect()
}
