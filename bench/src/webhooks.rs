//! Signed Pientegra webhooks against an engine on SQLite, shared by the benchmarks that
//! deliver them: an engine whose deposits are already `pending` (so a webhook's cost is the
//! webhook's alone), the signed deliveries, and one delivery.

use std::sync::Arc;

use intentkit_core::provider::Secret;
use intentkit_core::provider::config::{HttpSettings, PientegraAccount, ProvidersConfig};
use intentkit_core::provider::pientegra::{WebhookSecrets, signature_header};
use intentkit_core::{
    AccountName, Cause, Clock, Currency, DepositRequest, Engine, EngineSettings, IdempotencyKey,
    IntentEvent, IntentRequest, Ledger, Metadata, MinorUnits, PartnerReference, PayerHandoff,
    Provider, ProviderRef, Signal, SqliteConfig, SqliteStore, SystemClock, UserId, WebhookOutcome,
};

/// The webhook secret of the benchmark's Pientegra account, `tr-main`.
pub const SECRET: &str = "whsec_YmVuY2htYXJrLXNlY3JldA";

/// An engine on `<dir>/<name>.db` with `intents` deposits of `tr-main` already `pending`, and
/// their Pientegra ids. `more` may add provider accounts.
pub fn setup(
    dir: &std::path::Path,
    name: &str,
    intents: usize,
    more: impl FnOnce(&mut ProvidersConfig),
) -> (Engine, Vec<String>) {
    let store =
        SqliteStore::open(dir.join(format!("{name}.db")), SqliteConfig::default()).expect("open");
    let (engine, ids) = setup_on(Arc::new(store), name, intents, more);
    (engine, ids.into_iter().map(|(_, pid)| pid).collect())
}

/// The Pientegra account `tr-main` the benchmarks' webhooks are signed for.
pub fn providers() -> ProvidersConfig {
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
    providers
}

/// As [`setup`], on `store`; returns each deposit's id with its Pientegra id.
pub fn setup_on(
    store: Arc<dyn intentkit_core::Store>,
    name: &str,
    intents: usize,
    more: impl FnOnce(&mut ProvidersConfig),
) -> (Engine, Vec<(intentkit_core::IntentId, String)>) {
    let ledger = Ledger::new(store, Arc::new(SystemClock));
    let account = AccountName::new("tr-main").expect("account");
    let mut providers = providers();
    more(&mut providers);
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
        provider_ids.push((id, pid));
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

/// The signed approvals of `provider_ids`, prepared before timing starts: (header, body).
pub fn webhooks(provider_ids: &[String]) -> Vec<(String, Vec<u8>)> {
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

/// Delivers one signed webhook to `account` and checks it was applied.
pub async fn deliver(engine: &Engine, account: &AccountName, header: &str, body: &[u8]) {
    let header = header.to_string();
    let d = engine
        .handle_webhook(
            Provider::Pientegra,
            account.as_str(),
            move |name| (name == "Pientegra-Signature").then(|| header.clone()),
            body,
        )
        .await;
    assert_eq!(d.outcome, WebhookOutcome::Applied, "webhook not applied");
}
