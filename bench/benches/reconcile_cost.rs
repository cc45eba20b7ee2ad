//! What one reconciliation pass costs in provider calls, as history grows: a week of settled
//! deposits at the Pientegra simulator (10,000, then 100,000) and 100 intents still open here
//! (in 10 bursts across the week, under review at Pientegra). Reports, for each size and in
//! the same run:
//!
//! - the calls of one pass, and the windows holding open intents;
//! - the baseline: the calls of listing the whole week's settled intents once (what a sweep
//!   from the oldest open intent cost before sweeps followed the open work).
//!
//! Run: `cargo bench -p intentkit-bench --bench reconcile_cost`
//! Options: `BENCH_SIZES` (comma-separated, default `10000,100000`).

use std::sync::Arc;

use intentkit_core::provider::Secret;
use intentkit_core::provider::config::{HttpSettings, PientegraAccount, ProvidersConfig};
use intentkit_core::provider::pientegra::WebhookSecrets;
use intentkit_core::provider::pientegra::client::{IntentsQuery, PientegraClient};
use intentkit_core::{
    AccountName, Currency, DepositRequest, Engine, EngineSettings, IdempotencyKey, Ledger,
    ManualClock, Metadata, MinorUnits, PartnerReference, ProviderRef, SqliteConfig, SqliteStore,
    Timestamp, UserId,
};
use intentkit_sandbox::pientegra;

const T0: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);
const WEEK_MS: i64 = 7 * 24 * 60 * 60 * 1_000;

struct Pass {
    calls: usize,
    windows: usize,
    baseline_calls: usize,
}

async fn measure(settled: usize) -> Pass {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let sim = pientegra::Simulator::start(Default::default(), Arc::new(clock.clone()), any)
        .await
        .expect("simulator");
    sim.seed_approved(settled, T0.plus_millis(-60_000), T0.plus_millis(WEEK_MS));
    let sim_config = pientegra::Config::default();
    let name = AccountName::new("tr-main").expect("account");
    let account = PientegraAccount {
        name: name.clone(),
        base_url: sim.base_url().to_string(),
        api_key: sim_config.api_key.clone(),
        webhook: WebhookSecrets {
            current: Secret::new(sim_config.webhook_secret.expose()),
            previous: None,
        },
        http: HttpSettings::default(),
    };
    let mut providers = ProvidersConfig::default();
    providers.pientegra.insert(name.clone(), account.clone());
    let store = SqliteStore::open(dir.path().join("r.db"), SqliteConfig::default()).expect("db");
    let ledger = Ledger::new(Arc::new(store), Arc::new(clock.clone()));
    let settings = EngineSettings {
        reconcile_call_interval_ms: 0,
        // Calls are counted, not paced: no provider budget.
        provider_call_budget: u32::MAX,
        ..EngineSettings::default()
    };
    let engine =
        Engine::new(ledger, Arc::new(clock.clone()), &providers, settings).expect("engine");
    let http = reqwest::Client::new();
    for burst in 0..10 {
        for n in 0..10 {
            let intent = engine
                .create_deposit(
                    DepositRequest {
                        account: name.clone(),
                        amount: MinorUnits::new(100_000).expect("amount"),
                        currency: Currency::TRY,
                        reference: PartnerReference::new(format!("o-{burst}-{n}")).expect("ref"),
                        user_id: UserId::new("u").expect("user"),
                        user_label: None,
                        metadata: Metadata::default(),
                    },
                    IdempotencyKey::new(format!("k-{burst}-{n}")).expect("key"),
                )
                .await
                .expect("create");
            let Some(ProviderRef::Pientegra { intent_id, .. }) = intent.provider_ref else {
                panic!("no provider reference");
            };
            http.post(format!(
                "{}/_control/intents/{intent_id}/payer-confirmed",
                sim.root_url()
            ))
            .send()
            .await
            .expect("control");
            clock.advance_millis(60_000);
        }
        clock.advance_millis(16 * 60 * 60 * 1_000 - 10 * 60_000);
    }
    clock.advance_millis(10 * 60_000);
    // The first pass learns of the reviews; the second is the steady state measured.
    engine.reconcile().await;
    let pass = engine.reconcile().await;
    assert!(pass.errors.is_empty(), "{pass:?}");

    // Baseline: the week's settled intents, listed once, page by page.
    let client = PientegraClient::new(account).expect("client");
    let mut baseline_calls = 0;
    let mut cursor = None;
    loop {
        let page = client
            .list_intents(&IntentsQuery {
                created_from: Some(T0.plus_millis(-60_000)),
                statuses: vec![
                    intentkit_core::provider::pientegra::Status::PendingReview,
                    intentkit_core::provider::pientegra::Status::Approved,
                    intentkit_core::provider::pientegra::Status::Rejected,
                    intentkit_core::provider::pientegra::Status::AutoCancelled,
                    intentkit_core::provider::pientegra::Status::LateArrival,
                ],
                cursor: cursor.take(),
                limit: Some(100),
                ..Default::default()
            })
            .await
            .expect("list");
        baseline_calls += 1;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    sim.shutdown();
    Pass {
        calls: pass.calls,
        windows: pass.windows,
        baseline_calls,
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = intentkit_bench::runtime();
    println!(
        "reconciliation cost per pass (Pientegra, one account, 100 open intents in 10 bursts over a week)"
    );
    for settled in sizes {
        let p = rt.block_on(measure(settled));
        println!(
            "  {settled:>7} settled: {:>4} calls per pass ({} windows in {} list pages, + 1 events page); baseline (the week listed once) {:>5} calls; {:.1}x fewer",
            p.calls,
            p.windows,
            p.calls.saturating_sub(1),
            p.baseline_calls,
            p.baseline_calls as f64 / p.calls.max(1) as f64
        );
    }
    println!(
        "  reproduce: cargo bench -p intentkit-bench --bench reconcile_cost  (BENCH_SIZES=10000,100000)"
    );
}
