use std::collections::HashSet;

use super::*;
use crate::intent::Metadata;
use crate::lifecycle::SignalKind;
use crate::types::{AccountName, MinorUnits, PartnerReference, UserId};

fn body(reference_id: &str, purpose: &str, flags: (i64, i64, i64)) -> PennyPullBody {
    PennyPullBody {
        reference_id: reference_id.into(),
        purpose_message: purpose.into(),
        generate_qr: flags.0,
        generate_uri: flags.1,
        customized_qr_with_logo: flags.2,
    }
}

#[test]
fn every_key_on_the_page_round_trips_to_its_typed_error() {
    assert_eq!(DecentroError::ALL.len(), 22);
    let codes: HashSet<_> = DecentroError::ALL.iter().map(DecentroError::code).collect();
    assert_eq!(codes.len(), DecentroError::ALL.len(), "keys are distinct");
    for e in DecentroError::ALL {
        assert_eq!(&DecentroError::from_key(e.code(), "ignored"), e);
        assert!(e.is_definitive());
        assert!(e.to_string().contains(e.code()));
        assert!(matches!(e.http_status(), 400 | 401 | 403 | 405 | 409));
    }
    assert_eq!(
        DecentroError::InvalidGenerateQrValue.code(),
        "error_invalid_generate_QR_value"
    );
    assert_eq!(
        DecentroError::AccountDisabled.code(),
        "error_company/account_disabled"
    );
}

#[test]
fn an_unknown_key_keeps_its_key_and_message() {
    let e = DecentroError::from_key("error_brand_new", "Something new happened");
    assert_eq!(e.code(), "error_brand_new");
    assert_eq!(e.page_message(), "Something new happened");
    assert!(!e.is_definitive());
}

#[test]
fn reference_id_must_be_present_and_5_to_50_characters() {
    let v = |r: &str| validate(&body(r, "ok", (1, 1, 0)));
    assert_eq!(v(""), Err(DecentroError::MissingReferenceId));
    assert_eq!(v("abcd"), Err(DecentroError::IncorrectLengthReferenceId));
    assert_eq!(v("abcde"), Ok(()));
    assert_eq!(v(&"a".repeat(50)), Ok(()));
    assert_eq!(
        v(&"a".repeat(51)),
        Err(DecentroError::IncorrectLengthReferenceId)
    );
}

#[test]
fn each_flag_must_be_0_or_1_with_its_own_key() {
    let v = |f| validate(&body("ref-12345", "ok", f));
    assert_eq!(v((2, 0, 0)), Err(DecentroError::InvalidGenerateQrValue));
    assert_eq!(v((0, -1, 0)), Err(DecentroError::InvalidGenerateUriValue));
    assert_eq!(
        v((0, 0, 7)),
        Err(DecentroError::InvalidCustomizedQrWithLogo)
    );
    assert_eq!(v((1, 1, 1)), Ok(()));
}

#[test]
fn every_forbidden_character_makes_the_purpose_unsanitized() {
    for c in FORBIDDEN_PURPOSE_CHARS {
        assert_eq!(
            validate(&body("ref-12345", &format!("Verify {c} now"), (0, 0, 0))),
            Err(DecentroError::UnsanitizedValues),
            "{c}"
        );
    }
    assert_eq!(
        validate(&body(
            "ref-12345",
            "Verify account - step 2, thanks",
            (0, 0, 0)
        )),
        Ok(())
    );
}

#[test]
fn create_body_maps_the_request_and_defaults_the_purpose() {
    let req = AccountVerificationRequest {
        account: AccountName::new("in-main").unwrap(),
        reference: PartnerReference::new("kyc-1").unwrap(),
        user_id: UserId::new("u-1").unwrap(),
        purpose_message: None,
        generate_qr: true,
        generate_uri: false,
        qr_with_logo: true,
        metadata: Metadata::default(),
    };
    let b = create_body(&req, "0190a1b2c3d4e5f60718293a4b5c6d7e").unwrap();
    assert_eq!(b.purpose_message, DEFAULT_PURPOSE_MESSAGE);
    assert_eq!(
        (b.generate_qr, b.generate_uri, b.customized_qr_with_logo),
        (1, 0, 1)
    );
    let bad = AccountVerificationRequest {
        purpose_message: Some("Pay now!".into()),
        ..req
    };
    assert_eq!(
        create_body(&bad, "0190a1b2c3d4e5f60718293a4b5c6d7e"),
        Err(DecentroError::UnsanitizedValues)
    );
}

