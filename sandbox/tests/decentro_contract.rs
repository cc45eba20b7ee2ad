//! The Decentro adapter against the Decentro simulator, over real HTTP.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use intentkit_core::provider::Secret;
use intentkit_core::provider::decentro::client::DecentroClient;
use intentkit_core::provider::decentro::{self, DecentroError};
use intentkit_core::{
    AccountName, AccountVerificationRequest, Cause, IdempotencyKey, Intent, IntentRequest,
    Metadata, PartnerReference, PayerHandoff, ProviderRef, Signal, SignalKind, UserId,
};
use intentkit_sandbox::decentro::{Config, Simulator};
use serde_json::{Value, json};

fn verification(key: &str, purpose: Option<&str>) -> Intent {
    Intent::new(
        IntentRequest::AccountVerification(AccountVerificationRequest {
            account: AccountName::new("in-main").unwrap(),
            reference: PartnerReference::new("kyc-1").unwrap(),
            user_id: UserId::new("u-1").unwrap(),
            purpose_message: purpose.map(str::to_string),
            generate_qr: true,
            generate_uri: true,
            qr_with_logo: false,
            metadata: Metadata::default(),
        }),
        IdempotencyKey::new(key).unwrap(),
        T0,
    )
    .unwrap()
}

async fn setup() -> (Simulator, DecentroClient, intentkit_core::ManualClock) {
    let clock = clock();
    let sim = Simulator::start(Config::default(), Arc::new(clock.clone()), loopback())
        .await
        .unwrap();
    let client = DecentroClient::new(decentro_account(sim.base_url())).unwrap();
    (sim, client, clock)
}

async fn control(sim: &Simulator, path: &str, body: Value) -> u16 {
    post_control(sim.base_url(), path, body).await
}

fn txn_id(ev: &intentkit_core::IntentEvent) -> String {
    match &ev.provider_ref {
        Some(ProviderRef::Decentro { txn_id }) => txn_id.clone(),
        other => panic!("no decentro ref: {other:?}"),
    }
}

#[tokio::test]
async fn a_created_link_is_a_upi_handoff_expiring_in_ten_minutes() {
    let (_, client, _) = setup().await;
    let ev = client.create(&verification("k-1", None), T0).await.unwrap();
    let Signal::HandoffIssued {
        handoff:
            PayerHandoff::Upi {
                short_link,
                qr_code,
                gpay_uri,
                phonepe_uri,
                paytm_uri,
            },
        expires_at,
    } = &ev.signal
    else {
        panic!("{ev:?}");
    };
    assert!(short_link.starts_with("http"));
    assert!(
        qr_code.is_some() && gpay_uri.is_some() && phonepe_uri.is_some() && paytm_uri.is_some()
    );
    assert_eq!(*expires_at, Some(T0.plus_millis(600_000)));
    assert_eq!(client.status(&txn_id(&ev)).await.unwrap(), None, "pending");
}

#[tokio::test]
async fn success_comes_by_callback_and_the_status_api_confirms_the_verified_payer() {
    let (sim, client, _) = setup().await;
    let verify_client = client.clone();
    let recv = receiver(Arc::new(move |_h: &axum::http::HeaderMap, body: &[u8]| {
        verify_client
            .parse_callback(body)
            .map(Some)
            .map_err(|e| e.code().to_string())
    }))
    .await;
    control(&sim, "callback-url", json!({"url": recv.url})).await;
    let intent = verification("k-1", None);
    let txn = txn_id(&client.create(&intent, T0).await.unwrap());
    let paid = control(
        &sim,
        &format!("transactions/{txn}/pay"),
        json!({"payerName": "A Kumar", "payerAccountNumber": "XXXXXXXX1234", "payerIfsc": "HDFC0000001", "payerVpa": "akumar@okhdfc"}),
    )
    .await;
    assert_eq!(paid, 204);
    let cb = recv.seen.lock().unwrap()[0].clone().unwrap().unwrap();
    assert_eq!(cb.proof, intentkit_core::Proof::Claim);
    assert_eq!(cb.event.cause, Cause::Callback);
    assert_eq!(
        cb.our_reference.as_deref(),
        Some(intent.provider_key.as_str())
    );
    assert_eq!(txn_id(&cb.event), txn);

    let confirmed = client.status(&txn).await.unwrap().unwrap();
    assert_eq!(confirmed.cause, Cause::StatusPoll);
    let Signal::Approved { amount, payer } = confirmed.signal else {
        panic!()
    };
    assert_eq!(amount.get(), 100);
    let payer = payer.unwrap();
    assert_eq!(payer.name.as_deref(), Some("A Kumar"));
    assert_eq!(payer.masked_account_number.as_deref(), Some("XXXXXXXX1234"));
    assert_eq!(payer.ifsc.as_deref(), Some("HDFC0000001"));
    assert_eq!(payer.vpa.as_deref(), Some("akumar@okhdfc"));
    assert!(payer.bank_reference.is_some());
}

