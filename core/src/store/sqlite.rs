//! The embedded store: one SQLite file in WAL mode.
//!
//! - Durability: `synchronous=FULL`, so a commit is on disk before we answer. A webhook we
//!   acknowledged must never be lost to a power cut, because the provider will not send it again.
//! - Concurrency: every write runs in `BEGIN IMMEDIATE`, which takes the file's write lock at
//!   the start, so concurrent writers (threads here, or other processes on the same file, such
//!   as PHP-FPM workers) queue on the busy timeout instead of failing mid-transaction. Updates
//!   are still conditional on the version the decision was made on, which is what keeps the
//!   ledger correct on stores without a single writer.
//! - Reads use their own connections, so readers never wait for a writer (WAL).
//! - Schema: versioned migrations applied on open, inside the write lock, so two processes
//!   opening a new file at once migrate it once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, params};

use super::{
    Backlog, Commit, CommitOutcome, InsertOutcome, ListCursor, ListFilter, NewIntent, ParkOutcome,
    ParkedEvent, Store,
};
use crate::error::StoreError;
use crate::intent::Intent;
use crate::lifecycle::{Cause, IntentStatus, Transition};
use crate::outbox::{EventType, NewEvent, OutboxEvent};
use crate::types::{AccountName, ConsumerName, IdempotencyKey, IntentId, Provider, Timestamp};

/// Schema migrations, in order. A released migration is never edited; changes come as new ones.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("sqlite/0001_init.sql")),
    (2, include_str!("sqlite/0002_engine.sql")),
    (3, include_str!("sqlite/0003_trust.sql")),
    (4, include_str!("sqlite/0004_reconcile.sql")),
    (5, include_str!("sqlite/0005_leases.sql")),
    (6, include_str!("sqlite/0006_rate_slots.sql")),
];

/// Tuning for [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// How long a writer waits for another writer's lock before failing with `STORE_BUSY`.
    pub busy_timeout: Duration,
    /// Read connections kept open beside the writer.
    pub readers: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            busy_timeout: Duration::from_secs(5),
            readers: 2,
        }
    }
}