#[test]
fn a_created_link_becomes_a_upi_handoff_that_expires_in_ten_minutes() {
    let resp = br#"{"decentroTxnId":"DCTRTX123","status":"SUCCESS","responseCode":"S00000",
        "message":"Intent link created","responseKey":"successful_payment_link_created",
        "data":{"validationShortLink":"https://dcnt.in/abc","validationStatus":"PENDING",
        "encodedDynamicQrCode":"iVBORw0KGgo=","gpayUri":"tez://upi/pay?pa=x","phonepeUri":"phonepe://pay?pa=x","paytmUri":"paytmmp://pay?pa=x"}}"#;
    let t0 = Timestamp::from_unix_millis(1_795_000_000_000);
    let created = parse_create_response(resp, t0).unwrap();
    let Signal::HandoffIssued {
        handoff,
        expires_at,
    } = created.event.signal
    else {
        panic!("not a handoff");
    };
    assert_eq!(expires_at, Some(t0.plus_millis(600_000)));
    assert_eq!(
        handoff,
        PayerHandoff::Upi {
            short_link: "https://dcnt.in/abc".into(),
            qr_code: Some("iVBORw0KGgo=".into()),
            gpay_uri: Some("tez://upi/pay?pa=x".into()),
            phonepe_uri: Some("phonepe://pay?pa=x".into()),
            paytm_uri: Some("paytmmp://pay?pa=x".into()),
        }
    );
    assert_eq!(
        created.event.provider_ref,
        Some(ProviderRef::Decentro {
            txn_id: "DCTRTX123".into()
        })
    );
}

#[test]
fn a_failed_create_answers_its_typed_error() {
    let resp = br#"{"decentroTxnId":"DCTRTX9","status":"FAILURE","responseCode":"E00009",
        "message":"Duplicate Request Reference ID","responseKey":"error_duplicate_reference_id"}"#;
    assert_eq!(
        parse_create_response(resp, Timestamp::from_unix_millis(0)),
        Err(DecentroError::DuplicateReferenceId)
    );
}

fn status(s: &str) -> Vec<u8> {
    format!(
        r#"{{"decentroTxnId":"DCTRTX123","status":"SUCCESS","responseKey":"success_transaction_status","message":"Payer declined",
        "data":{{"transactionStatus":"{s}","payerName":"A Kumar","payerVpa":"akumar@okhdfc",
        "payerAccountNumber":"XXXXXXXX1234","payerIfsc":"HDFC0000001","bankReferenceNumber":"412345678901"}}}}"#
    )
    .into_bytes()
}

#[test]
fn status_responses_map_to_signals() {
    assert_eq!(parse_status_response(&status("PENDING")).unwrap(), None);
    let success = parse_status_response(&status("SUCCESS")).unwrap().unwrap();
    assert_eq!(success.cause, Cause::StatusPoll);
    let Signal::Approved { amount, payer } = success.signal else {
        panic!("not approved");
    };
    assert_eq!(amount, MinorUnits::new(100).unwrap());
    let payer = payer.unwrap();
    assert_eq!(payer.name.as_deref(), Some("A Kumar"));
    assert_eq!(payer.masked_account_number.as_deref(), Some("XXXXXXXX1234"));
    assert_eq!(payer.ifsc.as_deref(), Some("HDFC0000001"));
    let failure = parse_status_response(&status("FAILURE")).unwrap().unwrap();
    assert_eq!(
        failure.signal,
        Signal::Rejected {
            reason: Some("Payer declined".into())
        }
    );
    assert_eq!(
        parse_status_response(&status("EXPIRED"))
            .unwrap()
            .unwrap()
            .signal
            .kind(),
        SignalKind::Expired
    );
}

#[test]
fn a_callback_is_parsed_but_needs_confirmation() {
    let cb = br#"{"decentroTxnId":"DCTRTX123","referenceId":"0190a1b2c3d4e5f6","transactionStatus":"SUCCESS",
        "payerName":"A Kumar","payerVpa":"akumar@okhdfc","payerAccountNumber":"XXXXXXXX1234",
        "payerIfsc":"HDFC0000001","bankReferenceNumber":"412345678901","timestamp":"2026-11-22T10:00:00Z"}"#;
    let n = parse_callback(cb).unwrap();
    assert_eq!(n.proof, Proof::Claim);
    assert_eq!(n.event.cause, Cause::Callback);
    assert_eq!(n.our_reference.as_deref(), Some("0190a1b2c3d4e5f6"));
    assert_eq!(
        n.event.provider_event_id.as_deref(),
        Some("callback:DCTRTX123:SUCCESS")
    );
    assert_eq!(n.event.signal.kind(), SignalKind::Approved);
}

#[test]
fn a_callback_for_anything_but_success_or_garbage_is_refused() {
    let failure = br#"{"decentroTxnId":"DCTRTX123","transactionStatus":"FAILURE"}"#;
    assert_eq!(
        parse_callback(failure).unwrap_err().code(),
        "WEBHOOK_MALFORMED"
    );
    assert_eq!(
        parse_callback(b"nope").unwrap_err().code(),
        "WEBHOOK_MALFORMED"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(CALLBACK_ACK).unwrap()["responseCode"],
        "CB_S00000"
    );
}
