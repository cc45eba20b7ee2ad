//! The core lifecycle, measured three ways in one run:
//!
//! 1. in-memory transitions per second (the pure table, `lifecycle::apply`);
//! 2. durable transitions per second through the SQLite store: read, decide, then one commit
//!    holding the intent update, its history row and its outbox event;
//! 3. the baseline: plain rusqlite inserts, one row per transaction, of the same bytes a
//!    durable transition writes, with the same pragmas, on the same disk.
//!
//! The durable and baseline runs alternate (baseline, durable, baseline, durable, ...) so that
//! drift on a shared machine hits both; each reports its median round.
//!
//! Run: `cargo bench -p intentkit-bench --bench core_lifecycle`
//! Options (environment): `BENCH_ROUNDS` (default 3), `BENCH_INTENTS` (default 500 per round,
//! three transitions each), `BENCH_DIR` (where the database files go; default `target/`).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use intentkit_bench::{
    approved_flow as flow, bench_dir, deposit_request as request, env_usize, median,
    plain_insert_rate, scratch_dir,
};
use intentkit_core::lifecycle::{self, Step};
use intentkit_core::{
    IdempotencyKey, Intent, IntentId, IntentStatus, Ledger, SqliteConfig, SqliteStore, SystemClock,
    Timestamp,
};

fn in_memory_rate() -> f64 {
    let mut intent = Intent::new(
        request(0),
        IdempotencyKey::new("bench").expect("key"),
        Timestamp::from_unix_millis(0),
    )
    .expect("intent");
    let events = flow(0);
    let now = Timestamp::from_unix_millis(1_795_000_000_000);
    let mut transitions = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..10_000 {
            intent.status = IntentStatus::Created;
            for ev in &events {
                if let Ok(Step::Applied(t)) = lifecycle::apply(&mut intent, ev, now) {
                    black_box(&t);
                    transitions += 1;
                }
            }
        }
    }
    transitions as f64 / start.elapsed().as_secs_f64()
}

/// Durable transitions per second, and the bytes the average transition wrote.
fn durable_round(dir: &Path, round: usize, intents: usize) -> (f64, usize) {
    let path = dir.join(format!("durable-{round}.db"));
    let store = Arc::new(SqliteStore::open(&path, SqliteConfig::default()).expect("open"));
    let ledger = Ledger::new(store, Arc::new(SystemClock));
    let ids: Vec<IntentId> = (0..intents)
        .map(|n| {
            ledger
                .create(
                    request(n),
                    IdempotencyKey::new(format!("k-{n}")).expect("key"),
                )
                .expect("create")
                .intent
                .id
        })
        .collect();
    let flows: Vec<_> = (0..intents).map(flow).collect();
    let start = Instant::now();
    for (id, events) in ids.iter().zip(flows) {
        for ev in events {
            ledger.apply(*id, ev).expect("apply");
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // What one transition writes: the intent row, the outbox payload (a snapshot of it) and
    // a history row. Read back from the file so that the baseline writes the same bytes.
    let conn = rusqlite::Connection::open(&path).expect("reopen");
    let bytes: f64 = conn
        .query_row(
            "SELECT (SELECT AVG(LENGTH(body)) FROM intents)
                  + (SELECT AVG(LENGTH(payload) + LENGTH(business_key) + 80) FROM outbox)
                  + 120",
            [],
            |r| r.get(0),
        )
        .expect("sizes");
    ((intents * 3) as f64 / elapsed, bytes as usize)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing useful either.
    let rounds = env_usize("BENCH_ROUNDS", 3).max(1);
    let intents = env_usize("BENCH_INTENTS", 500).max(1);
    let dir = scratch_dir();

    let in_memory = in_memory_rate();

    let mut durable = Vec::new();
    let mut baseline = Vec::new();
    let mut row_bytes = 0;
    for round in 0..rounds {
        // The first durable round sizes the baseline's rows; later baselines reuse that size.
        if round == 0 {
            let (rate, bytes) = durable_round(dir.path(), round, intents);
            row_bytes = bytes;
            baseline.push(plain_insert_rate(
                dir.path(),
                &round.to_string(),
                intents * 3,
                row_bytes,
            ));
            durable.push(rate);
        } else {
            baseline.push(plain_insert_rate(
                dir.path(),
                &round.to_string(),
                intents * 3,
                row_bytes,
            ));
            durable.push(durable_round(dir.path(), round, intents).0);
        }
    }
    let durable = median(durable);
    let baseline = median(baseline);

    println!("intentkit core lifecycle benchmark ({rounds} rounds, median)");
    println!(
        "  in-memory transitions/s           {in_memory:>12.0}   target >= 2,000,000  {}",
        verdict(in_memory >= 2_000_000.0)
    );
    println!("  baseline plain inserts/s (1/txn)  {baseline:>12.0}   rows of {row_bytes} bytes");
    println!(
        "  durable transitions/s (SQLite)    {durable:>12.0}   {:.2}x baseline, target >= 0.5x  {}",
        durable / baseline,
        verdict(durable / baseline >= 0.5)
    );
    println!("  disk: {}", bench_dir().display());
    println!("  reproduce: cargo bench -p intentkit-bench --bench core_lifecycle");
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "BELOW TARGET" }
}
