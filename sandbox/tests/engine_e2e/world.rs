//! The world every end-to-end test runs in: an engine on SQLite in a temporary directory, a
//! manual clock, and both simulators on ephemeral ports.

use std::sync::Arc;

use crate::common::*;
use intentkit_core::provider::Secret;
use intentkit_core::provider::config::{PientegraAccount, ProvidersConfig};
use intentkit_core::{
    AccountName, AccountVerificationRequest, Currency, DepositRequest, Engine, EngineSettings,
    EventType, IdempotencyKey, Intent, IntentStatus, Ledger, ManualClock, Metadata, MinorUnits,
    OutboxEvent, PartnerReference, Provider, ProviderRef, SqliteConfig, SqliteStore, UserId,
    WebhookAnswer,
};
use intentkit_sandbox::{decentro, pientegra};
use serde_json::json;

pub(crate) struct World {
    pub(crate) engine: Engine,
    pub(crate) clock: ManualClock,
    pub(crate) pientegra: pientegra::Simulator,
    pub(crate) decentro: decentro::Simulator,
    pub(crate) _dir: tempfile::TempDir,
}

/// The webhook secret of a second Pientegra account, `tr-other`, on the same simulator: what
/// another merchant on the platform (or a low-trust sandbox account) holds.
pub(crate) const OTHER_SECRET: &str = "whsec_b3RoZXItYWNjb3VudA";

pub(crate) async fn world(pientegra_retries: u32) -> World {
    world_with(pientegra_retries, |_, _| {}).await
}

