//! Decentro's callback body, as the receiver hands it to core: `parse_callback`.
//!
//! The callback is unsigned, so anyone can send anything. Invariants: nothing panics; whatever
//! is accepted is an unconfirmed claim (never proof), a `SUCCESS` for a Decentro transaction
//! whose id is a plain provider id (it goes into the status API's URL), deduplicated by that id.
#![no_main]

use intentkit_core::provider::decentro::parse_callback;
use intentkit_core::provider::{Proof, check_id};
use intentkit_core::{ProviderRef, Signal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match parse_callback(body) {
        Ok(n) => {
            assert_eq!(
                n.proof,
                Proof::Claim,
                "an unsigned callback is only a claim"
            );
            let Some(ProviderRef::Decentro { txn_id }) = &n.event.provider_ref else {
                panic!("an accepted callback names no Decentro transaction: {n:?}");
            };
            assert!(check_id("decentroTxnId", txn_id).is_ok(), "{txn_id:?}");
            assert_eq!(
                n.event.provider_event_id.as_deref(),
                Some(format!("callback:{txn_id}:SUCCESS").as_str())
            );
            assert!(matches!(n.event.signal, Signal::Approved { .. }), "{n:?}");
            if let Some(r) = &n.our_reference {
                assert!(check_id("referenceId", r).is_ok(), "{r:?}");
            }
        }
        Err(e) => {
            // The receiver logs the message and answers with the code.
            let _ = (e.to_string(), e.code());
        }
    }
});