/// The SQLite [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    group: Group,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(ErrorCode::ConstraintViolation) => StoreError::Constraint(e.to_string()),
            _ => match e {
                rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::IntegralValueOutOfRange(..) => {
                    StoreError::Corrupt(e.to_string())
                }
                other => StoreError::Backend(other.to_string()),
            },
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>, config: SqliteConfig) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let writer = retry_while_busy(config.busy_timeout, || {
            let conn = open_connection(&path, &config, false)?;
            migrate(&conn)?;
            Ok(conn)
        })
        .map_err(|e| match e {
            StoreError::Backend(msg) => {
                StoreError::Backend(format!("opening {}: {msg}", path.display()))
            }
            other => other,
        })?;
        let readers = (0..config.readers.max(1))
            .map(|_| {
                retry_while_busy(config.busy_timeout, || {
                    open_connection(&path, &config, true)
                })
                .map(Mutex::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SqliteStore {
            path,
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            group: Group::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version the file is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let conn = self.reader();
        Ok(conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?)
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock left no open transaction (dropping one rolls back),
        // so the connection is safe to keep using.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        for r in &self.readers {
            if let Ok(guard) = r.try_lock() {
                return guard;
            }
        }
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[i].lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs `f` again while it fails with `Busy`, for up to `budget`.
///
/// SQLite does not call the busy handler on every path: switching a new file to WAL, or
/// reading the WAL index while another process recovers it, can answer `SQLITE_BUSY` at once.
/// That happens when several processes (PHP-FPM workers) open a new database together.
fn retry_while_busy<T>(
    budget: Duration,
    mut f: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let deadline = Instant::now() + budget;
    let mut pause = Duration::from_millis(5);
    loop {
        match f() {
            Err(StoreError::Busy) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn open_connection(
    path: &Path,
    config: &SqliteConfig,
    read_only: bool,
) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(config.busy_timeout)?;
    if !read_only {
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{} cannot use WAL journaling (got {mode}); is it on a network file system?",
                path.display()
            )));
        }
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;",
    )?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let supported = MIGRATIONS.last().map_or(0, |m| m.0);
    let tx = Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let found: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    let now = crate::clock::Clock::now(&crate::clock::SystemClock).unix_millis();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, now],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Takes or renews a lease (`?1` name, `?2` holder, `?3` now, `?4` until): written only when it
/// is free, expired, or already the holder's; the fence moves when the holder changes or the
/// lease had lapsed. Returns no row when another holder has it. The same text runs on
/// PostgreSQL with `$n` parameters.
const LEASE_SQL: &str =
    "INSERT INTO leases (name, holder, fence, expires_at) VALUES (?1, ?2, 1, ?4)
     ON CONFLICT (name) DO UPDATE SET
         fence = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > ?3
                      THEN leases.fence ELSE leases.fence + 1 END,
         holder = excluded.holder,
         expires_at = excluded.expires_at
     WHERE leases.holder = excluded.holder OR leases.expires_at <= ?3
     RETURNING fence";

/// Takes a rate slot (`?1` key, `?2` now, `?3` interval, `?4` tolerance): the stored time
/// (or now, if later) must be within the tolerance of now, and moves on by the interval.
/// Returns no row when the slot is not free yet. The same text runs on PostgreSQL with `$n`
/// parameters and `GREATEST`.
const SLOT_SQL: &str = "INSERT INTO rate_slots (key, tat) VALUES (?1, ?2 + ?3)
     ON CONFLICT (key) DO UPDATE SET tat = MAX(rate_slots.tat, ?2) + ?3
     WHERE MAX(rate_slots.tat, ?2) - ?2 <= ?4
     RETURNING tat";

fn insert_history(tx: &Connection, id: IntentId, t: &Transition) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO intent_history (intent_id, from_status, to_status, cause, at, provider_event_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id.to_string(),
        t.from.map(IntentStatus::as_str),
        t.to.as_str(),
        t.cause.as_str(),
        t.at.unix_millis(),
        t.provider_event_id,
    ])?;
    Ok(())
}

/// Inserts the event unless its business key exists; returns its seq, or `None` if it existed.
fn insert_event(tx: &Connection, e: &NewEvent) -> Result<Option<u64>, StoreError> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO outbox (event_id, event_type, intent_id, business_key, created_at, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (business_key) DO NOTHING",
        )?
        .execute(params![
            e.event_id.hyphenated().to_string(),
            e.event_type.as_str(),
            e.intent_id.to_string(),
            e.business_key,
            e.created_at.unix_millis(),
            encode(&e.payload)?,
        ])?;
    if inserted == 0 {
        return Ok(None);
    }
    to_u64(tx.last_insert_rowid()).map(Some)
}

fn query_intents(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Intent>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| r.get::<_, String>(0))?;
    rows.map(|b| decode_intent(&b?)).collect()
}

/// `select` with a WHERE clause for `filter`, and its parameters.
fn filtered(select: &str, filter: &ListFilter) -> (String, Vec<Box<dyn rusqlite::ToSql>>) {
    let mut sql = format!("{select} WHERE 1 = 1");
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    if !filter.statuses.is_empty() {
        let marks = vec!["?"; filter.statuses.len()].join(", ");
        sql.push_str(&format!(" AND status IN ({marks})"));
        for s in &filter.statuses {
            args.push(Box::new(s.as_str()));
        }
    }
    if let Some(p) = filter.provider {
        sql.push_str(" AND provider = ?");
        args.push(Box::new(p.as_str()));
    }
    if let Some(a) = &filter.account {
        sql.push_str(" AND account = ?");
        args.push(Box::new(a.as_str().to_string()));
    }
    if let Some(t) = filter.created_from {
        sql.push_str(" AND created_at >= ?");
        args.push(Box::new(t.unix_millis()));
    }
    if let Some(t) = filter.created_to {
        sql.push_str(" AND created_at < ?");
        args.push(Box::new(t.unix_millis()));
    }
    (sql, args)
}

