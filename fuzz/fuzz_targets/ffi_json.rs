//! The C ABI's request path up to the engine: a request message in canonical proto3 JSON
//! (`intentkit_proto::from_json`, as `ffi/src/lib.rs` decodes every call) and its conversion
//! to core's types (`intentkit_proto::convert`, as `intentkit_proto::ops` does before calling
//! the engine), then what the engine does first with a create or a delivery, which needs no
//! store: the new intent, its fingerprint, the provider's own checks, and the adapter's
//! verify-and-parse of a `HandleWebhook` body. No engine is opened.
//!
//! Input: the first byte picks the operation (its value modulo the number of operations), the
//! rest is the request JSON, UTF-8 as the ABI requires.
//!
//! Invariants: nothing panics; a request that decodes re-encodes to JSON that decodes to the
//! same message; every refusal maps to an API error; an accepted create becomes an intent whose
//! schema message also round-trips through JSON.
#![no_main]

use std::collections::HashMap;

use intentkit_core::provider::pientegra::{self, WebhookSecrets};
use intentkit_core::provider::{Secret, decentro};
use intentkit_core::{CoreError, IdempotencyKey, Intent, IntentRequest, Provider, Timestamp};
use intentkit_proto::{ApiError, convert, from_json, to_json, v1};
use libfuzzer_sys::fuzz_target;

const NOW_MS: i64 = 1_795_000_000_000;

/// The operations of `ffi/src/lib.rs`, in its order.
const OPERATIONS: u8 = 10;

/// Decodes as the ABI does, and checks that the message survives a trip through JSON.
fn decode<T>(json: &str) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match from_json::<T>(json) {
        Ok(message) => {
            let again = to_json(&message);
            match from_json::<T>(&again) {
                Ok(back) => assert_eq!(back, message, "re-encoded as {again}"),
                Err(e) => panic!("{again} does not decode again: {e}"),
            }
            Some(message)
        }
        Err(e) => {
            assert_eq!(e.reason, "INVALID_JSON");
            None
        }
    }
}

/// A refusal as the caller sees it.
fn refused(e: CoreError) {
    let api = ApiError::from(e);
    let _ = api.to_string();
}

/// What the engine does with a valid create before any store call.
fn new_intent(request: IntentRequest, key: IdempotencyKey) {
    assert!(
        request.fingerprint().is_ok(),
        "{request:?} has no fingerprint"
    );
    match Intent::new(request, key, Timestamp::from_unix_millis(NOW_MS)) {
        Ok(intent) => {
            let message = convert::intent(&intent);
            let json = to_json(&message);
            let back: v1::Intent = from_json(&json)
                .unwrap_or_else(|e| panic!("an intent's JSON does not decode: {e}\n{json}"));
            assert_eq!(back, message, "{json}");
        }
        Err(e) => refused(e),
    }
}

fn webhook(r: v1::HandleWebhookRequest) {
    let provider = match convert::from_provider(r.provider) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    // As `ops::handle_webhook`: header names match case-insensitively.
    let headers: HashMap<String, String> = r
        .headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let header = |name: &str| headers.get(&name.to_ascii_lowercase()).cloned();
    let body = &r.body[..];
    let _ = match provider {
        Provider::Pientegra => {
            let secrets = WebhookSecrets {
                current: Secret::new("whsec_fuzz_current"),
                previous: None,
            };
            let signature = header(pientegra::SIGNATURE_HEADER);
            pientegra::parse_webhook(
                signature.as_deref(),
                body,
                &secrets,
                Timestamp::from_unix_millis(NOW_MS),
            )
            .map(|_| ())
        }
        Provider::Decentro => decentro::parse_callback(body).map(|_| ()),
    }
    .map_err(|e| (e.to_string(), e.code()));
}

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let Ok(json) = std::str::from_utf8(rest) else {
        return;
    };
    match op % OPERATIONS {
        0 => {
            let Some(r) = decode::<v1::CreateDepositRequest>(json) else {
                return;
            };
            match convert::deposit_request(r) {
                Ok((request, key)) => {
                    let _ = pientegra::create_body(&request).map_err(|e| e.to_string());
                    new_intent(IntentRequest::Deposit(request), key);
                }
                Err(e) => refused(e),
            }
        }
        1 => {
            let Some(r) = decode::<v1::CreateAccountVerificationRequest>(json) else {
                return;
            };
            match convert::account_verification_request(r) {
                Ok((request, key)) => {
                    let _ = decentro::check_request(&request).map_err(|e| e.to_string());
                    new_intent(IntentRequest::AccountVerification(request), key);
                }
                Err(e) => refused(e),
            }
        }
        2 => {
            if let Some(r) = decode::<v1::GetIntentRequest>(json) {
                let _ = convert::intent_id(&r.id).map_err(refused);
            }
        }
        3 => {
            if let Some(r) = decode::<v1::ListIntentsRequest>(json) {
                match convert::list_request(&r) {
                    Ok((_, cursor, size)) => {
                        assert!((1..=convert::LIST_PAGE_MAX).contains(&size), "{size}");
                        if let Some(c) = cursor {
                            // A token the server issues reads back as the same cursor.
                            let token = convert::page_token(&c);
                            let again = v1::ListIntentsRequest {
                                page_token: token.clone(),
                                ..Default::default()
                            };
                            match convert::list_request(&again) {
                                Ok((_, Some(back), _)) => assert_eq!(back, c, "{token}"),
                                other => panic!("{token} does not read back: {other:?}"),
                            }
                        }
                    }
                    Err(e) => refused(e),
                }
            }
        }
        4 => {
            if let Some(r) = decode::<v1::CancelIntentRequest>(json) {
                let _ = convert::intent_id(&r.id).map_err(refused);
            }
        }
        5 => {
            if let Some(r) = decode::<v1::RefreshIntentRequest>(json) {
                let _ = convert::intent_id(&r.id).map_err(refused);
            }
        }
        6 => {
            if let Some(r) = decode::<v1::HandleWebhookRequest>(json) {
                webhook(r);
            }
        }
        7 => {
            if let Some(r) = decode::<v1::ListEventsRequest>(json) {
                let limit = convert::events_limit(r.limit);
                assert!((1..=convert::EVENTS_PAGE_MAX).contains(&limit), "{limit}");
                let _ = convert::consumer(&r.consumer).map_err(refused);
            }
        }
        8 => {
            if let Some(r) = decode::<v1::AckEventsRequest>(json) {
                let _ = convert::consumer(&r.consumer).map_err(refused);
            }
        }
        _ => {
            // `intentkit_run_maintenance` takes any JSON object.
            let _ = from_json::<serde_json::Map<String, serde_json::Value>>(json);
        }
    }
});
