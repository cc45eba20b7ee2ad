//! Pientegra deposits: approval, rejection, expiry and late arrival, duplicates and reordering,
//! a lost create response, refusals, cancel and refresh, and signatures bound to one account.

use crate::common::*;
use crate::world::*;
use intentkit_core::provider::Secret;
use intentkit_core::provider::pientegra::signature_header;
use intentkit_core::{
    AccountName, AccountVerificationRequest, DepositRequest, EventType, IntentStatus, MinorUnits,
    Provider,
};
use intentkit_sandbox::pientegra;
use serde_json::json;

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
