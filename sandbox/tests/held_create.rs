//! A create the client gives up on while Pientegra holds it in flight (`create_hold_ms`): the
//! server drops its handler with the connection, and the key must not stay claimed forever.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::post_control;
use intentkit_core::{ManualClock, Timestamp};
use intentkit_sandbox::pientegra::{Config, Simulator};
use serde_json::{Value, json};

const KEY: &str = "0198c0de-0000-7000-8000-000000000001";

fn create(sim: &Simulator, body: &Value) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}/external/deposits", sim.base_url()))
        .header("Authorization", "Bearer pk_sandbox")
        .header("Idempotency-Key", KEY)
        .header("content-type", "application/json")
        .body(body.to_string())
}

#[tokio::test]
async fn a_retry_after_the_client_hung_up_on_a_held_create_gets_the_same_intent() {
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_795_000_000_000));
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let sim = Simulator::start(Config::default(), Arc::new(clock), loopback)
        .await
        .unwrap();
    let root = sim.root_url();
    let body = json!({"externalUserId": "user-1", "amount": "125000"});

    assert_eq!(
        post_control(&root, "faults", json!({"create_hold_ms": 2_000})).await,
        204
    );
    let abandoned = tokio::time::timeout(Duration::from_millis(200), create(&sim, &body).send());
    assert!(
        abandoned.await.is_err(),
        "the held create answered within 200 ms"
    );
    // Pientegra committed the intent before the hold; the client never saw it.
    assert_eq!(sim.intent_ids().len(), 1);
    assert_eq!(post_control(&root, "faults", json!({})).await, 204);

    // The contract's retry delays (0, 500, 1500, 4000 ms): a claim that is only busy clears
    // well within them; one left behind by the dropped handler never would.
    let mut last = None;
    for delay_ms in [0, 500, 1_500, 4_000] {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let r = create(&sim, &body).send().await.unwrap();
        let status = r.status().as_u16();
        let answer: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let busy = status == 409 && answer["error"]["code"] == "duplicate_idempotency_key";
        last = Some((status, answer));
        if !busy {
            break;
        }
    }
    let (status, answer) = last.unwrap();
    assert!(status == 200 || status == 201, "{status} {answer}");
    assert_eq!(sim.intent_ids().len(), 1, "a second intent was created");
    assert_eq!(answer["intentId"], sim.intent_ids()[0].as_str(), "{answer}");

    // The key stays bound to its body, as for any answered create.
    let other = json!({"externalUserId": "user-1", "amount": "999900"});
    let r = create(&sim, &other).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let answer: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        answer["error"]["code"], "idempotency_key_reuse_with_different_body",
        "{answer}"
    );
    assert_eq!(sim.intent_ids().len(), 1);
}
