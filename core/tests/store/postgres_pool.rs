//! The PostgreSQL store's connections: a pooled connection the server dropped fails no
//! request, and behind a transaction-pooling PgBouncer every statement runs with its timeouts
//! (store/postgres/pool.rs).

use intentkit_core::Store;
use intentkit_core::store::postgres::{PostgresConfig, PostgresStore};

use super::*;

fn url(db: &Db) -> &str {
    let Db::Postgres(_, url) = db else {
        unreachable!("a PostgreSQL test")
    };
    url
}

fn side(db: &Db) -> ::postgres::Client {
    ::postgres::Client::connect(url(db), ::postgres::NoTls).unwrap()
}

/// Terminates every connection the store holds (as a restart, a fail-over or a proxy's idle
/// timeout would); answers how many there were.
fn terminate_store_connections(db: &Db) -> i64 {
    side(db)
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND application_name = 'intentkit'",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Four pooled connections, all terminated by the server while idle: the next 20 calls
/// (reads and writes) all succeed, each on a connection that was checked before it was lent.
#[test]
fn calls_after_the_server_dropped_every_pooled_connection_all_succeed() {
    let Some(db) = Db::postgres() else { return };
    let mut config = PostgresConfig::new(url(&db));
    config.max_connections = 4;
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(config).unwrap());
    let ledger = Ledger::new(store, Arc::new(ManualClock::new(T0)));
    // Open every connection the pool may hold: four callers at once.
    let barrier = Arc::new(Barrier::new(4));
    let callers: Vec<_> = (0..4)
        .map(|n| {
            let (ledger, barrier) = (ledger.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for k in 0..5 {
                    ledger
                        .create(deposit(100_000), key(&format!("warm-{n}-{k}")))
                        .unwrap();
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    let terminated = terminate_store_connections(&db);
    assert!(
        terminated >= 2,
        "only {terminated} pooled connections to drop"
    );
    // Let the server finish closing them.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut failed = Vec::new();
    for n in 0..20 {
        let outcome = if n % 2 == 0 {
            ledger
                .create(deposit(100_000), key(&format!("after-{n}")))
                .map(|_| ())
        } else {
            ledger.events_after(0, 10).map(|_| ())
        };
        if let Err(e) = outcome {
            failed.push(format!("call {n}: {e}"));
        }
    }
    assert!(failed.is_empty(), "calls failed: {failed:?}");
}

/// The admin URL of the PgBouncer in front of the test server (`scripts/pgbouncer.sh`), if
/// there is one; CI requires it.
fn bouncer() -> Option<String> {
    match std::env::var("INTENTKIT_TEST_PGBOUNCER") {
        Ok(u) => Some(u),
        Err(_) => {
            assert!(
                std::env::var_os("INTENTKIT_REQUIRE_PGBOUNCER").is_none(),
                "INTENTKIT_REQUIRE_PGBOUNCER is set but INTENTKIT_TEST_PGBOUNCER is not"
            );
            eprintln!("INTENTKIT_TEST_PGBOUNCER is not set: the PgBouncer case does not run");
            None
        }
    }
}

/// `db`'s database, reached through the pooler at `bouncer`.
fn through(bouncer: &str, db: &Db) -> String {
    let name = url(db).rsplit('/').next().unwrap().to_string();
    let base = bouncer.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

/// Behind PgBouncer in transaction pooling mode (its defaults): without `pool_mode` the store
/// refuses to start and says what to set; with `pool_mode=transaction` every statement of its
/// own runs with the timeouts and isolation, and racing writers settle every intent once.
#[test]
fn behind_a_transaction_pooler_every_statement_has_its_timeouts_and_writers_agree() {
    let Some(db) = Db::postgres() else { return };
    let Some(bouncer) = bouncer() else { return };
    let plain = through(&bouncer, &db);
    // Migrate directly first, so the refusal below is PgBouncer's, not a race to migrate.
    drop(db.open_store());
    let refused = PostgresStore::open(PostgresConfig::new(&plain)).unwrap_err();
    assert!(
        refused.to_string().contains("pool_mode=transaction"),
        "{refused}"
    );

    let mut config = PostgresConfig::new(format!("{plain}?pool_mode=transaction"));
    config.max_connections = 8;
    let store = Arc::new(PostgresStore::open(config).unwrap());
    let settings: BTreeMap<String, String> =
        store.session_settings().unwrap().into_iter().collect();
    assert_eq!(settings["lock_timeout"], "10s");
    assert_eq!(settings["statement_timeout"], "30s");
    assert_eq!(settings["idle_in_transaction_session_timeout"], "30s");
    assert_eq!(settings["default_transaction_isolation"], "read committed");

    let ledger = Ledger::new(store.clone(), Arc::new(ManualClock::new(T0)));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                for n in 0..15 {
                    let id = ledger
                        .create(deposit(100_000), key(&format!("b{w}-{n}")))
                        .unwrap()
                        .intent
                        .id;
                    ledger.apply(id, handoff(&format!("pb-{w}-{n}"))).unwrap();
                    ledger
                        .apply(id, approved(100_000, &format!("eb-{w}-{n}")))
                        .unwrap();
                    // The same delivery again: a duplicate, whichever server connection.
                    ledger
                        .apply(id, approved(100_000, &format!("eb-{w}-{n}")))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let events = ledger.events_after(0, 10_000).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(count(&events, EventType::Approved), 6 * 15);
    // A statement built at run time (the list's filter) runs through the pooler too.
    let filter = intentkit_core::store::ListFilter {
        statuses: vec![IntentStatus::Approved],
        ..Default::default()
    };
    let (page, _) = ledger.list(&filter, None, 500).unwrap();
    assert_eq!(page.len(), 6 * 15);
}
