//! Connections: an r2d2 pool (tested on checkout, so a connection the server or a proxy
//! dropped while idle is replaced instead of failing a request), and the one way statements
//! run on a connection, so that the same store code works directly against PostgreSQL and
//! behind a transaction-pooling proxy.
//!
//! - **Typed parameters.** Every statement's parameters carry their PostgreSQL type
//!   ([`param`]), so a statement can run without asking the server to describe it first.
//! - **[`PoolMode::Session`]** (a direct connection, or session pooling): the session's
//!   timeouts and isolation are sent once as startup options, and each statement is prepared
//!   once per connection and kept (a named statement, reused).
//! - **[`PoolMode::Transaction`]** (PgBouncer's `pool_mode = transaction` and the like): no
//!   state may outlive a transaction, since the next one may run on another server connection.
//!   Every statement runs as an unnamed statement (parse, bind and execute in one round trip),
//!   inside a transaction that first sets the timeouts and isolation with `SET LOCAL`; a
//!   statement outside a transaction gets a short transaction of its own.
//! - **A connection that returned an error other than a plain refusal** (a constraint, a
//!   conflict, a lock or statement timeout) is marked broken and discarded when given back:
//!   its session may be in any state, and it is never lent again.

use std::collections::HashMap;
use std::time::Duration;

use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::StoreError;

/// How the server's sessions relate to ours: whether something in between pools them per
/// transaction. Chosen by the database URL's `pool_mode` parameter (see `docs/config.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolMode {
    /// One server session per connection of ours (direct, or session pooling).
    #[default]
    Session,
    /// A proxy lends a server connection per transaction: nothing lives in a session.
    Transaction,
}

