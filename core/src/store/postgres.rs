//! The shared store: PostgreSQL, for several intentkit instances (intentkitd processes, PHP
//! workers through the C ABI) on one database.
//!
//! - Every guarantee of the SQLite store holds across instances, with the same core logic:
//!   updates are conditional on the version the decision was made on; idempotency keys,
//!   provider references, business keys and delivery ids are unique in the database; parked
//!   signals are capped per account under a transaction-scoped lock.
//! - **The outbox's order.** With concurrent writers, a sequence number taken at insert time
//!   can commit after a higher one, and a consumer reading "seq > cursor" in between would skip
//!   it for good. Here a transaction's events get their seqs from the single `outbox_head` row
//!   (`UPDATE ... RETURNING`, a row lock held to commit) as its last step before committing: a
//!   write alone does it at the end of its one statement; a batch inserts its events without
//!   seqs and publishes them all at the end. The next writer's head update waits for
//!   that commit, and PostgreSQL makes a transaction visible before it releases its locks, so
//!   seqs become visible in the order they are assigned: whatever a reader sees up to seq N,
//!   nothing at or below N can still appear. A transaction that stalls (a long-running one, a
//!   paused client) delays the events after it, never skips them. The cost is that
//!   event-writing commits queue one at a time on the head row for the length of one commit;
//!   group commit (one transaction, one head update and one flush for every write waiting in
//!   this process) amortises it (see `docs/decisions.md` and the `pg_transitions` bench).
//! - No session-level advisory locks or temporary tables: locks are row locks or
//!   `pg_advisory_xact_lock`. Directly (or through session pooling) each connection keeps its
//!   prepared statements and sets its timeouts once; behind a transaction-pooling proxy
//!   (`pool_mode=transaction` in the URL) nothing lives in a session (see [`pool`]).
//! - Nothing waits for ever: every transaction runs with `lock_timeout`, `statement_timeout`,
//!   `idle_in_transaction_session_timeout` (a stalled instance's open transaction is ended by
//!   the server, which frees the outbox head) and READ COMMITTED, checked at open; short TCP
//!   keepalives. Connections are tested before they are lent, and one that failed is dropped.
//! - Schema: versioned migrations (`postgres/NNNN_*.sql`), applied on open in one transaction
//!   under a transaction-scoped advisory lock, so instances starting together migrate once.

mod commit;
mod pool;
#[cfg(feature = "test-support")]
pub mod testing;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::Row;
use postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::codec::{
    decode_intent, encode, limit_param, parse_col, provider_ref_key, reconcile_at, to_i64, to_u64,
};
use super::group::{Group, OwnedCommit, Write, Written};
use super::{
    Backlog, Commit, CommitOutcome, InsertOutcome, ListCursor, ListFilter, NewIntent, ParkOutcome,
    ParkedEvent, Store,
};
use crate::error::StoreError;
use crate::intent::Intent;
use crate::lifecycle::{Cause, IntentStatus, Transition};
use crate::outbox::{EventType, OutboxEvent};
use crate::types::{AccountName, ConsumerName, IdempotencyKey, IntentId, Provider, Timestamp};
pub use pool::PoolMode;
use pool::{Param, Pooled, Run, params};

/// Schema migrations, in order. A released migration is never edited; changes come as new ones.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("postgres/0001_init.sql")),
    (2, include_str!("postgres/0002_rate_slots.sql")),
];

/// The key of the transaction-scoped advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x696e_7465_6e74_6b69; // "intentki"

/// How to reach the database, and how many connections to use.
#[derive(Clone)]
pub struct PostgresConfig {
    /// A `postgres://` URL or a `key=value` connection string. It may hold a password: it is
    /// never printed (`Debug` shows host and database only).
    pub url: String,
    /// Connections this process keeps at most.
    pub max_connections: usize,
    /// How long a call waits for a free connection before failing with `STORE_BUSY`.
    pub pool_wait: Duration,
    /// Connecting's timeout (unless the URL sets `connect_timeout`).
    pub connect_timeout: Duration,
    /// A PEM file of extra CA certificates for TLS (beside the system's), for a server whose
    /// certificate a private CA signed.
    pub ca_file: Option<std::path::PathBuf>,
}

