//! Signed Pientegra webhooks through `Engine::handle_webhook` on SQLite: verification,
//! parsing, dedup, the transition, its history row and outbox event in one transaction.
//! Reports, in one run:
//!
//! - the plain-insert baseline (one ~2 KB row per transaction, same pragmas, same disk);
//! - applied webhooks per second, back to back (peak), and the ratio to the baseline;
//! - p50/p99 latency of webhooks offered at half that peak rate (open loop).
//!
//! Run: `cargo bench -p intentkit-bench --bench engine_webhooks`
//! Options: `BENCH_WEBHOOKS` (default 1000 per phase), `BENCH_DIR`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use intentkit_bench::{bench_dir, env_usize, percentile, plain_inserts};
use intentkit_core::provider::Secret;
use intentkit_core::provider::config::{HttpSettings, PientegraAccount, ProvidersConfig};
use intentkit_core::provider::pientegra::{WebhookSecrets, signature_header};
use intentkit_core::{
    AccountName, Cause, Clock, Currency, Delivery, DepositRequest, Engine, EngineSettings,
    IdempotencyKey, IntentEvent, IntentRequest, Ledger, Metadata, MinorUnits, PartnerReference,
    PayerHandoff, Provider, ProviderRef, Signal, SqliteConfig, SqliteStore, SystemClock, UserId,
};

const SECRET: &str = "whsec_YmVuY2htYXJrLXNlY3JldA";

fn setup(dir: &std::path::Path, name: &str, intents: usize) -> (Engine, Vec<String>) {
    let store =
        SqliteStore::open(dir.join(format!("{name}.db")), SqliteConfig::default()).expect("open");
    let ledger = Ledger::new(Arc::new(store), Arc::new(SystemClock));
    let mut providers = ProvidersConfig::default();
    let account = AccountName::new("tr-main").expect("account");
    providers.pientegra.insert(
        account.clone(),
        PientegraAccount {
            name: account.clone(),
            // Never called: webhooks need only the secrets.
            base_url: "http://127.0.0.1:9".into(),
            api_key: Secret::new("pk_bench"),
            webhook: WebhookSecrets {
                current: Secret::new(SECRET),
                previous: None,
            },
            http: HttpSettings::default(),
        },
    );
    let mut provider_ids = Vec::with_capacity(intents);
    for n in 0..intents {
        let id = ledger
            .create(
                IntentRequest::Deposit(DepositRequest {
                    account: account.clone(),
                    amount: MinorUnits::new(100_000).expect("amount"),
                    currency: Currency::TRY,
                    reference: PartnerReference::new(format!("order-{n}")).expect("ref"),
                    user_id: UserId::new(format!("user-{n}")).expect("user"),
                    user_label: None,
                    metadata: Metadata::default(),
                }),
                IdempotencyKey::new(format!("{name}-{n}")).expect("key"),
            )
            .expect("create")
            .intent
            .id;
        let pid = format!("0193a5c1-0f2e-7d11-8c3b-{n:012}");
        ledger
            .apply(
                id,
                IntentEvent::new(
                    Signal::HandoffIssued {
                        handoff: PayerHandoff::HostedPage {
                            url: format!("https://pay.example/d/{pid}"),
                        },
                        expires_at: None,
                    },
                    Cause::Api,
                )
                .with_provider_ref(ProviderRef::Pientegra {
                    intent_id: pid.clone(),
                    reference_no: Some(format!("D-2026-{n:07}")),
                }),
            )
            .expect("handoff");
        provider_ids.push(pid);
    }
    let engine = Engine::new(
        ledger,
        Arc::new(SystemClock),
        &providers,
        EngineSettings::default(),
    )
    .expect("engine");
    (engine, provider_ids)
}

/// The signed deliveries, prepared before timing starts.
fn webhooks(provider_ids: &[String]) -> Vec<(String, Vec<u8>)> {
    let t = SystemClock.now().unix_millis();
    provider_ids
        .iter()
        .enumerate()
        .map(|(n, pid)| {
            let body = format!(
                r#"{{"eventId":"evt-{n:08}","eventType":"intent.approved","occurredAt":"2026-11-22T10:15:02.481Z","intent":{{"id":"{pid}","referenceNo":"D-2026-{n:07}","externalUserId":"user-{n}","requestedAmount":"100000","amount":"100000","currency":"TRY","status":"APPROVED"}}}}"#
            );
            let header = signature_header(&Secret::new(SECRET), t, body.as_bytes());
            (header, body.into_bytes())
        })
        .collect()
}

async fn deliver(engine: &Engine, account: &AccountName, header: &str, body: &[u8]) {
    let header = header.to_string();
    let d = engine
        .handle_webhook(
            Provider::Pientegra,
            account,
            move |name| (name == "Pientegra-Signature").then(|| header.clone()),
            body,
        )
        .await;
    assert_eq!(d, Delivery::Accepted("applied"), "webhook not applied");
}

fn main() {
    let n = env_usize("BENCH_WEBHOOKS", 1_000).max(10);
    let root = bench_dir();
    std::fs::create_dir_all(&root).expect("bench dir");
    let dir = tempfile::tempdir_in(&root).expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let account = AccountName::new("tr-main").expect("account");

    let (peak_engine, peak_ids) = setup(dir.path(), "peak", n);
    let (paced_engine, paced_ids) = setup(dir.path(), "paced", n);
    let peak_hooks = webhooks(&peak_ids);
    let paced_hooks = webhooks(&paced_ids);

    let (baseline, baseline_latency) = plain_inserts(dir.path(), "webhooks", n, 2_000);

    let peak = rt.block_on(async {
        let start = Instant::now();
        for (header, body) in &peak_hooks {
            deliver(&peak_engine, &account, header, body).await;
        }
        n as f64 / start.elapsed().as_secs_f64()
    });

    // Open loop at half the peak: each webhook starts on schedule, whether or not the one
    // before it finished, and its latency counts from its scheduled start.
    let interval = Duration::from_secs_f64(2.0 / peak);
    let mut latencies = rt.block_on(async {
        let engine = Arc::new(paced_engine);
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for (i, (header, body)) in paced_hooks.into_iter().enumerate() {
            let due = start + interval.mul_f64(i as f64);
            tokio::time::sleep_until(due).await;
            let engine = engine.clone();
            let account = account.clone();
            tasks.push(tokio::spawn(async move {
                deliver(&engine, &account, &header, &body).await;
                due.elapsed()
            }));
        }
        let mut out = Vec::with_capacity(n);
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    latencies.sort();
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);

    println!("engine webhook benchmark ({n} signed webhooks per phase, SQLite, synchronous=FULL)");
    println!(
        "  baseline plain inserts/s (1/txn)     {baseline:>10.0}   commit p50 {:.2} ms, p99 {:.2} ms",
        percentile(&baseline_latency, 0.50).as_secs_f64() * 1e3,
        percentile(&baseline_latency, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "  applied webhooks/s (back to back)    {peak:>10.0}   {:.2}x baseline, target >= 0.3x  {}",
        peak / baseline,
        if peak / baseline >= 0.3 {
            "ok"
        } else {
            "BELOW TARGET"
        }
    );
    println!(
        "  at half peak ({:.0}/s): p50 {:.2} ms, p99 {:.2} ms   target p99 < 5 ms  {}",
        peak / 2.0,
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        if p99 < Duration::from_millis(5) {
            "ok"
        } else {
            "ABOVE TARGET"
        }
    );
    println!("  reproduce: cargo bench -p intentkit-bench --bench engine_webhooks");
}
