//! The ABI from Rust, as a host sees it: the per-call timeout, and JSON in and out. (The whole
//! flow from C and PHP is in bindings/; this covers what those cannot provoke cheaply.)

use std::ffi::CString;
use std::sync::Arc;

use intentkit::*;
use intentkit_core::SystemClock;
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

#[test]
fn a_call_past_its_timeout_is_deadline_exceeded_and_retryable_with_the_same_key() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(intentkit_sandbox::pientegra::Simulator::start(
            Default::default(),
            Arc::new(SystemClock),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[ffi]\ndatabase = \"{}\"\ncall_timeout_ms = 300\n\n[pientegra.tr-main]\nbase_url = \"{}\"\n\
         api_key = \"pk_sandbox\"\nwebhook_secret = \"whsec_c2FuZGJveA\"\n",
        dir.path().join("t.db").display(),
        sim.base_url()
    );
    // Every Pientegra answer now takes 2 s.
    let root = sim.root_url();
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{root}/_control/faults"))
            .header("content-type", "application/json")
            .body(r#"{"latency_ms":2000}"#)
            .send()
            .await
            .unwrap();
    });

    let config = CString::new(config).unwrap();
    let mut handle: Option<repr_c::Box<IntentkitHandle>> = None;
    let mut e = error();
    let st = intentkit_open(
        Some(char_p::Ref::from(config.as_c_str())),
        Some(handle.manually_drop_mut().as_out()),
        Some(&mut e),
    );
    assert_eq!(st, IntentkitStatus::Ok, "{e:?}");
    let handle = handle.unwrap();

    let request = CString::new(
        r#"{"idempotencyKey":"slow-1","account":"tr-main","amountMinor":"150000","currency":"TRY","reference":"o-1","userId":"u-1"}"#,
    )
    .unwrap();
    let mut out: Option<char_p::Box> = None;
    let started = std::time::Instant::now();
    let st = intentkit_create_deposit(
        Some(&handle),
        Some(char_p::Ref::from(request.as_c_str())),
        Some(out.manually_drop_mut().as_out()),
        Some(&mut e),
    );
    assert_eq!(st, IntentkitStatus::DeadlineExceeded);
    assert_eq!(e.reason.as_ref().unwrap().to_str(), "CALL_TIMEOUT");
    assert!(e.retryable, "the host is told it may retry");
    assert!(started.elapsed() < std::time::Duration::from_millis(1_500));
    assert!(out.is_none(), "nothing written on failure");

    // The provider is quick again. The same call with the same key finishes the same intent,
    // however far the first one got: one intent of ours, one at the provider.
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{root}/_control/faults"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
    });
    let config_timeout = std::time::Instant::now();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut e = error();
        let mut out: Option<char_p::Box> = None;
        let st = intentkit_create_deposit(
            Some(&handle),
            Some(char_p::Ref::from(request.as_c_str())),
            Some(out.manually_drop_mut().as_out()),
            Some(&mut e),
        );
        if st == IntentkitStatus::DeadlineExceeded {
            // The first call's create may still hold the key at the provider for a moment.
            assert!(e.retryable);
            assert!(config_timeout.elapsed() < std::time::Duration::from_secs(10));
            continue;
        }
        assert_eq!(st, IntentkitStatus::Ok, "{e:?}");
        let json: serde_json::Value = serde_json::from_str(out.as_ref().unwrap().to_str()).unwrap();
        assert_eq!(json["status"], "INTENT_STATUS_PENDING", "{json}");
        ids.push(json["id"].as_str().unwrap().to_string());
        intentkit_string_free(out);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "the same key gave the same intent: {ids:?}");
    assert_eq!(sim.intent_ids().len(), 1, "one deposit at the provider");

    intentkit_close(Some(handle));
    sim.shutdown();
}

/// A create that recorded its intent but could not reach the provider names the intent in
/// the error's own field, so a C host need not parse the message.
#[test]
fn a_failed_create_that_recorded_its_intent_names_it_in_the_error() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on the discard port: every connection is refused at once.
    let config = CString::new(format!(
        "[ffi]\ndatabase = \"{}\"\n\n[pientegra.tr-main]\nbase_url = \"http://127.0.0.1:9/api/v1\"\n\
         api_key = \"pk_sandbox\"\nwebhook_secret = \"whsec_c2FuZGJveA\"\n\n[pientegra.tr-main.http]\nmax_retries = 0\n",
        dir.path().join("r.db").display()
    ))
    .unwrap();
    let mut handle: Option<repr_c::Box<IntentkitHandle>> = None;
    let mut e = error();
    let st = intentkit_open(
        Some(char_p::Ref::from(config.as_c_str())),
        Some(handle.manually_drop_mut().as_out()),
        Some(&mut e),
    );
    assert_eq!(st, IntentkitStatus::Ok, "{e:?}");
    let handle = handle.unwrap();
    let request = CString::new(
        r#"{"idempotencyKey":"r-1","account":"tr-main","amountMinor":"100000","currency":"TRY","reference":"o-1","userId":"u-1"}"#,
    )
    .unwrap();
    let mut out: Option<char_p::Box> = None;
    let st = intentkit_create_deposit(
        Some(&handle),
        Some(char_p::Ref::from(request.as_c_str())),
        Some(out.manually_drop_mut().as_out()),
        Some(&mut e),
    );
    assert_eq!(st, IntentkitStatus::Unavailable, "{e:?}");
    assert!(e.retryable);
    let id = e
        .intent_id
        .as_ref()
        .expect("the recorded intent's id")
        .to_str()
        .to_string();
    let get = CString::new(format!(r#"{{"id":"{id}"}}"#)).unwrap();
    let st = intentkit_get(
        Some(&handle),
        Some(char_p::Ref::from(get.as_c_str())),
        Some(out.manually_drop_mut().as_out()),
        Some(&mut e),
    );
    assert_eq!(st, IntentkitStatus::Ok, "{e:?}");
    assert!(
        out.as_ref()
            .unwrap()
            .to_str()
            .contains("INTENT_STATUS_CREATED")
    );
    intentkit_string_free(out.take());
    // A later failure that recorded nothing leaves no stale id behind.
    let st = intentkit_get(Some(&handle), None, None, Some(&mut e));
    assert_eq!(st, IntentkitStatus::InvalidArgument);
    assert!(e.intent_id.is_none());
    intentkit_error_free(Some(&mut e));
    intentkit_close(Some(handle));
}
