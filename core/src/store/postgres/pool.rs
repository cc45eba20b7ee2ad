//! A small blocking connection pool: at most `max` connections, each with its prepared
//! statements, handed to one caller at a time. Store calls run on blocking threads (tokio's
//! blocking pool, or a host's own thread through the C ABI), so a blocking pool is what fits.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::{Client, GenericClient, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::StoreError;

/// One connection and the statements prepared on it.
pub(super) struct PgConn {
    pub(super) client: Client,
    pub(super) statements: Statements,
}

/// Statements prepared on one connection, by their text.
#[derive(Default)]
pub(super) struct Statements(HashMap<&'static str, Statement>);

impl Statements {
    /// `sql` prepared on `client` (the connection these statements belong to, or a
    /// transaction on it), once per connection.
    pub(super) fn get(
        &mut self,
        client: &mut impl GenericClient,
        sql: &'static str,
    ) -> Result<Statement, StoreError> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = client.prepare(sql).map_err(super::store_error)?;
        self.0.insert(sql, s.clone());
        Ok(s)
    }
}

struct State {
    idle: Vec<PgConn>,
    open: usize,
}

pub(super) struct Pool {
    config: postgres::Config,
    tls: MakeRustlsConnect,
    max: usize,
    wait: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

impl Pool {
    pub(super) fn new(
        config: postgres::Config,
        tls: MakeRustlsConnect,
        max: usize,
        wait: Duration,
    ) -> Arc<Self> {
        Arc::new(Pool {
            config,
            tls,
            max: max.max(1),
            wait,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection: an idle one, a new one while fewer than `max` are open, or the next one
    /// given back within the wait (past it, `STORE_BUSY`).
    pub(super) fn get(self: &Arc<Self>) -> Result<Pooled, StoreError> {
        let deadline = Instant::now() + self.wait;
        let mut state = self.lock();
        loop {
            while let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled {
                    pool: self.clone(),
                    conn: Some(conn),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.config.connect(self.tls.clone()) {
                    Ok(client) => Ok(Pooled {
                        pool: self.clone(),
                        conn: Some(PgConn {
                            client,
                            statements: Statements::default(),
                        }),
                    }),
                    Err(e) => {
                        let mut state = self.lock();
                        state.open -= 1;
                        self.freed.notify_one();
                        Err(super::store_error(e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Busy);
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing a connection blocks on its own runtime, which must not happen on an async
        // worker (the last engine handle may go away there); a thread of its own does it.
        let idle = std::mem::take(&mut self.lock().idle);
        if !idle.is_empty() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}

/// A connection lent by the pool; given back when dropped (closed ones are not kept).
pub(super) struct Pooled {
    pool: Arc<Pool>,
    conn: Option<PgConn>,
}

// `conn` is `Some` from construction until `drop` takes it; no other code path empties it.
#[allow(clippy::expect_used, reason = "an invariant of the type, not input")]
impl std::ops::Deref for Pooled {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        self.conn.as_ref().expect("present until dropped")
    }
}

#[allow(clippy::expect_used, reason = "an invariant of the type, not input")]
impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let mut state = self.pool.lock();
        // A connection dropped mid-transaction was rolled back by `Transaction`'s own drop; a
        // broken one is closed and not kept.
        if conn.client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(conn);
        }
        self.pool.freed.notify_one();
    }
}
