//! Limits kept in the store hold across C ABI handles: PHP-FPM opens a handle per request, so
//! a limit held in one handle's memory would hold for one request only.

use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use intentkit::*;
use intentkit_core::SystemClock;
use intentkit_sandbox::decentro;
use safer_ffi::prelude::*;

fn error() -> IntentkitError {
    IntentkitError {
        status: IntentkitStatus::Ok,
        reason: None,
        message: None,
        retryable: false,
        intent_id: None,
    }
}

fn open(config: &CString) -> *mut IntentkitHandle {
    let mut handle: *mut IntentkitHandle = std::ptr::null_mut();
    let mut e = error();
    let st = intentkit_open(
        Some(char_p::Ref::from(config.as_c_str())),
        Some(handle.as_out()),
        Some(&mut e),
    );
    assert_eq!(st, IntentkitStatus::Ok, "{e:?}");
    assert!(!handle.is_null());
    handle
}

/// Calls one JSON operation and returns its answer.
fn call(
    handle: *const IntentkitHandle,
    op: extern "C" fn(
        *const IntentkitHandle,
        Option<char_p::Ref<'_>>,
        Option<Out<'_, Option<char_p::Box>>>,
        Option<&mut IntentkitError>,
    ) -> IntentkitStatus,
    request: serde_json::Value,
) -> serde_json::Value {
    let request = CString::new(request.to_string()).unwrap();
    let mut out: Option<char_p::Box> = None;
    let mut e = error();
    let st = op(
        handle,
        Some(char_p::Ref::from(request.as_c_str())),
        Some(out.manually_drop_mut().as_out()),
        Some(&mut e),
    );
    assert_eq!(st, IntentkitStatus::Ok, "{e:?}");
    let json = serde_json::from_str(out.as_ref().unwrap().to_str()).unwrap();
    intentkit_string_free(out);
    json
}

#[test]
fn forged_callbacks_through_a_hundred_short_lived_handles_share_one_lookup_gap() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(decentro::Simulator::start(
            Default::default(),
            Arc::new(SystemClock),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = decentro::Config::default();
    let config = CString::new(format!(
        "[ffi]\ndatabase = \"{}\"\n\n[decentro.in-main]\nbase_url = \"{}\"\nclient_id = \"{}\"\n\
         client_secret = \"{}\"\nmodule_secret = \"{}\"\nprovider_secret = \"{}\"\n",
        dir.path().join("php.db").display(),
        sim.base_url(),
        c.client_id,
        c.client_secret,
        c.module_secret,
        c.provider_secret
    ))
    .unwrap();

    let first = open(&config);
    let v = call(
        first,
        intentkit_create_account_verification,
        serde_json::json!({
            "idempotencyKey": "v-flood", "account": "in-main", "reference": "kyc-1",
            "userId": "u-1", "purposeMessage": "Verify", "generateUri": true,
        }),
    );
    intentkit_close(first);
    let txn = v["providerRef"]["decentro"]["txnId"].as_str().unwrap();
    let body = serde_json::json!({
        "decentroTxnId": txn, "referenceId": v["providerKey"], "transactionStatus": "SUCCESS",
        "payerName": "Mallory", "payerAccountNumber": "XXXX0000", "payerIfsc": "EVIL0000001",
    })
    .to_string();
    let webhook = serde_json::json!({
        "provider": "PROVIDER_DECENTRO",
        "account": "in-main",
        "headers": {"content-type": "application/json"},
        "body": base64::engine::general_purpose::STANDARD.encode(&body),
    });

    // A hundred requests in about 5 s, each with a handle of its own, as PHP-FPM's workers
    // would: open, deliver one forged callback for the verification, close.
    let before = sim.api_calls();
    let started = Instant::now();
    let mut statuses = std::collections::BTreeMap::new();
    for n in 0..100u32 {
        let h = open(&config);
        let answer = call(h, intentkit_handle_webhook, webhook.clone());
        intentkit_close(h);
        *statuses
            .entry(answer["httpStatus"].as_u64().unwrap())
            .or_insert(0) += 1;
        let due = started + Duration::from_millis(50) * (n + 1);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let elapsed = started.elapsed();
    let looked = sim.api_calls() - before;
    let bound = elapsed.as_secs() + 1;
    eprintln!(
        "{looked} Decentro look-ups for 100 forged callbacks through 100 handles in {} ms \
         (bound {bound})",
        elapsed.as_millis()
    );
    assert_eq!(
        statuses,
        [(503, 100)].into(),
        "none applied, all to be sent again"
    );
    assert!(looked >= 1, "the provider was asked");
    assert!(
        looked <= bound,
        "{looked} look-ups in {} ms: more than one a second for one verification",
        elapsed.as_millis()
    );
    sim.shutdown();
}
