//! The guide's reference (docs/guide/reference.md) executed against the real library: every
//! ```json block marked `example=NAME request call=FUNCTION` is sent through that C ABI
//! function, in the order the page shows them, and the block after it (`answer` or `error`)
//! must match what came back. In an answer, `"*"` stands for a value that differs on every
//! run (ids, times, links); every other value, and the set of keys at every level, must be
//! exactly what the library wrote. In a request, `"$NAME.path.to.field"` is that field of an
//! earlier example's answer, and `"$signature"`/`"$body"` are a Pientegra webhook for the
//! deposit, signed as Pientegra signs it.
//!
//! `INTENTKIT_GUIDE_PRINT=1` prints each actual answer (to write a new example from).

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::Arc;

use base64::Engine as _;
use intentkit::*;
use intentkit_core::provider::Secret;
use intentkit_core::provider::pientegra::signature_header;
use intentkit_core::{Clock, SystemClock};
use safer_ffi::prelude::*;
use serde_json::Value;

const GUIDE: &str = include_str!("../../docs/guide/reference.md");

/// One fenced block of the page.
struct Block {
    example: String,
    role: String,
    call: Option<String>,
    json: Value,
    line: usize,
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = GUIDE.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```json ") else {
            continue;
        };
        let attr = |k: &str| {
            info.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")).map(str::to_string))
        };
        let Some(example) = attr("example") else {
            continue;
        };
        let role = ["request", "answer", "error"]
            .into_iter()
            .find(|r| info.split_whitespace().any(|w| w == *r))
            .unwrap_or_else(|| panic!("line {}: request, answer or error?", n + 1))
            .to_string();
        let mut text = String::new();
        for (_, l) in lines.by_ref() {
            if l == "```" {
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("line {}: not JSON: {e}\n{text}", n + 1));
        out.push(Block {
            example,
            role,
            call: attr("call"),
            json,
            line: n + 1,
        });
    }
    out
}

/// `documented` against `actual`: same keys everywhere, same values except `"*"`.
fn matches(documented: &Value, actual: &Value, path: &str, problems: &mut Vec<String>) {
    match (documented, actual) {
        (Value::String(s), _) if s == "*" => {}
        (Value::Object(d), Value::Object(a)) => {
            for (k, dv) in d {
                match a.get(k) {
                    Some(av) => matches(dv, av, &format!("{path}.{k}"), problems),
                    None => problems.push(format!("{path}.{k}: documented, not written")),
                }
            }
            for (k, av) in a {
                if !d.contains_key(k) {
                    problems.push(format!("{path}.{k}: written ({av}), not documented"));
                }
            }
        }
        (Value::Array(d), Value::Array(a)) if d.len() == a.len() => {
            for (i, (dv, av)) in d.iter().zip(a).enumerate() {
                matches(dv, av, &format!("{path}[{i}]"), problems);
            }
        }
        (d, a) if d == a => {}
        (d, a) => problems.push(format!("{path}: documented {d}, written {a}")),
    }
}

/// Replaces `"$name.path"` strings with captured values.
fn substitute(v: &mut Value, vars: &HashMap<String, Value>) {
    match v {
        Value::String(s) if s.starts_with('$') => {
            let mut parts = s[1..].split('.');
            let root = parts.next().unwrap_or_default();
            let mut cur = vars
                .get(root)
                .unwrap_or_else(|| panic!("no earlier example {root} for {s}"))
                .clone();
            for p in parts {
                cur = cur
                    .get(p)
                    .unwrap_or_else(|| panic!("{s}: no field {p}"))
                    .clone();
            }
            *v = cur;
        }
        Value::Object(m) => m.values_mut().for_each(|x| substitute(x, vars)),
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, vars)),
        _ => {}
    }
}

