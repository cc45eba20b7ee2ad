//! Shared helpers for intentkit's benchmarks. Every benchmark prints a baseline measured in the
//! same run and the ratio to it, because the machines are shared and absolute numbers drift.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The baseline every durable figure is compared with: plain rusqlite inserts of
/// `row_bytes`-sized rows, one transaction each, with the store's own pragmas (WAL,
/// `synchronous=FULL`), in a fresh file under `dir`. Returns rows per second.
pub fn plain_insert_rate(dir: &Path, name: &str, rows: usize, row_bytes: usize) -> f64 {
    plain_inserts(dir, name, rows, row_bytes).0
}

/// [`plain_insert_rate`], with each commit's latency, sorted.
pub fn plain_inserts(
    dir: &Path,
    name: &str,
    rows: usize,
    row_bytes: usize,
) -> (f64, Vec<Duration>) {
    let path = dir.join(format!("baseline-{name}.db"));
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.busy_timeout(Duration::from_secs(5)).expect("timeout");
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .expect("wal");
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         CREATE TABLE rows (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);",
    )
    .expect("schema");
    let payload = "x".repeat(row_bytes);
    let mut latencies = Vec::with_capacity(rows);
    let start = Instant::now();
    for _ in 0..rows {
        let one = Instant::now();
        let tx = conn.unchecked_transaction().expect("begin");
        tx.prepare_cached("INSERT INTO rows (payload) VALUES (?1)")
            .expect("prepare")
            .execute([&payload])
            .expect("insert");
        tx.commit().expect("commit");
        latencies.push(one.elapsed());
    }
    let rate = rows as f64 / start.elapsed().as_secs_f64();
    latencies.sort();
    (rate, latencies)
}

/// The middle value.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The value below which `p` (0 to 1) of `sorted` lies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Where benchmark databases go: `BENCH_DIR`, or the workspace's `target/`, so that the
/// measured path and the baseline share one disk.
pub fn bench_dir() -> PathBuf {
    std::env::var_os("BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// A whole-number environment setting, or its default.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
