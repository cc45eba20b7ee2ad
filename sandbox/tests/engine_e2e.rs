//! The engine end to end against both simulators: creates, webhooks and callbacks over real
//! HTTP into `Engine::handle_webhook`, expiry, late arrival, reordering, a lost create
//! response, and a forged callback.

mod common;

use std::sync::Arc;

use common::*;
use intentkit_core::provider::Secret;
use intentkit_core::provider::config::{PientegraAccount, ProvidersConfig};
use intentkit_core::provider::pientegra::signature_header;
use intentkit_core::{
    AccountName, AccountVerificationRequest, Currency, DepositRequest, Engine, EngineSettings,
    EventType, IdempotencyKey, Intent, IntentStatus, Ledger, ManualClock, Metadata, MinorUnits,
    OutboxEvent, PartnerReference, Provider, ProviderRef, SqliteConfig, SqliteStore, UserId,
    WebhookAnswer, WebhookOutcome,
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

/// The webhook secret of a second Pientegra account, `tr-other`, on the same simulator: what
/// another merchant on the platform (or a low-trust sandbox account) holds.
const OTHER_SECRET: &str = "whsec_b3RoZXItYWNjb3VudA";

async fn world(pientegra_retries: u32) -> World {
    world_with(pientegra_retries, |_, _| {}).await
}

async fn world_with(
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

    async fn events(&self, intent: &Intent) -> Vec<OutboxEvent> {
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

    async fn types(&self, intent: &Intent) -> Vec<EventType> {
        self.events(intent)
            .await
            .iter()
            .map(|e| e.event_type)
            .collect()
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
    let events = w.events(&i).await;
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
        w.types(&i).await,
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
        w.types(&i).await,
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
    let history = w.engine.history(i.id).await.unwrap();
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

/// A callback as Decentro would send it, with the payer a forger would choose.
fn forged_callback(txn_id: &str, reference: &str) -> String {
    json!({
        "decentroTxnId": txn_id, "referenceId": reference, "transactionStatus": "SUCCESS",
        "payerName": "Mallory", "payerAccountNumber": "XXXX0000", "payerIfsc": "EVIL0000001",
    })
    .to_string()
}

impl World {
    async fn callback(&self, body: &str) -> WebhookAnswer {
        self.engine
            .handle_webhook(Provider::Decentro, "in-main", |_| None, body.as_bytes())
            .await
    }

    async fn approved_events(&self, i: &Intent) -> usize {
        self.events(i)
            .await
            .iter()
            .filter(|e| e.event_type == EventType::Approved)
            .count()
    }
}

#[tokio::test]
async fn a_forged_callback_does_not_use_up_the_genuine_one() {
    let w = world(4).await;
    let i = w
        .engine
        .create_account_verification(verification(), key("v-1"))
        .await
        .unwrap();
    // Forged while Decentro still says PENDING: not applied, and answered so that a genuine
    // sender would retry.
    let forged = w
        .callback(&forged_callback(&txn(&i), &i.provider_key))
        .await;
    assert_eq!(forged.outcome, WebhookOutcome::Unconfirmed);
    assert_eq!(forged.status, 503);
    assert_eq!(forged.reason, Some("CLAIM_NOT_CONFIRMED_YET"));
    let now = w.engine.get(i.id).await.unwrap();
    assert_eq!(now.status, IntentStatus::Pending, "not applied");
    assert!(now.verified_payer.is_none());
    assert_eq!(w.approved_events(&i).await, 0);

    // The payer really pays. Decentro's callback may come within a second of the forged one
    // (then it too is answered 503, as the look-up was just made); the next maintenance pass
    // re-checks the parked claim. Either way the real payer is applied, once, under the
    // genuine callback's id: the forged one took no dedup slot.
    w.control_d(
        &format!("transactions/{}/pay", txn(&i)),
        json!({"payerName": "A Kumar"}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let report = w.engine.maintain().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(w.settles(i.id, IntentStatus::Approved).await);
    let done = w.engine.get(i.id).await.unwrap();
    assert_eq!(
        done.verified_payer.unwrap().name.as_deref(),
        Some("A Kumar")
    );
    assert_eq!(w.approved_events(&i).await, 1);
    let last = w.engine.history(i.id).await.unwrap().pop().unwrap();
    assert_eq!(last.cause, intentkit_core::Cause::Callback);
    let genuine_id = format!("callback:{}:SUCCESS", txn(&i));
    assert_eq!(last.provider_event_id.as_deref(), Some(genuine_id.as_str()));
    // The forger's copy, sent again now, is a duplicate of the applied one.
    let again = w
        .callback(&forged_callback(&txn(&i), &i.provider_key))
        .await;
    assert_eq!(again.outcome, WebhookOutcome::Duplicate);
    assert_eq!(w.approved_events(&i).await, 1);
}

#[tokio::test]
async fn a_callback_for_a_transaction_not_ours_yet_is_refused_and_kept_nowhere() {
    let w = world(4).await;
    // The simulator's transaction ids are sequential, so the next one can be guessed.
    let guessed = "DCTRSIM0000000001";
    let early = w
        .callback(&forged_callback(
            guessed,
            "0000000000000000000000000000beef",
        ))
        .await;
    assert_eq!(early.outcome, WebhookOutcome::Refused);
    assert_eq!(early.reason, Some("WEBHOOK_UNKNOWN_INTENT"));
    let calls = w.decentro.api_calls();
    let i = w
        .engine
        .create_account_verification(verification(), key("v-1"))
        .await
        .unwrap();
    assert_eq!(txn(&i), guessed);
    let report = w.engine.maintain().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(
        w.decentro.api_calls(),
        calls + 1,
        "the create, and no look-up: nothing was kept to confirm"
    );
    let now = w.engine.get(i.id).await.unwrap();
    assert_eq!(now.status, IntentStatus::Pending);
    assert!(now.verified_payer.is_none());
    // The payer pays: the real payer, not the forger's, is the one verified.
    w.control_d(
        &format!("transactions/{}/pay", txn(&i)),
        json!({"payerName": "A Kumar"}),
    )
    .await;
    assert!(w.settles(i.id, IntentStatus::Approved).await);
    let done = w.engine.get(i.id).await.unwrap();
    assert_eq!(
        done.verified_payer.unwrap().name.as_deref(),
        Some("A Kumar")
    );
    assert_eq!(w.approved_events(&i).await, 1);
}

#[tokio::test]
async fn a_callback_naming_someone_elses_paid_transaction_settles_nothing() {
    let w = world(4).await;
    // Someone else's verification at the same provider, paid.
    let other = reqwest::Client::new()
        .post(format!("{}/v2/payments/penny_pull", w.decentro.base_url()))
        .header("client_id", "sandbox_client")
        .header("client_secret", "sandbox_client_secret")
        .header("module_secret", "sandbox_module_secret")
        .header("provider_secret", "sandbox_provider_secret")
        .header("content-type", "application/json")
        .body(r#"{"reference_id":"someone-else-1","purpose_message":"KYC","generate_qr":0,"generate_uri":0,"customized_qr_with_logo":0}"#)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let other = serde_json::from_slice::<serde_json::Value>(&other).unwrap()["decentroTxnId"]
        .as_str()
        .unwrap()
        .to_string();
    w.control_d(&format!("transactions/{other}/pay"), json!({}))
        .await;
    // Ours is still `created`: its create timed out, so it has no transaction id yet.
    w.control_d("faults", json!({"latency_ms": 4_000})).await;
    let err = w
        .engine
        .create_account_verification(verification(), key("v-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "PROVIDER_UNAVAILABLE");
    w.control_d("faults", json!({})).await;
    let (page, _) = w.engine.list(Default::default(), None, 1).await.unwrap();
    let ours = page.into_iter().next().unwrap();
    assert_eq!(ours.status, IntentStatus::Created);
    assert!(ours.provider_ref.is_none());

    let calls = w.decentro.api_calls();
    let d = w
        .callback(&forged_callback(&other, &ours.provider_key))
        .await;
    assert_eq!(d.outcome, WebhookOutcome::Refused);
    assert_eq!(d.reason, Some("WEBHOOK_NOT_CONFIRMED"));
    // More of them, each naming another transaction: within the second they are kept as one
    // row and not looked up; the next pass asks once. The host hears of it once.
    for n in 0..10 {
        let d = w
            .callback(&forged_callback(
                &format!("DCTRNOPE{n:04}"),
                &ours.provider_key,
            ))
            .await;
        assert_eq!(d.status, 503, "{d:?}");
    }
    let report = w.engine.maintain().await;
    assert!(report.errors.is_empty(), "{report:?}");
    let parked = report
        .jobs
        .iter()
        .find(|j| j.account.as_str() == "in-main" && j.job == intentkit_core::Job::Parked)
        .unwrap();
    assert_eq!(parked.backlog, 0, "the one row was answered: {parked:?}");
    assert!(
        w.decentro.api_calls() - calls <= 3,
        "{} look-ups for 11 claims",
        w.decentro.api_calls() - calls
    );
    let now = w.engine.get(ours.id).await.unwrap();
    assert_eq!(now.status, IntentStatus::Created);
    assert!(
        now.provider_ref.is_none(),
        "another's transaction is not ours"
    );
    let anomalies: Vec<_> = w
        .events(&ours)
        .await
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
            .contains("another reference_id")
    );
}

#[tokio::test]
async fn a_transaction_id_outside_decentros_characters_is_refused_before_any_request() {
    let w = world(4).await;
    let i = w
        .engine
        .create_account_verification(verification(), key("v-1"))
        .await
        .unwrap();
    let calls = w.decentro.api_calls();
    for bad in ["../../v2/payments/penny_pull", "DCTR 1", "DCTR%2F1", ".."] {
        let d = w.callback(&forged_callback(bad, &i.provider_key)).await;
        assert_eq!(d.outcome, WebhookOutcome::Refused, "{bad}");
        assert_eq!(d.reason, Some("WEBHOOK_MALFORMED"), "{bad}");
    }
    assert_eq!(w.decentro.api_calls(), calls, "no request reached Decentro");
}

#[tokio::test]
async fn a_webhook_signed_for_one_account_cannot_touch_another_accounts_intent() {
    let w = world(4).await;
    let i = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap();
    // Whoever holds tr-other's webhook secret signs an approval of tr-main's deposit.
    let body = json!({
        "eventId": "5f1c2a9e-0000-4000-8000-00000000beef", "eventType": "intent.approved",
        "intent": {"id": pientegra_id(&i), "amount": "100000", "currency": "TRY", "status": "APPROVED"},
    })
    .to_string();
    let header = signature_header(
        &Secret::new(OTHER_SECRET),
        intentkit_core::Clock::now(&w.clock).unix_millis(),
        body.as_bytes(),
    );
    let d = w
        .engine
        .handle_webhook(
            Provider::Pientegra,
            "tr-other",
            |n| (n == "Pientegra-Signature").then(|| header.clone()),
            body.as_bytes(),
        )
        .await;
    assert_eq!(d.status, 400);
    assert_eq!(d.reason, Some("WEBHOOK_ACCOUNT_MISMATCH"));
    assert_eq!(
        w.engine.get(i.id).await.unwrap().status,
        IntentStatus::Pending,
        "nothing changed"
    );
    assert_eq!(w.approved_events(&i).await, 0);
    // The same body through tr-main's URL fails its signature: tr-other's secret is not
    // tr-main's.
    let d = w
        .engine
        .handle_webhook(
            Provider::Pientegra,
            "tr-main",
            |n| (n == "Pientegra-Signature").then(|| header.clone()),
            body.as_bytes(),
        )
        .await;
    assert_eq!(d.reason, Some("WEBHOOK_SIGNATURE_MISMATCH"));
}

#[tokio::test]
async fn a_flood_of_unsigned_callbacks_costs_bounded_disk_and_look_ups() {
    let w = world_with(4, |s, _| s.parked_cap_per_account = 20).await;
    let i = w
        .engine
        .create_account_verification(verification(), key("v-1"))
        .await
        .unwrap();
    let calls = w.decentro.api_calls();
    // Callbacks naming nobody of ours are refused and cost nothing.
    for n in 0..30 {
        let d = w
            .callback(&forged_callback(
                &format!("DCTRFLOOD{n:06}"),
                "nobody-of-ours",
            ))
            .await;
        assert_eq!(d.reason, Some("WEBHOOK_UNKNOWN_INTENT"));
    }
    assert_eq!(w.decentro.api_calls(), calls, "no look-up");
    // Callbacks naming our verification, each with another transaction id: at most one
    // look-up per second for it, and one row kept (a re-check asks about the verification's
    // own transaction, whatever the claim named), all answered so that a genuine sender
    // retries.
    let mut answers = std::collections::BTreeMap::new();
    for n in 0..60 {
        let d = w
            .callback(&forged_callback(
                &format!("DCTRFLOOD{n:06}"),
                &i.provider_key,
            ))
            .await;
        *answers.entry((d.outcome.as_str(), d.status)).or_insert(0) += 1;
    }
    assert_eq!(answers, [(("unconfirmed", 503), 60)].into());
    let looked = w.decentro.api_calls() - calls;
    assert!((1..=3).contains(&looked), "{looked} look-ups for 60 claims");
    let before = w.decentro.api_calls();
    let report = w.engine.maintain().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(
        w.decentro.api_calls() - before,
        1,
        "one re-check for the one verification the flood named"
    );
    // The payer really pays; Decentro's callback, or the next re-check, settles it with the
    // real payer.
    w.control_d(
        &format!("transactions/{}/pay", txn(&i)),
        json!({"payerName": "A Kumar"}),
    )
    .await;
    let report = w.engine.maintain().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(w.settles(i.id, IntentStatus::Approved).await);
    let payer = w.engine.get(i.id).await.unwrap().verified_payer.unwrap();
    assert_eq!(payer.name.as_deref(), Some("A Kumar"));
    assert_eq!(w.approved_events(&i).await, 1);
    let report = w.engine.maintain().await;
    assert_eq!(report.parked_settled, 0, "nothing left parked: {report:?}");
}

#[tokio::test]
async fn late_funds_after_a_rejection_reach_the_host() {
    let w = world(4).await;
    let i = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap();
    w.control_p(&format!("intents/{}/reject", pientegra_id(&i)), json!({}))
        .await;
    assert!(w.settles(i.id, IntentStatus::Rejected).await);
    w.control_p(
        &format!("intents/{}/late-arrival", pientegra_id(&i)),
        json!({}),
    )
    .await;
    assert!(
        eventually(|| w
            .pientegra
            .deliveries()
            .iter()
            .filter(|d| d.2 == pientegra::DeliveryStatus::Delivered)
            .count()
            >= 2)
        .await
    );
    let anomalies: Vec<_> = w
        .events(&i)
        .await
        .into_iter()
        .filter(|e| e.event_type == EventType::Anomaly)
        .collect();
    assert_eq!(anomalies.len(), 1, "the host hears of the money");
    let a = anomalies[0].payload.anomaly.as_ref().unwrap();
    assert_eq!(a.signal, intentkit_core::Signal::LateArrival);
    assert_eq!(
        w.engine.get(i.id).await.unwrap().status,
        IntentStatus::Rejected
    );
}

#[tokio::test]
async fn a_bad_signature_is_refused_with_4xx_and_a_reason() {
    let w = world(4).await;
    let d = w
        .engine
        .handle_webhook(
            Provider::Pientegra,
            "tr-main",
            |_| Some("t=1,v1=00".into()),
            b"{}",
        )
        .await;
    assert_eq!(d.status, 400);
    assert!(d.body.contains("WEBHOOK_SIGNATURE_MALFORMED"));
    for account in ["zz", "not an account/..", ""] {
        let unknown = w
            .engine
            .handle_webhook(Provider::Pientegra, account, |_| None, b"{}")
            .await;
        assert_eq!(unknown.status, 404, "{account:?}");
        assert_eq!(unknown.reason, Some("UNKNOWN_ACCOUNT"));
    }
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
    let history = w.engine.history(i.id).await.unwrap();
    assert_eq!(
        history.last().unwrap().cause,
        intentkit_core::Cause::Webhook
    );
}

#[tokio::test]
async fn one_windowed_sweep_settles_every_stuck_intent_in_a_few_calls() {
    // 250 deposits whose webhooks never arrive: 150 approved and 50 rejected at Pientegra,
    // 50 still open. A pass costs list pages, not one call per intent.
    let w = world(4).await;
    w.control_p("deliveries/hold", json!({})).await;
    let mut intents = Vec::new();
    for n in 0..250 {
        w.clock.advance_millis(1_000);
        intents.push(
            w.engine
                .create_deposit(deposit(100_000 + n), key(&format!("d-{n}")))
                .await
                .unwrap(),
        );
    }
    for (n, i) in intents[..200].iter().enumerate() {
        let action = if n % 4 == 3 { "reject" } else { "approve" };
        w.control_p(&format!("intents/{}/{action}", pientegra_id(i)), json!({}))
            .await;
    }
    // Webhooks are late once the intents are a few minutes old.
    w.clock.advance_millis(10 * 60_000);
    let report = w.engine.reconcile().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.settled, 200);
    // tr-main: one events page, two intents pages of 100; tr-other: one events page (it has
    // nothing open, so no window).
    assert_eq!(report.calls, 4, "{report:?}");
    let mut statuses = std::collections::BTreeMap::new();
    for i in &intents {
        *statuses
            .entry(w.engine.get(i.id).await.unwrap().status.as_str())
            .or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        [("approved", 150), ("pending", 50), ("rejected", 50)].into()
    );
    let h = w.engine.history(intents[0].id).await.unwrap();
    assert_eq!(h.last().unwrap().cause, intentkit_core::Cause::StatusPoll);

    // Nothing new at the provider: nothing settles, and the window starts at the oldest
    // intent still open here (the last 50), so one page covers it.
    let again = w.engine.reconcile().await;
    assert_eq!((again.settled, again.calls), (0, 3), "{again:?}");

    // Once nothing is open here, a pass only asks for missed deliveries.
    for i in &intents[200..] {
        w.control_p(&format!("intents/{}/approve", pientegra_id(i)), json!({}))
            .await;
    }
    assert_eq!(w.engine.reconcile().await.settled, 50);
    let idle = w.engine.reconcile().await;
    assert_eq!((idle.settled, idle.calls), (0, 2), "{idle:?}");
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
    // Each account runs its own pass; tr-main's first one recovers the intent.
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let r: intentkit_core::MaintenanceReport = rx.recv().await.unwrap();
            if r.jobs.iter().any(|j| j.account.as_str() == "tr-main") {
                break r;
            }
        }
    })
    .await
    .expect("no maintenance pass of tr-main within 10 s");
    assert_eq!(first.recovered, 1, "{first:?}");
    let recovery = first
        .jobs
        .iter()
        .find(|j| j.job == intentkit_core::Job::Recovery)
        .unwrap();
    assert_eq!((recovery.done, recovery.backlog), (1, 0), "{recovery:?}");
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

#[tokio::test]
async fn a_create_cut_off_while_pientegra_holds_it_is_recovered_as_the_same_deposit() {
    let w = world_with(0, |_, acc| acc.http.request_timeout_ms = 500).await;
    w.control_p("faults", json!({"create_hold_ms": 2_000}))
        .await;
    let err = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        "PROVIDER_UNAVAILABLE",
        "our client gave up mid-hold"
    );
    w.control_p("faults", json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    w.clock.advance_millis(60_000);
    assert_eq!(w.engine.recover_created().await.unwrap(), 1);
    let (page, _) = w.engine.list(Default::default(), None, 10).await.unwrap();
    assert_eq!(page[0].status, IntentStatus::Pending);
    assert_eq!(
        w.pientegra.intent_ids(),
        vec![pientegra_id(&page[0])],
        "the deposit Pientegra already held, not a second one"
    );
}

#[tokio::test]
async fn past_the_idempotency_window_recovery_finds_the_deposit_by_our_key_instead_of_creating() {
    let w = world(0).await;
    // The create reaches Pientegra, which commits it; its answer is lost.
    w.control_p("faults", json!({"drop_after_commit": 1})).await;
    w.engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap_err();
    assert_eq!(w.pientegra.intent_ids().len(), 1);
    // Nothing reaches Pientegra again for a day (a longer outage than recovery can bridge);
    // then the caller retries with the same key, as it was told it may.
    w.clock.advance_millis(24 * 60 * 60 * 1_000);
    let retried = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap();
    let (page, _) = w.engine.list(Default::default(), None, 10).await.unwrap();
    let found = &page[0];
    assert_eq!(found.id, retried.id);
    assert_eq!(found.status, IntentStatus::Expired, "{found:?}");
    assert_eq!(
        w.pientegra.intent_ids(),
        vec![pientegra_id(found)],
        "found by our key; not created a second time"
    );

    // A create that never reached Pientegra fails with the reason, and is not sent again.
    w.control_p("faults", json!({"error_rate": 1.0})).await;
    w.engine
        .create_deposit(deposit(100_001), key("d-2"))
        .await
        .unwrap_err();
    w.control_p("faults", json!({})).await;
    w.clock.advance_millis(24 * 60 * 60 * 1_000);
    assert_eq!(w.engine.recover_created().await.unwrap(), 1);
    let (page, _) = w.engine.list(Default::default(), None, 10).await.unwrap();
    let failed = page
        .iter()
        .find(|i| i.reference.as_str() == "order-9" && i.amount.get() == 100_001)
        .unwrap();
    assert_eq!(failed.status, IntentStatus::Failed);
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap()
            .starts_with(intentkit_core::PROVIDER_WINDOW_PASSED),
        "{failed:?}"
    );
    assert_eq!(w.pientegra.intent_ids().len(), 1);
}

#[tokio::test]
async fn a_hung_provider_delays_only_its_own_accounts_maintenance() {
    let w = world_with(0, |s, _| {
        s.job_budget_ms = 1_500;
        s.recover_after_ms = 1_000;
    })
    .await;
    // Decentro: two verifications that will be due, whose status look-ups will hang.
    for n in 0..2 {
        w.engine
            .create_account_verification(verification(), key(&format!("v-{n}")))
            .await
            .unwrap();
    }
    // Pientegra: a deposit that will be due, and one left in `created` by a failed create.
    let due = w
        .engine
        .create_deposit(deposit(100_000), key("d-due"))
        .await
        .unwrap();
    w.control_p("faults", json!({"error_rate": 1.0})).await;
    w.engine
        .create_deposit(deposit(100_001), key("d-stuck"))
        .await
        .unwrap_err();
    w.control_p("faults", json!({})).await;
    w.control_p("deliveries/hold", json!({})).await;
    w.control_d("faults", json!({"latency_ms": 120_000})).await;
    w.clock.advance_millis(30 * 60_000);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let engine = w.engine.clone();
    let runner = tokio::spawn(async move {
        engine
            .run_maintenance(
                std::time::Duration::from_millis(100),
                async {
                    let _ = stop_rx.await;
                },
                move |r| {
                    let _ = tx.send(r);
                },
            )
            .await;
    });
    let started = std::time::Instant::now();
    assert!(w.settles(due.id, IntentStatus::Expired).await);
    let (page, _) = w.engine.list(Default::default(), None, 10).await.unwrap();
    let stuck = page
        .iter()
        .find(|i| i.idempotency_key.as_str() == "d-stuck")
        .unwrap();
    assert!(w.settles(stuck.id, IntentStatus::Pending).await);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1_000),
        "Pientegra's work waited {:?} for Decentro's",
        started.elapsed()
    );
    // Decentro's own pass runs into its budget: its expiry job is cut short or its look-ups
    // give up, and the verifications expire with a re-check parked.
    let decentro =
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let r: intentkit_core::MaintenanceReport = rx.recv().await.unwrap();
                if let Some(j) = r.jobs.iter().find(|j| {
                    j.account.as_str() == "in-main" && j.job == intentkit_core::Job::Expiry
                }) {
                    break j.clone();
                }
            }
        })
        .await
        .expect("Decentro's pass never ended");
    assert!(
        decentro.elapsed >= std::time::Duration::from_millis(1_400),
        "{decentro:?}"
    );
    assert_eq!(decentro.done, 2, "{decentro:?}");
    stop_tx.send(()).unwrap();
    runner.await.unwrap();
}

