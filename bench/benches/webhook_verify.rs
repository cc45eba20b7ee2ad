//! Pientegra webhook verification and parsing per second, on one core, beside the raw
//! HMAC-SHA256 rate over the same bytes in the same run.
//!
//! Run: `cargo bench -p intentkit-bench --bench webhook_verify`

use std::hint::black_box;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use intentkit_core::Timestamp;
use intentkit_core::provider::Secret;
use intentkit_core::provider::pientegra::{self, WebhookSecrets};
use sha2::Sha256;

/// A typical delivery: the contract's body shape with realistic ids.
const BODY: &str = r#"{"eventId":"0193a5c2-7e41-7b6a-9f00-3c2d1e0f4a5b","eventType":"intent.approved","occurredAt":"2026-11-22T10:15:02.481Z","intent":{"id":"0193a5c1-0f2e-7d11-8c3b-5a6f7e8d9c0b","referenceNo":"D-2026-0000123","externalUserId":"user-12345","requestedAmount":"100000","amount":"100000","currency":"TRY","status":"APPROVED"}}"#;

fn rate(mut f: impl FnMut()) -> f64 {
    // Warm up, then run whole batches for about a second.
    for _ in 0..10_000 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..10_000 {
            f();
        }
        n += 10_000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secrets = WebhookSecrets {
        current: Secret::new("whsec_Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4OTA"),
        previous: None,
    };
    let t = 1_795_000_000_000;
    let now = Timestamp::from_unix_millis(t + 1_500);
    let header = pientegra::signature_header(&secrets.current, t, BODY.as_bytes());
    let signed_bytes = format!("{t}.{BODY}");

    let key = secrets.current.expose().as_bytes().to_vec();
    let raw = rate(|| {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
        mac.update(black_box(signed_bytes.as_bytes()));
        black_box(mac.finalize().into_bytes());
    });
    let full = rate(|| {
        let parsed = pientegra::parse_webhook(
            Some(black_box(&header)),
            black_box(BODY.as_bytes()),
            &secrets,
            now,
        );
        assert!(matches!(parsed, Ok(Some(_))));
        black_box(parsed.ok());
    });

    println!(
        "pientegra webhook verification ({} byte body, one thread)",
        BODY.len()
    );
    println!("  baseline raw HMAC-SHA256/s          {raw:>12.0}");
    println!(
        "  verify + parse + map/s              {full:>12.0}   {:.2}x baseline, target >= 200,000/s  {}",
        full / raw,
        if full >= 200_000.0 {
            "ok"
        } else {
            "BELOW TARGET"
        }
    );
    println!("  reproduce: cargo bench -p intentkit-bench --bench webhook_verify");
}
