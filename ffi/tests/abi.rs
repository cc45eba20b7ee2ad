//! The ABI from Rust, as a host sees it: the per-call timeout, JSON in and out, and closing a
//! handle under a call or before one. (The whole flow from C and PHP is in bindings/; this
//! covers what those cannot provoke cheaply.)

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

/// A runtime and a Pientegra simulator on a free port, with its defaults.
fn pientegra() -> (
    tokio::runtime::Runtime,
    intentkit_sandbox::pientegra::Simulator,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(intentkit_sandbox::pientegra::Simulator::start(
            Default::default(),
            Arc::new(SystemClock),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    (rt, sim)
}

#[test]
fn a_call_past_its_timeout_is_deadline_exceeded_and_retryable_with_the_same_key() {
    let (rt, sim) = pientegra();
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
    let mut handle: *mut IntentkitHandle = std::ptr::null_mut();
    let mut e = error();
    let st = intentkit_open(
        Some(char_p::Ref::from(config.as_c_str())),
        Some(handle.as_out()),
        Some(&mut e),
    );
    assert_eq!(st, IntentkitStatus::Ok, "{e:?}");
    assert!(!handle.is_null());

    let request = CString::new(
        r#"{"idempotencyKey":"slow-1","account":"tr-main","amountMinor":"150000","currency":"TRY","reference":"o-1","userId":"u-1"}"#,
    )
    .unwrap();
    let mut out: Option<char_p::Box> = None;
    let started = std::time::Instant::now();
    let st = intentkit_create_deposit(
        handle,
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
            handle,
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

    intentkit_close(handle);
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
    let mut handle: *mut IntentkitHandle = std::ptr::null_mut();
    let mut e = error();
    let st = intentkit_open(
        Some(char_p::Ref::from(config.as_c_str())),
        Some(handle.as_out()),
        Some(&mut e),
    );
    assert_eq!(st, IntentkitStatus::Ok, "{e:?}");
    assert!(!handle.is_null());
    let request = CString::new(
        r#"{"idempotencyKey":"r-1","account":"tr-main","amountMinor":"100000","currency":"TRY","reference":"o-1","userId":"u-1"}"#,
    )
    .unwrap();
    let mut out: Option<char_p::Box> = None;
    let st = intentkit_create_deposit(
        handle,
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
        handle,
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
    let st = intentkit_get(handle, None, None, Some(&mut e));
    assert_eq!(st, IntentkitStatus::InvalidArgument);
    assert!(e.intent_id.is_none());
    intentkit_error_free(Some(&mut e));
    intentkit_close(handle);
}

fn open(config: &str) -> *mut IntentkitHandle {
    let config = CString::new(config).unwrap();
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

fn get_unknown(handle: *const IntentkitHandle, e: &mut IntentkitError) -> IntentkitStatus {
    let request = CString::new(r#"{"id":"0190b5c4-3c2e-7d2a-9c61-000000000000"}"#).unwrap();
    let mut out: Option<char_p::Box> = None;
    let st = intentkit_get(
        handle,
        Some(char_p::Ref::from(request.as_c_str())),
        Some(out.manually_drop_mut().as_out()),
        Some(e),
    );
    assert_eq!(out.is_some(), st == IntentkitStatus::Ok);
    intentkit_string_free(out);
    st
}

#[test]
fn a_call_after_close_answers_closed_and_a_second_close_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[ffi]\ndatabase = \"{}\"\n",
        dir.path().join("c.db").display()
    );
    let handle = open(&config);
    let mut e = error();
    assert_eq!(
        get_unknown(handle, &mut e),
        IntentkitStatus::NotFound,
        "{e:?}"
    );

    intentkit_close(handle);
    let st = get_unknown(handle, &mut e);
    assert_eq!(st, IntentkitStatus::FailedPrecondition, "{e:?}");
    assert_eq!(e.reason.as_ref().unwrap().to_str(), "CLOSED");
    assert!(
        e.message
            .as_ref()
            .unwrap()
            .to_str()
            .contains("intentkit_close")
    );
    assert!(!e.retryable, "a closed handle stays closed");

    intentkit_close(handle);
    intentkit_close(std::ptr::null_mut());
    // A handle opened later is another handle: the closed one does not come back to life.
    let again = open(&config);
    assert_ne!(again, handle);
    assert_eq!(
        get_unknown(again, &mut e),
        IntentkitStatus::NotFound,
        "{e:?}"
    );
    assert_eq!(
        get_unknown(handle, &mut e),
        IntentkitStatus::FailedPrecondition
    );
    intentkit_close(again);
    intentkit_error_free(Some(&mut e));
}

/// `intentkit_close` from one thread while another is inside a call: the call runs to its
/// answer, and close returns only after it.
#[test]
fn close_waits_for_a_call_in_flight() {
    let (rt, sim) = pientegra();
    let root = sim.root_url();
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{root}/_control/faults"))
            .header("content-type", "application/json")
            .body(r#"{"latency_ms":800}"#)
            .send()
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let handle = open(&format!(
        "[ffi]\ndatabase = \"{}\"\ncall_timeout_ms = 10000\n\n[pientegra.tr-main]\nbase_url = \"{}\"\n\
         api_key = \"pk_sandbox\"\nwebhook_secret = \"whsec_c2FuZGJveA\"\n",
        dir.path().join("w.db").display(),
        sim.base_url()
    ));

    // A handle is a number, not memory: it may cross to another thread as one.
    let token = handle as usize;
    let started = std::time::Instant::now();
    let caller = std::thread::spawn(move || {
        let request = CString::new(
            r#"{"idempotencyKey":"w-1","account":"tr-main","amountMinor":"150000","currency":"TRY","reference":"o-1","userId":"u-1"}"#,
        )
        .unwrap();
        let mut out: Option<char_p::Box> = None;
        let mut e = error();
        let st = intentkit_create_deposit(
            std::ptr::without_provenance(token),
            Some(char_p::Ref::from(request.as_c_str())),
            Some(out.manually_drop_mut().as_out()),
            Some(&mut e),
        );
        intentkit_string_free(out);
        (st, e.reason.map(|r| r.to_str().to_string()))
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    intentkit_close(handle);
    let closed_after = started.elapsed();
    let (st, reason) = caller.join().unwrap();
    assert_eq!(st, IntentkitStatus::Ok, "{reason:?}");
    // The call needed the provider's 800 ms; close, started at 200 ms, waited for it.
    assert!(
        closed_after >= std::time::Duration::from_millis(800),
        "close returned at {closed_after:?}, while the call was still waiting for the provider"
    );
    sim.shutdown();
}