#[tokio::test]
async fn a_sweep_costs_the_windows_holding_open_work_not_the_history() {
    // A week of history: 10,000 deposits settled at Pientegra (their webhooks came long ago),
    // and 100 still open, in 10 bursts of 10 a minute apart, one burst every 16 hours: their
    // payers pressed "I made the payment" and Pientegra is still reviewing.
    let w = world(4).await;
    w.control_p("deliveries/hold", json!({})).await;
    let week = 7 * 24 * 60 * 60 * 1_000;
    w.pientegra
        .seed_approved(10_000, T0.plus_millis(-60_000), T0.plus_millis(week));
    for burst in 0..10 {
        for n in 0..10 {
            let i = w
                .engine
                .create_deposit(deposit(100_000), key(&format!("open-{burst}-{n}")))
                .await
                .unwrap();
            w.control_p(
                &format!("intents/{}/payer-confirmed", pientegra_id(&i)),
                json!({}),
            )
            .await;
            w.clock.advance_millis(60_000);
        }
        w.clock.advance_millis(16 * 60 * 60 * 1_000 - 10 * 60_000);
    }
    w.clock.advance_millis(10 * 60_000);
    // The first pass learns of the reviews (no webhook announces them).
    let first = w.engine.reconcile().await;
    assert!(first.errors.is_empty(), "{first:?}");
    assert_eq!(first.settled, 100, "{first:?}");
    let report = w.engine.reconcile().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.settled, 0, "nothing new at Pientegra");
    assert_eq!(report.windows, 10, "one window per burst: {report:?}");
    // One events page per account, and one intents page per window (each holds about a
    // dozen of the 10,000): not the hundred pages of the week.
    assert_eq!(report.calls, 2 + report.windows, "{report:?}");

    // An open intent settles at Pientegra: the next pass finds it at the same cost.
    let (page, _) = w.engine.list(Default::default(), None, 1).await.unwrap();
    w.control_p(
        &format!("intents/{}/approve", pientegra_id(&page[0])),
        json!({}),
    )
    .await;
    let again = w.engine.reconcile().await;
    assert_eq!(again.settled, 1, "{again:?}");
    assert_eq!(again.calls, 2 + again.windows, "{again:?}");
}

