//! The Pientegra webhook as the receiver hands it to core: a `Pientegra-Signature` header value
//! and the raw body, into `verify_signature` and `parse_webhook`.
//!
//! The first byte picks a mode; the rest is the delivery.
//! - Even: as received. Up to the first `\n` is the header value (absent when bit 1 is set),
//!   the rest the body. This reaches the header parser and the timestamp window; the HMAC
//!   stops everything else.
//! - Odd: the rest is the body, signed as Pientegra would, so the JSON parser and the checks
//!   after it are reached. With bit 1 set it is signed with the previous secret, as during a
//!   rotation; with bit 2 also set, that secret's rotation window has ended.
//!
//! Invariants: nothing panics; a body signed with the current secret, or with the previous one
//! inside its window, always verifies, so it can only be refused as a malformed body; one
//! signed with the previous secret after its window never verifies; whatever is accepted is
//! signed proof naming a Pientegra intent.
#![no_main]

use intentkit_core::provider::pientegra::{
    PreviousSecret, WebhookSecrets, parse_webhook, signature_header, verify_signature,
};
use intentkit_core::provider::{Proof, Secret, WebhookError};
use intentkit_core::{ProviderRef, Timestamp};
use libfuzzer_sys::fuzz_target;

/// The receiver's clock, fixed so that the committed seeds stay inside the signature window.
const NOW_MS: i64 = 1_795_000_000_000;
const CURRENT: &str = "whsec_fuzz_current";
const PREVIOUS: &str = "whsec_fuzz_previous";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let now = Timestamp::from_unix_millis(NOW_MS);
    let signed = mode & 1 == 1;
    let signer = if mode & 2 == 0 { CURRENT } else { PREVIOUS };
    // The previous secret's window: ten more minutes, or ended at this very instant.
    let window_ended = signed && mode & 6 == 6;
    let until = if window_ended {
        now
    } else {
        now.plus_millis(10 * 60 * 1_000)
    };
    let secrets = WebhookSecrets {
        current: Secret::new(CURRENT),
        previous: Some(PreviousSecret {
            secret: Secret::new(PREVIOUS),
            until,
        }),
    };

    let (header, body): (Option<String>, &[u8]) = if signed {
        let header = signature_header(&Secret::new(signer), NOW_MS, rest);
        (Some(header), rest)
    } else {
        let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let (line, body) = rest.split_at(split);
        let body = body.get(1..).unwrap_or_default();
        // An HTTP header value is bytes; the receiver passes what decodes as text.
        let header = (mode & 2 == 0).then(|| String::from_utf8_lossy(line).into_owned());
        (header, body)
    };

    let verified = verify_signature(header.as_deref(), body, &secrets, now);
    let parsed = parse_webhook(header.as_deref(), body, &secrets, now);

    if window_ended {
        assert_eq!(
            verified,
            Err(WebhookError::SignatureMismatch),
            "a retired secret verified"
        );
        assert_eq!(
            parsed.as_ref().err(),
            Some(&WebhookError::SignatureMismatch)
        );
    } else if signed {
        assert_eq!(
            verified,
            Ok(()),
            "a body signed with a configured secret must verify"
        );
        if let Err(e) = &parsed {
            assert!(
                matches!(e, WebhookError::MalformedBody(_)),
                "a signed body can only be refused as malformed, got {e:?}"
            );
        }
    }
    match parsed {
        Ok(Some(n)) => {
            assert!(verified.is_ok(), "parsed a delivery that does not verify");
            assert_eq!(n.proof, Proof::Signed);
            assert!(
                matches!(n.event.provider_ref, Some(ProviderRef::Pientegra { .. })),
                "{n:?}"
            );
            assert!(n.event.provider_event_id.is_some(), "{n:?}");
        }
        Ok(None) => assert!(
            verified.is_ok(),
            "acknowledged a delivery that does not verify"
        ),
        Err(e) => {
            // The receiver logs the message and answers with the code.
            let _ = (e.to_string(), e.code());
        }
    }
});
