//! Durable transitions on PostgreSQL beside the plainest durable write on the same server, in
//! one run: single-row INSERTs, one per transaction, of the bytes a transition writes.
//!
//! Each transition is a read, a decision, and one transaction holding the intent update, its
//! history row, the delivery's dedup row and its outbox event, published with its seq (the
//! head row; see `core/src/store/postgres.rs`). Measured with 1 writer and with 8 (each on
//! intents of its own); rounds alternate baseline and intentkit so that drift hits both; each
//! figure is the median round. fsync and synchronous_commit stay on.
//!
//! Run: `cargo bench -p intentkit-bench --bench pg_transitions` (starts a throwaway cluster
//! with scripts/postgres.sh unless INTENTKIT_TEST_POSTGRES names a server).
//! Options: `BENCH_ROUNDS` (default 3), `BENCH_INTENTS` (per writer per round, default 200).

use std::sync::{Arc, Barrier};
use std::time::Instant;

use intentkit_bench::{PgServer, approved_flow, deposit_request, env_usize, median};
use intentkit_core::store::postgres::{PostgresConfig, PostgresStore};
use intentkit_core::{IdempotencyKey, Ledger, SystemClock};

/// Transitions per second through the ledger, `writers` threads on intents of their own.
fn durable(server: &PgServer, writers: usize, intents: usize) -> (f64, usize) {
    let db = server.database();
    let mut config = PostgresConfig::new(db.url());
    config.max_connections = writers + 2;
    let store = Arc::new(PostgresStore::open(config).expect("open"));
    let ledger = Ledger::new(store, Arc::new(SystemClock));
    let work: Vec<Vec<_>> = (0..writers)
        .map(|w| {
            (0..intents)
                .map(|n| {
                    let k = w * intents + n;
                    let id = ledger
                        .create(
                            deposit_request(k),
                            IdempotencyKey::new(format!("k-{k}")).expect("key"),
                        )
                        .expect("create")
                        .intent
                        .id;
                    (id, approved_flow(k))
                })
                .collect()
        })
        .collect();
    let barrier = Arc::new(Barrier::new(writers + 1));
    let threads: Vec<_> = work
        .into_iter()
        .map(|mine| {
            let (ledger, barrier) = (ledger.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for (id, events) in mine {
                    for ev in events {
                        ledger.apply(id, ev).expect("apply");
                    }
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for t in threads {
        t.join().expect("writer");
    }
    let rate = (writers * intents * 3) as f64 / start.elapsed().as_secs_f64();
    // What one transition writes, for the baseline's rows.
    let mut c = postgres::Client::connect(db.url(), postgres::NoTls).expect("connect");
    let bytes: f64 = c
        .query_one(
            "SELECT ((SELECT AVG(LENGTH(body)) FROM intents)
                   + (SELECT AVG(LENGTH(payload) + LENGTH(business_key) + 80) FROM outbox)
                   + 120)::FLOAT8",
            &[],
        )
        .expect("sizes")
        .get(0);
    (rate, bytes as usize)
}

/// Single-row INSERTs of `row_bytes` bytes, one per transaction, `writers` connections.
fn baseline(server: &PgServer, writers: usize, rows: usize, row_bytes: usize) -> f64 {
    let db = server.database();
    let mut c = postgres::Client::connect(db.url(), postgres::NoTls).expect("connect");
    c.batch_execute("CREATE TABLE plain (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body TEXT NOT NULL)")
        .expect("table");
    let payload = "x".repeat(row_bytes);
    let barrier = Arc::new(Barrier::new(writers + 1));
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let (url, payload, barrier) = (db.url().to_string(), payload.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
                let insert = c
                    .prepare("INSERT INTO plain (body) VALUES ($1)")
                    .expect("prepare");
                barrier.wait();
                for _ in 0..rows {
                    c.execute(&insert, &[&payload]).expect("insert");
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for t in threads {
        t.join().expect("writer");
    }
    (writers * rows) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let rounds = env_usize("BENCH_ROUNDS", 3).max(1);
    let intents = env_usize("BENCH_INTENTS", 200).max(1);
    let server = PgServer::start();
    println!("PostgreSQL durable transitions vs single-row inserts ({rounds} rounds, median)");
    for writers in [1, 8] {
        let (mut base, mut ours) = (Vec::new(), Vec::new());
        let mut row_bytes = 0;
        for _ in 0..rounds {
            let (rate, bytes) = durable(&server, writers, intents);
            row_bytes = bytes;
            ours.push(rate);
            base.push(baseline(&server, writers, intents * 3, row_bytes));
        }
        let (base, ours) = (median(base), median(ours));
        println!(
            "  {writers} writer(s): inserts/s {base:>8.0} (rows of {row_bytes} B) | transitions/s {ours:>8.0} | {:.2}x (target >= 0.5x) {}",
            ours / base,
            if ours / base >= 0.5 {
                "ok"
            } else {
                "BELOW TARGET"
            }
        );
    }
    println!("  reproduce: cargo bench -p intentkit-bench --bench pg_transitions");
}
