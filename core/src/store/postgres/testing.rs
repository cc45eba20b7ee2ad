//! Throwaway databases for tests and benchmarks: each gets its own, created on the server
//! named by `INTENTKIT_TEST_POSTGRES` (an admin URL, e.g. the cluster `scripts/postgres.sh`
//! starts) and dropped when it goes out of scope. Failing to reach the server is a test
//! failure, so this module panics where the library would return errors.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a panic fails the test"
)]

use std::sync::atomic::{AtomicU32, Ordering};

/// A database of its own on the test server. Its `Debug` shows the database's name only (the
/// URLs may hold a password).
pub struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestDatabase {
    /// A new, empty database; `None` when `INTENTKIT_TEST_POSTGRES` is not set, unless
    /// `INTENTKIT_REQUIRE_POSTGRES` is, which makes that a failure (CI sets both, so the
    /// PostgreSQL half of a suite cannot pass by not running).
    pub fn create() -> Option<Self> {
        let Ok(admin) = std::env::var("INTENTKIT_TEST_POSTGRES") else {
            assert!(
                std::env::var_os("INTENTKIT_REQUIRE_POSTGRES").is_none(),
                "INTENTKIT_REQUIRE_POSTGRES is set but INTENTKIT_TEST_POSTGRES is not"
            );
            eprintln!("INTENTKIT_TEST_POSTGRES is not set: the PostgreSQL case does not run");
            return None;
        };
        Some(Self::create_on(&admin))
    }

    /// A new, empty database on the server `admin` (an admin URL) names.
    pub fn create_on(admin: &str) -> Self {
        let admin = admin.to_string();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ik_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        );
        admin_sql(&admin, &format!("CREATE DATABASE {name}")).expect("CREATE DATABASE");
        let url = url_with_dbname(&admin, &name);
        TestDatabase { admin, name, url }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `admin` with its database path replaced by `dbname`.
fn url_with_dbname(admin: &str, dbname: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{dbname}{query}", &base[..host_end])
}

/// Runs `sql` as the admin, on a thread of its own: the driver blocks on a runtime of its own,
/// which must not happen on a test's async worker.
fn admin_sql(admin: &str, sql: &str) -> Result<(), postgres::Error> {
    std::thread::scope(|s| {
        s.spawn(|| postgres::Client::connect(admin, postgres::NoTls)?.batch_execute(sql))
            .join()
            .expect("the admin connection's thread")
    })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = admin_sql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_replaces_the_admin_urls() {
        assert_eq!(
            super::url_with_dbname(
                "postgres://u:p@127.0.0.1:5433/postgres?sslmode=disable",
                "ik_1"
            ),
            "postgres://u:p@127.0.0.1:5433/ik_1?sslmode=disable"
        );
        assert_eq!(
            super::url_with_dbname("postgresql://h", "ik_2"),
            "postgresql://h/ik_2"
        );
    }
}
