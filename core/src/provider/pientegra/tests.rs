use super::*;
use crate::intent::Metadata;
use crate::types::{AccountName, PartnerReference, UserId};

const NOW_MS: i64 = 1_795_000_000_000;

fn now() -> Timestamp {
    Timestamp::from_unix_millis(NOW_MS)
}

fn secrets() -> WebhookSecrets {
    WebhookSecrets {
        current: Secret::new("whsec_current_c2VjcmV0"),
        previous: Some(PreviousSecret {
            secret: Secret::new("whsec_previous_b2xk"),
            until: now().plus_millis(10 * 60_000),
        }),
    }
}

fn body(event_type: &str, status: &str, amount: &str) -> Vec<u8> {
    format!(
        r#"{{"eventId":"5f1c2a9e-0000-4000-8000-000000000001","eventType":"{event_type}","occurredAt":"2026-11-22T10:00:00.000Z","intent":{{"id":"9d3b6a10-1111-4000-8000-000000000002","referenceNo":"D-2026-0000123","externalUserId":"user-12345","requestedAmount":"100000","amount":"{amount}","currency":"TRY","status":"{status}","rejectedReason":null}}}}"#
    )
    .into_bytes()
}

fn signed(secret: &Secret, t: i64, body: &[u8]) -> String {
    signature_header(secret, t, body)
}

#[test]
fn a_delivery_signed_with_the_current_secret_verifies() {
    let b = body("intent.approved", "APPROVED", "100000");
    let h = signed(&secrets().current, NOW_MS, &b);
    assert_eq!(verify_signature(Some(&h), &b, &secrets(), now()), Ok(()));
}

#[test]
fn the_previous_secret_is_still_accepted_during_rotation() {
    let b = body("intent.approved", "APPROVED", "100000");
    let old = secrets().previous.unwrap().secret;
    let h = signed(&old, NOW_MS, &b);
    assert_eq!(verify_signature(Some(&h), &b, &secrets(), now()), Ok(()));
    let without_previous = WebhookSecrets {
        previous: None,
        ..secrets()
    };
    assert_eq!(
        verify_signature(Some(&h), &b, &without_previous, now()),
        Err(WebhookError::SignatureMismatch)
    );
}

#[test]
fn the_previous_secret_is_refused_once_its_rotation_window_ends() {
    let b = body("intent.approved", "APPROVED", "100000");
    let old = secrets().previous.unwrap();
    let later = old.until.plus_millis(1);
    let h = signed(&old.secret, later.unix_millis(), &b);
    assert_eq!(
        verify_signature(Some(&h), &b, &secrets(), later),
        Err(WebhookError::SignatureMismatch)
    );
    let just_before = old.until.plus_millis(-1);
    let h = signed(&old.secret, just_before.unix_millis(), &b);
    assert_eq!(
        verify_signature(Some(&h), &b, &secrets(), just_before),
        Ok(())
    );
}

#[test]
fn an_unknown_secret_is_refused() {
    let b = body("intent.approved", "APPROVED", "100000");
    let h = signed(&Secret::new("whsec_attacker"), NOW_MS, &b);
    assert_eq!(
        verify_signature(Some(&h), &b, &secrets(), now()),
        Err(WebhookError::SignatureMismatch)
    );
}

#[test]
fn the_five_minute_window_holds_in_both_directions() {
    let b = body("intent.approved", "APPROVED", "100000");
    let c = &secrets().current;
    for t in [
        NOW_MS - SIGNATURE_TOLERANCE_MS,
        NOW_MS + SIGNATURE_TOLERANCE_MS,
    ] {
        let h = signed(c, t, &b);
        assert_eq!(
            verify_signature(Some(&h), &b, &secrets(), now()),
            Ok(()),
            "edge {t}"
        );
    }
    for (t, skew) in [
        (
            NOW_MS - SIGNATURE_TOLERANCE_MS - 1,
            SIGNATURE_TOLERANCE_MS + 1,
        ),
        (
            NOW_MS + SIGNATURE_TOLERANCE_MS + 1,
            -(SIGNATURE_TOLERANCE_MS + 1),
        ),
    ] {
        let h = signed(c, t, &b);
        assert_eq!(
            verify_signature(Some(&h), &b, &secrets(), now()),
            Err(WebhookError::TimestampOutOfTolerance {
                skew_ms: skew,
                tolerance_ms: SIGNATURE_TOLERANCE_MS
            })
        );
    }
}

