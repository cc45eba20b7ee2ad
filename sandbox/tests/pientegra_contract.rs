//! The Pientegra adapter against the Pientegra simulator, over real HTTP.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use intentkit_core::provider::pientegra::client::{IntentsQuery, PientegraClient};
use intentkit_core::provider::pientegra::{self, Status};
use intentkit_core::{
    AccountName, Currency, DepositRequest, IdempotencyKey, Intent, IntentRequest, Metadata,
    MinorUnits, PartnerReference, PayerHandoff, ProviderRef, Signal, UserId,
};
use intentkit_sandbox::pientegra::{Config, DeliveryStatus, Simulator, Status as SimStatus};
use serde_json::json;

fn deposit(amount: i64, key: &str) -> Intent {
    Intent::new(
        IntentRequest::Deposit(DepositRequest {
            account: AccountName::new("tr-main").unwrap(),
            amount: MinorUnits::new(amount).unwrap(),
            currency: Currency::TRY,
            reference: PartnerReference::new("order-1").unwrap(),
            user_id: UserId::new("user-12345").unwrap(),
            user_label: Some("Alex M.".into()),
            metadata: Metadata::default(),
        }),
        IdempotencyKey::new(key).unwrap(),
        T0,
    )
    .unwrap()
}

async fn setup() -> (Simulator, PientegraClient, intentkit_core::ManualClock) {
    let clock = clock();
    let sim = Simulator::start(Config::default(), Arc::new(clock.clone()), loopback())
        .await
        .unwrap();
    let client = PientegraClient::new(pientegra_account(sim.base_url(), None)).unwrap();
    (sim, client, clock)
}

async fn control(sim: &Simulator, path: &str, body: serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/_control/{path}", sim.root_url()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn provider_id(ev: &intentkit_core::IntentEvent) -> String {
    match &ev.provider_ref {
        Some(ProviderRef::Pientegra { intent_id, .. }) => intent_id.clone(),
        other => panic!("no pientegra ref: {other:?}"),
    }
}

#[tokio::test]
async fn create_issues_a_signed_hosted_page_and_a_replay_returns_the_same_intent() {
    let (sim, client, _) = setup().await;
    let intent = deposit(100_000, "k-1");
    let first = client.create_deposit(&intent).await.unwrap();
    let Signal::HandoffIssued {
        handoff: PayerHandoff::HostedPage { url },
        expires_at,
    } = &first.signal
    else {
        panic!("{first:?}");
    };
    assert!(url.starts_with(&format!("{}/d/", sim.root_url())), "{url}");
    assert_eq!(expires_at, &Some(T0.plus_millis(30 * 60_000)));
    let again = client.create_deposit(&intent).await.unwrap();
    assert_eq!(provider_id(&again), provider_id(&first));
    assert_eq!(sim.intent_count(), 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_typed_conflict() {
    let (sim, client, _) = setup().await;
    let intent = deposit(100_000, "k-1");
    client.create_deposit(&intent).await.unwrap();
    let mut other = deposit(200_000, "k-1");
    other.provider_key = intent.provider_key.clone();
    let err = client.create_deposit(&other).await.unwrap_err();
    assert_eq!(err.code(), "idempotency_key_reuse_with_different_body");
    assert!(!err.is_retryable());
    assert_eq!(sim.intent_count(), 1);
}

#[tokio::test]
async fn a_key_still_in_flight_is_a_conflict_that_a_retry_resolves() {
    let (sim, client, _) = setup().await;
    control(&sim, "faults", json!({"create_hold_ms": 400})).await;
    let intent = deposit(100_000, "k-1");
    let no_retry = {
        let mut acc = pientegra_account(sim.base_url(), None);
        acc.http.max_retries = 0;
        PientegraClient::new(acc).unwrap()
    };
    let (a, b) = tokio::join!(client.create_deposit(&intent), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        no_retry.create_deposit(&intent).await
    });
    let b = b.unwrap_err();
    assert_eq!(b.code(), "duplicate_idempotency_key");
    assert!(b.is_retryable());
    // The retrying client waits out the claim and gets the one intent.
    let (c, d) = tokio::join!(
        client.create_deposit(&intent),
        client.create_deposit(&intent)
    );
    let ids = [a.unwrap(), c.unwrap(), d.unwrap()].map(|e| provider_id(&e));
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
    assert_eq!(sim.intent_count(), 1);
}

#[tokio::test]
async fn a_connection_dropped_after_commit_is_retried_into_the_same_intent() {
    let (sim, client, _) = setup().await;
    control(&sim, "faults", json!({"drop_after_commit": 2})).await;
    let ev = client
        .create_deposit(&deposit(100_000, "k-1"))
        .await
        .unwrap();
    assert_eq!(sim.intent_count(), 1);
    assert_eq!(sim.api_calls(), 3, "two cut-off answers, then the replay");
    assert_eq!(sim.status_of(&provider_id(&ev)), Some(SimStatus::Reserved));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (sim, client, _) = setup().await;
    control(
        &sim,
        "faults",
        json!({"rate_limit_next": 1, "retry_after_secs": 1}),
    )
    .await;
    let started = Instant::now();
    client
        .create_deposit(&deposit(100_000, "k-1"))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "retried after {:?}, before Retry-After",
        started.elapsed()
    );
    assert_eq!(sim.api_calls(), 2);
}

