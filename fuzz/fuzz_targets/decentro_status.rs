//! Decentro's API answers, as the adapter reads them: the status reply (`parse_status_reply`,
//! then `StatusReply::check` against an intent) and the create response
//! (`parse_create_response`). The whole input is the response body.
//!
//! Invariants: nothing panics; a reply proves something about an intent (`Lookup::Fact`) only
//! when it names the transaction asked about and the intent's own `reference_id`; an accepted
//! create response issues a hand-off that expires ten minutes after the request.
#![no_main]

use std::sync::OnceLock;

use intentkit_core::provider::Lookup;
use intentkit_core::provider::decentro::{
    LINK_TTL_MS, parse_create_response, parse_status_reply, parse_status_response,
};
use intentkit_core::{
    AccountName, AccountVerificationRequest, IdempotencyKey, Intent, IntentRequest, Metadata,
    PartnerReference, ProviderRef, Signal, Timestamp, UserId,
};
use libfuzzer_sys::fuzz_target;

const NOW_MS: i64 = 1_795_000_000_000;
/// The transaction the intent is asked about; the seeds name it.
const TXN: &str = "DCTRSIM0000000001";
/// The intent's `reference_id` at Decentro, fixed (instead of its random id) so that seeds can
/// name it.
const REFERENCE_ID: &str = "0190f0a1b2c37d4e8f90a1b2c3d4e5f6";

fn intent() -> &'static Intent {
    static INTENT: OnceLock<Intent> = OnceLock::new();
    INTENT.get_or_init(|| {
        let request = IntentRequest::AccountVerification(AccountVerificationRequest {
            account: AccountName::new("in-main").expect("a valid account name"),
            reference: PartnerReference::new("verify-1").expect("a valid reference"),
            user_id: UserId::new("user-1").expect("a valid user id"),
            purpose_message: None,
            generate_qr: true,
            generate_uri: true,
            qr_with_logo: false,
            metadata: Metadata::default(),
        });
        let key = IdempotencyKey::new("fuzz-key-1").expect("a valid key");
        let mut intent = Intent::new(request, key, Timestamp::from_unix_millis(NOW_MS))
            .expect("a valid verification");
        intent.provider_key = REFERENCE_ID.to_string();
        intent
    })
}

fuzz_target!(|body: &[u8]| {
    let intent = intent();
    let now = Timestamp::from_unix_millis(NOW_MS);

    match parse_status_reply(body) {
        Ok(reply) => {
            // Asked about the transaction it names, and about another one.
            let own = reply.txn_id.clone();
            for asked in [own.as_str(), TXN] {
                let lookup = reply.clone().check(intent, asked);
                if let Lookup::Fact(event) = &lookup {
                    assert_eq!(reply.txn_id, asked, "a fact about another transaction");
                    assert_eq!(
                        reply.reference_id.as_deref(),
                        Some(REFERENCE_ID),
                        "a fact about another reference_id"
                    );
                    assert!(
                        matches!(&event.provider_ref, Some(ProviderRef::Decentro { txn_id }) if txn_id == asked),
                        "{event:?}"
                    );
                }
            }
            assert_eq!(
                parse_status_response(body).map_err(|e| e.code().to_string()),
                Ok(reply.event),
            );
        }
        Err(e) => {
            let _ = (e.to_string(), e.code(), e.http_status(), e.is_definitive());
        }
    }

    match parse_create_response(body, now) {
        Ok(created) => match created.event.signal {
            Signal::HandoffIssued { expires_at, .. } => {
                assert_eq!(expires_at, Some(now.plus_millis(LINK_TTL_MS)));
            }
            other => panic!("a create response issued {other:?}"),
        },
        Err(e) => {
            let _ = (e.to_string(), e.code(), e.http_status(), e.is_definitive());
        }
    }
});