#[test]
fn a_re_serialized_body_is_refused() {
    let b = body("intent.approved", "APPROVED", "100000");
    let h = signed(&secrets().current, NOW_MS, &b);
    let value: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    assert_eq!(
        verify_signature(Some(&h), &pretty, &secrets(), now()),
        Err(WebhookError::SignatureMismatch)
    );
}

#[test]
fn a_tampered_timestamp_breaks_the_signature() {
    let b = body("intent.approved", "APPROVED", "100000");
    let sig = sign(&secrets().current, NOW_MS, &b);
    let h = format!("t={},v1={sig}", NOW_MS + 1);
    assert_eq!(
        verify_signature(Some(&h), &b, &secrets(), now()),
        Err(WebhookError::SignatureMismatch)
    );
}

#[test]
fn malformed_or_missing_headers_are_refused_with_their_own_codes() {
    let b = body("intent.approved", "APPROVED", "100000");
    assert_eq!(
        verify_signature(None, &b, &secrets(), now())
            .unwrap_err()
            .code(),
        "WEBHOOK_SIGNATURE_MISSING"
    );
    for h in [
        "",
        "garbage",
        "t=abc,v1=00",
        &format!("t={NOW_MS}"),
        &format!("t={NOW_MS},v1=zz"),
        &format!("t={NOW_MS},v1={}", "ab".repeat(31)),
        &format!("v1={}", "ab".repeat(32)),
    ] {
        assert_eq!(
            verify_signature(Some(h), &b, &secrets(), now())
                .unwrap_err()
                .code(),
            "WEBHOOK_SIGNATURE_MALFORMED",
            "{h:?}"
        );
    }
}

#[test]
fn any_matching_v1_among_several_verifies_and_unknown_schemes_are_skipped() {
    let b = body("intent.approved", "APPROVED", "100000");
    let good = sign(&secrets().current, NOW_MS, &b);
    let h = format!(
        "t={NOW_MS}, v1={}, v2=future-scheme, v1={good}",
        "00".repeat(32)
    );
    assert_eq!(verify_signature(Some(&h), &b, &secrets(), now()), Ok(()));
}

#[test]
fn verification_comes_before_parsing() {
    let not_json = b"{this is not json".to_vec();
    let h = signed(&Secret::new("whsec_wrong"), NOW_MS, &not_json);
    assert_eq!(
        parse_webhook(Some(&h), &not_json, &secrets(), now()),
        Err(WebhookError::SignatureMismatch)
    );
    let h = signed(&secrets().current, NOW_MS, &not_json);
    assert_eq!(
        parse_webhook(Some(&h), &not_json, &secrets(), now())
            .unwrap_err()
            .code(),
        "WEBHOOK_MALFORMED"
    );
}

fn parse(
    event_type: &str,
    status: &str,
    amount: &str,
) -> Result<Option<Notification>, WebhookError> {
    let b = body(event_type, status, amount);
    let h = signed(&secrets().current, NOW_MS, &b);
    parse_webhook(Some(&h), &b, &secrets(), now())
}

#[test]
fn approval_carries_the_approved_amount_the_event_id_and_the_provider_ids() {
    let n = parse("intent.approved", "APPROVED", "95000")
        .unwrap()
        .unwrap();
    assert_eq!(
        n.event.signal,
        Signal::Approved {
            amount: MinorUnits::new(95_000).unwrap(),
            payer: None
        }
    );
    assert_eq!(n.event.cause, Cause::Webhook);
    assert_eq!(
        n.event.provider_event_id.as_deref(),
        Some("5f1c2a9e-0000-4000-8000-000000000001")
    );
    assert_eq!(
        n.event.provider_ref,
        Some(ProviderRef::Pientegra {
            intent_id: "9d3b6a10-1111-4000-8000-000000000002".into(),
            reference_no: Some("D-2026-0000123".into()),
        })
    );
    assert_eq!(n.proof, Proof::Signed);
}