pub(crate) async fn world_with(
    pientegra_retries: u32,
    tune: impl FnOnce(&mut EngineSettings, &mut PientegraAccount),
) -> World {
    let clock = clock();
    let p = pientegra::Simulator::start(Default::default(), Arc::new(clock.clone()), loopback())
        .await
        .unwrap();
    let d = decentro::Simulator::start(Default::default(), Arc::new(clock.clone()), loopback())
        .await
        .unwrap();
    let mut providers = ProvidersConfig::default();
    let mut pacc = pientegra_account(p.base_url(), None);
    pacc.http.max_retries = pientegra_retries;
    let mut settings = EngineSettings {
        // The simulator has no rate limit; tests need not wait a second between sweep calls.
        reconcile_call_interval_ms: 5,
        provider_call_budget: u32::MAX,
        ..EngineSettings::default()
    };
    tune(&mut settings, &mut pacc);
    let mut other = pacc.clone();
    other.name = AccountName::new("tr-other").unwrap();
    other.webhook.current = Secret::new(OTHER_SECRET);
    providers.pientegra.insert(pacc.name.clone(), pacc);
    providers.pientegra.insert(other.name.clone(), other);
    let dacc = decentro_account(d.base_url());
    providers.decentro.insert(dacc.name.clone(), dacc);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("e.db"), SqliteConfig::default()).unwrap();
    let ledger = Ledger::new(Arc::new(store), Arc::new(clock.clone()));
    let engine = Engine::new(ledger, Arc::new(clock.clone()), &providers, settings).unwrap();
    let url = receiver_for(engine.clone()).await;
    let http = reqwest::Client::new();
    for (root, path, body) in [
        (
            p.root_url(),
            "webhook-url",
            json!({"url": format!("{url}/webhooks/pientegra/tr-main")}),
        ),
        (
            d.base_url().to_string(),
            "callback-url",
            json!({"url": format!("{url}/webhooks/decentro/in-main")}),
        ),
    ] {
        http.post(format!("{root}/_control/{path}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
    }
    World {
        engine,
        clock,
        pientegra: p,
        decentro: d,
        _dir: dir,
    }
}

impl World {
    pub(crate) async fn control_p(&self, path: &str, body: serde_json::Value) {
        let status = post_control(&self.pientegra.root_url(), path, body).await;
        assert!((200..300).contains(&status), "{path}: {status}");
    }

    pub(crate) async fn control_d(&self, path: &str, body: serde_json::Value) -> u16 {
        post_control(self.decentro.base_url(), path, body).await
    }

    pub(crate) async fn events(&self, intent: &Intent) -> Vec<OutboxEvent> {
        let mut out = Vec::new();
        let mut cursor = 0;
        loop {
            let batch = self.engine.events_after(cursor, 500).await.unwrap();
            let Some(last) = batch.last() else {
                break;
            };
            cursor = last.seq;
            out.extend(batch.into_iter().filter(|e| e.intent_id == intent.id));
        }
        out
    }

    pub(crate) async fn types(&self, intent: &Intent) -> Vec<EventType> {
        self.events(intent)
            .await
            .iter()
            .map(|e| e.event_type)
            .collect()
    }

    pub(crate) async fn settles(&self, id: intentkit_core::IntentId, to: IntentStatus) -> bool {
        for _ in 0..250 {
            if self.engine.get(id).await.unwrap().status == to {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }

    pub(crate) async fn callback(&self, body: &str) -> WebhookAnswer {
        self.engine
            .handle_webhook(Provider::Decentro, "in-main", |_| None, body.as_bytes())
            .await
    }

    pub(crate) async fn approved_events(&self, i: &Intent) -> usize {
        self.events(i)
            .await
            .iter()
            .filter(|e| e.event_type == EventType::Approved)
            .count()
    }
}

pub(crate) fn deposit(amount: i64) -> DepositRequest {
    DepositRequest {
        account: AccountName::new("tr-main").unwrap(),
        amount: MinorUnits::new(amount).unwrap(),
        currency: Currency::TRY,
        reference: PartnerReference::new("order-9").unwrap(),
        user_id: UserId::new("user-9").unwrap(),
        user_label: None,
        metadata: Metadata::default(),
    }
}

pub(crate) fn verification() -> AccountVerificationRequest {
    AccountVerificationRequest {
        account: AccountName::new("in-main").unwrap(),
        reference: PartnerReference::new("kyc-9").unwrap(),
        user_id: UserId::new("user-9").unwrap(),
        purpose_message: None,
        generate_qr: true,
        generate_uri: true,
        qr_with_logo: false,
        metadata: Metadata::default(),
    }
}

pub(crate) fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).unwrap()
}

pub(crate) fn pientegra_id(i: &Intent) -> String {
    match &i.provider_ref {
        Some(ProviderRef::Pientegra { intent_id, .. }) => intent_id.clone(),
        other => panic!("{other:?}"),
    }
}

pub(crate) fn txn(i: &Intent) -> String {
    match &i.provider_ref {
        Some(ProviderRef::Decentro { txn_id }) => txn_id.clone(),
        other => panic!("{other:?}"),
    }
}

/// The maintenance loop running in the background, as a host runs it, with its reports on a
/// channel the test reads.
pub(crate) struct Maintenance {
    reports: tokio::sync::mpsc::UnboundedReceiver<intentkit_core::MaintenanceReport>,
    stop: tokio::sync::oneshot::Sender<()>,
    runner: tokio::task::JoinHandle<()>,
}

impl World {
    pub(crate) fn run_maintenance(&self, every: std::time::Duration) -> Maintenance {
        let (tx, reports) = tokio::sync::mpsc::unbounded_channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let engine = self.engine.clone();
        let runner = tokio::spawn(async move {
            engine
                .run_maintenance(
                    every,
                    async {
                        let _ = stop_rx.await;
                    },
                    move |r| {
                        let _ = tx.send(r);
                    },
                )
                .await;
        });
        Maintenance {
            reports,
            stop,
            runner,
        }
    }
}

impl Maintenance {
    /// The first report `pick` turns into `Some`, waiting at most 10 s; `what` names it in the
    /// failure.
    pub(crate) async fn next<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(intentkit_core::MaintenanceReport) -> Option<T>,
    ) -> T {
        let reports = &mut self.reports;
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                if let Some(found) = pick(reports.recv().await.unwrap()) {
                    break found;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no maintenance pass within 10 s: {what}"))
    }

    pub(crate) async fn stop(self) {
        self.stop.send(()).unwrap();
        self.runner.await.unwrap();
    }
}
