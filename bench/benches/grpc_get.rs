//! `GetIntent` through the gRPC server vs a bare tonic unary echo of the same message, with the
//! same load client, in one run: 64 requests in flight, over 4 HTTP/2 connections, for a fixed
//! time each, alternating echo and intentkit twice. Each server runs in its own child process
//! (this binary, re-executed), so that its RSS can be read idle and under load.
//!
//! Then the Go client (`bindings/go`, driven by `bench/go`) against the same intentkit server,
//! alternating with this Rust client, at the same 64 in flight over 4 connections.
//!
//! Run: `cargo bench -p intentkit-bench --bench grpc_get`
//! (`BENCH_SECONDS`, default 5, is the length of each measured window; the Go part needs `go`.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use intentkit_bench::{env_usize, ms, percentile, scratch_dir};
use intentkit_proto::v1;
use intentkit_proto::v1::intent_service_client::IntentServiceClient;
use intentkit_proto::v1::intent_service_server::{IntentService, IntentServiceServer};
use tonic::{Request, Response, Status};

const CONCURRENCY: usize = 64;
const CONNECTIONS: usize = 4;
const INTENTS: usize = 1_000;
const TOKEN: &str = "sandbox-token";

/// The baseline: answers `GetIntent` with a prepared intent of the real size, does nothing else.
struct Echo(v1::Intent);