#[tokio::test]
async fn failure_and_expiry_are_learned_from_the_status_api_with_no_callback() {
    let (sim, client, clock) = setup().await;
    let recv = receiver(Arc::new(|_: &axum::http::HeaderMap, _: &[u8]| Ok(None))).await;
    control(&sim, "callback-url", json!({"url": recv.url})).await;
    let failed = txn_id(&client.create(&verification("k-1", None), T0).await.unwrap());
    let expiring = txn_id(&client.create(&verification("k-2", None), T0).await.unwrap());
    control(&sim, &format!("transactions/{failed}/fail"), json!({})).await;
    assert_eq!(
        client.status(&failed).await.unwrap().unwrap().signal.kind(),
        SignalKind::Rejected
    );
    clock.advance_millis(599_999);
    assert_eq!(client.status(&expiring).await.unwrap(), None);
    clock.advance_millis(1);
    assert_eq!(
        client
            .status(&expiring)
            .await
            .unwrap()
            .unwrap()
            .signal
            .kind(),
        SignalKind::Expired
    );
    // After expiry the payer cannot pay.
    assert_eq!(
        control(&sim, &format!("transactions/{expiring}/pay"), json!({})).await,
        409
    );
    assert!(
        recv.seen.lock().unwrap().is_empty(),
        "no callback but on SUCCESS"
    );
    assert!(sim.callbacks_sent().is_empty());
}

/// Sends a raw create to the simulator and runs its answer through the adapter's parser.
async fn raw_create(sim: &Simulator, headers: &[(&str, &str)], body: &str) -> DecentroError {
    let mut rb = reqwest::Client::new()
        .post(format!("{}/v2/payments/penny_pull", sim.base_url()))
        .body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let bytes = rb.send().await.unwrap().bytes().await.unwrap();
    decentro::parse_create_response(&bytes, T0).unwrap_err()
}

fn good_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("client_id", "sandbox_client"),
        ("client_secret", "sandbox_client_secret"),
        ("module_secret", "sandbox_module_secret"),
        ("provider_secret", "sandbox_provider_secret"),
    ]
}

fn with(name: &'static str, value: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
    let mut h: Vec<_> = good_headers()
        .into_iter()
        .filter(|(k, _)| *k != name)
        .collect();
    if let Some(v) = value {
        h.push((name, v));
    }
    h
}

