//! Two `intentkitd` processes on one PostgreSQL, behind a balancer that hands each provider
//! delivery to either (and to the other when one is down), as a platform runs them:
//!
//! - deposits created through both, some with one key through both at once;
//! - every outcome's webhook duplicated, in reverse order, spread over both instances;
//! - one instance SIGKILLed mid-load (creates and deliveries still coming) and restarted;
//! - one consumer reading the outbox through both instances in turn, acking on each.
//!
//! Then: exactly one terminal event per settled intent, every seq read once and none skipped,
//! and one Pientegra deposit per idempotency key. The same again with both instances behind
//! PgBouncer in transaction pooling mode (`scripts/pgbouncer.sh`, `pool_mode=transaction`),
//! where each instance starts only once it has checked its timeouts are in effect.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use intentkit_core::store::postgres::testing::TestDatabase;
use intentkit_core::{Clock, SystemClock};
use intentkit_proto::v1;
use intentkit_proto::v1::intent_service_client::IntentServiceClient;
use intentkit_sandbox::{decentro, pientegra};
use tonic::transport::Channel;

const TOKEN: &str = "two-instances-token";

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One intentkitd process with fixed ports, so that a restart comes back where it was.
struct Instance {
    config: std::path::PathBuf,
    grpc: SocketAddr,
    http: SocketAddr,
    child: Option<Child>,
}

impl Instance {
    fn new(dir: &std::path::Path, name: &str, database: &str, pientegra: &str) -> Self {
        Self::with(dir, name, database, pientegra, "")
    }

    /// As [`Instance::new`], with more of the config file (other tables) after the rest.
    fn with(
        dir: &std::path::Path,
        name: &str,
        database: &str,
        pientegra: &str,
        more: &str,
    ) -> Self {
        let (grpc, http) = (free_addr(), free_addr());
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"[server]
grpc_addr = "{grpc}"
http_addr = "{http}"
metrics_addr = ""
database = "{database}"
auth_tokens = ["{TOKEN}"]
maintenance_interval_ms = 200
log_level = "warn"

[pientegra.tr-main]
base_url = "{pientegra}"
api_key = "pk_sandbox"
webhook_secret = "whsec_c2FuZGJveA"
{more}"#
            ),
        )
        .unwrap();
        let mut i = Instance {
            config,
            grpc,
            http,
            child: None,
        };
        i.start();
        i
    }

    fn start(&mut self) {
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_intentkitd"))
                .arg("--config")
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        );
    }

    /// SIGKILL: no shutdown, no flush, connections cut.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    async fn client(
        &self,
    ) -> IntentServiceClient<
        tonic::service::interceptor::InterceptedService<
            Channel,
            fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>,
        >,
    > {
        let deadline = Instant::now() + Duration::from_secs(30);
        let channel = loop {
            match Channel::from_shared(format!("http://{}", self.grpc))
                .unwrap()
                .connect()
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("instance on {} never came up: {e}", self.grpc),
            }
        };
        let auth: fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> = |mut r| {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
            Ok(r)
        };
        IntentServiceClient::with_interceptor(channel, auth)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The platform's balancer: each request to the next instance, and to the other one when the
/// first cannot be reached.
#[derive(Clone)]
struct Balancer {
    targets: Arc<Mutex<Vec<SocketAddr>>>,
    next: Arc<AtomicUsize>,
    http: reqwest::Client,
    /// Which instance answered each delivery (index into targets).
    served: Arc<Mutex<Vec<usize>>>,
}

