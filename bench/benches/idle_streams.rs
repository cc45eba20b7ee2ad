//! What idle event streams cost: store calls per second, process CPU, and the p99 of signed
//! Pientegra webhooks through the HTTP receiver, with no stream open and with `BENCH_STREAMS`
//! idle `StreamEvents` streams (one client, one token, over several connections), alternating
//! in one run on `intentkitd`'s real server on SQLite. Every store call is counted by a
//! `CountingStore` around the SQLite store.
//!
//! Per window:
//! - idle, no streams: store calls/s and CPU over `BENCH_IDLE_MS` with no traffic at all;
//! - webhooks, no streams: `BENCH_WEBHOOKS` webhooks paced at `BENCH_RATE`/s on one keep-alive
//!   connection: latency, store calls/s;
//! - the same two with the streams open. With webhooks flowing the streams are not idle: every
//!   event is read once by each stream (that is their work, not a poll).
//!
//! The target: idle streams cost no store calls of their own (the idle ratio near 1.0x; what
//! remains is the engine's one feed watcher, about 5 head look-ups a second, and the metrics
//! tail, 3 calls a second). Before the watcher, each idle stream read the outbox every 200 ms.
//!
//! Run: `cargo bench -p intentkit-bench --bench idle_streams`
//! Options: `BENCH_STREAMS` (default 600), `BENCH_WINDOWS` (default 2), `BENCH_IDLE_MS`
//! (default 3000), `BENCH_WEBHOOKS` (per phase, default 300), `BENCH_RATE` (default 100),
//! `BENCH_DIR`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use intentkit_bench::http::Conn;
use intentkit_bench::webhooks::{setup_on, webhooks};
use intentkit_bench::{Steal, env_usize, ms, percentile, process_cpu, runtime, scratch_dir};
use intentkit_core::store::counting::CountingStore;
use intentkit_core::{SqliteConfig, SqliteStore};
use intentkit_grpc_server::{Server, ServerConfig};
use intentkit_proto::v1;
use intentkit_proto::v1::intent_service_client::IntentServiceClient;

const PATH: &str = "/webhooks/pientegra/tr-main";
/// Streams per gRPC connection (the server allows 200).
const PER_CONNECTION: usize = 150;

/// Store calls per second and process CPU (percent of one core) over a phase.
struct Cost {
    calls: f64,
    cpu: f64,
}

/// Measures `phase`'s store calls and CPU.
async fn cost<T>(
    counting: &CountingStore,
    phase: impl std::future::Future<Output = T>,
) -> (Cost, T) {
    let (calls0, cpu0, start) = (counting.total(), process_cpu(), Instant::now());
    let out = phase.await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, process_cpu()) {
        (Some(a), Some(b)) => 100.0 * (b - a).as_secs_f64() / secs,
        _ => f64::NAN,
    };
    let calls = (counting.total() - calls0) as f64 / secs;
    (Cost { calls, cpu }, out)
}

