//! Decentro account verifications: the callback is a hint, the status API the proof; forged,
//! foreign and flooding callbacks settle nothing.

use crate::common::*;
use crate::world::*;
use intentkit_core::{EventType, IntentStatus, WebhookOutcome};
use serde_json::json;

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
    // A second later (on the engine's clock, which keeps the look-up gap).
    w.clock.advance_millis(1_100);
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
    // The next pass, a second later: the look-up gap holds for maintenance too.
    w.clock.advance_millis(1_000);
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
    // Within the second, maintenance asks nothing either; the next pass asks once.
    let before = w.decentro.api_calls();
    let report = w.engine.maintain().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(
        w.decentro.api_calls(),
        before,
        "no re-check within the second"
    );
    w.clock.advance_millis(1_000);
    let report = w.engine.maintain().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(
        w.decentro.api_calls() - before,
        1,
        "one re-check for the one verification the flood named"
    );
    // The payer really pays; Decentro's callback, or the next re-check (a second later),
    // settles it with the real payer.
    w.control_d(
        &format!("transactions/{}/pay", txn(&i)),
        json!({"payerName": "A Kumar"}),
    )
    .await;
    w.clock.advance_millis(1_000);
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