#[tokio::test]
async fn every_response_key_on_the_page_is_reproducible_and_round_trips_to_its_typed_error() {
    let (sim, client, _) = setup().await;
    let good = r#"{"reference_id":"ref-000001","purpose_message":"Verify","generate_qr":1,"generate_uri":1,"customized_qr_with_logo":0}"#;
    let body = |patch: Value| {
        let mut v: Value = serde_json::from_str(good).unwrap();
        for (k, val) in patch.as_object().unwrap() {
            if val.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = val.clone();
            }
        }
        v.to_string()
    };
    let mut seen = BTreeSet::new();
    let mut check = |got: DecentroError, want: DecentroError| {
        assert_eq!(got, want);
        seen.insert(want.code().to_string());
    };
    let h = good_headers();
    check(
        raw_create(&sim, &[], good).await,
        DecentroError::MissingCredentials,
    );
    check(
        raw_create(&sim, &with("client_id", Some("")), good).await,
        DecentroError::EmptyClientId,
    );
    check(
        raw_create(&sim, &with("client_id", None), good).await,
        DecentroError::EmptyClientId,
    );
    check(
        raw_create(&sim, &with("client_id", Some("bad id")), good).await,
        DecentroError::InvalidFormatClientId,
    );
    check(
        raw_create(&sim, &with("client_secret", Some("")), good).await,
        DecentroError::EmptyClientSecret,
    );
    check(
        raw_create(&sim, &with("client_secret", Some("bad secret")), good).await,
        DecentroError::InvalidFormatClientSecret,
    );
    check(
        raw_create(&sim, &with("client_id", Some("nobody")), good).await,
        DecentroError::InvalidClientId,
    );
    check(
        raw_create(&sim, &with("client_secret", Some("wrong")), good).await,
        DecentroError::InvalidClientSecret,
    );
    check(
        raw_create(
            &sim,
            &[
                ("client_id", "nobody"),
                ("client_secret", "wrong"),
                ("module_secret", "sandbox_module_secret"),
                ("provider_secret", "sandbox_provider_secret"),
            ],
            good,
        )
        .await,
        DecentroError::InvalidClientCredentials,
    );
    check(
        raw_create(&sim, &with("module_secret", None), good).await,
        DecentroError::EmptyModuleSecret,
    );
    check(
        raw_create(&sim, &with("module_secret", Some("wrong")), good).await,
        DecentroError::UnauthorizedModule,
    );
    check(
        raw_create(&sim, &with("provider_secret", Some("wrong")), good).await,
        DecentroError::InvalidCredentials,
    );
    check(
        raw_create(&sim, &h, "not json").await,
        DecentroError::MalformedRequest,
    );
    check(
        raw_create(&sim, &h, &body(json!({"purpose_message": null}))).await,
        DecentroError::MalformedRequest,
    );
    check(
        raw_create(&sim, &h, &body(json!({"reference_id": null}))).await,
        DecentroError::MissingReferenceId,
    );
    check(
        raw_create(&sim, &h, &body(json!({"reference_id": 12345}))).await,
        DecentroError::InvalidReferenceId,
    );
    check(
        raw_create(&sim, &h, &body(json!({"reference_id": "abcd"}))).await,
        DecentroError::IncorrectLengthReferenceId,
    );
    check(
        raw_create(&sim, &h, &body(json!({"generate_qr": 2}))).await,
        DecentroError::InvalidGenerateQrValue,
    );
    check(
        raw_create(&sim, &h, &body(json!({"generate_uri": "1"}))).await,
        DecentroError::InvalidGenerateUriValue,
    );
    check(
        raw_create(&sim, &h, &body(json!({"customized_qr_with_logo": -1}))).await,
        DecentroError::InvalidCustomizedQrWithLogo,
    );
    check(
        raw_create(&sim, &h, &body(json!({"purpose_message": "Pay now!"}))).await,
        DecentroError::UnsanitizedValues,
    );

    // The invalid method, on the create path.
    let bytes = reqwest::Client::new()
        .get(format!("{}/v2/payments/penny_pull", sim.base_url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    check(
        decentro::parse_create_response(&bytes, T0).unwrap_err(),
        DecentroError::InvalidMethod,
    );

    // Through the adapter itself: a duplicate reference id and a disabled account.
    let intent = verification("k-1", None);
    client.create(&intent, T0).await.unwrap();
    let dup = client.create(&intent, T0).await.unwrap_err();
    assert_eq!(dup.code(), "error_duplicate_reference_id");
    seen.insert(dup.code().to_string());
    control(&sim, "account", json!({"disabled": true})).await;
    let disabled = client
        .create(&verification("k-2", None), T0)
        .await
        .unwrap_err();
    assert_eq!(disabled.code(), "error_company/account_disabled");
    seen.insert(disabled.code().to_string());

    let all: BTreeSet<_> = DecentroError::ALL
        .iter()
        .map(|e| e.code().to_string())
        .collect();
    assert_eq!(
        seen, all,
        "every key on the page was produced by the simulator"
    );
}

#[tokio::test]
async fn the_adapter_refuses_before_sending_what_decentro_would_refuse() {
    let (sim, client, _) = setup().await;
    let err = client
        .create(&verification("k-1", Some("Pay now!")), T0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "error_unsanitized_values");
    assert_eq!(sim.transaction_count(), 0, "never sent");
}

#[tokio::test]
async fn bad_credentials_through_the_adapter_map_to_typed_errors() {
    let (sim, _, _) = setup().await;
    let mut acc = decentro_account(sim.base_url());
    acc.module_secret = Secret::new("wrong");
    let client = DecentroClient::new(acc).unwrap();
    let err = client
        .create(&verification("k-1", None), T0)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        intentkit_core::provider::ProviderError::Decentro(DecentroError::UnauthorizedModule)
    ));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_unknown_key_keeps_its_key_and_message() {
    let (_, client, _) = setup().await;
    let err = client.status("DCTRNOPE").await.unwrap_err();
    assert_eq!(err.code(), "error_invalid_decentro_txn_id");
    assert!(err.to_string().contains("No transaction found"), "{err}");
}

#[tokio::test]
async fn a_create_is_not_retried_once_it_may_have_reached_decentro() {
    let (sim, client, _) = setup().await;
    control(&sim, "faults", json!({"error_rate": 1.0})).await;
    let err = client
        .create(&verification("k-1", None), T0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "PROVIDER_UNAVAILABLE");
    assert_eq!(sim.api_calls(), 1, "a 503 on create is not retried");
    control(&sim, "faults", json!({})).await;
    // The status read is safe to retry and is.
    let txn = txn_id(&client.create(&verification("k-2", None), T0).await.unwrap());
    control(&sim, "faults", json!({"error_rate": 1.0})).await;
    let before = sim.api_calls();
    assert_eq!(
        client.status(&txn).await.unwrap_err().code(),
        "PROVIDER_UNAVAILABLE"
    );
    assert_eq!(sim.api_calls() - before, 5, "one attempt and four retries");
}

#[test]
fn no_client_debug_output_reveals_a_secret() {
    let client = DecentroClient::new(decentro_account("http://127.0.0.1:1")).unwrap();
    let shown = format!("{client:?}");
    for secret in [
        "sandbox_client_secret",
        "sandbox_module_secret",
        "sandbox_provider_secret",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}