#[tonic::async_trait]
impl IntentService for Echo {
    async fn get_intent(
        &self,
        request: Request<v1::GetIntentRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        let mut i = self.0.clone();
        i.id = request.into_inner().id;
        Ok(Response::new(i))
    }
    async fn create_deposit(
        &self,
        _: Request<v1::CreateDepositRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn create_account_verification(
        &self,
        _: Request<v1::CreateAccountVerificationRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn list_intents(
        &self,
        _: Request<v1::ListIntentsRequest>,
    ) -> Result<Response<v1::ListIntentsResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn cancel_intent(
        &self,
        _: Request<v1::CancelIntentRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn refresh_intent(
        &self,
        _: Request<v1::RefreshIntentRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn handle_webhook(
        &self,
        _: Request<v1::HandleWebhookRequest>,
    ) -> Result<Response<v1::HandleWebhookResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
    type StreamEventsStream = tonic::codegen::BoxStream<v1::Event>;
    async fn stream_events(
        &self,
        _: Request<v1::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn list_events(
        &self,
        _: Request<v1::ListEventsRequest>,
    ) -> Result<Response<v1::ListEventsResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn ack_events(
        &self,
        _: Request<v1::AckEventsRequest>,
    ) -> Result<Response<v1::AckEventsResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
}

/// Child role: the intentkit server with `INTENTS` pending deposits. Prints the address and
/// the ids, then serves until killed. Its data lives in `BENCH_CHILD_DIR`, which the parent
/// made and removes: a killed child cleans up nothing.
async fn serve_intentkit() {
    use intentkit_grpc_server::{Listeners, Server, open_engine, sandbox};
    let dir =
        std::path::PathBuf::from(std::env::var_os("BENCH_CHILD_DIR").expect("BENCH_CHILD_DIR"));
    let mut config = sandbox::server_config(&dir);
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.grpc_addr = any;
    config.http_addr = any;
    config.metrics_addr = None;
    let listeners = Listeners::bind(&config).await.expect("bind");
    let (sims, config) =
        sandbox::start_simulators(config, &listeners, sandbox::SimulatorAddrs::ephemeral())
            .await
            .expect("simulators");
    let engine = open_engine(&config).expect("engine");
    let server = Server::start_on(&config.server, engine.clone(), listeners)
        .await
        .expect("server");
    let mut ids = Vec::new();
    for n in 0..INTENTS {
        let request = intentkit_core::DepositRequest {
            account: intentkit_core::AccountName::new(sandbox::PIENTEGRA_ACCOUNT).expect("name"),
            amount: intentkit_core::MinorUnits::new(150_000).expect("amount"),
            currency: intentkit_core::Currency::TRY,
            reference: intentkit_core::PartnerReference::new(format!("bench-{n}")).expect("ref"),
            user_id: intentkit_core::UserId::new("bench-user").expect("user"),
            user_label: None,
            metadata: Default::default(),
        };
        let key = intentkit_core::IdempotencyKey::new(format!("bench-{n}")).expect("key");
        ids.push(
            engine
                .create_deposit(request, key)
                .await
                .expect("create")
                .id
                .to_string(),
        );
    }
    // The simulators were needed to create the intents; left running in this process, their
    // delivery loop would charge the server for the provider's work.
    sims.shutdown();
    println!("READY {} {}", server.grpc_addr(), ids.join(","));
    std::future::pending::<()>().await;
}

/// Child role: the echo server.
async fn serve_echo() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // A real intent's shape and size: what the intentkit server returns for a pending deposit.
    let template = v1::Intent {
        id: String::new(),
        provider: v1::Provider::Pientegra as i32,
        kind: v1::IntentKind::Deposit as i32,
        account: "tr-sandbox".into(),
        amount_minor: 150_000,
        currency: "TRY".into(),
        reference: "bench-0".into(),
        user_id: "bench-user".into(),
        provider_ref: Some(v1::ProviderRef {
            r#ref: Some(v1::provider_ref::Ref::Pientegra(v1::PientegraRef {
                intent_id: "01a20000-0000-7000-8000-000000000000".into(),
                reference_no: "D-2026-0000001".into(),
            })),
        }),
        handoff: Some(v1::PayerHandoff {
            handoff: Some(v1::payer_handoff::Handoff::HostedPage(v1::HostedPage {
                url: format!("http://127.0.0.1:40000/d/{}", "x".repeat(70)),
            })),
        }),
        status: v1::IntentStatus::Pending as i32,
        idempotency_key: "bench-0".into(),
        version: 2,
        ..Default::default()
    };
    println!("READY {addr} -");
    tonic::transport::Server::builder()
        .add_service(IntentServiceServer::new(Echo(template)))
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await
        .expect("serve");
}

struct Target {
    child: Child,
    addr: String,
    ids: Vec<String>,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(role: &str, dir: &std::path::Path) -> Target {
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .env("BENCH_ROLE", role)
        .env("BENCH_CHILD_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let mut parts = line.trim().splitn(3, ' ');
    assert_eq!(parts.next(), Some("READY"), "{role}: {line}");
    let addr = parts.next().expect("addr").to_string();
    let ids = match parts.next() {
        Some("-") | None => (0..INTENTS)
            .map(|n| format!("01a20000-0000-7000-8000-{n:012}"))
            .collect(),
        Some(ids) => ids.split(',').map(str::to_string).collect(),
    };
    Target { child, addr, ids }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Run {
    rps: f64,
    p50: Duration,
    p99: Duration,
    peak_rss_kib: u64,
}

async fn load(target: &Target, seconds: u64) -> Run {
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(
            tonic::transport::Channel::from_shared(format!("http://{}", target.addr))
                .expect("uri")
                .connect()
                .await
                .expect("connect"),
        );
    }
    let ids = Arc::new(target.ids.clone());
    // Warm up, then measure.
    for phase in [Duration::from_millis(500), Duration::from_secs(seconds)] {
        let deadline = Instant::now() + phase;
        let mut tasks = Vec::new();
        for w in 0..CONCURRENCY {
            let channel = channels[w % CONNECTIONS].clone();
            let ids = ids.clone();
            tasks.push(tokio::spawn(async move {
                let mut client =
                    IntentServiceClient::with_interceptor(channel, |mut r: Request<()>| {
                        r.metadata_mut().insert(
                            "authorization",
                            format!("Bearer {TOKEN}").parse().expect("header"),
                        );
                        Ok(r)
                    });
                let mut lat = Vec::new();
                let mut n = w;
                while Instant::now() < deadline {
                    let id = ids[n % ids.len()].clone();
                    n += CONCURRENCY;
                    let t = Instant::now();
                    client
                        .get_intent(v1::GetIntentRequest { id })
                        .await
                        .expect("GetIntent");
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let pid = target.child.id();
        let sampler = tokio::spawn(async move {
            let mut peak = 0;
            loop {
                peak = peak.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
                if Instant::now() >= deadline {
                    return peak;
                }
            }
        });
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        let peak = sampler.await.expect("sampler");
        if phase == Duration::from_secs(seconds) {
            all.sort();
            return Run {
                rps: all.len() as f64 / phase.as_secs_f64(),
                p50: percentile(&all, 0.50),
                p99: percentile(&all, 0.99),
                peak_rss_kib: peak,
            };
        }
    }
    unreachable!("the measured phase returns")
}

fn main() {
    let runtime = intentkit_bench::runtime();
    match std::env::var("BENCH_ROLE").as_deref() {
        Ok("intentkit") => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            return runtime.block_on(serve_intentkit());
        }
        Ok("echo") => return runtime.block_on(serve_echo()),
        _ => {}
    }
    let seconds = env_usize("BENCH_SECONDS", 5) as u64;
    runtime.block_on(async {
        // Declared before the children, so it is removed after they are killed.
        let dir = scratch_dir();
        let echo = spawn("echo", dir.path());
        let intentkit = spawn("intentkit", dir.path());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle_rss = rss_kib(intentkit.child.id());
        println!(
            "GetIntent, {CONCURRENCY} in flight over {CONNECTIONS} connections, {seconds} s windows"
        );
        let mut ratios = Vec::new();
        for round in 1..=2 {
            let e = load(&echo, seconds).await;
            let i = load(&intentkit, seconds).await;
            let ratio = i.rps / e.rps;
            ratios.push(ratio);
            println!(
                "round {round}: echo {:>8.0} req/s p50 {:>6.2} ms p99 {:>6.2} ms | intentkit {:>8.0} req/s p50 {:>6.2} ms p99 {:>6.2} ms | ratio {ratio:.2}x (target >= 0.6x)",
                e.rps,
                ms(e.p50),
                ms(e.p99),
                i.rps,
                ms(i.p50),
                ms(i.p99),
            );
            println!(
                "         server RSS: idle {:.1} MiB, under load (peak) {:.1} MiB; echo under load {:.1} MiB",
                idle_rss as f64 / 1024.0,
                i.peak_rss_kib as f64 / 1024.0,
                e.peak_rss_kib as f64 / 1024.0
            );
        }
        println!(
            "ratio intentkit/echo: {}",
            ratios
                .iter()
                .map(|r| format!("{r:.2}x"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        go_beside_rust(&intentkit, dir.path(), seconds).await;
    });
}

/// The Go client's GetIntent rate beside the Rust client's, against the same server.
async fn go_beside_rust(target: &Target, dir: &std::path::Path, seconds: u64) {
    let exe = dir.join("getload");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&exe)
        .arg(".")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/go"))
        .status();
    if !matches!(built, Ok(s) if s.success()) {
        println!("Go client: not measured (`go build` in bench/go failed or go is missing)");
        return;
    }
    println!("GetIntent from the Go client (bindings/go) beside the Rust client, same server");
    let mut ratios = Vec::new();
    for round in 1..=2 {
        let r = load(target, seconds).await;
        let mut child = Command::new(&exe)
            .args(["-addr", &target.addr, "-token", TOKEN, "-seconds"])
            .arg(seconds.to_string())
            .args(["-concurrency", &CONCURRENCY.to_string()])
            .args(["-connections", &CONNECTIONS.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("getload");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin
                .write_all(target.ids.join("\n").as_bytes())
                .expect("ids");
        }
        let out = child.wait_with_output().expect("getload output");
        assert!(out.status.success(), "getload failed");
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<f64> = line
            .split_whitespace()
            .map(|v| v.parse().expect("number"))
            .collect();
        let ratio = f[0] / r.rps;
        ratios.push(ratio);
        println!(
            "round {round}: rust {:>8.0} req/s p50 {:>6.2} ms p99 {:>6.2} ms | go {:>8.0} req/s p50 {:>6.2} ms p99 {:>6.2} ms | go/rust {ratio:.2}x",
            r.rps,
            ms(r.p50),
            ms(r.p99),
            f[0],
            f[1],
            f[2],
        );
    }
    println!(
        "ratio go/rust: {}",
        ratios
            .iter()
            .map(|r| format!("{r:.2}x"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
