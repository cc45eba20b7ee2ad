//! Signed Pientegra webhooks per second through the HTTP receiver (`intentkitd`'s real listener:
//! hyper with its read timeouts, the connection cap, the request limits, the engine on SQLite),
//! alone and with a crowd of slow clients holding connections open, alternating in one run:
//!
//! - alone: `BENCH_CLIENTS` keep-alive connections posting signed `intent.approved` webhooks,
//!   each for its own pending deposit, back to back;
//! - with slow clients: the same, while `BENCH_SLOW` connections each send half a request's
//!   headers and nothing more; the server closes each at its header read timeout and the crowd
//!   opens a new one at once, so the count stays at `BENCH_SLOW`.
//!
//! The ratio (with / alone) is what slow clients cost the providers' deliveries.
//!
//! Run: `cargo bench -p intentkit-bench --bench receiver_slow`
//! Options: `BENCH_WEBHOOKS` (per phase, default 5000: a phase lasts a few header timeouts),
//! `BENCH_WINDOWS` (alone + slow pairs, default 2), `BENCH_SLOW` (default 500), `BENCH_CLIENTS`
//! (default 4), `BENCH_HEADER_TIMEOUT_MS` (the server's header read timeout, default 1000,
//! shorter than the 10 s default so that the whole crowd is closed and re-opened during each
//! phase: the accept loop's worst case), `BENCH_DIR`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use intentkit_bench::http::Conn;
use intentkit_bench::webhooks::{setup, webhooks};
use intentkit_bench::{Steal, env_usize, ms, percentile, runtime, scratch_dir};
use intentkit_grpc_server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

const PATH: &str = "/webhooks/pientegra/tr-main";

/// One phase's figures.
struct Phase {
    rate: f64,
    latencies: Vec<Duration>,
    steal: String,
}

/// Delivers `hooks` over `clients` connections, back to back; every one must be applied.
async fn deliver(addr: SocketAddr, hooks: Arc<Vec<(String, Vec<u8>)>>, clients: usize) -> Phase {
    let next = Arc::new(AtomicUsize::new(0));
    let steal = Steal::start();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (hooks, next) = (hooks.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr, PATH);
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((header, body)) = hooks.get(i) else {
                    return latencies;
                };
                let one = Instant::now();
                let (status, answer) = conn.post(header, body).await;
                latencies.push(one.elapsed());
                assert_eq!(
                    (status, answer.as_slice()),
                    (200, br#"{"received":true}"#.as_slice()),
                    "webhook {i} not taken"
                );
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("client"));
    }
    let rate = hooks.len() as f64 / start.elapsed().as_secs_f64();
    latencies.sort();
    Phase {
        rate,
        latencies,
        steal: steal.describe(),
    }
}

/// `n` connections that each send half a request's headers and wait; each one the server
/// closes is replaced at once.
struct Crowd {
    stop: watch::Sender<bool>,
    opened: Arc<AtomicUsize>,
    closed_by_server: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Crowd {
    async fn start(addr: SocketAddr, n: usize) -> Crowd {
        let (stop, rx) = watch::channel(false);
        let opened = Arc::new(AtomicUsize::new(0));
        let closed_by_server = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let (mut rx, opened, closed) = (rx.clone(), opened.clone(), closed_by_server.clone());
            tasks.push(tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while !*rx.borrow() {
                    let Ok(mut s) = TcpStream::connect(addr).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    if s.write_all(b"POST /webhooks/pientegra/tr-main HTTP/1.1\r\nHost: bench\r\nContent-Le")
                        .await
                        .is_err()
                    {
                        continue;
                    }
                    opened.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        _ = async { while let Ok(n) = s.read(&mut buf).await { if n == 0 { break } } } => {
                            closed.fetch_add(1, Ordering::Relaxed);
                        }
                        _ = rx.changed() => return,
                    }
                }
            }));
        }
        // Measure only once the whole crowd is in.
        while opened.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Crowd {
            stop,
            opened,
            closed_by_server,
            tasks,
        }
    }

    /// Stops replacing connections and closes them; returns (opened, closed by the server).
    async fn stop(self) -> (usize, usize) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        (
            self.opened.load(Ordering::Relaxed),
            self.closed_by_server.load(Ordering::Relaxed),
        )
    }
}

fn describe(p: &Phase) -> String {
    format!(
        "{:>8.0}/s   p50 {:>6.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({})",
        p.rate,
        ms(percentile(&p.latencies, 0.5)),
        ms(percentile(&p.latencies, 0.99)),
        ms(percentile(&p.latencies, 1.0)),
        p.steal
    )
}

fn main() {
    let per_phase = env_usize("BENCH_WEBHOOKS", 5_000).max(10);
    let windows = env_usize("BENCH_WINDOWS", 2).max(1);
    let slow = env_usize("BENCH_SLOW", 500);
    let clients = env_usize("BENCH_CLIENTS", 4).max(1);
    let header_timeout_ms = env_usize("BENCH_HEADER_TIMEOUT_MS", 1_000) as u64;
    let dir = scratch_dir();

    let total = per_phase * windows * 2;
    eprintln!("setting up {total} pending deposits...");
    let started = Instant::now();
    let (engine, ids) = setup(dir.path(), "receiver_slow", total, |_| {});
    eprintln!("  done in {:.1} s", started.elapsed().as_secs_f64());

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
            http_header_read_timeout_ms: header_timeout_ms,
            ..ServerConfig::default()
        };
        let server = Server::start(&config, engine).await.expect("server");
        let addr = server.http_addr();
        // Signed now: a signature is good for five minutes.
        let hooks = webhooks(&ids);
        let mut batches = hooks.chunks(per_phase).map(|c| Arc::new(c.to_vec()));

        println!(
            "receiver under slow clients ({per_phase} signed webhooks per phase over {clients} keep-alive connections, \
             {slow} slow connections, header read timeout {header_timeout_ms} ms, SQLite synchronous=FULL, {} cores)",
            std::thread::available_parallelism().map_or(0, |c| c.get())
        );
        let (mut alone_rates, mut slow_rates) = (Vec::new(), Vec::new());
        for w in 1..=windows {
            let alone = deliver(addr, batches.next().expect("batch"), clients).await;
            let crowd = Crowd::start(addr, slow).await;
            let with = deliver(addr, batches.next().expect("batch"), clients).await;
            let (opened, closed) = crowd.stop().await;
            let took = |p: &Phase| per_phase as f64 / p.rate;
            println!("  window {w}  alone                 {}  {:.1} s", describe(&alone), took(&alone));
            println!("  window {w}  with {slow} slow conns  {}  {:.1} s", describe(&with), took(&with));
            println!(
                "  window {w}  ratio {:.2}x   (slow connections opened {opened}, of which the server closed {closed} at its timeout)",
                with.rate / alone.rate
            );
            alone_rates.push(alone.rate);
            slow_rates.push(with.rate);
            // Let the last crowd's sockets go before the next baseline.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (a, s) = (mean(&alone_rates), mean(&slow_rates));
        println!(
            "  mean of {windows} windows: alone {a:.0}/s, with {slow} slow connections {s:.0}/s: ratio {:.2}x",
            s / a
        );
        println!("  repeat: cargo bench -p intentkit-bench --bench receiver_slow");
        server.shutdown();
        let _ = server.wait().await;
    });
}