/// Posts `hooks` one at a time, one every `1 / rate` s; returns the latencies, sorted.
async fn paced(addr: SocketAddr, hooks: &[(String, Vec<u8>)], rate: usize) -> Vec<Duration> {
    let mut conn = Conn::new(addr, PATH);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut latencies = Vec::with_capacity(hooks.len());
    for (i, (header, body)) in hooks.iter().enumerate() {
        tick.tick().await;
        let one = Instant::now();
        let (status, answer) = conn.post(header, body).await;
        latencies.push(one.elapsed());
        assert_eq!(
            (status, answer.as_slice()),
            (200, br#"{"received":true}"#.as_slice()),
            "webhook {i} not taken"
        );
    }
    latencies.sort();
    latencies
}

/// `n` open streams from one client, each drained by a task that counts the events it gets.
struct Streams {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    received: Arc<AtomicUsize>,
}

impl Streams {
    async fn open(grpc: SocketAddr, n: usize, after_seq: u64) -> Streams {
        let received = Arc::new(AtomicUsize::new(0));
        let opened = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(n);
        let mut client = None;
        for i in 0..n {
            if i % PER_CONNECTION == 0 {
                client = Some(
                    IntentServiceClient::connect(format!("http://{grpc}"))
                        .await
                        .expect("connect"),
                );
            }
            let mut c = client.clone().expect("client");
            let (received, opened) = (received.clone(), opened.clone());
            tasks.push(tokio::spawn(async move {
                let mut stream = c
                    .stream_events(v1::StreamEventsRequest {
                        consumer: "bench".into(),
                        after_seq: Some(after_seq),
                    })
                    .await
                    .expect("stream")
                    .into_inner();
                opened.fetch_add(1, Ordering::Relaxed);
                while let Ok(Some(_)) = stream.message().await {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        while opened.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Streams { tasks, received }
    }

    async fn close(self) -> usize {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.received.load(Ordering::Relaxed)
    }
}

fn latency(l: &[Duration]) -> String {
    format!(
        "p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
        ms(percentile(l, 0.5)),
        ms(percentile(l, 0.99)),
        ms(percentile(l, 1.0)),
    )
}

fn main() {
    let streams = env_usize("BENCH_STREAMS", 600);
    let windows = env_usize("BENCH_WINDOWS", 2).max(1);
    let idle = Duration::from_millis(env_usize("BENCH_IDLE_MS", 3_000) as u64);
    let per_phase = env_usize("BENCH_WEBHOOKS", 300).max(10);
    let rate = env_usize("BENCH_RATE", 100).max(1);
    let dir = scratch_dir();

    let total = per_phase * windows * 2;
    eprintln!("setting up {total} pending deposits...");
    let store = SqliteStore::open(dir.path().join("idle_streams.db"), SqliteConfig::default())
        .expect("open");
    let counting = Arc::new(CountingStore::new(Arc::new(store)));
    let (engine, ids) = setup_on(counting.clone(), "idle_streams", total, |_| {});
    let ids: Vec<String> = ids.into_iter().map(|(_, pid)| pid).collect();

    let rt = runtime();
    rt.block_on(async move {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let config = ServerConfig {
            grpc_addr: any,
            http_addr: any,
            metrics_addr: None,
            allow_unauthenticated: true,
            // Maintenance would reach for a provider that is not there; not what is measured.
            maintenance_interval_ms: 3_600_000,
            max_streams_per_token: streams.max(1),
            ..ServerConfig::default()
        };
        let server = Server::start(&config, engine.clone()).await.expect("server");
        let (http, grpc) = (server.http_addr(), server.grpc_addr());
        // Signed now: a signature is good for five minutes.
        let hooks = webhooks(&ids);
        let mut batches = hooks.chunks(per_phase);
        // Let start-up work (recovery, the first maintenance pass) finish.
        tokio::time::sleep(Duration::from_millis(500)).await;

        println!(
            "idle event streams ({streams} streams from one client over {} connections; {per_phase} signed webhooks \
             per phase at {rate}/s; idle phases {} ms; SQLite synchronous=FULL, {} cores)",
            streams.div_ceil(PER_CONNECTION),
            idle.as_millis(),
            std::thread::available_parallelism().map_or(0, |c| c.get())
        );
        let (mut idle_ratios, mut p99_ratios) = (Vec::new(), Vec::new());
        for w in 1..=windows {
            let steal = Steal::start();
            let (idle0, ()) = cost(&counting, tokio::time::sleep(idle)).await;
            let (hooks0, lat0) =
                cost(&counting, paced(http, batches.next().expect("batch"), rate)).await;

            let head = engine.head_seq().await.expect("head");
            let open = Streams::open(grpc, streams, head).await;
            // Let the streams' first reads settle: from here on they are idle.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (idle1, ()) = cost(&counting, tokio::time::sleep(idle)).await;
            let (hooks1, lat1) =
                cost(&counting, paced(http, batches.next().expect("batch"), rate)).await;
            // Let the last events reach every stream before counting them.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let received = open.close().await;

            println!("  window {w}  idle, no streams         store {:>7.1} calls/s  cpu {:>5.1}%", idle0.calls, idle0.cpu);
            println!("  window {w}  idle, {streams} streams       store {:>7.1} calls/s  cpu {:>5.1}%", idle1.calls, idle1.cpu);
            println!("  window {w}  webhooks, no streams     store {:>7.1} calls/s  cpu {:>5.1}%  {}", hooks0.calls, hooks0.cpu, latency(&lat0));
            println!(
                "  window {w}  webhooks, {streams} streams   store {:>7.1} calls/s  cpu {:>5.1}%  {}  ({received} of {} events delivered to streams)",
                hooks1.calls,
                hooks1.cpu,
                latency(&lat1),
                streams * per_phase
            );
            let idle_ratio = idle1.calls / idle0.calls;
            let p99_ratio = ms(percentile(&lat1, 0.99)) / ms(percentile(&lat0, 0.99));
            println!(
                "  window {w}  ratios ({streams} streams / none): idle store calls {idle_ratio:.2}x \
                 ({:+.1} calls/s for all {streams} streams: the one feed watcher), webhook p99 {p99_ratio:.2}x  ({})",
                idle1.calls - idle0.calls,
                steal.describe()
            );
            idle_ratios.push(idle_ratio);
            p99_ratios.push(p99_ratio);
            // Let the streams' connections go before the next baseline.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "  mean of {windows} windows: idle store calls {:.2}x with {streams} idle streams; webhook p99 {:.2}x \
             with {streams} streams each reading every event",
            mean(&idle_ratios),
            mean(&p99_ratios)
        );
        println!("  repeat: cargo bench -p intentkit-bench --bench idle_streams");
        server.shutdown();
        let _ = server.wait().await;
    });
}