#[tokio::test]
async fn an_outage_ends_as_unavailable_after_the_allowed_retries() {
    let (sim, client, _) = setup().await;
    control(&sim, "faults", json!({"error_rate": 1.0})).await;
    let err = client
        .create_deposit(&deposit(100_000, "k-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "PROVIDER_UNAVAILABLE");
    assert!(err.is_retryable());
    assert_eq!(sim.api_calls(), 5, "one attempt and four retries");
    assert_eq!(sim.intent_count(), 0);
}

#[tokio::test]
async fn a_4xx_is_never_retried() {
    let (sim, _, _) = setup().await;
    let mut acc = pientegra_account(sim.base_url(), None);
    acc.api_key = intentkit_core::provider::Secret::new("pk_wrong");
    let client = PientegraClient::new(acc).unwrap();
    let err = client
        .create_deposit(&deposit(100_000, "k-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_api_key");
    assert_eq!(sim.api_calls(), 1);
}

#[tokio::test]
async fn amounts_out_of_bounds_are_refused_before_sending_with_pientegras_codes() {
    let (sim, client, _) = setup().await;
    let err = client
        .create_deposit(&deposit(99, "k-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "amount_below_min");
    let err = client
        .create_deposit(&deposit(100_000_001, "k-2"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "amount_above_max");
    assert_eq!(sim.api_calls(), 0);
}

#[tokio::test]
async fn the_simulator_refuses_what_the_adapter_refuses() {
    // The same rules on the provider's side, reached without the adapter's own checks.
    let (sim, _, _) = setup().await;
    let send = |body: serde_json::Value| {
        reqwest::Client::new()
            .post(format!("{}/external/deposits", sim.base_url()))
            .bearer_auth("pk_sandbox")
            .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
            .body(body.to_string())
            .send()
    };
    for (body, code) in [
        (
            json!({"externalUserId": "u", "amount": "99"}),
            "amount_below_min",
        ),
        (
            json!({"externalUserId": "u", "amount": "100000001"}),
            "amount_above_max",
        ),
        (
            json!({"externalUserId": "u", "amount": "100", "currency": "USD"}),
            "validation_failed",
        ),
        (json!({"amount": "100"}), "validation_failed"),
        (
            json!({"externalUserId": "u", "externalUserLabel": "x".repeat(129), "amount": "100"}),
            "validation_failed",
        ),
    ] {
        let resp = send(body).await.unwrap();
        assert_eq!(resp.status(), 400);
        let v: serde_json::Value = resp.json_value().await;
        assert_eq!(v["error"]["code"], code);
    }
}

trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

#[tokio::test]
async fn status_read_and_windowed_list_with_status_filter_and_cursor() {
    let (sim, client, clock) = setup().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        clock.advance_millis(1_000);
        let ev = client
            .create_deposit(&deposit(100_000 + n, &format!("k-{n}")))
            .await
            .unwrap();
        ids.push(provider_id(&ev));
    }
    control(
        &sim,
        &format!("intents/{}/approve", ids[1]),
        json!({"amount": 90_000}),
    )
    .await;
    control(&sim, &format!("intents/{}/reject", ids[3]), json!({})).await;

    let item = client.get_intent(&ids[1]).await.unwrap();
    assert_eq!(item.status, Status::Approved);
    let ev = item.event().unwrap().unwrap();
    assert_eq!(
        ev.signal,
        Signal::Approved {
            amount: MinorUnits::new(90_000).unwrap(),
            payer: None
        }
    );

    let settled = client
        .list_intents(&IntentsQuery {
            created_from: Some(T0),
            created_to: Some(T0.plus_millis(60_000)),
            statuses: vec![Status::Approved, Status::Rejected],
            ..Default::default()
        })
        .await
        .unwrap();
    let found: Vec<_> = settled.data.iter().map(|i| i.intent_id.clone()).collect();
    assert_eq!(found, vec![ids[3].clone(), ids[1].clone()], "newest first");

    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_intents(&IntentsQuery {
                cursor: cursor.clone(),
                limit: Some(2),
                ..Default::default()
            })
            .await
            .unwrap();
        all.extend(page.data.into_iter().map(|i| i.intent_id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(all.len(), 5);
    let window = client
        .list_intents(&IntentsQuery {
            created_from: Some(T0.plus_millis(2_000)),
            created_to: Some(T0.plus_millis(4_000)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(window.data.len(), 2);
}

fn verifier(
    client: PientegraClient,
    clock: intentkit_core::ManualClock,
) -> impl Fn(
    &axum::http::HeaderMap,
    &[u8],
) -> Result<Option<intentkit_core::provider::Notification>, String>
+ Send
+ Sync
+ 'static {
    use intentkit_core::Clock;
    move |headers, body| {
        let sig = headers
            .get(pientegra::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok());
        client
            .parse_webhook(sig, body, clock.now())
            .map_err(|e| e.code().to_string())
    }
}

#[tokio::test]
async fn outcomes_arrive_as_signed_webhooks_that_the_adapter_verifies() {
    let (sim, client, clock) = setup().await;
    let recv = receiver(Arc::new(verifier(client.clone(), clock.clone()))).await;
    control(&sim, "webhook-url", json!({"url": recv.url})).await;
    let id = provider_id(
        &client
            .create_deposit(&deposit(100_000, "k-1"))
            .await
            .unwrap(),
    );
    control(
        &sim,
        &format!("intents/{id}/approve"),
        json!({"amount": 95_000}),
    )
    .await;
    assert!(eventually(|| recv.seen.lock().unwrap().len() == 1).await);
    let seen = recv.seen.lock().unwrap()[0].clone().unwrap().unwrap();
    assert_eq!(
        seen.event.signal,
        Signal::Approved {
            amount: MinorUnits::new(95_000).unwrap(),
            payer: None
        }
    );
    assert_eq!(provider_id(&seen.event), id);
    assert_eq!(sim.deliveries()[0].2, DeliveryStatus::Delivered);
}

#[tokio::test]
async fn expiry_late_arrival_and_approval_arrive_in_order() {
    let (sim, client, clock) = setup().await;
    let recv = receiver(Arc::new(verifier(client.clone(), clock.clone()))).await;
    control(&sim, "webhook-url", json!({"url": recv.url})).await;
    let id = provider_id(
        &client
            .create_deposit(&deposit(100_000, "k-1"))
            .await
            .unwrap(),
    );
    clock.advance_millis(30 * 60_000);
    assert_eq!(sim.status_of(&id), Some(SimStatus::AutoCancelled));
    control(&sim, &format!("intents/{id}/late-arrival"), json!({})).await;
    control(&sim, &format!("intents/{id}/approve"), json!({})).await;
    assert!(eventually(|| recv.seen.lock().unwrap().len() == 3).await);
    let kinds: Vec<_> = recv
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.clone().unwrap().unwrap().event.signal.kind().as_str())
        .collect();
    assert_eq!(kinds, ["expired", "late_arrival", "approved"]);
}

#[tokio::test]
async fn held_deliveries_go_out_of_order_and_duplicated_as_asked() {
    let (sim, client, clock) = setup().await;
    let recv = receiver(Arc::new(verifier(client.clone(), clock.clone()))).await;
    control(&sim, "webhook-url", json!({"url": recv.url})).await;
    control(&sim, "deliveries/hold", json!({})).await;
    let id = provider_id(
        &client
            .create_deposit(&deposit(100_000, "k-1"))
            .await
            .unwrap(),
    );
    control(&sim, &format!("intents/{id}/expire"), json!({})).await;
    control(&sim, &format!("intents/{id}/approve"), json!({})).await;
    let events = sim.events_for(&id);
    assert_eq!(events.len(), 2);
    let order = [
        events[1].0.clone(),
        events[1].0.clone(),
        events[0].0.clone(),
    ];
    control(&sim, "deliveries/send", json!({"event_ids": order})).await;
    let seen: Vec<_> = recv
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.clone().unwrap().unwrap().event.provider_event_id.unwrap())
        .collect();
    assert_eq!(seen, order);
}

#[tokio::test]
async fn a_rotated_secret_still_verifies_deliveries_signed_with_the_previous_one() {
    let (sim, _, clock) = setup().await;
    let rotating = PientegraClient::new(pientegra_account(sim.base_url(), None)).unwrap();
    let id = provider_id(
        &rotating
            .create_deposit(&deposit(100_000, "k-1"))
            .await
            .unwrap(),
    );
    control(&sim, "rotate-secret", json!({"secret": "whsec_new"})).await;
    // The receiver knows the new secret as current and the old one as previous.
    let mut acc = pientegra_account(sim.base_url(), Some("whsec_c2FuZGJveA"));
    acc.webhook.current = intentkit_core::provider::Secret::new("whsec_new");
    let after = PientegraClient::new(acc).unwrap();
    let recv = receiver(Arc::new(verifier(after, clock.clone()))).await;
    control(&sim, "webhook-url", json!({"url": recv.url})).await;
    control(&sim, "deliveries/hold", json!({})).await;
    control(&sim, &format!("intents/{id}/approve"), json!({})).await;
    let ev = sim.events_for(&id)[0].0.clone();
    control(
        &sim,
        "deliveries/send",
        json!({"event_ids": [ev], "with_previous_secret": true}),
    )
    .await;
    control(&sim, "deliveries/send", json!({"event_ids": [ev]})).await;
    let seen = recv.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|r| matches!(r, Ok(Some(_)))), "{seen:?}");
    assert_eq!(seen.len(), 2);

    // A receiver that never heard of the old secret refuses the old signature.
    let strict = PientegraClient::new({
        let mut acc = pientegra_account(sim.base_url(), None);
        acc.webhook.current = intentkit_core::provider::Secret::new("whsec_new");
        acc
    })
    .unwrap();
    let recv2 = receiver(Arc::new(verifier(strict, clock.clone()))).await;
    control(&sim, "webhook-url", json!({"url": recv2.url})).await;
    control(
        &sim,
        "deliveries/send",
        json!({"event_ids": [ev], "with_previous_secret": true}),
    )
    .await;
    assert_eq!(
        recv2.seen.lock().unwrap().clone(),
        vec![Err("WEBHOOK_SIGNATURE_MISMATCH".to_string())]
    );
}

#[tokio::test]
async fn failed_deliveries_are_listed_and_a_replay_resends_the_same_body() {
    use intentkit_core::provider::pientegra::client::{DeliveryStatus as D, EventsQuery};
    let (sim, client, clock) = setup().await;
    let recv = receiver(Arc::new(verifier(client.clone(), clock.clone()))).await;
    recv.answer.store(500, std::sync::atomic::Ordering::SeqCst);
    control(&sim, "webhook-url", json!({"url": recv.url})).await;
    let id = provider_id(
        &client
            .create_deposit(&deposit(100_000, "k-1"))
            .await
            .unwrap(),
    );
    control(&sim, &format!("intents/{id}/approve"), json!({})).await;
    assert!(
        eventually(|| matches!(
            sim.deliveries()[0].2,
            DeliveryStatus::Failed | DeliveryStatus::Dead
        ))
        .await
    );
    let missed = client
        .list_events(&EventsQuery {
            delivery_statuses: vec![D::Failed, D::Dead],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(missed.data.len(), 1);
    assert_eq!(missed.data[0].event_type, "intent.approved");
    recv.answer.store(200, std::sync::atomic::Ordering::SeqCst);
    control(&sim, "deliveries/hold", json!({})).await;
    client.replay_event(&missed.data[0].event_id).await.unwrap();
    let seen = recv.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].clone().unwrap().unwrap().event.provider_event_id,
        Some(missed.data[0].event_id.clone())
    );
}

#[tokio::test]
async fn the_hosted_page_shows_the_deposit_takes_one_confirmation_and_expires() {
    let (sim, client, clock) = setup().await;
    let ev = client
        .create_deposit(&deposit(123_456, "k-1"))
        .await
        .unwrap();
    let Signal::HandoffIssued {
        handoff: PayerHandoff::HostedPage { url },
        ..
    } = &ev.signal
    else {
        panic!()
    };
    let http = reqwest::Client::new();
    let page = http.get(url).send().await.unwrap().text().await.unwrap();
    for shown in [
        "1.234,56 TRY",
        "TR33 0006 1005 1978 6457 8413 26",
        "D-2026-",
        "I made the payment",
        "data-expires-at",
    ] {
        assert!(page.contains(shown), "page lacks {shown}");
    }
    // A forged token is refused.
    let forged = format!("{}x", url);
    assert_eq!(http.get(&forged).send().await.unwrap().status(), 404);
    http.post(format!("{url}/confirm")).send().await.unwrap();
    let id = provider_id(&ev);
    assert_eq!(sim.status_of(&id), Some(SimStatus::PendingReview));
    let again = http.get(url).send().await.unwrap().text().await.unwrap();
    assert!(again.contains("can no longer be used"), "one-time link");

    let other = client
        .create_deposit(&deposit(100_000, "k-2"))
        .await
        .unwrap();
    let Signal::HandoffIssued {
        handoff: PayerHandoff::HostedPage { url: url2 },
        ..
    } = &other.signal
    else {
        panic!()
    };
    clock.advance_millis(30 * 60_000);
    let expired = http.get(url2).send().await.unwrap().text().await.unwrap();
    assert!(
        expired.contains("data-status=\"AUTO_CANCELLED\""),
        "{expired}"
    );
    assert_eq!(
        sim.status_of(&provider_id(&other)),
        Some(SimStatus::AutoCancelled)
    );
}

#[test]
fn no_client_debug_output_reveals_a_secret() {
    let client =
        PientegraClient::new(pientegra_account("http://127.0.0.1:1", Some("whsec_prev"))).unwrap();
    let shown = format!("{client:?}");
    for secret in ["pk_sandbox", "whsec_c2FuZGJveA", "whsec_prev"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[tokio::test]
async fn added_latency_beyond_the_request_timeout_ends_as_a_timeout() {
    let (sim, _, _) = setup().await;
    control(&sim, "faults", json!({"latency_ms": 300})).await;
    let mut acc = pientegra_account(sim.base_url(), None);
    acc.http.request_timeout_ms = 100;
    acc.http.max_retries = 1;
    let client = PientegraClient::new(acc).unwrap();
    let err = client.get_intent("nope").await.unwrap_err();
    assert_eq!(err.code(), "PROVIDER_UNAVAILABLE");
    assert!(err.to_string().contains("timed out"), "{err}");
    // A read is safe to retry, so the timeout was tried twice.
    assert!(eventually(|| sim.api_calls() == 2).await);
}
