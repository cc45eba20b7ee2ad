//! Crash tests: the engine runs in a child process that is killed with SIGKILL, between the
//! provider call and the store write, and at random points under load. After a restart on
//! the same database, every provider intent maps to exactly one of ours, and the outbox holds
//! exactly one terminal event per settled intent.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use intentkit_core::provider::config::ProvidersConfig;
use intentkit_core::{
    AccountName, Currency, DepositRequest, Engine, EngineSettings, EventType, IdempotencyKey,
    IntentStatus, Ledger, Metadata, MinorUnits, PartnerReference, Provider, SqliteConfig,
    SqliteStore, SystemClock, UserId,
};
use intentkit_sandbox::pientegra;
use serde_json::json;

/// The engine, and the ledger under it (for the test's own checks of the database).
fn engine(db: &std::path::Path, base_url: &str) -> (Engine, Ledger) {
    let mut providers = ProvidersConfig::default();
    let acc = pientegra_account(base_url, None);
    providers.pientegra.insert(acc.name.clone(), acc);
    let store = SqliteStore::open(db, SqliteConfig::default()).unwrap();
    let ledger = Ledger::new(Arc::new(store), Arc::new(SystemClock));
    let engine = Engine::new(
        ledger.clone(),
        Arc::new(SystemClock),
        &providers,
        EngineSettings {
            recover_after_ms: 0,
            ..Default::default()
        },
    )
    .unwrap();
    (engine, ledger)
}

fn deposit(n: u64) -> DepositRequest {
    DepositRequest {
        account: AccountName::new("tr-main").unwrap(),
        amount: MinorUnits::new(100_000 + i64::try_from(n).unwrap()).unwrap(),
        currency: Currency::TRY,
        reference: PartnerReference::new(format!("order-{n}")).unwrap(),
        user_id: UserId::new("user-1").unwrap(),
        user_label: None,
        metadata: Metadata::default(),
    }
}

/// The child process: creates deposits `0..count` (idempotently, so every run may repeat
/// them) from four concurrent tasks, until it finishes or is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child-process entry point for the crash tests"]
async fn crash_child() {
    let (Ok(db), Ok(url), Ok(count)) = (
        std::env::var("CRASH_DB"),
        std::env::var("CRASH_URL"),
        std::env::var("CRASH_COUNT"),
    ) else {
        return;
    };
    let count: u64 = count.parse().unwrap();
    let (engine, _) = engine(std::path::Path::new(&db), &url);
    println!("READY");
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for n in (t..count).step_by(4) {
                    let _ = engine
                        .create_deposit(
                            deposit(n),
                            IdempotencyKey::new(format!("load-{n}")).unwrap(),
                        )
                        .await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    println!("DONE");
}

fn spawn_child(db: &std::path::Path, url: &str, count: u64, failpoint: Option<&str>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "crash_child",
        "--ignored",
        "--nocapture",
        "--quiet",
    ])
    .env("CRASH_DB", db)
    .env("CRASH_URL", url)
    .env("CRASH_COUNT", count.to_string())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(f) = failpoint {
        cmd.env("INTENTKIT_FAILPOINT", f);
    }
    cmd.spawn().unwrap()
}

/// Reads the child's stdout until a line containing `marker`; false if it ended first.
fn wait_for(child: &mut Child, marker: &str) -> bool {
    let out = child.stdout.as_mut().unwrap();
    let mut reader = BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        if line.contains(marker) {
            return true;
        }
    }
}