impl Balancer {
    async fn start(targets: Vec<SocketAddr>) -> (Self, SocketAddr) {
        let b = Balancer {
            targets: Arc::new(Mutex::new(targets)),
            next: Arc::new(AtomicUsize::new(0)),
            http: reqwest::Client::new(),
            served: Arc::default(),
        };
        let app = axum::Router::new().fallback(forward).with_state(b.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (b, addr)
    }
}

async fn forward(
    axum::extract::State(b): axum::extract::State<Balancer>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Bytes) {
    let targets = b.targets.lock().unwrap().clone();
    let first = b.next.fetch_add(1, Ordering::Relaxed);
    for k in 0..targets.len() {
        let i = (first + k) % targets.len();
        let mut req = b
            .http
            .post(format!("http://{}{}", targets[i], uri.path()))
            .body(body.clone());
        for (name, value) in &headers {
            if name != "host" && name != "content-length" {
                req = req.header(name, value);
            }
        }
        if let Ok(resp) = req.send().await {
            b.served.lock().unwrap().push(i);
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
            return (status, resp.bytes().await.unwrap_or_default());
        }
    }
    (StatusCode::BAD_GATEWAY, Bytes::new())
}

fn deposit(key: &str) -> v1::CreateDepositRequest {
    v1::CreateDepositRequest {
        idempotency_key: key.into(),
        account: "tr-main".into(),
        amount_minor: 150_000,
        currency: "TRY".into(),
        reference: format!("order-{key}"),
        user_id: "user-1".into(),
        ..Default::default()
    }
}

async fn post(url: String, body: serde_json::Value) {
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_settle_each_intent_once_through_a_crash() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    settle_each_intent_once_through_a_crash(db.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_behind_pgbouncer_in_transaction_mode_settle_each_intent_once() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let Ok(bouncer) = std::env::var("INTENTKIT_TEST_PGBOUNCER") else {
        assert!(
            std::env::var_os("INTENTKIT_REQUIRE_PGBOUNCER").is_none(),
            "INTENTKIT_REQUIRE_PGBOUNCER is set but INTENTKIT_TEST_PGBOUNCER is not"
        );
        eprintln!("INTENTKIT_TEST_PGBOUNCER is not set: the PgBouncer case does not run");
        return;
    };
    // The test database, reached through the pooler under its own name.
    let name = db.url().rsplit('/').next().unwrap();
    let base = bouncer.rsplit_once('/').unwrap().0;
    settle_each_intent_once_through_a_crash(&format!("{base}/{name}?pool_mode=transaction")).await;
}

async fn settle_each_intent_once_through_a_crash(database: &str) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (balancer, lb) = Balancer::start(Vec::new()).await;
    let sim = pientegra::Simulator::start(
        pientegra::Config {
            webhook_url: Some(format!("http://{lb}/webhooks/pientegra/tr-main")),
            ..Default::default()
        },
        Arc::new(SystemClock),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let mut a = Instance::new(dir.path(), "a", database, sim.base_url());
    let b = Instance::new(dir.path(), "b", database, sim.base_url());
    *balancer.targets.lock().unwrap() = vec![a.http, b.http];
    let (mut ca, mut cb) = (a.client().await, b.client().await);

    // 30 deposits through both; every fifth key sent to both at once.
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for n in 0..30 {
        let key = format!("k-{n}");
        let intent = if n % 5 == 0 {
            let (x, y) = tokio::join!(
                ca.create_deposit(deposit(&key)),
                cb.create_deposit(deposit(&key))
            );
            let (x, y) = (x.unwrap().into_inner(), y.unwrap().into_inner());
            assert_eq!(x.id, y.id, "one key, one intent, whichever instance");
            x
        } else if n % 2 == 0 {
            ca.create_deposit(deposit(&key)).await.unwrap().into_inner()
        } else {
            cb.create_deposit(deposit(&key)).await.unwrap().into_inner()
        };
        assert_eq!(
            intent.status,
            v1::IntentStatus::Pending as i32,
            "{intent:?}"
        );
        ids.insert(key, intent.id);
    }

    // Outcomes decided at Pientegra, their webhooks held back, then sent by us: reversed,
    // each twice, spread by the balancer over both instances.
    post(
        format!("{}/_control/deliveries/hold", sim.root_url()),
        serde_json::json!({}),
    )
    .await;
    let mut pientegra_ids = BTreeMap::new();
    let mut want = BTreeMap::new();
    for (n, id) in ids.values().enumerate() {
        let it = cb
            .get_intent(v1::GetIntentRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        let Some(v1::provider_ref::Ref::Pientegra(p)) = it.provider_ref.and_then(|r| r.r#ref)
        else {
            panic!("no Pientegra reference on {id}");
        };
        let (action, status) = if n % 3 == 0 {
            ("reject", v1::IntentStatus::Rejected)
        } else {
            ("approve", v1::IntentStatus::Approved)
        };
        want.insert(id.clone(), status as i32);
        post(
            format!(
                "{}/_control/intents/{}/{action}",
                sim.root_url(),
                p.intent_id
            ),
            serde_json::json!({}),
        )
        .await;
        pientegra_ids.insert(id.clone(), p.intent_id);
    }
    let mut outcome_events: Vec<String> = pientegra_ids
        .values()
        .flat_map(|p| sim.events_for(p))
        .filter(|(_, t)| *t == "intent.approved" || *t == "intent.rejected")
        .map(|(e, _)| e)
        .collect();
    assert_eq!(outcome_events.len(), 30);
    outcome_events.reverse();
    let send = |ids: &[String]| {
        let doubled: Vec<&String> = ids.iter().flat_map(|e| [e, e]).collect();
        post(
            format!("{}/_control/deliveries/send", sim.root_url()),
            serde_json::json!({ "event_ids": doubled }),
        )
    };
    send(&outcome_events[..10]).await;

    // A crash mid-load: creates keep coming through the survivor, deliveries go to it.
    a.kill();
    let during = tokio::spawn({
        let mut cb = cb.clone();
        async move {
            let mut made = Vec::new();
            for n in 30..40 {
                let key = format!("k-{n}");
                made.push((
                    key.clone(),
                    cb.create_deposit(deposit(&key))
                        .await
                        .unwrap()
                        .into_inner()
                        .id,
                ));
            }
            made
        }
    });
    send(&outcome_events[10..20]).await;
    for (key, id) in during.await.unwrap() {
        ids.insert(key, id);
    }
    a.start();
    ca = a.client().await;
    send(&outcome_events[20..]).await;
    post(
        format!("{}/_control/deliveries/release", sim.root_url()),
        serde_json::json!({}),
    )
    .await;

    // Every outcome applied, whichever instance took it.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (id, want) in &want {
        let want = *want;
        loop {
            let it = ca
                .get_intent(v1::GetIntentRequest { id: id.clone() })
                .await
                .unwrap()
                .into_inner();
            if it.status == want {
                break;
            }
            assert!(Instant::now() < deadline, "{id} is {}", it.status);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let served = balancer.served.lock().unwrap().clone();
    assert!(
        served.contains(&0) && served.contains(&1),
        "both instances took deliveries"
    );

    // One consumer through both instances in turn, a page at a time, acking where it read.
    let mut seen: Vec<u64> = Vec::new();
    let mut terminal: BTreeMap<String, usize> = BTreeMap::new();
    let mut quiet = 0;
    let mut turn = 0;
    while quiet < 5 {
        turn += 1;
        let c = if turn % 2 == 0 { &mut ca } else { &mut cb };
        let page = c
            .list_events(v1::ListEventsRequest {
                consumer: "ledger".into(),
                after_seq: None,
                limit: 7,
            })
            .await
            .unwrap()
            .into_inner();
        if page.events.is_empty() {
            quiet += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        quiet = 0;
        for e in &page.events {
            seen.push(e.seq);
            if e.type_name == "intent.approved" || e.type_name == "intent.rejected" {
                *terminal.entry(e.intent_id.clone()).or_default() += 1;
            }
        }
        let last = page.events.last().unwrap().seq;
        c.ack_events(v1::AckEventsRequest {
            consumer: "ledger".into(),
            seq: last,
        })
        .await
        .unwrap();
    }
    assert_eq!(
        seen,
        (1..=seen.len() as u64).collect::<Vec<_>>(),
        "every seq once, in order, none skipped"
    );
    assert_eq!(terminal.len(), 30, "a terminal event per settled intent");
    assert!(terminal.values().all(|n| *n == 1), "{terminal:?}");

    // One Pientegra deposit per key: none created twice by the two instances or the crash.
    let keys: BTreeSet<&String> = ids.keys().collect();
    assert_eq!(keys.len(), 40);
    assert_eq!(sim.intent_count(), 40, "one provider intent per key");
}

/// The `[decentro.in-main]` table for a Decentro simulator at `base_url`.
fn decentro_table(base_url: &str) -> String {
    let c = decentro::Config::default();
    format!(
        "\n[decentro.in-main]\nbase_url = \"{base_url}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\
         module_secret = \"{}\"\nprovider_secret = \"{}\"\n",
        c.client_id, c.client_secret, c.module_secret, c.provider_secret
    )
}

/// An unsigned Decentro callback saying the verification was paid, which Decentro never sent.
fn forged_callback(txn_id: &str, reference: &str) -> String {
    serde_json::json!({
        "decentroTxnId": txn_id, "referenceId": reference, "transactionStatus": "SUCCESS",
        "payerName": "Mallory", "payerAccountNumber": "XXXX0000", "payerIfsc": "EVIL0000001",
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_callbacks_through_two_instances_share_one_lookup_gap() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pientegra = pientegra::Simulator::start(
        Default::default(),
        Arc::new(SystemClock),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let decentro = decentro::Simulator::start(
        Default::default(),
        Arc::new(SystemClock),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let more = decentro_table(decentro.base_url());
    let instances = [
        Instance::with(dir.path(), "a", db.url(), pientegra.base_url(), &more),
        Instance::with(dir.path(), "b", db.url(), pientegra.base_url(), &more),
    ];
    let mut client = instances[0].client().await;
    let _ = instances[1].client().await;
    let v = client
        .create_account_verification(v1::CreateAccountVerificationRequest {
            idempotency_key: "v-flood".into(),
            account: "in-main".into(),
            reference: "kyc-1".into(),
            user_id: "user-1".into(),
            purpose_message: "Verify".into(),
            generate_uri: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let Some(v1::provider_ref::Ref::Decentro(r)) = v.provider_ref.and_then(|r| r.r#ref) else {
        panic!("no Decentro reference");
    };
    let body = forged_callback(&r.txn_id, &v.provider_key);

    // 100 forged callbacks for the verification in about 5 s, alternately to each instance.
    let http = reqwest::Client::new();
    let before = decentro.api_calls();
    let started = Instant::now();
    let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
    for n in 0..100 {
        let at = &instances[n % 2];
        let resp = http
            .post(format!("http://{}/callbacks/decentro/in-main", at.http))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        *answers.entry(resp.status().as_u16()).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let looked = decentro.api_calls() - before;
    let bound = elapsed.as_secs() + 1;
    eprintln!(
        "{looked} Decentro look-ups for 100 forged callbacks over two instances in {} ms \
         (bound {bound})",
        elapsed.as_millis()
    );
    assert_eq!(
        answers,
        [(503, 100)].into(),
        "none applied, all to be sent again"
    );
    assert!(looked >= 1, "the provider was asked");
    assert!(
        looked <= bound,
        "{looked} look-ups in {} ms: more than one a second for one verification",
        elapsed.as_millis()
    );
    let it = client
        .get_intent(v1::GetIntentRequest { id: v.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(it.status, v1::IntentStatus::Pending as i32, "not applied");
    drop(instances);
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_one_call_budget_and_creates_come_first() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(db) = TestDatabase::create() else {
        return;
    };
    // Pientegra's limit, scaled down: 12 calls a second per key. Ours: 10 a second per account,
    // for every instance together.
    let limit = pientegra::RateLimit {
        calls: 12,
        period_ms: 1_000,
    };
    let dir = tempfile::tempdir().unwrap();
    let sim = pientegra::Simulator::start(
        pientegra::Config {
            rate_limit: Some(limit),
            ..Default::default()
        },
        Arc::new(SystemClock),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let engine = "\n[engine]\nprovider_call_budget = 10\nprovider_call_period_ms = 1000\n\
                  reconcile_min_age_ms = 0\n";
    let instances: Vec<Instance> = ["a", "b", "c"]
        .iter()
        .map(|n| Instance::with(dir.path(), n, db.url(), sim.base_url(), engine))
        .collect();
    let mut clients = Vec::new();
    for i in &instances {
        clients.push(i.client().await);
    }
    // A few open deposits, and around them a busy history at Pientegra: every sweep pass
    // lists 30 pages of it, far more than the budget allows in a second.
    for (n, c) in clients.iter_mut().enumerate() {
        c.create_deposit(deposit(&format!("open-{n}")))
            .await
            .unwrap();
    }
    let now = SystemClock.now();
    sim.seed_approved(3_000, now.plus_millis(-50_000), now);
    let sweeping = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Creates through all three while the sweeps run: three a second for 12 s.
    let mut refused = Vec::new();
    for n in 0..36 {
        let c = &mut clients[n % 3];
        match c.create_deposit(deposit(&format!("busy-{n}"))).await {
            Ok(r) if r.get_ref().status == v1::IntentStatus::Pending as i32 => {}
            other => refused.push(format!("busy-{n}: {other:?}")),
        }
        tokio::time::sleep(Duration::from_millis(333)).await;
    }
    let calls = sim.call_log();
    let lists = calls.iter().filter(|c| c.kind == "list_intents").count();
    let creates = calls.iter().filter(|c| c.kind == "create").count();
    let limited = calls.iter().filter(|c| c.rate_limited).count();
    // The most calls in any one-second window, from the first to the last.
    let period = Duration::from_millis(limit.period_ms);
    let busiest = (0..calls.len())
        .map(|i| {
            calls[i..]
                .iter()
                .take_while(|c| c.at.duration_since(calls[i].at) < period)
                .count()
        })
        .max()
        .unwrap_or(0);
    let span = calls.last().unwrap().at.duration_since(calls[0].at);
    eprintln!(
        "{} calls in {} ms ({creates} creates, {lists} sweep lists, {limited} refused by \
         Pientegra); busiest second {busiest}; sweeps ran {} ms",
        calls.len(),
        span.as_millis(),
        sweeping.elapsed().as_millis()
    );
    assert!(refused.is_empty(), "creates refused: {refused:?}");
    assert_eq!(creates, 39, "every create reached Pientegra once");
    assert!(lists >= 30, "the sweeps ran alongside ({lists} lists)");
    assert_eq!(limited, 0, "Pientegra refused none of our calls");
    assert!(
        busiest <= limit.calls as usize,
        "{busiest} calls in one second, past Pientegra's {}",
        limit.calls
    );
    drop(instances);
    drop(db);
}