impl PostgresConfig {
    /// Defaults for `url`: 16 connections, 5 s pool wait, 5 s connect timeout.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            max_connections: 16,
            pool_wait: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }

    /// Whether `s` names a PostgreSQL database rather than a SQLite file.
    pub fn is_url(s: &str) -> bool {
        s.starts_with("postgres://") || s.starts_with("postgresql://")
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redacted_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("pool_wait", &self.pool_wait)
            .field("connect_timeout", &self.connect_timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The URL without intentkit's own `pool_mode` parameter (which the driver does not know),
/// and that mode: `session` (the default: a direct connection or session pooling) or
/// `transaction` (a transaction-pooling proxy such as PgBouncer's `pool_mode = transaction`).
pub fn split_pool_mode(url: &str) -> Result<(String, PoolMode), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), PoolMode::Session));
    };
    let mut mode = PoolMode::Session;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("pool_mode", "session")) => mode = PoolMode::Session,
            Some(("pool_mode", "transaction")) => mode = PoolMode::Transaction,
            Some(("pool_mode", _)) | None if pair.starts_with("pool_mode") => {
                return Err(StoreError::Backend(
                    "the database URL's pool_mode must be session or transaction".into(),
                ));
            }
            _ => kept.push(pair),
        }
    }
    Ok(if kept.is_empty() {
        (base.to_string(), mode)
    } else {
        (format!("{base}?{}", kept.join("&")), mode)
    })
}

/// The URL's hosts and database, without user, password or options.
pub fn redacted_url(url: &str) -> String {
    let parsed = split_pool_mode(url).and_then(|(u, _)| {
        postgres::Config::from_str(&u).map_err(|e| StoreError::Backend(e.to_string()))
    });
    match parsed {
        Ok(c) => {
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .zip(c.get_ports().iter().chain(std::iter::repeat(&5432)))
                .map(|(h, p)| match h {
                    postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
                    postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .collect();
            format!(
                "postgres://{}/{}",
                hosts.join(","),
                c.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "postgres://(unparseable)".into(),
    }
}

/// The PostgreSQL [`Store`].
pub struct PostgresStore {
    /// Always `Some` until dropped (see `Drop`).
    pool: Option<r2d2::Pool<pool::Manager>>,
    group: Group,
    described: String,
    mode: PoolMode,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.described)
            .finish_non_exhaustive()
    }
}

/// Maps a driver error to the store's: the message never holds the connection string.
fn store_error(e: postgres::Error) -> StoreError {
    if let Some(code) = e.code() {
        let msg = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_string());
        return if *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::FOREIGN_KEY_VIOLATION
            || *code == SqlState::CHECK_VIOLATION
            || *code == SqlState::NOT_NULL_VIOLATION
        {
            StoreError::Constraint(msg)
        } else if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || *code == SqlState::QUERY_CANCELED
        {
            StoreError::Busy
        } else {
            StoreError::Backend(format!("postgres: {msg}"))
        };
    }
    StoreError::Backend(format!("postgres: {e}"))
}

fn tls(config: &PostgresConfig) -> Result<MakeRustlsConnect, StoreError> {
    use rustls_platform_verifier::Verifier;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut extra = Vec::new();
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            StoreError::Backend(format!("reading the CA file {}: {e}", path.display()))
        })?;
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let cert: rustls::pki_types::CertificateDer<'static> = cert
                .map_err(|e| StoreError::Backend(format!("the CA file {}: {e}", path.display())))?;
            extra.push(cert);
        }
    }
    let verifier = Verifier::new_with_extra_roots(extra, provider.clone())
        .map_err(|e| StoreError::Backend(format!("TLS roots: {e}")))?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(client))
}

impl PostgresStore {
    /// Connects and brings the schema up to date. It may be called from any thread, async
    /// or not: the driver's blocking calls run on a thread of their own here.
    pub fn open(config: PostgresConfig) -> Result<Self, StoreError> {
        std::thread::scope(|s| {
            s.spawn(|| Self::open_here(config))
                .join()
                .unwrap_or_else(|_| Err(StoreError::Backend("opening PostgreSQL panicked".into())))
        })
    }