impl Store for SqliteStore {
    fn reads_in_place(&self) -> bool {
        // An indexed read on a reader connection, which a writer never blocks in WAL mode.
        true
    }

    fn insert_intent(&self, new: NewIntent<'_>) -> Result<InsertOutcome, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let existing = tx
            .prepare_cached("SELECT body, fingerprint FROM intents WHERE idempotency_key = ?1")?
            .query_row([new.intent.idempotency_key.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?;
        if let Some((body, fingerprint)) = existing {
            return Ok(InsertOutcome::Existing {
                intent: Box::new(decode_intent(&body)?),
                fingerprint,
            });
        }
        let i = new.intent;
        tx.prepare_cached(
            "INSERT INTO intents (id, idempotency_key, fingerprint, provider, account, kind, status,
                                  provider_ref, expires_at, created_at, updated_at, version, body,
                                  reconcile_until, reconcile_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?
        .execute(params![
            i.id.to_string(),
            i.idempotency_key.as_str(),
            new.fingerprint,
            i.provider.as_str(),
            i.account.as_str(),
            i.kind.as_str(),
            i.status.as_str(),
            provider_ref_key(i),
            i.expires_at.map(Timestamp::unix_millis),
            i.created_at.unix_millis(),
            i.updated_at.unix_millis(),
            to_i64(i.version)?,
            encode(i)?,
            i.reconcile_until.map(Timestamp::unix_millis),
            reconcile_at(i),
        ])?;
        insert_history(&tx, i.id, new.transition)?;
        let seq = insert_event(&tx, new.event)?.ok_or_else(|| {
            StoreError::Constraint(format!("event {} already exists", new.event.business_key))
        })?;
        tx.commit()?;
        Ok(InsertOutcome::Inserted { seq })
    }

    fn commit(&self, c: Commit<'_>) -> Result<CommitOutcome, StoreError> {
        match self.group_write(Write::Commit(Box::new(OwnedCommit::from(c))))? {
            Written::Commit(outcome) => Ok(outcome),
            Written::Park(_) => Err(StoreError::Backend("group commit mixed up a result".into())),
        }
    }

    fn get_intent(&self, id: IntentId) -> Result<Option<Intent>, StoreError> {
        let conn = self.reader();
        let body: Option<String> = conn
            .prepare_cached("SELECT body FROM intents WHERE id = ?1")?
            .query_row([id.to_string()], |r| r.get(0))
            .optional()?;
        body.as_deref().map(decode_intent).transpose()
    }

    fn get_by_idempotency_key(&self, key: &IdempotencyKey) -> Result<Option<Intent>, StoreError> {
        let conn = self.reader();
        let body: Option<String> = conn
            .prepare_cached("SELECT body FROM intents WHERE idempotency_key = ?1")?
            .query_row([key.as_str()], |r| r.get(0))
            .optional()?;
        body.as_deref().map(decode_intent).transpose()
    }

    fn find_by_provider_ref(
        &self,
        provider: Provider,
        lookup_key: &str,
    ) -> Result<Option<Intent>, StoreError> {
        let conn = self.reader();
        let body: Option<String> = conn
            .prepare_cached("SELECT body FROM intents WHERE provider = ?1 AND provider_ref = ?2")?
            .query_row([provider.as_str(), lookup_key], |r| r.get(0))
            .optional()?;
        body.as_deref().map(decode_intent).transpose()
    }

    fn history(&self, id: IntentId) -> Result<Vec<Transition>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT from_status, to_status, cause, at, provider_event_id
             FROM intent_history WHERE intent_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id.to_string()], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        rows.map(|row| {
            let (from, to, cause, at, provider_event_id) = row?;
            Ok(Transition {
                from: from
                    .as_deref()
                    .map(|s| parse_col::<IntentStatus>("status", s))
                    .transpose()?,
                to: parse_col("status", &to)?,
                cause: parse_col::<Cause>("cause", &cause)?,
                at: Timestamp::from_unix_millis(at),
                provider_event_id,
            })
        })
        .collect()
    }

    fn read_events(&self, after: u64, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, event_id, event_type, intent_id, business_key, created_at, payload
             FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![to_i64(after)?, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        rows.map(|row| {
            let (seq, event_id, event_type, intent_id, business_key, created_at, payload) = row?;
            Ok(OutboxEvent {
                seq: to_u64(seq)?,
                event_id: uuid::Uuid::parse_str(&event_id)
                    .map_err(|_| StoreError::Corrupt(format!("event id {event_id:?}")))?,
                event_type: EventType::parse(&event_type)
                    .ok_or_else(|| StoreError::Corrupt(format!("event type {event_type:?}")))?,
                intent_id: parse_col("intent id", &intent_id)?,
                business_key,
                created_at: Timestamp::from_unix_millis(created_at),
                payload: serde_json::from_str(&payload)
                    .map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))?,
            })
        })
        .collect()
    }