impl PoolMode {
    /// The URL parameter's value.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// The settings every transaction of ours runs under, whatever the database's defaults:
/// nothing waits for ever (a lock or statement stuck behind a paused or partitioned peer fails
/// with `STORE_BUSY`, retried by the caller, instead of freezing every writer; a transaction
/// left open by a stalled instance is ended by the server, which frees the outbox head), and
/// READ COMMITTED, which the write statements' re-checks rely on.
pub(super) const SETTINGS: [(&str, &str); 4] = [
    ("lock_timeout", "10s"),
    ("statement_timeout", "30s"),
    ("idle_in_transaction_session_timeout", "30s"),
    ("default_transaction_isolation", "read committed"),
];

/// [`SETTINGS`] as startup options (session mode).
pub(super) fn startup_options() -> String {
    SETTINGS
        .iter()
        .map(|(k, v)| format!("-c {k}={}", v.replace(' ', "\\ ")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`SETTINGS`] for one transaction (transaction mode): the isolation is the transaction's own.
fn set_local() -> String {
    let mut sql = String::from("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
    for (k, v) in SETTINGS
        .iter()
        .filter(|(k, _)| *k != "default_transaction_isolation")
    {
        sql.push_str(&format!("; SET LOCAL {k} = '{v}'"));
    }
    sql
}

/// A parameter and its PostgreSQL type.
pub(super) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// The PostgreSQL type a Rust value is sent as.
pub(super) trait PgType {
    const PG: Type;
}
impl PgType for i64 {
    const PG: Type = Type::INT8;
}
impl PgType for bool {
    const PG: Type = Type::BOOL;
}
impl PgType for String {
    const PG: Type = Type::TEXT;
}
impl PgType for str {
    const PG: Type = Type::TEXT;
}
impl PgType for Vec<i64> {
    const PG: Type = Type::INT8_ARRAY;
}
impl PgType for [i64] {
    const PG: Type = Type::INT8_ARRAY;
}
impl PgType for Vec<String> {
    const PG: Type = Type::TEXT_ARRAY;
}
impl<T: PgType + ?Sized> PgType for &T {
    const PG: Type = T::PG;
}
impl<T: PgType> PgType for Option<T> {
    const PG: Type = T::PG;
}

/// `v` with its type.
pub(super) fn param<T: PgType + ToSql + Sync>(v: &T) -> Param<'_> {
    (v, T::PG)
}

/// A statement's parameters with their types: `params![&a, &b]`.
macro_rules! params {
    ($($v:expr),* $(,)?) => { &[$($crate::store::postgres::pool::param($v)),*] };
}
pub(super) use params;

/// Whether an error leaves the session as it was: the server refused this statement (a
/// constraint, a conflict, a timeout) and nothing else. Anything else (a protocol or I/O
/// error, a missing statement, a closed connection) discards the connection.
fn keeps_session(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code().is_some_and(|c| {
        let class = &c.code()[..2];
        class == "23" // integrity constraint violations
            || class == "40" // serialization failure, deadlock
            || *c == SqlState::LOCK_NOT_AVAILABLE
            || *c == SqlState::QUERY_CANCELED
    })
}

/// One connection of the pool and what it keeps.
pub(super) struct PgConn {
    client: Client,
    kept: Kept,
}

/// What a connection keeps beside its client: its statements (session mode), its mode, and
/// whether it failed in a way that rules out lending it again.
struct Kept {
    statements: HashMap<&'static str, Statement>,
    mode: PoolMode,
    broken: bool,
}

/// Runs statements: a connection outside a transaction, or a transaction on one. `sql` is
/// static for the statements the store always runs (prepared once per connection in session
/// mode); [`Run::query_dyn`] runs one built at run time (never kept).
pub(super) trait Run {
    /// The statement's rows.
    fn query(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError>;
    /// The rows a statement built at run time answers.
    fn query_dyn(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError>;
    /// How many rows the statement changed.
    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError>;

    /// The statement's one row.
    fn query_one(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<Row, StoreError> {
        self.query(sql, params)?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Backend("a statement answered no row".into()))
    }
}

/// Runs `sql` on `c` (the connection, or a transaction on it): its rows, and how many rows
/// it changed when `count`.
fn run(
    c: &mut impl GenericClient,
    kept: &mut Kept,
    sql: Sql<'_>,
    params: &[Param<'_>],
    count: bool,
) -> Result<(Vec<Row>, u64), StoreError> {
    let statements = &mut kept.statements;
    let result = (|| {
        let keep = match (kept.mode, sql) {
            (PoolMode::Session, Sql::Static(s)) => Some(s),
            _ => None,
        };
        if let Some(s) = keep {
            let st = match statements.get(s) {
                Some(st) => st.clone(),
                None => {
                    let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
                    let st = c.prepare_typed(s, &types)?;
                    statements.insert(s, st.clone());
                    st
                }
            };
            let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
            if count {
                return Ok((Vec::new(), c.execute(&st, &values)?));
            }
            return Ok((c.query(&st, &values)?, 0));
        }
        let text = match sql {
            Sql::Static(s) => s,
            Sql::Dynamic(s) => s,
        };
        let mut it = c.query_typed_raw(text, params.iter().map(|(v, t)| (*v, t.clone())))?;
        let mut rows = Vec::new();
        while let Some(row) = postgres::fallible_iterator::FallibleIterator::next(&mut it)? {
            rows.push(row);
        }
        let n = it.rows_affected().unwrap_or(0);
        Ok((rows, n))
    })();
    result.map_err(|e: postgres::Error| {
        if !keeps_session(&e) {
            kept.broken = true;
        }
        super::store_error(e)
    })
}

#[derive(Clone, Copy)]
enum Sql<'a> {
    Static(&'static str),
    Dynamic(&'a str),
}

impl PgConn {
    fn new(client: Client, mode: PoolMode) -> Self {
        PgConn {
            client,
            kept: Kept {
                statements: HashMap::new(),
                mode,
                broken: false,
            },
        }
    }

    /// A transaction, with the timeouts and isolation set for it in transaction mode (in
    /// session mode the session has them). Dropped without [`Tx::commit`], it rolls back.
    pub(super) fn transaction(&mut self) -> Result<Tx<'_>, StoreError> {
        let mode = self.kept.mode;
        let begun = self.client.transaction().and_then(|mut tx| {
            if mode == PoolMode::Transaction {
                tx.batch_execute(&set_local())?;
            }
            Ok(tx)
        });
        match begun {
            Ok(tx) => Ok(Tx {
                tx,
                kept: &mut self.kept,
            }),
            Err(e) => {
                self.kept.broken = true;
                Err(super::store_error(e))
            }
        }
    }

    /// Runs `sql` on its own: one autocommit statement, or in transaction mode a transaction
    /// of its own (so that the timeouts hold for it too).
    fn alone(
        &mut self,
        sql: Sql<'_>,
        params: &[Param<'_>],
        count: bool,
    ) -> Result<(Vec<Row>, u64), StoreError> {
        if self.kept.mode == PoolMode::Transaction {
            let mut tx = self.transaction()?;
            let out = run(&mut tx.tx, tx.kept, sql, params, count)?;
            tx.commit()?;
            return Ok(out);
        }
        run(&mut self.client, &mut self.kept, sql, params, count)
    }

    /// The settings in effect for a statement of ours, as the server reports them.
    pub(super) fn settings(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.query(
            "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),
                    current_setting('idle_in_transaction_session_timeout'),
                    current_setting('transaction_isolation')",
            &[],
        )?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Backend("SHOW answered nothing".into()))?;
        Ok(SETTINGS
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.to_string(), row.get::<_, String>(i)))
            .collect())
    }
}

impl Run for PgConn {
    fn query(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        Ok(self.alone(Sql::Static(sql), params, false)?.0)
    }
    fn query_dyn(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        Ok(self.alone(Sql::Dynamic(sql), params, false)?.0)
    }
    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        Ok(self.alone(Sql::Static(sql), params, true)?.1)
    }
}

/// A transaction on a pooled connection.
pub(super) struct Tx<'c> {
    tx: postgres::Transaction<'c>,
    kept: &'c mut Kept,
}

impl Tx<'_> {
    /// Commits. A failed commit may or may not have happened, and the connection is not
    /// trusted again.
    pub(super) fn commit(self) -> Result<(), StoreError> {
        let kept = self.kept;
        self.tx.commit().map_err(|e| {
            kept.broken = true;
            super::store_error(e)
        })
    }

    /// Runs SQL text as is (simple protocol): migrations.
    pub(super) fn batch_execute(&mut self, sql: &str) -> Result<(), StoreError> {
        self.tx.batch_execute(sql).map_err(|e| {
            if !keeps_session(&e) {
                self.kept.broken = true;
            }
            super::store_error(e)
        })
    }
}

impl Run for Tx<'_> {
    fn query(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        Ok(run(&mut self.tx, self.kept, Sql::Static(sql), params, false)?.0)
    }
    fn query_dyn(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        Ok(run(&mut self.tx, self.kept, Sql::Dynamic(sql), params, false)?.0)
    }
    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        Ok(run(&mut self.tx, self.kept, Sql::Static(sql), params, true)?.1)
    }
}

