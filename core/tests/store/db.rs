//! One database per test, on either backend, with the few side doors the conformance suite
//! needs (raw SQL, an injected failure), each written in that backend's dialect.

use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "postgres")]
use intentkit_core::store::postgres::{PostgresConfig, PostgresStore, testing::TestDatabase};
use intentkit_core::store::sqlite::SqliteStore;
use intentkit_core::{IntentId, Ledger, ManualClock, SqliteConfig, Store, StoreError};

use super::T0;

/// A database of the test's own.
#[allow(dead_code)] // the first field of each variant is held for its `Drop` only
pub(crate) enum Db {
    /// The directory is removed when the test ends (a child's copy owns none).
    Sqlite(Option<tempfile::TempDir>, PathBuf),
    /// The database is dropped when the test ends (a child's copy owns none).
    #[cfg(feature = "postgres")]
    Postgres(Option<TestDatabase>, String),
}

/// A store as opened, with what only its own type tells.
pub(crate) enum OpenStore {
    Sqlite(Arc<SqliteStore>),
    #[cfg(feature = "postgres")]
    Postgres(Arc<PostgresStore>),
}

impl OpenStore {
    pub(crate) fn as_store(&self) -> Arc<dyn Store> {
        match self {
            OpenStore::Sqlite(s) => s.clone(),
            #[cfg(feature = "postgres")]
            OpenStore::Postgres(s) => s.clone(),
        }
    }

    pub(crate) fn schema_version(&self) -> i64 {
        match self {
            OpenStore::Sqlite(s) => s.schema_version().unwrap(),
            #[cfg(feature = "postgres")]
            OpenStore::Postgres(s) => s.schema_version().unwrap(),
        }
    }

    pub(crate) fn group_commit_stats(&self) -> (usize, usize) {
        match self {
            OpenStore::Sqlite(s) => s.group_commit_stats(),
            #[cfg(feature = "postgres")]
            OpenStore::Postgres(s) => s.group_commit_stats(),
        }
    }
}

impl Db {
    pub(crate) fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        Db::Sqlite(Some(dir), path)
    }

    /// `None` (the case does not run) without a test server; see `TestDatabase::create`.
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres() -> Option<Db> {
        let db = TestDatabase::create()?;
        let url = db.url().to_string();
        Some(Db::Postgres(Some(db), url))
    }

    /// What a child process needs to open this same database.
    pub(crate) fn child_env(&self) -> String {
        match self {
            Db::Sqlite(_, path) => format!("sqlite:{}", path.display()),
            #[cfg(feature = "postgres")]
            Db::Postgres(_, url) => format!("postgres:{url}"),
        }
    }

    /// The database a parent named with [`Db::child_env`] (not dropped by the child).
    pub(crate) fn from_child_env(s: &str) -> Db {
        if let Some(path) = s.strip_prefix("sqlite:") {
            return Db::Sqlite(None, PathBuf::from(path));
        }
        #[cfg(feature = "postgres")]
        if let Some(url) = s.strip_prefix("postgres:") {
            return Db::Postgres(None, url.to_string());
        }
        panic!("unknown database {s:?}")
    }

    pub(crate) fn try_open_store(&self) -> Result<OpenStore, StoreError> {
        Ok(match self {
            Db::Sqlite(_, path) => {
                OpenStore::Sqlite(Arc::new(SqliteStore::open(path, SqliteConfig::default())?))
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(_, url) => {
                OpenStore::Postgres(Arc::new(PostgresStore::open(PostgresConfig::new(url))?))
            }
        })
    }

    pub(crate) fn open_store(&self) -> OpenStore {
        self.try_open_store().expect("open store")
    }

    pub(crate) fn try_open(&self) -> Result<(Ledger, ManualClock), StoreError> {
        let store = self.try_open_store()?;
        let clock = ManualClock::new(T0);
        Ok((
            Ledger::new(store.as_store(), Arc::new(clock.clone())),
            clock,
        ))
    }

    pub(crate) fn open(&self) -> (Ledger, ManualClock) {
        self.try_open().expect("open store")
    }

    /// The schema version this build migrates to.
    pub(crate) fn latest_schema(&self) -> i64 {
        match self {
            Db::Sqlite(..) => 6,
            #[cfg(feature = "postgres")]
            Db::Postgres(..) => 2,
        }
    }

    /// Runs statements on a connection of its own.
    pub(crate) fn sql(&self, sql: &str) {
        match self {
            Db::Sqlite(_, path) => rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            #[cfg(feature = "postgres")]
            Db::Postgres(_, url) => postgres::Client::connect(url, postgres::NoTls)
                .unwrap()
                .batch_execute(sql)
                .unwrap(),
        }
    }

    pub(crate) fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self {
            Db::Sqlite(_, path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(&sql, [], |r| r.get(0))
                .unwrap(),
            #[cfg(feature = "postgres")]
            Db::Postgres(_, url) => postgres::Client::connect(url, postgres::NoTls)
                .unwrap()
                .query_one(&sql, &[])
                .unwrap()
                .get(0),
        }
    }

    /// From now on, the database refuses to insert an `intent.approved` event (of `intent`
    /// only, when given), as a failing disk or constraint would, until [`Db::heal`].
    pub(crate) fn fail_approvals(&self, intent: Option<IntentId>) {
        let only = intent.map_or(String::new(), |i| format!(" AND NEW.intent_id = '{i}'"));
        match self {
            Db::Sqlite(..) => self.sql(&format!(
                "CREATE TRIGGER fail_approvals BEFORE INSERT ON outbox
                 WHEN NEW.event_type = 'intent.approved'{only}
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
            )),
            #[cfg(feature = "postgres")]
            Db::Postgres(..) => self.sql(&format!(
                "CREATE FUNCTION fail_approvals() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     IF NEW.event_type = 'intent.approved'{only} THEN
                         RAISE EXCEPTION 'injected failure';
                     END IF;
                     RETURN NEW;
                 END $$;
                 CREATE TRIGGER fail_approvals BEFORE INSERT ON outbox
                     FOR EACH ROW EXECUTE FUNCTION fail_approvals();"
            )),
        }
    }

    pub(crate) fn heal(&self) {
        match self {
            Db::Sqlite(..) => self.sql("DROP TRIGGER fail_approvals"),
            #[cfg(feature = "postgres")]
            Db::Postgres(..) => {
                self.sql("DROP TRIGGER fail_approvals ON outbox; DROP FUNCTION fail_approvals();")
            }
        }
    }
}