/// The status as the header names it, e.g. `INTENTKIT_STATUS_ALREADY_EXISTS`.
fn c_name(st: IntentkitStatus) -> String {
    let mut name = String::from("INTENTKIT_STATUS");
    for c in format!("{st:?}").chars() {
        if c.is_ascii_uppercase() {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

type Op = extern "C" fn(
    *const IntentkitHandle,
    Option<char_p::Ref<'_>>,
    Option<Out<'_, Option<char_p::Box>>>,
    Option<&mut IntentkitError>,
) -> IntentkitStatus;

fn op(name: &str) -> Op {
    match name {
        "intentkit_create_deposit" => intentkit_create_deposit,
        "intentkit_create_account_verification" => intentkit_create_account_verification,
        "intentkit_get" => intentkit_get,
        "intentkit_list" => intentkit_list,
        "intentkit_cancel" => intentkit_cancel,
        "intentkit_refresh" => intentkit_refresh,
        "intentkit_handle_webhook" => intentkit_handle_webhook,
        "intentkit_next_events" => intentkit_next_events,
        "intentkit_ack" => intentkit_ack,
        "intentkit_run_maintenance" => intentkit_run_maintenance,
        other => panic!("no C ABI function {other}"),
    }
}

#[test]
fn every_example_in_the_reference_is_what_the_library_does() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (p, d) = rt.block_on(async {
        let any = "127.0.0.1:0".parse().unwrap();
        (
            intentkit_sandbox::pientegra::Simulator::start(
                Default::default(),
                Arc::new(SystemClock),
                any,
            )
            .await
            .unwrap(),
            intentkit_sandbox::decentro::Simulator::start(
                Default::default(),
                Arc::new(SystemClock),
                any,
            )
            .await
            .unwrap(),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let config = CString::new(format!(
        "[ffi]\ndatabase = \"{}\"\n\n[pientegra.tr-main]\nbase_url = \"{}\"\napi_key = \"pk_sandbox\"\n\
         webhook_secret = \"whsec_c2FuZGJveA\"\n\n[decentro.in-main]\nbase_url = \"{}\"\n\
         client_id = \"sandbox_client\"\nclient_secret = \"sandbox_client_secret\"\n\
         module_secret = \"sandbox_module_secret\"\nprovider_secret = \"sandbox_provider_secret\"\n",
        dir.path().join("guide.db").display(),
        p.base_url(),
        d.base_url()
    ))
    .unwrap();
    let mut handle: *mut IntentkitHandle = std::ptr::null_mut();
    let mut e = IntentkitError {
        status: IntentkitStatus::Ok,
        reason: None,
        message: None,
        retryable: false,
        intent_id: None,
    };
    assert_eq!(
        intentkit_open(
            Some(char_p::Ref::from(config.as_c_str())),
            Some(handle.as_out()),
            Some(&mut e),
        ),
        IntentkitStatus::Ok,
        "{e:?}"
    );
    assert!(!handle.is_null());

    let blocks = blocks();
    assert!(
        blocks.len() >= 20,
        "the reference has {} examples",
        blocks.len()
    );
    let print = std::env::var_os("INTENTKIT_GUIDE_PRINT").is_some();
    let mut vars: HashMap<String, Value> = HashMap::new();
    let mut problems = Vec::new();
    let mut i = 0;
    let mut executed = 0;
    while i < blocks.len() {
        let b = &blocks[i];
        assert_eq!(
            b.role, "request",
            "line {}: a {} without its request",
            b.line, b.role
        );
        let expect = blocks
            .get(i + 1)
            .filter(|n| n.example == b.example && n.role != "request")
            .unwrap_or_else(|| panic!("line {}: {} has no answer or error", b.line, b.example));
        // A webhook for the deposit, signed as Pientegra signs it.
        if let Some(pid) = vars
            .get("create-deposit")
            .and_then(|v| v.pointer("/providerRef/pientegra/intentId"))
            .and_then(Value::as_str)
        {
            let body = format!(
                r#"{{"eventId":"evt-guide-1","eventType":"intent.approved","occurredAt":"2026-11-29T10:15:02.481Z","intent":{{"id":"{pid}","referenceNo":"D-2026-0000001","externalUserId":"user-42","requestedAmount":"150000","amount":"150000","currency":"TRY","status":"APPROVED"}}}}"#
            );
            let t = SystemClock.now().unix_millis();
            vars.insert(
                "signature".into(),
                Value::String(signature_header(
                    &Secret::new("whsec_c2FuZGJveA"),
                    t,
                    body.as_bytes(),
                )),
            );
            vars.insert(
                "body".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            );
        }
        let mut request = b.json.clone();
        substitute(&mut request, &vars);
        let request = CString::new(request.to_string()).unwrap();
        let call = op(b
            .call
            .as_deref()
            .unwrap_or_else(|| panic!("line {}: call=?", b.line)));
        let mut out: Option<char_p::Box> = None;
        let st = call(
            handle,
            Some(char_p::Ref::from(request.as_c_str())),
            Some(out.manually_drop_mut().as_out()),
            Some(&mut e),
        );
        let actual: Value = if st == IntentkitStatus::Ok {
            let v = serde_json::from_str(out.as_ref().unwrap().to_str()).unwrap();
            intentkit_string_free(out.take());
            v
        } else {
            serde_json::json!({
                "status": c_name(st),
                "reason": e.reason.as_ref().map(|r| r.to_str().to_string()),
                "retryable": e.retryable,
                "intentId": e.intent_id.as_ref().map(|r| r.to_str().to_string()),
            })
        };
        if print {
            println!(
                "{} (line {}):\n{}",
                b.example,
                expect.line,
                serde_json::to_string_pretty(&actual).unwrap()
            );
        }
        let mut mine = Vec::new();
        if (expect.role == "answer") == (st == IntentkitStatus::Ok) {
            matches(&expect.json, &actual, "", &mut mine);
        } else {
            mine.push(format!(
                "expected an {}, the call returned {}: {actual}",
                expect.role,
                c_name(st)
            ));
        }
        for m in mine {
            problems.push(format!("{} (line {}): {m}", b.example, expect.line));
        }
        vars.insert(b.example.clone(), actual);
        executed += 1;
        i += 2;
    }
    intentkit_error_free(Some(&mut e));
    intentkit_close(handle);
    assert!(
        problems.is_empty(),
        "the reference differs from the library:\n{}",
        problems.join("\n")
    );
    println!("guide: {executed} examples executed, all as documented");
}
