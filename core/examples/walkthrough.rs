//! A walk through the core: a deposit and a verification recorded in `data/intentkit.db`,
//! provider signals applied (including a redelivery and a contradiction), and the outbox read
//! and acknowledged by a named consumer.
//!
//! Run it twice: the second run finds every create replayed, every signal already applied,
//! and nothing new in the outbox. That is the exactly-once guarantee, across processes.
//!
//! `cargo run -p intentkit-core --example walkthrough [-- path/to/file.db]`
//!
//! Provider calls are not made here: the signals stand in for what the Pientegra and Decentro
//! adapters will deliver.

use std::error::Error;
use std::sync::Arc;

use intentkit_core::{
    AccountName, AccountVerificationRequest, ApplyOutcome, Cause, ConsumerName, CoreError,
    Currency, DepositRequest, IdempotencyKey, IntentEvent, IntentRequest, Ledger, Metadata,
    MinorUnits, PartnerReference, PayerHandoff, ProviderRef, Signal, SqliteConfig, SqliteStore,
    SystemClock, Timestamp, UserId, VerifiedPayer,
};

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "data/intentkit.db".into());
    if let Some(parent) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(parent)?;
    }
    let store = SqliteStore::open(&path, SqliteConfig::default())?;
    let ledger = Ledger::new(Arc::new(store), Arc::new(SystemClock));
    println!("store: {path}\n");

    // A Pientegra hosted deposit of 1,000.00 TRY.
    let deposit = ledger.create(
        IntentRequest::Deposit(DepositRequest {
            account: AccountName::new("tr-main")?,
            amount: MinorUnits::new(100_000)?,
            currency: Currency::TRY,
            reference: PartnerReference::new("order-1001")?,
            user_id: UserId::new("user-12345")?,
            user_label: Some("Alex M.".into()),
            metadata: Metadata::default(),
        }),
        IdempotencyKey::new("walkthrough-deposit-1")?,
    )?;
    let id = deposit.intent.id;
    println!(
        "create deposit {id}: {}",
        if deposit.replayed {
            "replayed (this key was used before)"
        } else {
            "recorded"
        }
    );

    let steps = [
        (
            "create response",
            IntentEvent::new(
                Signal::HandoffIssued {
                    handoff: PayerHandoff::HostedPage {
                        url: "https://pay.pientegra.example/d/signed-token".into(),
                    },
                    expires_at: Some(deposit.intent.created_at.plus_millis(30 * 60_000)),
                },
                Cause::Api,
            )
            .with_provider_ref(ProviderRef::Pientegra {
                intent_id: format!("pi-{}", id.as_uuid().simple()),
                reference_no: Some("D-2026-0000123".into()),
            }),
        ),
        (
            "webhook intent.approved (95,000 approved)",
            approved(95_000, "evt-approve-1")?,
        ),
        (
            "same webhook redelivered",
            approved(95_000, "evt-approve-1")?,
        ),
        (
            "webhook intent.rejected (contradicts)",
            IntentEvent::new(Signal::Rejected { reason: None }, Cause::Webhook)
                .with_event_id("evt-reject-1"),
        ),
    ];
    for (what, event) in steps {
        report(what, ledger.apply(id, event)?);
    }

    // A Decentro UPI penny-pull verification, settled by the status API.
    let verification = ledger.create(
        IntentRequest::AccountVerification(AccountVerificationRequest {
            account: AccountName::new("in-main")?,
            reference: PartnerReference::new("kyc-77")?,
            user_id: UserId::new("user-77")?,
            purpose_message: Some("Account verification".into()),
            generate_qr: true,
            generate_uri: true,
            qr_with_logo: false,
            metadata: Metadata::default(),
        }),
        IdempotencyKey::new("walkthrough-verification-1")?,
    )?;
    let vid = verification.intent.id;
    println!("\ncreate verification {vid}");
    report(
        "create response",
        ledger.apply(
            vid,
            IntentEvent::new(
                Signal::HandoffIssued {
                    handoff: PayerHandoff::Upi {
                        short_link: "https://dcnt.example/u/abc".into(),
                        qr_code: None,
                        gpay_uri: Some("tez://upi/pay?pa=verify@dcnt".into()),
                        phonepe_uri: None,
                        paytm_uri: None,
                    },
                    expires_at: Some(verification.intent.created_at.plus_millis(10 * 60_000)),
                },
                Cause::Api,
            )
            .with_provider_ref(ProviderRef::Decentro {
                txn_id: format!("DCTR{}", &vid.as_uuid().simple().to_string()[..16]),
            }),
        )?,
    );
    report(
        "status API: SUCCESS",
        ledger.apply(
            vid,
            IntentEvent::new(
                Signal::Approved {
                    amount: MinorUnits::new(100)?,
                    payer: Some(VerifiedPayer {
                        name: Some("A Kumar".into()),
                        masked_account_number: Some("XXXXXXXX1234".into()),
                        ifsc: Some("HDFC0000001".into()),
                        vpa: Some("akumar@okhdfc".into()),
                        bank_reference: Some("412345678901".into()),
                    }),
                },
                Cause::StatusPoll,
            ),
        )?,
    );

    // The host's side: read the outbox from where it last acknowledged, credit on
    // intent.approved using the business key as its ledger's unique key, then acknowledge.
    let consumer = ConsumerName::new("walkthrough")?;
    let events = ledger.poll(&consumer, 100)?;
    println!(
        "\noutbox for consumer '{consumer}' (resumes after seq {}):",
        ledger.position(&consumer)?
    );
    if events.is_empty() {
        println!("  nothing new: every event was acknowledged on an earlier run");
    }
    for e in &events {
        let intent = &e.payload.intent;
        let amount = intent
            .approved_amount
            .map(|a| format!(" approved_amount={}", money(a.get(), intent.currency)))
            .unwrap_or_default();
        println!(
            "  #{:<3} {:<22} key={}{amount}",
            e.seq, e.event_type, e.business_key
        );
    }
    if let Some(last) = events.last() {
        ledger.ack(&consumer, last.seq)?;
        println!("acknowledged through seq {}", last.seq);
    }
    println!("\nhistory of {id}:");
    for t in ledger.history(id)? {
        println!(
            "  {} {:>15} -> {:<15} by {:<11} {}",
            Timestamp::to_rfc3339(t.at),
            t.from.map_or("-", |s| s.as_str()),
            t.to,
            t.cause.as_str(),
            t.provider_event_id.unwrap_or_default()
        );
    }
    Ok(())
}

fn approved(amount: i64, event_id: &str) -> Result<IntentEvent, CoreError> {
    Ok(IntentEvent::new(
        Signal::Approved {
            amount: MinorUnits::new(amount)?,
            payer: None,
        },
        Cause::Webhook,
    )
    .with_event_id(event_id))
}

fn money(minor: i64, currency: Currency) -> String {
    format!("{}.{:02} {currency}", minor / 100, minor % 100)
}

fn report(what: &str, outcome: ApplyOutcome) {
    let verdict = match &outcome {
        ApplyOutcome::Applied { transition, .. } => format!(
            "applied: {} -> {}",
            transition.from.map_or("-", |s| s.as_str()),
            transition.to
        ),
        ApplyOutcome::Duplicate { .. } => "duplicate: nothing written".to_string(),
        ApplyOutcome::Stale { .. } => "stale: intent already moved past it".to_string(),
        ApplyOutcome::Anomaly { anomaly, .. } => {
            format!("ANOMALY recorded, not applied ({})", anomaly.detail)
        }
    };
    println!("  {what:<42} {verdict}");
}
