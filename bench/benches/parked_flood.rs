//! Does a flood of unsigned callbacks slow another account's signed webhooks? Unsigned
//! Decentro-shaped bodies, each naming a transaction nobody has, are parked (bounded per
//! account) and then refused once the account is full. Reports, in one run and at one rate:
//!
//! - signed Pientegra webhooks alone (the baseline): p50/p99;
//! - the same webhooks while the flood fills the Decentro account's parked quota (writes);
//! - the same webhooks while the flood hits the full quota (refused on a reader, no writes);
//! - how many rows the flood left, against the cap, and the database's size.
//!
//! Run: `cargo bench -p intentkit-bench --bench parked_flood`
//! Options: `BENCH_WEBHOOKS` (default 1000 per phase), `BENCH_RATE` (webhooks/s, default
//! 300; the flood is offered at twice that), `BENCH_DIR`.

use std::sync::Arc;
use std::time::Duration;

use intentkit_bench::webhooks::{deliver, setup, webhooks};
use intentkit_bench::{OpenLoop, bench_dir, env_usize, ms, open_loop, percentile};
use intentkit_core::provider::Secret;
use intentkit_core::provider::config::{DecentroAccount, HttpSettings};
use intentkit_core::{AccountName, Engine, EngineSettings, Provider};

/// The Decentro account the flood is aimed at: its callbacks are unsigned.
const FLOODED: &str = "in-flood";

fn flood_body(n: usize) -> Vec<u8> {
    format!(
        r#"{{"decentroTxnId":"DCTRFLOOD{n:010}","referenceId":"nobody-{n}","transactionStatus":"SUCCESS","payerName":"Mallory","payerAccountNumber":"XXXX0000","payerIfsc":"EVIL0000001"}}"#
    )
    .into_bytes()
}

/// Offers `count` signed webhooks at `interval`, and, if `flood_from` is set, unsigned bodies
/// at twice the rate from a thread of its own, numbered from it.
fn phase(
    rt: &tokio::runtime::Runtime,
    engine: &Arc<Engine>,
    hooks: Vec<(String, Vec<u8>)>,
    interval: Duration,
    flood_from: Option<usize>,
) -> (OpenLoop, Option<OpenLoop>) {
    let account = AccountName::new("tr-main").expect("account");
    let count = hooks.len();
    std::thread::scope(|s| {
        let flood = flood_from.map(|from| {
            let engine = engine.clone();
            s.spawn(move || {
                // Two bodies per webhook slot, over the same time span.
                open_loop(rt, 2 * count, interval / 2, |i| {
                    let engine = engine.clone();
                    let body = flood_body(from + i);
                    async move {
                        engine
                            .handle_webhook(Provider::Decentro, FLOODED, |_| None, &body)
                            .await;
                    }
                })
            })
        });
        let mut hooks = hooks.into_iter();
        let ours = open_loop(rt, count, interval, |_| {
            let (header, body) = hooks.next().expect("one webhook per slot");
            let engine = engine.clone();
            let account = account.clone();
            async move { deliver(&engine, &account, &header, &body).await }
        });
        (ours, flood.map(|f| f.join().expect("flood thread")))
    })
}

fn report(name: &str, o: &OpenLoop, baseline_p99: Option<Duration>) {
    let p99 = percentile(&o.latencies, 0.99);
    let ratio = baseline_p99.map_or(String::new(), |b| {
        format!("  {:.2}x baseline p99", p99.as_secs_f64() / b.as_secs_f64())
    });
    println!(
        "  {name:<34} p50 {:>6.2} ms  p99 {:>6.2} ms{ratio}  ({}; generator late p99 {:.2} ms; {:.2} cores busy)",
        ms(percentile(&o.latencies, 0.50)),
        ms(p99),
        o.steal.describe(),
        ms(percentile(&o.lateness, 0.99)),
        o.cores_used.unwrap_or(f64::NAN),
    );
}

fn main() {
    let n = env_usize("BENCH_WEBHOOKS", 1_000).max(10);
    let rate = env_usize("BENCH_RATE", 300).max(1);
    let root = bench_dir();
    std::fs::create_dir_all(&root).expect("bench dir");
    let dir = tempfile::tempdir_in(&root).expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cap = EngineSettings::default().parked_cap_per_account;
    let (engine, ids) = setup(dir.path(), "flood", n * 3, |p| {
        let name = AccountName::new(FLOODED).expect("account");
        p.decentro.insert(
            name.clone(),
            DecentroAccount {
                name,
                // Never called: the flood names no intent of ours, so nothing is looked up.
                base_url: "http://127.0.0.1:9".into(),
                client_id: Secret::new("c"),
                client_secret: Secret::new("c"),
                module_secret: Secret::new("m"),
                provider_secret: Secret::new("p"),
                http: HttpSettings::default(),
            },
        );
    });
    let engine = Arc::new(engine);
    let mut hooks = webhooks(&ids).into_iter();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut take = || hooks.by_ref().take(n).collect::<Vec<_>>();

    println!(
        "parked-flood benchmark ({n} signed webhooks per phase at {rate}/s; unsigned flood at {}/s to another account; cap {cap} parked per account; {} cores)",
        rate * 2,
        std::thread::available_parallelism().map_or(0, |c| c.get())
    );
    let (alone, _) = phase(&rt, &engine, take(), interval, None);
    let baseline = percentile(&alone.latencies, 0.99);
    report("signed webhooks alone", &alone, None);
    let (filling, flood1) = phase(&rt, &engine, take(), interval, Some(0));
    report("while the flood fills the quota", &filling, Some(baseline));
    let (full, flood2) = phase(&rt, &engine, take(), interval, Some(10 * n));
    report("while the flood hits a full quota", &full, Some(baseline));
    for (name, f) in [("filling", flood1), ("full", flood2)] {
        if let Some(f) = f {
            println!(
                "  flood bodies ({name}): {} answered, p99 {:.2} ms",
                f.latencies.len(),
                ms(percentile(&f.latencies, 0.99))
            );
        }
    }
    // Every flood body names a transaction nobody has: what is parked is the flood.
    let conn = rusqlite::Connection::open(dir.path().join("flood.db")).expect("open");
    let parked: i64 = conn
        .query_row("SELECT COUNT(*) FROM parked_events", [], |r| r.get(0))
        .expect("count");
    let size: u64 = ["flood.db", "flood.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "  parked rows after {} flood bodies: {parked} (cap {cap}); database + WAL {:.1} MiB",
        4 * n,
        size as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  reproduce: cargo bench -p intentkit-bench --bench parked_flood  (BENCH_WEBHOOKS, BENCH_RATE)"
    );
}