/// Restarts on the database, finishes every create, approves everything at the provider,
/// and checks the invariants.
async fn restart_and_check(
    db: &std::path::Path,
    sim: &pientegra::Simulator,
    expected_intents: usize,
) {
    let (engine, ledger) = engine(db, sim.base_url());
    for _ in 0..5 {
        engine.recover_created().await.unwrap();
    }
    let (all, more) = engine.list(Default::default(), None, 1_000).await.unwrap();
    assert!(more.is_none());
    assert_eq!(all.len(), expected_intents, "one of ours per key");
    assert!(
        all.iter().all(|i| i.status == IntentStatus::Pending),
        "every intent resumed: {:?}",
        all.iter().map(|i| i.status).collect::<Vec<_>>()
    );

    // Every provider intent maps to exactly one of ours.
    let provider_ids = sim.intent_ids();
    assert_eq!(
        provider_ids.len(),
        expected_intents,
        "one provider intent per key"
    );
    let mut ours = HashSet::new();
    for pid in &provider_ids {
        let found = ledger
            .find_by_provider_ref(Provider::Pientegra, pid)
            .unwrap()
            .unwrap_or_else(|| panic!("provider intent {pid} has no intent of ours"));
        assert!(
            ours.insert(found.id),
            "two provider intents map to {}",
            found.id
        );
    }

    // Settle all of them, with every webhook delivered twice.
    let url = receiver_for(engine.clone()).await;
    let http = reqwest::Client::new();
    let control = |path: String, body: serde_json::Value| {
        http.post(format!("{}/_control/{path}", sim.root_url()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    control(
        "webhook-url".into(),
        json!({"url": format!("{url}/webhooks/pientegra/tr-main")}),
    )
    .await
    .unwrap();
    for pid in &provider_ids {
        control(format!("intents/{pid}/approve"), json!({}))
            .await
            .unwrap();
    }
    let settled = eventually(|| {
        sim.deliveries()
            .iter()
            .all(|d| d.2 == pientegra::DeliveryStatus::Delivered)
    })
    .await;
    assert!(settled);
    let again: Vec<String> = sim.deliveries().into_iter().map(|d| d.0).collect();
    control("deliveries/send".into(), json!({"event_ids": again}))
        .await
        .unwrap();

    let mut terminal: BTreeMap<_, usize> = BTreeMap::new();
    let mut cursor = 0;
    loop {
        let batch = engine.events_after(cursor, 1_000).await.unwrap();
        let Some(last) = batch.last() else { break };
        cursor = last.seq;
        for e in batch {
            if matches!(e.event_type, EventType::Approved | EventType::Rejected) {
                *terminal.entry(e.intent_id).or_default() += 1;
            }
        }
    }
    assert_eq!(terminal.len(), expected_intents);
    assert!(terminal.values().all(|n| *n == 1), "{terminal:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_the_provider_call_and_the_store_write() {
    let sim = pientegra::Simulator::start(Default::default(), Arc::new(SystemClock), loopback())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut child = spawn_child(&db, sim.base_url(), 1, Some("after_provider_create"));
    assert!(
        wait_for(&mut child, "FAILPOINT after_provider_create"),
        "the child never reached the failpoint"
    );
    // SIGKILL: Pientegra has the intent, our store still says created.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(sim.intent_count(), 1);
    {
        let (engine, _) = engine(&db, sim.base_url());
        let (all, _) = engine.list(Default::default(), None, 10).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].status, IntentStatus::Created);
    }
    restart_and_check(&db, &sim, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_points_under_load() {
    let sim = pientegra::Simulator::start(Default::default(), Arc::new(SystemClock), loopback())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("load.db");
    let count = 300;
    for round in 0..3u64 {
        let mut child = spawn_child(&db, sim.base_url(), count, None);
        assert!(wait_for(&mut child, "READY"));
        // Let it work for a while, then kill it wherever it is.
        let pause = 5 + fastrand::u64(..60) + round * 5;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // The kills must have cut the work short, or this test proves nothing.
    assert!(
        sim.intent_count() < usize::try_from(count).unwrap(),
        "every create finished before the kills"
    );
    // A last run finishes whatever the kills left undone.
    let mut child = spawn_child(&db, sim.base_url(), count, None);
    assert!(wait_for(&mut child, "DONE"), "the final run did not finish");
    child.wait().unwrap();
    restart_and_check(&db, &sim, usize::try_from(count).unwrap()).await;
}