#[tokio::test]
async fn a_callback_that_cannot_be_confirmed_now_gets_503_and_no_internal_words() {
    let w = world(4).await;
    // A verification whose callback comes while Decentro's status API fails.
    let j = w
        .engine
        .create_account_verification(verification(), key("v-2"))
        .await
        .unwrap();
    w.control_d("faults", json!({"error_rate": 1.0})).await;
    let d = w
        .callback(&forged_callback(&txn(&j), &j.provider_key))
        .await;
    assert_eq!((d.status, d.reason), (503, Some("RETRY_LATER")));
    assert_eq!(d.body, r#"{"error":{"code":"RETRY_LATER"}}"#);
    assert!(
        d.detail
            .as_deref()
            .unwrap()
            .contains("PROVIDER_UNAVAILABLE"),
        "the reason is kept for our logs: {d:?}"
    );
    assert_eq!(
        w.engine.get(j.id).await.unwrap().status,
        IntentStatus::Pending
    );
}

#[tokio::test]
async fn a_verification_whose_look_up_failed_at_expiry_is_settled_by_the_re_check() {
    let w = world(4).await;
    let i = w
        .engine
        .create_account_verification(verification(), key("v-1"))
        .await
        .unwrap();
    // The payer pays, but the callback is lost, and at the deadline Decentro's status API
    // fails: the verification expires by our timer, with a re-check kept.
    w.control_d("callback-url", json!({"url": null})).await;
    w.control_d(
        &format!("transactions/{}/pay", txn(&i)),
        json!({"payerName": "A Kumar"}),
    )
    .await;
    w.control_d("faults", json!({"error_rate": 1.0})).await;
    w.clock.advance_millis(11 * 60_000);
    assert_eq!(w.engine.expire_due().await.unwrap(), 1);
    assert_eq!(
        w.engine.get(i.id).await.unwrap().status,
        IntentStatus::Expired
    );
    // Decentro answers again: the next pass asks, and the payment settles it.
    w.control_d("faults", json!({})).await;
    let report = w.engine.maintain().await;
    assert!(report.errors.is_empty(), "{report:?}");
    let done = w.engine.get(i.id).await.unwrap();
    assert_eq!(done.status, IntentStatus::Approved);
    assert_eq!(
        done.verified_payer.unwrap().name.as_deref(),
        Some("A Kumar")
    );
    let again = w.engine.maintain().await;
    assert_eq!(again.parked_settled, 0, "the re-check is gone: {again:?}");
}