    fn open_here(config: PostgresConfig) -> Result<Self, StoreError> {
        let described = redacted_url(&config.url);
        let (url, mode) = split_pool_mode(&config.url)?;
        let mut pg = postgres::Config::from_str(&url).map_err(|e| {
            // The driver's message names the bad option, never the value.
            StoreError::Backend(format!("the database URL does not parse: {e}"))
        })?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(config.connect_timeout);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("intentkit");
        }
        // The timeouts and isolation every transaction needs (`pool::SETTINGS`): once per
        // session as startup options, or per transaction behind a transaction pooler, which
        // refuses startup options (PgBouncer: "unsupported startup parameter: options").
        if mode == PoolMode::Session {
            let ours = pool::startup_options();
            let options = match pg.get_options() {
                Some(theirs) => format!("{theirs} {ours}"),
                None => ours,
            };
            pg.options(&options);
        }
        // A dead peer is noticed in seconds, not at TCP's defaults (hours idle, ~15 min busy).
        pg.keepalives_idle(Duration::from_secs(30));
        pg.tcp_user_timeout(Duration::from_secs(30));
        let manager = pool::Manager {
            config: pg,
            tls: tls(&config)?,
            mode,
        };
        let context = |e| match e {
            StoreError::Backend(msg) => StoreError::Backend(format!("opening {described}: {msg}")),
            other => other,
        };
        let pool =
            pool::build(manager, config.max_connections, config.pool_wait).map_err(context)?;
        let store = PostgresStore {
            pool: Some(pool),
            group: Group::default(),
            described: described.clone(),
            mode,
        };
        store
            .check_settings()
            .and_then(|()| store.migrate())
            .map_err(context)?;
        Ok(store)
    }

    /// Refuses to run without the timeouts and isolation every transaction needs: a proxy
    /// that drops startup options (PgBouncer's `ignore_startup_parameters = options`) would
    /// leave them silently unset.
    fn check_settings(&self) -> Result<(), StoreError> {
        let found = self.session_settings()?;
        for ((name, want), (_, got)) in pool::SETTINGS.iter().zip(&found) {
            if got != want {
                return Err(StoreError::Backend(format!(
                    "{name} is {got:?} for intentkit's statements, not {want:?}: the startup \
                     options did not reach PostgreSQL. Behind a transaction-pooling proxy \
                     (PgBouncer's pool_mode = transaction), add pool_mode=transaction to the \
                     database URL"
                )));
            }
        }
        Ok(())
    }

    /// The timeouts and isolation intentkit's statements run under, as the server reports
    /// them (`lock_timeout`, `statement_timeout`, `idle_in_transaction_session_timeout`, and
    /// the transaction's isolation), read the way every statement runs.
    pub fn session_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.conn()?.settings()
    }

    /// How statements reach the server: directly (or through session pooling), or through a
    /// transaction pooler.
    pub fn pool_mode(&self) -> PoolMode {
        self.mode
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let row = self.conn()?.query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )?;
        Ok(row.get(0))
    }

    /// How many transactions group commit has written, and how many writes they carried.
    pub fn group_commit_stats(&self) -> (usize, usize) {
        self.group.stats()
    }

    fn conn(&self) -> Result<Pooled, StoreError> {
        match &self.pool {
            Some(pool) => pool.get().map_err(pool::pool_error),
            None => Err(StoreError::Backend("the store is closed".into())),
        }
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let supported = MIGRATIONS.last().map_or(0, |m| m.0);
        let mut c = self.conn()?;
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", params![&MIGRATION_LOCK])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version BIGINT PRIMARY KEY,
                 applied_at BIGINT NOT NULL
             )",
        )?;
        let found: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )?
            .get(0);
        if found > supported {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
        let now = crate::clock::Clock::now(&crate::clock::SystemClock).unix_millis();
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                params![version, &now],
            )?;
        }
        tx.commit()
    }

    /// Runs one statement on a pooled connection and returns its rows.
    fn query(&self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        self.conn()?.query(sql, params)
    }

    fn execute(&self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        self.conn()?.execute(sql, params)
    }

    fn intents(&self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Intent>, StoreError> {
        self.query(sql, params)?
            .iter()
            .map(|r| decode_intent(r.get(0)))
            .collect()
    }

    fn one_intent(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Option<Intent>, StoreError> {
        Ok(self.intents(sql, params)?.into_iter().next())
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing a connection blocks on its own runtime, which must not happen on an async
        // worker (the last engine handle may go away there); a thread of its own does it.
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

fn insert_history(tx: &mut impl Run, id: IntentId, t: &Transition) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO intent_history (intent_id, from_status, to_status, cause, at, provider_event_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
        params![
            &id.to_string(),
            &t.from.map(IntentStatus::as_str),
            &t.to.as_str(),
            &t.cause.as_str(),
            &t.at.unix_millis(),
            &t.provider_event_id,
        ],
    )?;
    Ok(())
}

/// The columns [`parked_row`] reads, in its order.
macro_rules! parked_columns {
    () => {
        "id, provider, account, lookup_key, intent_id, proof, received_at, event"
    };
}

fn parked_row(r: &Row) -> Result<ParkedEvent, StoreError> {
    Ok(ParkedEvent {
        id: r.get(0),
        provider: parse_col("provider", r.get(1))?,
        account: r
            .get::<_, Option<&str>>(2)
            .map(|a| parse_col("account", a))
            .transpose()?,
        lookup_key: r.get::<_, &str>(3).to_string(),
        intent_id: r
            .get::<_, Option<&str>>(4)
            .map(|i| parse_col("intent id", i))
            .transpose()?,
        proof: parse_col("proof", r.get(5))?,
        received_at: Timestamp::from_unix_millis(r.get(6)),
        event: serde_json::from_str(r.get(7))
            .map_err(|e| StoreError::Corrupt(format!("parked event: {e}")))?,
    })
}

impl Store for PostgresStore {
    fn insert_intent(&self, new: NewIntent<'_>) -> Result<InsertOutcome, StoreError> {
        commit::insert_intent(self, new)
    }

    fn commit(&self, c: Commit<'_>) -> Result<CommitOutcome, StoreError> {
        let write = Write::Commit(Box::new(OwnedCommit::from(c)));
        match self
            .group
            .write(write, |batch| commit::write_batch(self, batch))?
        {
            Written::Commit(outcome) => Ok(outcome),
            Written::Park(_) => Err(StoreError::Backend("group commit mixed up a result".into())),
        }
    }

    fn get_intent(&self, id: IntentId) -> Result<Option<Intent>, StoreError> {
        self.one_intent(
            "SELECT body FROM intents WHERE id = $1",
            params![&id.to_string()],
        )
    }

    fn get_by_idempotency_key(&self, key: &IdempotencyKey) -> Result<Option<Intent>, StoreError> {
        self.one_intent(
            "SELECT body FROM intents WHERE idempotency_key = $1",
            params![&key.as_str()],
        )
    }

    fn find_by_provider_ref(
        &self,
        provider: Provider,
        lookup_key: &str,
    ) -> Result<Option<Intent>, StoreError> {
        self.one_intent(
            "SELECT body FROM intents WHERE provider = $1 AND provider_ref = $2",
            params![&provider.as_str(), &lookup_key],
        )
    }

    fn history(&self, id: IntentId) -> Result<Vec<Transition>, StoreError> {
        self.query(
            "SELECT from_status, to_status, cause, at, provider_event_id
             FROM intent_history WHERE intent_id = $1 ORDER BY id",
            params![&id.to_string()],
        )?
        .iter()
        .map(|r| {
            Ok(Transition {
                from: r
                    .get::<_, Option<&str>>(0)
                    .map(|s| parse_col::<IntentStatus>("status", s))
                    .transpose()?,
                to: parse_col("status", r.get(1))?,
                cause: parse_col::<Cause>("cause", r.get(2))?,
                at: Timestamp::from_unix_millis(r.get(3)),
                provider_event_id: r.get(4),
            })
        })
        .collect()
    }

    fn read_events(&self, after: u64, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        // Only rows with a seq: a seq is assigned as its transaction's last step, in commit
        // order (see the module's documentation).
        self.query(
            "SELECT seq, event_id, event_type, intent_id, business_key, created_at, payload
             FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
            params![&to_i64(after)?, &limit_param(limit)],
        )?
        .iter()
        .map(|r| {
            let event_id: &str = r.get(1);
            let event_type: &str = r.get(2);
            Ok(OutboxEvent {
                seq: to_u64(r.get(0))?,
                event_id: uuid::Uuid::parse_str(event_id)
                    .map_err(|_| StoreError::Corrupt(format!("event id {event_id:?}")))?,
                event_type: EventType::parse(event_type)
                    .ok_or_else(|| StoreError::Corrupt(format!("event type {event_type:?}")))?,
                intent_id: parse_col("intent id", r.get(3))?,
                business_key: r.get::<_, &str>(4).to_string(),
                created_at: Timestamp::from_unix_millis(r.get(5)),
                payload: serde_json::from_str(r.get(6))
                    .map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))?,
            })
        })
        .collect()
    }

    fn head_seq(&self) -> Result<u64, StoreError> {
        let rows = self.query("SELECT seq FROM outbox_head", &[])?;
        to_u64(rows.first().map_or(0, |r| r.get(0)))
    }

    fn consumer_position(&self, consumer: &ConsumerName) -> Result<u64, StoreError> {
        let rows = self.query(
            "SELECT acked_seq FROM consumers WHERE name = $1",
            params![&consumer.as_str()],
        )?;
        to_u64(rows.first().map_or(0, |r| r.get(0)))
    }

    fn advance_consumer(
        &self,
        consumer: &ConsumerName,
        seq: u64,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let rows = self.query(
            "INSERT INTO consumers (name, acked_seq, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
                 SET acked_seq = GREATEST(consumers.acked_seq, excluded.acked_seq),
                     updated_at = excluded.updated_at
             RETURNING acked_seq",
            params![&consumer.as_str(), &to_i64(seq)?, &now.unix_millis()],
        )?;
        to_u64(rows.first().map_or(0, |r| r.get(0)))
    }

    fn list_intents(
        &self,
        filter: &ListFilter,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<Intent>, StoreError> {
        // The filter's values, owned here so that the parameters can borrow them.
        let statuses: Vec<String> = filter
            .statuses
            .iter()
            .map(|s| s.as_str().to_string())
            .collect();
        let provider = filter.provider.map(Provider::as_str);
        let account = filter.account.as_ref().map(|a| a.as_str().to_string());
        let from = filter.created_from.map(Timestamp::unix_millis);
        let to = filter.created_to.map(Timestamp::unix_millis);
        let cursor = after.map(|c| (c.created_at.unix_millis(), c.id.to_string()));
        let limit = limit_param(limit);
        let mut sql = String::from("SELECT body FROM intents WHERE TRUE");
        let mut args: Vec<Param<'_>> = Vec::new();
        fn arg<'a>(sql: &mut String, args: &mut Vec<Param<'a>>, clause: &str, p: Param<'a>) {
            args.push(p);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        }
        if !statuses.is_empty() {
            arg(
                &mut sql,
                &mut args,
                " AND status = ANY(?)",
                pool::param(&statuses),
            );
        }
        if let Some(p) = &provider {
            arg(&mut sql, &mut args, " AND provider = ?", pool::param(p));
        }
        if let Some(a) = &account {
            arg(&mut sql, &mut args, " AND account = ?", pool::param(a));
        }
        if let Some(t) = &from {
            arg(&mut sql, &mut args, " AND created_at >= ?", pool::param(t));
        }
        if let Some(t) = &to {
            arg(&mut sql, &mut args, " AND created_at < ?", pool::param(t));
        }
        if let Some((at, id)) = &cursor {
            // Newest first; the next page holds what sorts strictly after the cursor.
            arg(
                &mut sql,
                &mut args,
                " AND (created_at, id) < (?",
                pool::param(at),
            );
            arg(&mut sql, &mut args, ", ?)", pool::param(id));
        }
        arg(
            &mut sql,
            &mut args,
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            pool::param(&limit),
        );
        self.conn()?
            .query_dyn(&sql, &args)?
            .iter()
            .map(|r| decode_intent(r.get(0)))
            .collect()
    }

    fn reconcile_open(
        &self,
        provider: Provider,
        account: &AccountName,
        now: Timestamp,
        created_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<Timestamp>, StoreError> {
        Ok(self
            .query(
                "SELECT reconcile_at FROM intents
                 WHERE provider = $1 AND account = $2 AND reconcile_until > $3
                   AND reconcile_at < $4
                 ORDER BY reconcile_at LIMIT $5",
                params![
                    &provider.as_str(),
                    &account.as_str(),
                    &now.unix_millis(),
                    &created_before.unix_millis(),
                    &limit_param(limit),
                ],
            )?
            .iter()
            .map(|r| Timestamp::from_unix_millis(r.get(0)))
            .collect())
    }

    fn due_for_expiry(
        &self,
        provider: Provider,
        account: &AccountName,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Intent>, StoreError> {
        self.intents(
            "SELECT body FROM intents
             WHERE provider = $1 AND account = $2 AND status IN ('created', 'pending')
               AND expires_at <= $3
             ORDER BY expires_at LIMIT $4",
            params![
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
        self.intents(
            "SELECT body FROM intents
             WHERE provider = $1 AND account = $2 AND status = 'created' AND updated_at <= $3
             ORDER BY updated_at LIMIT $4",
            params![
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
        let rows = self.query(
            "SELECT
                 (SELECT COUNT(*) FROM intents WHERE provider = $1 AND account = $2
                     AND status IN ('created', 'pending') AND expires_at <= $3),
                 (SELECT COUNT(*) FROM intents WHERE provider = $1 AND account = $2
                     AND status = 'created' AND updated_at <= $4),
                 (SELECT COUNT(*) FROM parked_events WHERE provider = $1 AND account = $2)",
            params![
                &provider.as_str(),
                &account.as_str(),
                &now.unix_millis(),
                &updated_before.unix_millis(),
            ],
        )?;
        let n = |i: usize| usize::try_from(rows[0].get::<_, i64>(i)).unwrap_or(0);
        Ok(Backlog {
            due_for_expiry: n(0),
            stuck_in_created: n(1),
            parked: n(2),
        })
    }

    fn update_snapshot(&self, intent: &Intent, expected_version: u64) -> Result<bool, StoreError> {
        let changed = self.execute(
            "UPDATE intents SET updated_at = $1, version = $2, body = $3
             WHERE id = $4 AND version = $5 AND status = $6",
            params![
                &intent.updated_at.unix_millis(),
                &to_i64(intent.version)?,
                &encode(intent)?,
                &intent.id.to_string(),
                &to_i64(expected_version)?,
                &intent.status.as_str(),
            ],
        )?;
        Ok(changed == 1)
    }

    fn park_event(&self, event: &ParkedEvent, cap: usize) -> Result<ParkOutcome, StoreError> {
        // Decided on a plain read first: once an account is full, or the event is kept
        // already, a flood never queues for a transaction.
        if let Some(verdict) = commit::park_verdict(&mut *self.conn()?, event, cap)? {
            return Ok(verdict);
        }
        let write = Write::Park {
            event: Box::new(event.clone()),
            cap,
        };
        match self
            .group
            .write(write, |batch| commit::write_batch(self, batch))?
        {
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
        const SQL: &str = concat!(
            "SELECT ",
            parked_columns!(),
            " FROM parked_events
             WHERE provider = $1 AND (account = $2 OR account IS NULL)
               AND (lookup_key = $3 OR intent_id = $4)
             ORDER BY id"
        );
        self.query(
            SQL,
            params![
                &provider.as_str(),
                &account.as_str(),
                &lookup_key,
                &intent.to_string(),
            ],
        )?
        .iter()
        .map(parked_row)
        .collect()
    }

    fn parked_after(
        &self,
        provider: Provider,
        account: Option<&AccountName>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            parked_columns!(),
            " FROM parked_events
             WHERE provider = $1 AND account IS NOT DISTINCT FROM $2 AND id > $3
             ORDER BY id LIMIT $4"
        );
        self.query(
            SQL,
            params![
                &provider.as_str(),
                &account.map(AccountName::as_str),
                &after,
                &limit_param(limit),
            ],
        )?
        .iter()
        .map(parked_row)
        .collect()
    }

    fn drop_parked(&self, id: i64) -> Result<(), StoreError> {
        self.execute("DELETE FROM parked_events WHERE id = $1", params![&id])?;
        Ok(())
    }

    fn prune_parked(&self, received_before: Timestamp) -> Result<usize, StoreError> {
        let n = self.execute(
            "DELETE FROM parked_events WHERE received_at < $1",
            params![&received_before.unix_millis()],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn sweep_cursor(
        &self,
        provider: Provider,
        account: &AccountName,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .query(
                "SELECT value FROM sweep_cursors
                 WHERE provider = $1 AND account = $2 AND name = $3",
                params![&provider.as_str(), &account.as_str(), &name],
            )?
            .first()
            .map(|r| r.get(0)))
    }

    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<u64>, StoreError> {
        // As SQLite's (`store/sqlite.rs`, `LEASE_SQL`): one statement, so two instances racing
        // for a free lease serialize on its row and exactly one gets it.
        self.query(
            "INSERT INTO leases (name, holder, fence, expires_at) VALUES ($1, $2, 1, $4)
             ON CONFLICT (name) DO UPDATE SET
                 fence = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > $3
                              THEN leases.fence ELSE leases.fence + 1 END,
                 holder = excluded.holder,
                 expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at <= $3
             RETURNING fence",
            params![&name, &holder, &now.unix_millis(), &until.unix_millis()],
        )?
        .first()
        .map(|r| to_u64(r.get(0)))
        .transpose()
    }

    fn release_lease(&self, name: &str, holder: &str, fence: u64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2 AND fence = $3",
            params![&name, &holder, &to_i64(fence)?],
        )?;
        Ok(())
    }

    fn set_sweep_cursor(
        &self,
        provider: Provider,
        account: &AccountName,
        name: &str,
        value: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO sweep_cursors (provider, account, name, value, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (provider, account, name)
                 DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            params![
                &provider.as_str(),
                &account.as_str(),
                &name,
                &value,
                &now.unix_millis(),
            ],
        )?;
        Ok(())
    }

    // ---- Rate slots (schema v2): shared rates, one conditional statement each. ----

    fn take_slot(
        &self,
        key: &str,
        now: Timestamp,
        interval_ms: i64,
        tolerance_ms: i64,
    ) -> Result<Result<(), i64>, StoreError> {
        // As SQLite's (`store/sqlite.rs`, `SLOT_SQL`): one statement, so instances taking the
        // same slot at once serialize on its row and each sees the other's move.
        let now = now.unix_millis();
        let taken = self.query(
            "INSERT INTO rate_slots (key, tat) VALUES ($1, $2::BIGINT + $3::BIGINT)
             ON CONFLICT (key) DO UPDATE
                 SET tat = GREATEST(rate_slots.tat, $2::BIGINT) + $3::BIGINT
             WHERE GREATEST(rate_slots.tat, $2::BIGINT) - $2::BIGINT <= $4::BIGINT
             RETURNING tat",
            params![&key, &now, &interval_ms, &tolerance_ms],
        )?;
        if !taken.is_empty() {
            return Ok(Ok(()));
        }
        let tat: i64 = self
            .query("SELECT tat FROM rate_slots WHERE key = $1", params![&key])?
            .first()
            .map_or(now, |r| r.get(0));
        Ok(Err((tat - now - tolerance_ms).max(1)))
    }

    fn prune_slots(&self, free_before: Timestamp) -> Result<usize, StoreError> {
        let n = self.execute(
            "DELETE FROM rate_slots WHERE tat < $1",
            params![&free_before.unix_millis()],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
