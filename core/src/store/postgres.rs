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
//!   `pg_advisory_xact_lock`. Each connection keeps its prepared statements, so a pooling
//!   proxy in front must keep them (session pooling, or PgBouncer 1.21+ with
//!   `max_prepared_statements`).
//! - Nothing waits for ever: each session sets `lock_timeout`, `statement_timeout`,
//!   `idle_in_transaction_session_timeout` (a stalled instance's open transaction is ended by
//!   the server, which frees the outbox head), READ COMMITTED, and short TCP keepalives.
//! - Schema: versioned migrations (`postgres/NNNN_*.sql`), applied on open in one transaction
//!   under a transaction-scoped advisory lock, so instances starting together migrate once.

mod commit;
mod pool;
#[cfg(feature = "test-support")]
pub mod testing;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{GenericClient, Row};
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
use pool::{Pool, Pooled};

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

/// The URL's hosts and database, without user, password or options.
pub fn redacted_url(url: &str) -> String {
    match postgres::Config::from_str(url) {
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
    pool: Arc<Pool>,
    group: Group,
    described: String,
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
        let mut pg = postgres::Config::from_str(&config.url).map_err(|e| {
            // The driver's message names the bad option, never the value.
            StoreError::Backend(format!("the database URL does not parse: {e}"))
        })?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(config.connect_timeout);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("intentkit");
        }
        // Nothing waits for ever: a lock or statement stuck behind a paused or partitioned
        // peer fails (`STORE_BUSY`, retried by the caller) instead of freezing every writer,
        // and a transaction left open by a stalled instance is ended by the server, which
        // frees the outbox head for the others. READ COMMITTED is what the write statements'
        // re-checks rely on, whatever the database's default.
        let ours = "-c lock_timeout=10s -c statement_timeout=30s \
                    -c idle_in_transaction_session_timeout=30s \
                    -c default_transaction_isolation=read\\ committed";
        let options = match pg.get_options() {
            Some(theirs) => format!("{theirs} {ours}"),
            None => ours.to_string(),
        };
        pg.options(&options);
        // A dead peer is noticed in seconds, not at TCP's defaults (hours idle, ~15 min busy).
        pg.keepalives_idle(Duration::from_secs(30));
        pg.tcp_user_timeout(Duration::from_secs(30));
        let pool = Pool::new(pg, tls(&config)?, config.max_connections, config.pool_wait);
        let store = PostgresStore {
            pool,
            group: Group::default(),
            described,
        };
        store.migrate().map_err(|e| match e {
            StoreError::Backend(msg) => {
                StoreError::Backend(format!("opening {}: {msg}", store.described))
            }
            other => other,
        })?;
        Ok(store)
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let mut c = self.conn()?;
        let row = c
            .client
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .map_err(store_error)?;
        Ok(row.get(0))
    }

    /// How many transactions group commit has written, and how many writes they carried.
    pub fn group_commit_stats(&self) -> (usize, usize) {
        self.group.stats()
    }

    fn conn(&self) -> Result<Pooled, StoreError> {
        self.pool.get()
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let supported = MIGRATIONS.last().map_or(0, |m| m.0);
        let mut c = self.conn()?;
        let mut tx = c.client.transaction().map_err(store_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(store_error)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version BIGINT PRIMARY KEY,
                 applied_at BIGINT NOT NULL
             )",
        )
        .map_err(store_error)?;
        let found: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .map_err(store_error)?
            .get(0);
        if found > supported {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
        let now = crate::clock::Clock::now(&crate::clock::SystemClock).unix_millis();
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
            tx.batch_execute(sql).map_err(store_error)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[version, &now],
            )
            .map_err(store_error)?;
        }
        tx.commit().map_err(store_error)
    }

    /// Runs one statement on a pooled connection and returns its rows.
    fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let mut c = self.conn()?;
        let c = &mut *c;
        let st = c.statements.get(&mut c.client, sql)?;
        c.client.query(&st, params).map_err(store_error)
    }

    fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let mut c = self.conn()?;
        let c = &mut *c;
        let st = c.statements.get(&mut c.client, sql)?;
        c.client.execute(&st, params).map_err(store_error)
    }

    fn intents(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Intent>, StoreError> {
        self.query(sql, params)?
            .iter()
            .map(|r| decode_intent(r.get(0)))
            .collect()
    }

    fn one_intent(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Intent>, StoreError> {
        Ok(self.intents(sql, params)?.into_iter().next())
    }
}

fn insert_history(
    tx: &mut impl GenericClient,
    statements: &mut pool::Statements,
    id: IntentId,
    t: &Transition,
) -> Result<(), StoreError> {
    let st = statements.get(
        tx,
        "INSERT INTO intent_history (intent_id, from_status, to_status, cause, at, provider_event_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )?;
    tx.execute(
        &st,
        &[
            &id.to_string(),
            &t.from.map(IntentStatus::as_str),
            &t.to.as_str(),
            &t.cause.as_str(),
            &t.at.unix_millis(),
            &t.provider_event_id,
        ],
    )
    .map_err(store_error)?;
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
        self.one_intent("SELECT body FROM intents WHERE id = $1", &[&id.to_string()])
    }

    fn get_by_idempotency_key(&self, key: &IdempotencyKey) -> Result<Option<Intent>, StoreError> {
        self.one_intent(
            "SELECT body FROM intents WHERE idempotency_key = $1",
            &[&key.as_str()],
        )
    }

    fn find_by_provider_ref(
        &self,
        provider: Provider,
        lookup_key: &str,
    ) -> Result<Option<Intent>, StoreError> {
        self.one_intent(
            "SELECT body FROM intents WHERE provider = $1 AND provider_ref = $2",
            &[&provider.as_str(), &lookup_key],
        )
    }

    fn history(&self, id: IntentId) -> Result<Vec<Transition>, StoreError> {
        self.query(
            "SELECT from_status, to_status, cause, at, provider_event_id
             FROM intent_history WHERE intent_id = $1 ORDER BY id",
            &[&id.to_string()],
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
            &[&to_i64(after)?, &limit_param(limit)],
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
            &[&consumer.as_str()],
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
            &[&consumer.as_str(), &to_i64(seq)?, &now.unix_millis()],
        )?;
        to_u64(rows.first().map_or(0, |r| r.get(0)))
    }

    fn list_intents(
        &self,
        filter: &ListFilter,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<Intent>, StoreError> {
        let mut sql = String::from("SELECT body FROM intents WHERE TRUE");
        let mut args: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: Box<dyn ToSql + Sync>| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        if !filter.statuses.is_empty() {
            let statuses: Vec<String> = filter
                .statuses
                .iter()
                .map(|s| s.as_str().to_string())
                .collect();
            arg(&mut sql, " AND status = ANY(?)", Box::new(statuses));
        }
        if let Some(p) = filter.provider {
            arg(&mut sql, " AND provider = ?", Box::new(p.as_str()));
        }
        if let Some(a) = &filter.account {
            arg(
                &mut sql,
                " AND account = ?",
                Box::new(a.as_str().to_string()),
            );
        }
        if let Some(t) = filter.created_from {
            arg(&mut sql, " AND created_at >= ?", Box::new(t.unix_millis()));
        }
        if let Some(t) = filter.created_to {
            arg(&mut sql, " AND created_at < ?", Box::new(t.unix_millis()));
        }
        if let Some(c) = after {
            // Newest first; the next page holds what sorts strictly after the cursor.
            arg(
                &mut sql,
                " AND (created_at, id) < (?",
                Box::new(c.created_at.unix_millis()),
            );
            arg(&mut sql, ", ?)", Box::new(c.id.to_string()));
        }
        arg(
            &mut sql,
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            Box::new(limit_param(limit)),
        );
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
        let mut c = self.conn()?;
        c.client
            .query(&sql, &params)
            .map_err(store_error)?
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
                &[
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
        self.intents(
            "SELECT body FROM intents
             WHERE provider = $1 AND account = $2 AND status = 'created' AND updated_at <= $3
             ORDER BY updated_at LIMIT $4",
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
        let rows = self.query(
            "SELECT
                 (SELECT COUNT(*) FROM intents WHERE provider = $1 AND account = $2
                     AND status IN ('created', 'pending') AND expires_at <= $3),
                 (SELECT COUNT(*) FROM intents WHERE provider = $1 AND account = $2
                     AND status = 'created' AND updated_at <= $4),
                 (SELECT COUNT(*) FROM parked_events WHERE provider = $1 AND account = $2)",
            &[
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
            &[
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
        {
            let mut c = self.conn()?;
            let c = &mut *c;
            if let Some(verdict) =
                commit::park_verdict(&mut c.client, &mut c.statements, event, cap)?
            {
                return Ok(verdict);
            }
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
            &[
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
            &[
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
        self.execute("DELETE FROM parked_events WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn prune_parked(&self, received_before: Timestamp) -> Result<usize, StoreError> {
        let n = self.execute(
            "DELETE FROM parked_events WHERE received_at < $1",
            &[&received_before.unix_millis()],
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
                &[&provider.as_str(), &account.as_str(), &name],
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
            &[&name, &holder, &now.unix_millis(), &until.unix_millis()],
        )?
        .first()
        .map(|r| to_u64(r.get(0)))
        .transpose()
    }

    fn release_lease(&self, name: &str, holder: &str, fence: u64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2 AND fence = $3",
            &[&name, &holder, &to_i64(fence)?],
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
            &[
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
            &[&key, &now, &interval_ms, &tolerance_ms],
        )?;
        if !taken.is_empty() {
            return Ok(Ok(()));
        }
        let tat: i64 = self
            .query("SELECT tat FROM rate_slots WHERE key = $1", &[&key])?
            .first()
            .map_or(now, |r| r.get(0));
        Ok(Err((tat - now - tolerance_ms).max(1)))
    }

    fn prune_slots(&self, free_before: Timestamp) -> Result<usize, StoreError> {
        let n = self.execute(
            "DELETE FROM rate_slots WHERE tat < $1",
            &[&free_before.unix_millis()],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