    fn head_seq(&self) -> Result<u64, StoreError> {
        let conn = self.reader();
        let seq: i64 = conn
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM outbox")?
            .query_row([], |r| r.get(0))?;
        to_u64(seq)
    }

    fn consumer_position(&self, consumer: &ConsumerName) -> Result<u64, StoreError> {
        let conn = self.reader();
        let seq: Option<i64> = conn
            .prepare_cached("SELECT acked_seq FROM consumers WHERE name = ?1")?
            .query_row([consumer.as_str()], |r| r.get(0))
            .optional()?;
        to_u64(seq.unwrap_or(0))
    }

    fn advance_consumer(
        &self,
        consumer: &ConsumerName,
        seq: u64,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let conn = self.writer();
        let acked: i64 = conn
            .prepare_cached(
                "INSERT INTO consumers (name, acked_seq, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE
                     SET acked_seq = MAX(acked_seq, excluded.acked_seq),
                         updated_at = excluded.updated_at
                 RETURNING acked_seq",
            )?
            .query_row(
                params![consumer.as_str(), to_i64(seq)?, now.unix_millis()],
                |r| r.get(0),
            )?;
        to_u64(acked)
    }

    fn list_intents(
        &self,
        filter: &ListFilter,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<Intent>, StoreError> {
        let (mut sql, mut args) = filtered("SELECT body FROM intents", filter);
        if let Some(c) = after {
            // Newest first; the next page holds what sorts strictly after the cursor.
            sql.push_str(" AND (created_at, id) < (?, ?)");
            args.push(Box::new(c.created_at.unix_millis()));
            args.push(Box::new(c.id.to_string()));
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
        args.push(Box::new(limit_param(limit)));
        let conn = self.reader();
        let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
        query_intents(&conn, &sql, &refs)
    }

    fn reconcile_open(
        &self,
        provider: Provider,
        account: &AccountName,
        now: Timestamp,
        created_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<Timestamp>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT reconcile_at FROM intents
             WHERE provider = ?1 AND account = ?2 AND reconcile_until > ?3 AND reconcile_at < ?4
             ORDER BY reconcile_at LIMIT ?5",
        )?;
        let rows = stmt.query_map(
            params![
                provider.as_str(),
                account.as_str(),
                now.unix_millis(),
                created_before.unix_millis(),
                limit_param(limit)
            ],
            |r| r.get::<_, i64>(0),
        )?;
        rows.map(|r| Ok(Timestamp::from_unix_millis(r?))).collect()
    }

    fn due_for_expiry(
        &self,
        provider: Provider,
        account: &AccountName,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Intent>, StoreError> {
        let conn = self.reader();
        query_intents(
            &conn,
            "SELECT body FROM intents
             WHERE provider = ?1 AND account = ?2 AND status IN ('created', 'pending')
               AND expires_at <= ?3
             ORDER BY expires_at LIMIT ?4",
            &[
                &provider.as_str(),
                &account.as_str(),
                &now.unix_millis(),
                &limit_param(limit),
            ],
        )
    }

    fn stuck_in_created(
        &self,
        provider: Provider,
        account: &AccountName,
        updated_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<Intent>, StoreError> {
        let conn = self.reader();
        query_intents(
            &conn,
            "SELECT body FROM intents
             WHERE provider = ?1 AND account = ?2 AND status = 'created' AND updated_at <= ?3
             ORDER BY updated_at LIMIT ?4",
            &[
                &provider.as_str(),
                &account.as_str(),
                &updated_before.unix_millis(),
                &limit_param(limit),
            ],
        )
    }

    fn backlog(
        &self,
        provider: Provider,
        account: &AccountName,
        now: Timestamp,
        updated_before: Timestamp,
    ) -> Result<Backlog, StoreError> {
        let conn = self.reader();
        let count = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Result<usize, StoreError> {
            let n: i64 = conn.prepare_cached(sql)?.query_row(args, |r| r.get(0))?;
            Ok(usize::try_from(n).unwrap_or(0))
        };
        let (p, a) = (provider.as_str(), account.as_str());
        Ok(Backlog {
            due_for_expiry: count(
                "SELECT COUNT(*) FROM intents WHERE provider = ?1 AND account = ?2
                   AND status IN ('created', 'pending') AND expires_at <= ?3",
                &[&p, &a, &now.unix_millis()],
            )?,
            stuck_in_created: count(
                "SELECT COUNT(*) FROM intents WHERE provider = ?1 AND account = ?2
                   AND status = 'created' AND updated_at <= ?3",
                &[&p, &a, &updated_before.unix_millis()],
            )?,
            parked: count(
                "SELECT COUNT(*) FROM parked_events WHERE provider = ?1 AND account = ?2",
                &[&p, &a],
            )?,
        })
    }

    fn update_snapshot(&self, intent: &Intent, expected_version: u64) -> Result<bool, StoreError> {
        let conn = self.writer();
        let changed = conn
            .prepare_cached(
                "UPDATE intents SET updated_at = ?1, version = ?2, body = ?3
                 WHERE id = ?4 AND version = ?5 AND status = ?6",
            )?
            .execute(params![
                intent.updated_at.unix_millis(),
                to_i64(intent.version)?,
                encode(intent)?,
                intent.id.to_string(),
                to_i64(expected_version)?,
                intent.status.as_str(),
            ])?;
        Ok(changed == 1)
    }

    fn park_event(&self, event: &ParkedEvent, cap: usize) -> Result<ParkOutcome, StoreError> {
        // Decided on a reader first: once an account is full, or the event is kept already, a
        // flood of deliveries never queues for the writer.
        if let Some(verdict) = park_verdict(&self.reader(), event, cap)? {
            return Ok(verdict);
        }
        let write = Write::Park {
            event: Box::new(event.clone()),
            cap,
        };
        match self.group_write(write)? {
            Written::Park(outcome) => Ok(outcome),
            Written::Commit(_) => Err(StoreError::Backend("group commit mixed up a result".into())),
        }
    }

    fn parked_for(
        &self,
        provider: Provider,
        account: &AccountName,
        lookup_key: Option<&str>,
        intent: IntentId,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        let conn = self.reader();
        let sql = format!(
            "SELECT {PARKED_COLUMNS} FROM parked_events
             WHERE provider = ?1 AND (account = ?2 OR account IS NULL)
               AND (lookup_key = ?3 OR intent_id = ?4)
             ORDER BY id"
        );
        query_parked(
            &conn,
            &sql,
            &[
                &provider.as_str(),
                &account.as_str(),
                &lookup_key,
                &intent.to_string(),
            ],
        )
    }

    fn parked_after(
        &self,
        provider: Provider,
        account: Option<&AccountName>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        let conn = self.reader();
        let sql = format!(
            "SELECT {PARKED_COLUMNS} FROM parked_events
             WHERE provider = ?1 AND account IS ?2 AND id > ?3 ORDER BY id LIMIT ?4"
        );
        query_parked(
            &conn,
            &sql,
            &[
                &provider.as_str(),
                &account.map(AccountName::as_str),
                &after,
                &limit_param(limit),
            ],
        )
    }

    fn drop_parked(&self, id: i64) -> Result<(), StoreError> {
        let conn = self.writer();
        conn.prepare_cached("DELETE FROM parked_events WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    fn prune_parked(&self, received_before: Timestamp) -> Result<usize, StoreError> {
        let conn = self.writer();
        Ok(conn
            .prepare_cached("DELETE FROM parked_events WHERE received_at < ?1")?
            .execute([received_before.unix_millis()])?)
    }

    fn sweep_cursor(
        &self,
        provider: Provider,
        account: &AccountName,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        let conn = self.reader();
        Ok(conn
            .prepare_cached(
                "SELECT value FROM sweep_cursors WHERE provider = ?1 AND account = ?2 AND name = ?3",
            )?
            .query_row(params![provider.as_str(), account.as_str(), name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<u64>, StoreError> {
        let conn = self.writer();
        let fence: Option<i64> = conn
            .prepare_cached(LEASE_SQL)?
            .query_row(
                params![name, holder, now.unix_millis(), until.unix_millis()],
                |r| r.get(0),
            )
            .optional()?;
        fence.map(to_u64).transpose()
    }

    fn release_lease(&self, name: &str, holder: &str, fence: u64) -> Result<(), StoreError> {
        let conn = self.writer();
        conn.prepare_cached(
            "UPDATE leases SET expires_at = 0 WHERE name = ?1 AND holder = ?2 AND fence = ?3",
        )?
        .execute(params![name, holder, to_i64(fence)?])?;
        Ok(())
    }

    fn take_slot(
        &self,
        key: &str,
        now: Timestamp,
        interval_ms: i64,
        tolerance_ms: i64,
    ) -> Result<Result<(), i64>, StoreError> {
        let conn = self.writer();
        let now = now.unix_millis();
        // One statement under the file's write lock: processes sharing the file take turns.
        let taken: Option<i64> = conn
            .prepare_cached(SLOT_SQL)?
            .query_row(params![key, now, interval_ms, tolerance_ms], |r| r.get(0))
            .optional()?;
        if taken.is_some() {
            return Ok(Ok(()));
        }
        let tat: i64 = conn
            .prepare_cached("SELECT tat FROM rate_slots WHERE key = ?1")?
            .query_row(params![key], |r| r.get(0))?;
        Ok(Err((tat - now - tolerance_ms).max(1)))
    }

    fn prune_slots(&self, free_before: Timestamp) -> Result<usize, StoreError> {
        let conn = self.writer();
        Ok(conn
            .prepare_cached("DELETE FROM rate_slots WHERE tat < ?1")?
            .execute(params![free_before.unix_millis()])?)
    }

    fn set_sweep_cursor(
        &self,
        provider: Provider,
        account: &AccountName,
        name: &str,
        value: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let conn = self.writer();
        conn.prepare_cached(
            "INSERT INTO sweep_cursors (provider, account, name, value, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (provider, account, name)
                 DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )?
        .execute(params![
            provider.as_str(),
            account.as_str(),
            name,
            value,
            now.unix_millis()
        ])?;
        Ok(())
    }
}

mod commit;
mod parked;

use self::parked::{PARKED_COLUMNS, park_verdict, query_parked};
use super::codec::{
    decode_intent, encode, limit_param, parse_col, provider_ref_key, reconcile_at, to_i64, to_u64,
};
use super::group::{Group, OwnedCommit, Write, Written};
#[cfg(test)]
mod tests;