/// Makes and checks connections for r2d2.
pub(super) struct Manager {
    pub(super) config: postgres::Config,
    pub(super) tls: MakeRustlsConnect,
    pub(super) mode: PoolMode,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = StoreError;

    fn connect(&self) -> Result<PgConn, StoreError> {
        match self.config.connect(self.tls.clone()) {
            Ok(client) => Ok(PgConn::new(client, self.mode)),
            Err(e) => Err(match super::store_error(e) {
                // PgBouncer's answer to the startup options that session mode sends.
                StoreError::Backend(msg) if msg.contains("unsupported startup parameter") => {
                    StoreError::Backend(format!(
                        "{msg}: a pooler in front refuses the session settings; behind a \
                         transaction-pooling proxy, add pool_mode=transaction to the database URL"
                    ))
                }
                other => other,
            }),
        }
    }

    /// One empty round trip before a connection is lent: a connection the server or a proxy
    /// closed while it sat idle (a restart, a fail-over, `pg_terminate_backend`, an idle
    /// timeout) is found here and replaced, instead of failing the request it was lent to.
    fn is_valid(&self, c: &mut PgConn) -> Result<(), StoreError> {
        c.client
            .simple_query("")
            .map(|_| ())
            .map_err(super::store_error)
    }

    fn has_broken(&self, c: &mut PgConn) -> bool {
        c.kept.broken || c.client.is_closed()
    }
}

/// The pool: `max` connections at most, a caller waiting `wait` at most for one (past it,
/// `STORE_BUSY`). One connection is made first, so that a server or pooler that refuses us
/// says why at once instead of after the wait.
pub(super) fn build(
    manager: Manager,
    max: usize,
    wait: Duration,
) -> Result<r2d2::Pool<Manager>, StoreError> {
    drop(r2d2::ManageConnection::connect(&manager)?);
    Ok(r2d2::Pool::builder()
        .max_size(u32::try_from(max.max(1)).unwrap_or(u32::MAX))
        .min_idle(Some(0))
        .connection_timeout(wait)
        .test_on_check_out(true)
        // Errors reach the caller as store errors; r2d2's own logging would repeat them.
        .error_handler(Box::new(r2d2::NopErrorHandler))
        // One thread opens connections and closes idle ones: a C ABI host may hold many pools.
        .thread_pool(std::sync::Arc::new(
            scheduled_thread_pool::ScheduledThreadPool::new(1),
        ))
        .build_unchecked(manager))
}

/// A pooled connection.
pub(super) type Pooled = r2d2::PooledConnection<Manager>;

/// The pool's error as the store's: every connection stayed in use for the whole wait
/// (`STORE_BUSY`), or none could be made (r2d2 gives the last attempt's error, which never
/// holds the connection string's password).
pub(super) fn pool_error(e: r2d2::Error) -> StoreError {
    match e.to_string().split_once(": ") {
        None => StoreError::Busy,
        Some((_, last)) => StoreError::Backend(format!("no database connection: {last}")),
    }
}
