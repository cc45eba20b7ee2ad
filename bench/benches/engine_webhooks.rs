//! Signed Pientegra webhooks through `Engine::handle_webhook` on SQLite: verification,
//! parsing, dedup, the transition, its history row and outbox event in one transaction.
//! Reports, in one run:
//!
//! - the plain-insert baseline (one ~2 KB row per transaction, same pragmas, same disk);
//! - applied webhooks per second, back to back (peak), and the ratio to the baseline;
//! - p50/p99 latency of webhooks offered at half that peak rate (open loop), in windows, each
//!   beside plain inserts offered at the same rate, with the CPU steal seen during it.
//!
//! Run: `cargo bench -p intentkit-bench --bench engine_webhooks`
//! Options: `BENCH_WEBHOOKS` (default 1000 per phase), `BENCH_WINDOWS` (default 3),
//! `BENCH_DIR`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use intentkit_bench::webhooks::{deliver, setup, webhooks};
use intentkit_bench::{
    Steal, env_usize, ms, open_loop, percentile, plain_insert, plain_insert_table, plain_inserts,
    runtime, scratch_dir,
};
use intentkit_core::AccountName;

fn main() {
    let n = env_usize("BENCH_WEBHOOKS", 1_000).max(10);
    let windows = env_usize("BENCH_WINDOWS", 3).max(1);
    let dir = scratch_dir();
    let rt = runtime();
    let account = AccountName::new("tr-main").expect("account");

    let (peak_engine, peak_ids) = setup(dir.path(), "peak", n, |_| {});
    let (paced_engine, paced_ids) = setup(dir.path(), "paced", n * windows, |_| {});
    let peak_hooks = webhooks(&peak_ids);
    let mut paced_hooks = webhooks(&paced_ids).into_iter();

    let steal_baseline = Steal::start();
    let (baseline, baseline_latency) = plain_inserts(dir.path(), "webhooks", n, 2_000);
    let steal_baseline = steal_baseline.describe();

    let steal_peak = Steal::start();
    let peak = rt.block_on(async {
        let start = Instant::now();
        for (header, body) in &peak_hooks {
            deliver(&peak_engine, &account, header, body).await;
        }
        n as f64 / start.elapsed().as_secs_f64()
    });
    let steal_peak = steal_peak.describe();

    println!(
        "engine webhook benchmark ({n} signed webhooks per phase, SQLite, synchronous=FULL, {} cores)",
        std::thread::available_parallelism().map_or(0, |c| c.get())
    );
    println!(
        "  baseline plain inserts/s (1/txn)     {baseline:>10.0}   commit p50 {:.2} ms, p99 {:.2} ms  ({steal_baseline})",
        ms(percentile(&baseline_latency, 0.50)),
        ms(percentile(&baseline_latency, 0.99)),
    );
    println!(
        "  applied webhooks/s (back to back)    {peak:>10.0}   {:.2}x baseline, target >= 0.3x  {}  ({steal_peak})",
        peak / baseline,
        if peak / baseline >= 0.3 {
            "ok"
        } else {
            "BELOW TARGET"
        }
    );

    // Half the peak, open loop, in windows. Each window first offers plain inserts at the
    // same rate (the disk's own tail under this schedule, at this moment), then webhooks.
    let interval = Duration::from_secs_f64(2.0 / peak);
    let engine = Arc::new(paced_engine);
    let plain = Arc::new(std::sync::Mutex::new(plain_insert_table(
        dir.path(),
        "paced",
    )));
    let payload: Arc<str> = "x".repeat(2_000).into();
    println!(
        "  at half peak ({:.0}/s, open loop), target p99 < 5 ms:",
        peak / 2.0
    );
    let mut p99s = Vec::with_capacity(windows);
    for w in 1..=windows {
        let disk = open_loop(&rt, n, interval, |_| {
            let plain = plain.clone();
            let payload = payload.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    plain_insert(&plain.lock().expect("baseline lock"), &payload)
                })
                .await
                .expect("insert");
            }
        });
        let hooks: Vec<_> = paced_hooks.by_ref().take(n).collect();
        let mut hooks = hooks.into_iter();
        let ours = open_loop(&rt, n, interval, |_| {
            let (header, body) = hooks.next().expect("one webhook per slot");
            let engine = engine.clone();
            let account = account.clone();
            async move { deliver(&engine, &account, &header, &body).await }
        });
        let p99 = percentile(&ours.latencies, 0.99);
        p99s.push(p99);
        println!(
            "    window {w}: webhooks p50 {:.2} ms, p99 {:.2} ms  {}  ({}; generator late p99 {:.2} ms; {:.2} cores busy)",
            ms(percentile(&ours.latencies, 0.50)),
            ms(p99),
            if p99 < Duration::from_millis(5) {
                "ok"
            } else {
                "ABOVE TARGET"
            },
            ours.steal.describe(),
            ms(percentile(&ours.lateness, 0.99)),
            ours.cores_used.unwrap_or(f64::NAN),
        );
        println!(
            "              plain inserts p50 {:.2} ms, p99 {:.2} ms  ({}; generator late p99 {:.2} ms; {:.2} cores busy)",
            ms(percentile(&disk.latencies, 0.50)),
            ms(percentile(&disk.latencies, 0.99)),
            disk.steal.describe(),
            ms(percentile(&disk.lateness, 0.99)),
            disk.cores_used.unwrap_or(f64::NAN),
        );
    }
    p99s.sort();
    println!(
        "  webhook p99 over {windows} windows: best {:.2} ms, median {:.2} ms",
        ms(p99s[0]),
        ms(p99s[p99s.len() / 2])
    );
    println!(
        "  reproduce: cargo bench -p intentkit-bench --bench engine_webhooks  (BENCH_WEBHOOKS, BENCH_WINDOWS)"
    );
}
