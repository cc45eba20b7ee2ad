//! Signed webhooks end to end on PostgreSQL, through one intentkit instance and through two
//! on the same database, alternating in one run, with a consumer tailing the outbox:
//!
//! - one instance: `BENCH_CLIENTS` keep-alive connections post signed `intent.approved`
//!   webhooks, each for its own pending deposit, back to back, to one receiver;
//! - two instances: the same clients split over two receivers, each with its own engine and
//!   connection pool on the same database (a balancer's view of a scale-out);
//! - consumer lag: a consumer polls the outbox every 5 ms; an event's lag is from the moment
//!   its webhook was sent to the moment the consumer read its `intent.approved`.
//!
//! The instances run in this process on separate engines, stores and listeners (the machine's
//! cores are shared either way). fsync and synchronous_commit stay on.
//!
//! Run: `cargo bench -p intentkit-bench --bench pg_instances` (starts a throwaway cluster with
//! scripts/postgres.sh unless INTENTKIT_TEST_POSTGRES names a server).
//! Options: `BENCH_WEBHOOKS` (per phase, default 2000), `BENCH_WINDOWS` (one + two pairs,
//! default 2), `BENCH_CLIENTS` (default 8).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use intentkit_bench::http::Conn;
use intentkit_bench::webhooks::{providers, setup_on, webhooks};
use intentkit_bench::{PgServer, env_usize, ms, percentile, runtime};
use intentkit_core::store::postgres::{PostgresConfig, PostgresStore};
use intentkit_core::{Engine, EngineSettings, EventType, IntentId, Ledger, SystemClock};
use intentkit_grpc_server::{Server, ServerConfig};

const PATH: &str = "/webhooks/pientegra/tr-main";

/// When each intent's webhook went out, for the consumer's lag.
type Sent = Arc<Mutex<HashMap<IntentId, Instant>>>;

/// Posts `hooks` over `clients` connections spread over `addrs`; returns webhooks per second.
async fn deliver(
    addrs: &[SocketAddr],
    hooks: Arc<Vec<(IntentId, String, Vec<u8>)>>,
    clients: usize,
    sent: &Sent,
) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (hooks, next, sent) = (hooks.clone(), next.clone(), sent.clone());
        let addr = addrs[c % addrs.len()];
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr, PATH);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((id, header, body)) = hooks.get(i) else {
                    return;
                };
                sent.lock().expect("sent").insert(*id, Instant::now());
                let (status, answer) = conn.post(header, body).await;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    hooks.len() as f64 / start.elapsed().as_secs_f64()
}

async fn instance(engine: Engine) -> Server {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = ServerConfig {
        grpc_addr: any,
        http_addr: any,
        metrics_addr: None,
        allow_unauthenticated: true,
        // Maintenance would reach for a provider that is not there; not what is measured.
        maintenance_interval_ms: 3_600_000,
        ..ServerConfig::default()
    };
    Server::start(&config, engine).await.expect("server")
}

fn main() {
    let per_phase = env_usize("BENCH_WEBHOOKS", 2_000).max(10);
    let windows = env_usize("BENCH_WINDOWS", 2).max(1);
    let clients = env_usize("BENCH_CLIENTS", 8).max(2);
    let server = PgServer::start();
    let db = server.database();
    let open = || {
        let mut c = PostgresConfig::new(db.url());
        c.max_connections = clients + 4;
        Arc::new(PostgresStore::open(c).expect("open"))
    };
    let rt = runtime();
    // A warm-up phase on both instances first (connections, statements, caches).
    let warm = per_phase / 2;
    let total = per_phase * windows * 2 + warm;
    eprintln!("setting up {total} pending deposits...");
    let (engine_a, ids) = {
        let _in_runtime = rt.enter();
        setup_on(open(), "pg_instances", total, |_| {})
    };
    let engine_b = {
        let _in_runtime = rt.enter();
        Engine::new(
            Ledger::new(open(), Arc::new(SystemClock)),
            Arc::new(SystemClock),
            &providers(),
            EngineSettings::default(),
        )
        .expect("engine")
    };
    rt.block_on(async move {
        let a = instance(engine_a.clone()).await;
        let b = instance(engine_b).await;
        // Signed now: a signature is good for five minutes.
        let pids: Vec<String> = ids.iter().map(|(_, p)| p.clone()).collect();
        let hooks: Vec<_> = ids
            .iter()
            .zip(webhooks(&pids))
            .map(|((id, _), (h, body))| (*id, h, body))
            .collect();
        let (warm_up, hooks) = hooks.split_at(warm);
        let mut batches = hooks.chunks(per_phase).map(|c| Arc::new(c.to_vec()));

        // The consumer: reads the outbox from its cursor every 5 ms, notes each approval's lag.
        let sent: Sent = Arc::default();
        let lags: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let consumer = tokio::spawn({
            let (engine, sent, lags, stop) = (engine_a.clone(), sent.clone(), lags.clone(), stop.clone());
            async move {
                let mut cursor = engine.head_seq().await.expect("head");
                while !stop.load(Ordering::Relaxed) {
                    let events = engine.events_after(cursor, 500).await.expect("events");
                    let now = Instant::now();
                    for e in &events {
                        cursor = e.seq;
                        if e.event_type == EventType::Approved
                            && let Some(t) = sent.lock().expect("sent").get(&e.intent_id)
                        {
                            lags.lock().expect("lags").push(now - *t);
                        }
                    }
                    if events.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        });

        deliver(
            &[a.http_addr(), b.http_addr()],
            Arc::new(warm_up.to_vec()),
            clients,
            &sent,
        )
        .await;
        println!(
            "webhooks end to end on PostgreSQL ({per_phase} per phase over {clients} keep-alive connections, {} cores)",
            std::thread::available_parallelism().map_or(0, |c| c.get())
        );
        let (mut one, mut two) = (Vec::new(), Vec::new());
        for w in 1..=windows {
            let r1 = deliver(&[a.http_addr()], batches.next().expect("batch"), clients, &sent).await;
            let r2 = deliver(
                &[a.http_addr(), b.http_addr()],
                batches.next().expect("batch"),
                clients,
                &sent,
            )
            .await;
            println!("  window {w}: one instance {r1:>7.0}/s | two instances {r2:>7.0}/s | {:.2}x", r2 / r1);
            one.push(r1);
            two.push(r2);
        }
        // Let the consumer catch up, then stop it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        consumer.await.expect("consumer");
        let mut lags = lags.lock().expect("lags").clone();
        lags.sort();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (m1, m2) = (mean(&one), mean(&two));
        println!(
            "  mean: one instance {m1:.0}/s, two instances {m2:.0}/s: {:.2}x (the second must not lower it)",
            m2 / m1
        );
        println!(
            "  consumer lag ({} approvals read): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            lags.len(),
            ms(percentile(&lags, 0.50)),
            ms(percentile(&lags, 0.99)),
            ms(percentile(&lags, 1.0)),
        );
        println!("  reproduce: cargo bench -p intentkit-bench --bench pg_instances");
        a.shutdown();
        b.shutdown();
        let _ = a.wait().await;
        let _ = b.wait().await;
    });
    drop(db);
}
