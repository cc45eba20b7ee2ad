//! The engine end to end against both simulators: creates, webhooks and callbacks over real
//! HTTP into `Engine::handle_webhook`, expiry, late arrival, reordering, a lost create
//! response, and a forged callback.

mod common;

use std::sync::Arc;

use common::*;
use intentkit_core::provider::config::ProvidersConfig;
use intentkit_core::{
    AccountName, AccountVerificationRequest, Currency, DepositRequest, Engine, EngineSettings,
    EventType, IdempotencyKey, Intent, IntentStatus, Ledger, ManualClock, Metadata, MinorUnits,
    OutboxEvent, PartnerReference, Provider, ProviderRef, SqliteConfig, SqliteStore, UserId,
};
use intentkit_sandbox::{decentro, pientegra};
use serde_json::json;

struct World {
    engine: Engine,
    clock: ManualClock,
    pientegra: pientegra::Simulator,
    decentro: decentro::Simulator,
    _dir: tempfile::TempDir,
}

async fn world(pientegra_retries: u32) -> World {
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
    providers.pientegra.insert(pacc.name.clone(), pacc);
    let dacc = decentro_account(d.base_url());
    providers.decentro.insert(dacc.name.clone(), dacc);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("e.db"), SqliteConfig::default()).unwrap();
    let ledger = Ledger::new(Arc::new(store), Arc::new(clock.clone()));
    let engine = Engine::new(
        ledger,
        Arc::new(clock.clone()),
        &providers,
        EngineSettings::default(),
    )
    .unwrap();
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
    async fn control_p(&self, path: &str, body: serde_json::Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/_control/{path}", self.pientegra.root_url()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }

    async fn control_d(&self, path: &str, body: serde_json::Value) -> u16 {
        post_control(self.decentro.base_url(), path, body).await
    }

    fn events(&self, intent: &Intent) -> Vec<OutboxEvent> {
        let mut out = Vec::new();
        let mut cursor = 0;
        loop {
            let batch = self.engine.ledger().events_after(cursor, 500).unwrap();
            let Some(last) = batch.last() else {
                break;
            };
            cursor = last.seq;
            out.extend(batch.into_iter().filter(|e| e.intent_id == intent.id));
        }
        out
    }

    fn types(&self, intent: &Intent) -> Vec<EventType> {
        self.events(intent).iter().map(|e| e.event_type).collect()
    }

    async fn settles(&self, id: intentkit_core::IntentId, to: IntentStatus) -> bool {
        for _ in 0..250 {
            if self.engine.get(id).await.unwrap().status == to {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }
}

fn deposit(amount: i64) -> DepositRequest {
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

fn verification() -> AccountVerificationRequest {
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

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).unwrap()
}

fn pientegra_id(i: &Intent) -> String {
    match &i.provider_ref {
        Some(ProviderRef::Pientegra { intent_id, .. }) => intent_id.clone(),
        other => panic!("{other:?}"),
    }
}

fn txn(i: &Intent) -> String {
    match &i.provider_ref {
        Some(ProviderRef::Decentro { txn_id }) => txn_id.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_deposit_approved_for_another_amount_credits_the_approved_amount_once() {
    let w = world(4).await;
    let i = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap();
    assert_eq!(i.status, IntentStatus::Pending);
    assert!(i.handoff.is_some() && i.expires_at.is_some());
    // The same call again is a replay, not a second deposit.
    let again = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap();
    assert_eq!(again.id, i.id);
    assert_eq!(w.pientegra.intent_count(), 1);

    w.control_p(
        &format!("intents/{}/approve", pientegra_id(&i)),
        json!({"amount": 95_000}),
    )
    .await;
    assert!(w.settles(i.id, IntentStatus::Approved).await);
    let events = w.events(&i);
    let approved: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == EventType::Approved)
        .collect();
    assert_eq!(approved.len(), 1);
    assert_eq!(
        approved[0].payload.intent.approved_amount,
        Some(MinorUnits::new(95_000).unwrap())
    );
    assert_eq!(
        approved[0].business_key,
        format!("intent.approved:{}", i.id)
    );
}

#[tokio::test]
async fn a_rejected_deposit_is_rejected() {
    let w = world(4).await;
    let i = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap();
    w.control_p(
        &format!("intents/{}/reject", pientegra_id(&i)),
        json!({"reason": "no transfer"}),
    )
    .await;
    assert!(w.settles(i.id, IntentStatus::Rejected).await);
    assert_eq!(
        w.engine.get(i.id).await.unwrap().reason.as_deref(),
        Some("no transfer")
    );
}

#[tokio::test]
async fn expired_then_late_arrival_then_approved() {
    let w = world(4).await;
    let i = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap();
    w.clock.advance_millis(30 * 60_000);
    // Our timer or Pientegra's auto-cancel webhook, whichever comes first, expires it once.
    w.engine.expire_due().await.unwrap();
    assert!(w.settles(i.id, IntentStatus::Expired).await);
    w.control_p(
        &format!("intents/{}/late-arrival", pientegra_id(&i)),
        json!({}),
    )
    .await;
    assert!(w.settles(i.id, IntentStatus::LateArrival).await);
    w.control_p(&format!("intents/{}/approve", pientegra_id(&i)), json!({}))
        .await;
    assert!(w.settles(i.id, IntentStatus::Approved).await);
    assert_eq!(
        w.types(&i),
        [
            EventType::Created,
            EventType::Pending,
            EventType::Expired,
            EventType::LateArrival,
            EventType::Approved
        ]
    );
}

#[tokio::test]
async fn duplicate_and_reordered_webhooks_settle_once() {
    let w = world(4).await;
    w.control_p("deliveries/hold", json!({})).await;
    let i = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap();
    let pid = pientegra_id(&i);
    w.control_p(&format!("intents/{pid}/expire"), json!({}))
        .await;
    w.control_p(&format!("intents/{pid}/approve"), json!({}))
        .await;
    let ev = w.pientegra.events_for(&pid);
    let (expired, approved) = (ev[0].0.clone(), ev[1].0.clone());
    w.control_p(
        "deliveries/send",
        json!({"event_ids": [approved, approved, expired, approved]}),
    )
    .await;
    assert_eq!(
        w.engine.get(i.id).await.unwrap().status,
        IntentStatus::Approved
    );
    assert_eq!(
        w.types(&i),
        [EventType::Created, EventType::Pending, EventType::Approved],
        "the late expiry is stale, the repeats are duplicates"
    );
}

#[tokio::test]
async fn a_webhook_that_beats_the_lost_create_response_is_kept_and_applied() {
    // No retries, so the cut-off answer leaves our intent in created.
    let w = world(0).await;
    w.control_p("faults", json!({"drop_after_commit": 1})).await;
    let err = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "PROVIDER_UNAVAILABLE");
    assert!(err.is_retryable());
    let (page, _) = w.engine.list(Default::default(), None, 10).await.unwrap();
    let ours = &page[0];
    assert_eq!(ours.status, IntentStatus::Created);
    assert!(ours.last_error.is_some());

    // Pientegra approves; its webhook names an intent we have not heard of.
    let list = reqwest::Client::new()
        .get(format!("{}/external/intents", w.pientegra.base_url()))
        .bearer_auth("pk_sandbox")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let pid = v["data"][0]["intentId"].as_str().unwrap().to_string();
    w.control_p(&format!("intents/{pid}/approve"), json!({}))
        .await;
    assert!(
        eventually(|| w
            .pientegra
            .deliveries()
            .iter()
            .any(|d| matches!(d.2, pientegra::DeliveryStatus::Delivered)))
        .await
    );
    assert_eq!(
        w.engine.get(ours.id).await.unwrap().status,
        IntentStatus::Created
    );

    // Recovery repeats the create under the same key: the same Pientegra intent, and the kept
    // approval lands.
    w.clock.advance_millis(60_000);
    assert_eq!(w.engine.recover_created().await.unwrap(), 1);
    let settled = w.engine.get(ours.id).await.unwrap();
    assert_eq!(settled.status, IntentStatus::Approved);
    assert_eq!(pientegra_id(&settled), pid);
    assert_eq!(w.pientegra.intent_count(), 1);
}

#[tokio::test]
async fn a_definitive_refusal_fails_the_intent_and_the_caller_gets_the_providers_code() {
    let w = world(4).await;
    let err = w
        .engine
        .create_deposit(deposit(50), key("d-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "amount_below_min");
    assert!(
        w.engine
            .list(Default::default(), None, 10)
            .await
            .unwrap()
            .0
            .is_empty(),
        "refused before recording"
    );
    let unsanitized = AccountVerificationRequest {
        purpose_message: Some("Verify now!".into()),
        ..verification()
    };
    let err = w
        .engine
        .create_account_verification(unsanitized, key("v-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "error_unsanitized_values");
    assert_eq!(w.decentro.transaction_count(), 0);
    assert!(
        w.engine
            .list(Default::default(), None, 10)
            .await
            .unwrap()
            .0
            .is_empty(),
        "refused before recording"
    );
    let unknown = DepositRequest {
        account: AccountName::new("nope").unwrap(),
        ..deposit(100_000)
    };
    assert_eq!(
        w.engine
            .create_deposit(unknown, key("d-2"))
            .await
            .unwrap_err()
            .code(),
        "UNKNOWN_ACCOUNT"
    );
}

#[tokio::test]
async fn cancel_before_payment_and_refresh_on_demand() {
    let w = world(4).await;
    let a = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap();
    let canceled = w
        .engine
        .cancel(a.id, Some("user left".into()))
        .await
        .unwrap();
    assert_eq!(canceled.status, IntentStatus::Canceled);

    let b = w
        .engine
        .create_deposit(deposit(100_000), key("d-2"))
        .await
        .unwrap();
    w.control_p("deliveries/hold", json!({})).await;
    w.control_p(
        &format!("intents/{}/payer-confirmed", pientegra_id(&b)),
        json!({}),
    )
    .await;
    let refreshed = w.engine.refresh(b.id).await.unwrap();
    assert_eq!(refreshed.status, IntentStatus::PayerConfirmed);
    let err = w.engine.cancel(b.id, None).await.unwrap_err();
    assert_eq!(err.code(), "INVALID_TRANSITION");
}

#[tokio::test]
async fn a_verification_succeeds_by_confirmed_callback_with_the_verified_payer() {
    let w = world(4).await;
    let i = w
        .engine
        .create_account_verification(verification(), key("v-1"))
        .await
        .unwrap();
    assert_eq!(i.status, IntentStatus::Pending);
    assert_eq!(i.expires_at, Some(T0.plus_millis(600_000)));
    assert_eq!(
        w.control_d(
            &format!("transactions/{}/pay", txn(&i)),
            json!({"payerName": "A Kumar", "payerIfsc": "HDFC0000001"}),
        )
        .await,
        204
    );
    assert!(w.settles(i.id, IntentStatus::Approved).await);
    let done = w.engine.get(i.id).await.unwrap();
    let payer = done.verified_payer.unwrap();
    assert_eq!(payer.name.as_deref(), Some("A Kumar"));
    assert_eq!(payer.ifsc.as_deref(), Some("HDFC0000001"));
    let history = w.engine.ledger().history(i.id).unwrap();
    assert_eq!(
        history.last().unwrap().cause,
        intentkit_core::Cause::Callback
    );
}

#[tokio::test]
async fn a_failed_verification_is_learned_by_one_status_look_up_at_expiry() {
    let w = world(4).await;
    let i = w
        .engine
        .create_account_verification(verification(), key("v-1"))
        .await
        .unwrap();
    w.control_d(&format!("transactions/{}/fail", txn(&i)), json!({}))
        .await;
    assert!(
        w.decentro.callbacks_sent().is_empty(),
        "no callback on failure"
    );
    w.clock.advance_millis(600_000);
    let before = w.decentro.api_calls();
    assert_eq!(w.engine.expire_due().await.unwrap(), 1);
    assert_eq!(w.decentro.api_calls() - before, 1, "exactly one look-up");
    assert_eq!(
        w.engine.get(i.id).await.unwrap().status,
        IntentStatus::Rejected
    );
    assert_eq!(w.engine.expire_due().await.unwrap(), 0);
}

#[tokio::test]
async fn an_unpaid_verification_expires() {
    let w = world(4).await;
    let i = w
        .engine
        .create_account_verification(verification(), key("v-1"))
        .await
        .unwrap();
    w.clock.advance_millis(599_999);
    assert_eq!(w.engine.expire_due().await.unwrap(), 0);
    w.clock.advance_millis(1);
    assert_eq!(w.engine.expire_due().await.unwrap(), 1);
    assert_eq!(
        w.engine.get(i.id).await.unwrap().status,
        IntentStatus::Expired
    );
}

#[tokio::test]
async fn a_forged_callback_that_the_status_api_contradicts_is_an_anomaly() {
    let w = world(4).await;
    let i = w
        .engine
        .create_account_verification(verification(), key("v-1"))
        .await
        .unwrap();
    let forged = json!({
        "decentroTxnId": txn(&i), "referenceId": i.provider_key, "transactionStatus": "SUCCESS",
        "payerName": "Mallory", "payerAccountNumber": "XXXX0000", "payerIfsc": "EVIL0000001",
    });
    let d = w
        .engine
        .handle_webhook(
            Provider::Decentro,
            &AccountName::new("in-main").unwrap(),
            |_| None,
            forged.to_string().as_bytes(),
        )
        .await;
    assert_eq!(d.http_status(), 200, "acknowledged, so it is not resent");
    let now = w.engine.get(i.id).await.unwrap();
    assert_eq!(now.status, IntentStatus::Pending, "not applied");
    assert!(now.verified_payer.is_none());
    let anomalies: Vec<_> = w
        .events(&i)
        .into_iter()
        .filter(|e| e.event_type == EventType::Anomaly)
        .collect();
    assert_eq!(anomalies.len(), 1);
    assert!(
        anomalies[0]
            .payload
            .anomaly
            .as_ref()
            .unwrap()
            .detail
            .contains("status API says PENDING")
    );
}

#[tokio::test]
async fn a_bad_signature_is_refused_with_4xx_and_a_reason() {
    let w = world(4).await;
    let d = w
        .engine
        .handle_webhook(
            Provider::Pientegra,
            &AccountName::new("tr-main").unwrap(),
            |_| Some("t=1,v1=00".into()),
            b"{}",
        )
        .await;
    assert_eq!(d.http_status(), 400);
    assert!(
        d.body(Provider::Pientegra)
            .contains("WEBHOOK_SIGNATURE_MALFORMED")
    );
    let unknown = w
        .engine
        .handle_webhook(
            Provider::Pientegra,
            &AccountName::new("zz").unwrap(),
            |_| None,
            b"{}",
        )
        .await;
    assert_eq!(unknown.http_status(), 404);
}

#[tokio::test]
async fn reconciliation_replays_a_missed_webhook_through_the_receiver() {
    let w = world(4).await;
    let dead = json!({"url": "http://127.0.0.1:1/webhooks/pientegra/tr-main"});
    w.control_p("webhook-url", dead).await;
    let i = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap();
    w.control_p(&format!("intents/{}/approve", pientegra_id(&i)), json!({}))
        .await;
    assert!(
        eventually(|| w
            .pientegra
            .deliveries()
            .iter()
            .any(|d| d.2 == pientegra::DeliveryStatus::Failed))
        .await
    );
    w.control_p("deliveries/hold", json!({})).await;
    assert_eq!(
        w.engine.get(i.id).await.unwrap().status,
        IntentStatus::Pending
    );

    // Delivery works again; reconciliation finds the failed delivery and has it resent.
    let url = receiver_for(w.engine.clone()).await;
    w.control_p(
        "webhook-url",
        json!({"url": format!("{url}/webhooks/pientegra/tr-main")}),
    )
    .await;
    let report = w.engine.reconcile().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.replayed, 1);
    assert_eq!(
        w.engine.get(i.id).await.unwrap().status,
        IntentStatus::Approved
    );
    let history = w.engine.ledger().history(i.id).unwrap();
    assert_eq!(
        history.last().unwrap().cause,
        intentkit_core::Cause::Webhook
    );
}

#[tokio::test]
async fn one_windowed_sweep_settles_every_stuck_intent_in_a_few_calls() {
    let w = world(4).await;
    w.control_p("deliveries/hold", json!({})).await;
    let mut intents = Vec::new();
    for n in 0..6 {
        w.clock.advance_millis(1_000);
        intents.push(
            w.engine
                .create_deposit(deposit(100_000 + n), key(&format!("d-{n}")))
                .await
                .unwrap(),
        );
    }
    for i in &intents[..3] {
        w.control_p(&format!("intents/{}/approve", pientegra_id(i)), json!({}))
            .await;
    }
    w.control_p(
        &format!("intents/{}/reject", pientegra_id(&intents[3])),
        json!({}),
    )
    .await;
    let report = w.engine.reconcile().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.settled, 4);
    assert_eq!(
        report.calls, 2,
        "one events page and one intents page: {report:?}"
    );
    let statuses: Vec<_> =
        futures_util::future::join_all(intents.iter().map(|i| w.engine.get(i.id)))
            .await
            .into_iter()
            .map(|r| r.unwrap().status)
            .collect();
    use IntentStatus::*;
    assert_eq!(
        statuses,
        [Approved, Approved, Approved, Rejected, Pending, Pending]
    );
    for i in &intents[..4] {
        let h = w.engine.ledger().history(i.id).unwrap();
        assert_eq!(h.last().unwrap().cause, intentkit_core::Cause::StatusPoll);
    }
    // Nothing new: the sweep settles nothing and stays cheap.
    let again = w.engine.reconcile().await;
    assert_eq!((again.settled, again.calls), (0, 2));
}

#[tokio::test]
async fn maintenance_recovers_on_start_and_settles_expiry_on_a_later_pass() {
    let w = world(0).await;
    w.control_p("faults", json!({"error_rate": 1.0})).await;
    let err = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "PROVIDER_UNAVAILABLE");
    w.control_p("faults", json!({})).await;
    w.clock.advance_millis(60_000);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let engine = w.engine.clone();
    let runner = tokio::spawn(async move {
        engine
            .run_maintenance(
                std::time::Duration::from_millis(50),
                async {
                    let _ = stop_rx.await;
                },
                move |r| {
                    let _ = tx.send(r);
                },
            )
            .await;
    });
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("no maintenance pass within 10 s")
        .unwrap();
    assert_eq!(first.recovered, 1, "{first:?}");
    let (page, _) = w.engine.list(Default::default(), None, 10).await.unwrap();
    assert_eq!(page[0].status, IntentStatus::Pending);

    // Only our timer may expire it: the simulator's own auto-cancel webhook is held back.
    w.control_p("deliveries/hold", json!({})).await;
    w.clock.advance_millis(30 * 60_000);
    let expired = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let r = rx.recv().await.unwrap();
            // Our timer, or reconciliation seeing Pientegra's AUTO_CANCELLED, whichever the
            // pass reaches first after the clock moved.
            if r.expired + r.reconcile.settled > 0 {
                break r;
            }
        }
    })
    .await
    .expect("no maintenance pass expired the intent within 10 s");
    assert_eq!(
        expired.expired + expired.reconcile.settled,
        1,
        "{expired:?}"
    );
    assert!(expired.errors.is_empty(), "{expired:?}");
    assert_eq!(
        w.engine.get(page[0].id).await.unwrap().status,
        IntentStatus::Expired
    );
    stop_tx.send(()).unwrap();
    runner.await.unwrap();
}