#[test]
fn each_event_type_maps_to_its_signal() {
    let kind = |t, s| parse(t, s, "100000").unwrap().unwrap().event.signal.kind();
    use crate::lifecycle::SignalKind as K;
    assert_eq!(kind("intent.rejected", "REJECTED"), K::Rejected);
    assert_eq!(kind("intent.late_arrival", "LATE_ARRIVAL"), K::LateArrival);
    assert_eq!(kind("intent.auto_cancelled", "AUTO_CANCELLED"), K::Expired);
}

#[test]
fn an_unknown_event_type_is_acknowledged_and_ignored() {
    assert_eq!(
        parse("intent.something_new", "APPROVED", "100000"),
        Ok(None)
    );
}

#[test]
fn a_body_that_contradicts_itself_or_has_a_bad_amount_is_malformed() {
    for (t, s, a) in [
        ("intent.approved", "REJECTED", "100000"),
        ("intent.approved", "APPROVED", "12.50"),
        ("intent.approved", "APPROVED", "-5"),
        ("intent.approved", "NOT_A_STATUS", "100000"),
    ] {
        assert_eq!(
            parse(t, s, a).unwrap_err().code(),
            "WEBHOOK_MALFORMED",
            "{t} {s} {a}"
        );
    }
}

#[test]
fn statuses_map_to_signals_in_one_place() {
    let amount = MinorUnits::new(100_000).unwrap();
    assert_eq!(signal_for_status(Status::Reserved, amount, None), None);
    assert_eq!(
        signal_for_status(Status::PendingReview, amount, None),
        Some(Signal::PayerConfirmed)
    );
    assert_eq!(
        signal_for_status(Status::AutoCancelled, amount, None),
        Some(Signal::Expired)
    );
    let parsed: Status = serde_json::from_str("\"PENDING_REVIEW\"").unwrap();
    assert_eq!(parsed, Status::PendingReview);
}

fn deposit(amount: i64, label: Option<String>, currency: Currency) -> DepositRequest {
    DepositRequest {
        account: AccountName::new("tr-main").unwrap(),
        amount: MinorUnits::new(amount).unwrap(),
        currency,
        reference: PartnerReference::new("order-1").unwrap(),
        user_id: UserId::new("user-12345").unwrap(),
        user_label: label,
        metadata: Metadata::default(),
    }
}

#[test]
fn create_body_enforces_the_amount_bounds_with_pientegras_codes() {
    let code = |a| create_body(&deposit(a, None, Currency::TRY)).map_err(|r| r.code);
    assert_eq!(code(99), Err(codes::AMOUNT_BELOW_MIN));
    assert!(code(100).is_ok());
    assert!(code(100_000_000).is_ok());
    assert_eq!(code(100_000_001), Err(codes::AMOUNT_ABOVE_MAX));
}

#[test]
fn create_body_checks_label_length_and_currency() {
    let ok = create_body(&deposit(100_000, Some("é".repeat(128)), Currency::TRY)).unwrap();
    assert_eq!(ok.amount, "100000");
    assert_eq!(ok.currency, "TRY");
    let long = create_body(&deposit(100_000, Some("a".repeat(129)), Currency::TRY));
    assert_eq!(long.unwrap_err().code, codes::VALIDATION_FAILED);
    let inr = create_body(&deposit(100_000, None, Currency::INR));
    assert_eq!(inr.unwrap_err().code, codes::VALIDATION_FAILED);
}

#[test]
fn create_body_serializes_as_the_contract_shows() {
    let body = create_body(&deposit(100_000, Some("Alex M.".into()), Currency::TRY)).unwrap();
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        r#"{"externalUserId":"user-12345","externalUserLabel":"Alex M.","amount":"100000","currency":"TRY"}"#
    );
}
