//! The ledger over each real store (SQLite files, PostgreSQL databases): atomicity, idempotent
//! create under threads and processes, dedup, anomalies, outbox cursors across reopen, and
//! migrations. `conformance.rs` holds the tests every backend must pass; `backends!` below
//! runs each against SQLite and (with `INTENTKIT_TEST_POSTGRES`) PostgreSQL. The tests after it
//! are about SQLite alone (its journal mode, its legacy schemas).

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};

use intentkit_core::store::sqlite::SqliteStore;
use intentkit_core::store::{ParkOutcome, ParkedEvent};
use intentkit_core::{
    AccountName, ApplyOutcome, Cause, ConsumerName, CoreError, Currency, DepositRequest, EventType,
    IdempotencyKey, Intent, IntentEvent, IntentRequest, IntentStatus, Ledger, ManualClock,
    Metadata, MinorUnits, OutboxEvent, PartnerReference, PayerHandoff, Proof, Provider,
    ProviderRef, Signal, SqliteConfig, StoreError, Timestamp, UserId,
};
use proptest::prelude::*;

const T0: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

fn deposit(amount: i64) -> IntentRequest {
    IntentRequest::Deposit(DepositRequest {
        account: AccountName::new("tr-main").unwrap(),
        amount: MinorUnits::new(amount).unwrap(),
        currency: Currency::TRY,
        reference: PartnerReference::new("order-42").unwrap(),
        user_id: UserId::new("user-12345").unwrap(),
        user_label: None,
        metadata: Metadata::default(),
    })
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).unwrap()
}

fn handoff(provider_intent: &str) -> IntentEvent {
    IntentEvent::new(
        Signal::HandoffIssued {
            handoff: PayerHandoff::HostedPage {
                url: format!("https://pay.example/d/{provider_intent}"),
            },
            expires_at: Some(T0.plus_millis(15 * 60_000)),
        },
        Cause::Api,
    )
    .with_provider_ref(ProviderRef::Pientegra {
        intent_id: provider_intent.into(),
        reference_no: Some("D-2026-0000123".into()),
    })
}

fn approved(amount: i64, event_id: &str) -> IntentEvent {
    IntentEvent::new(
        Signal::Approved {
            amount: MinorUnits::new(amount).unwrap(),
            payer: None,
        },
        Cause::Webhook,
    )
    .with_event_id(event_id)
}

fn rejected(event_id: &str) -> IntentEvent {
    IntentEvent::new(
        Signal::Rejected {
            reason: Some("no transfer".into()),
        },
        Cause::Webhook,
    )
    .with_event_id(event_id)
}

fn all_events(ledger: &Ledger) -> Vec<OutboxEvent> {
    let mut out = Vec::new();
    loop {
        let batch = ledger
            .events_after(out.last().map_or(0, |e: &OutboxEvent| e.seq), 1_000)
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

fn count(events: &[OutboxEvent], t: EventType) -> usize {
    events.iter().filter(|e| e.event_type == t).count()
}

mod conformance;
mod db;
#[cfg(feature = "postgres")]
mod postgres_outbox;
#[cfg(feature = "postgres")]
mod postgres_pool;

use db::Db;

fn any_signal(event_pool: u8) -> impl Strategy<Value = IntentEvent> {
    (0u8..8, prop::option::of(0..event_pool), prop::bool::ANY).prop_map(|(k, n, lower)| {
        let amount = if lower { 95_000 } else { 100_000 };
        let mut ev = match k {
            0 => handoff("p-prop"),
            1 => IntentEvent::new(Signal::PayerConfirmed, Cause::Webhook),
            2 | 3 => approved(amount, "unused"),
            4 => rejected("unused"),
            5 => IntentEvent::new(Signal::Expired, Cause::Timer),
            6 => IntentEvent::new(Signal::LateArrival, Cause::Webhook),
            _ => IntentEvent::new(Signal::Cancel { reason: None }, Cause::Api),
        };
        ev.provider_event_id = n.map(|n| format!("evt-{n}"));
        ev
    })
}

fn assert_outbox_invariants(ledger: &Ledger, intent: &Intent) -> Result<(), TestCaseError> {
    // Other cases share the database: only this intent's events count.
    let events: Vec<_> = all_events(ledger)
        .into_iter()
        .filter(|e| e.intent_id == intent.id)
        .collect();
    prop_assert!(count(&events, EventType::Approved) <= 1);
    let history = ledger.history(intent.id).unwrap();
    prop_assert_eq!(
        intentkit_core::lifecycle::replay(&history),
        Some(intent.status)
    );
    let status_events = events
        .iter()
        .filter(|e| e.event_type != EventType::Anomaly)
        .count();
    prop_assert_eq!(status_events, history.len(), "one event per history row");
    Ok(())
}

fn parked(account: Option<&str>, lookup: &str, event: IntentEvent, proof: Proof) -> ParkedEvent {
    ParkedEvent {
        id: 0,
        provider: Provider::Pientegra,
        account: account.map(|a| AccountName::new(a).unwrap()),
        lookup_key: lookup.into(),
        intent_id: None,
        proof,
        received_at: T0,
        event,
    }
}

/// Every row the parking tests keep (all under Pientegra, for two accounts).
fn all_parked(ledger: &Ledger) -> Vec<ParkedEvent> {
    ["in-main", "tr-main"]
        .into_iter()
        .flat_map(|a| {
            let a = AccountName::new(a).unwrap();
            ledger
                .parked_after(Provider::Pientegra, Some(&a), 0, 100)
                .unwrap()
        })
        .collect()
}

fn early_approval(event_id: &str) -> IntentEvent {
    approved(95_000, event_id).with_provider_ref(ProviderRef::Pientegra {
        intent_id: "p-late".into(),
        reference_no: None,
    })
}

fn approved_event(n: u32) -> IntentEvent {
    approved(100_000, &format!("evt-ok-{n}"))
}

/// Random deliveries, with redelivered event ids and contradictions, through the real store: a
/// final status is never left, at most one `intent.approved` is written, every history row has
/// its event, and the history replays to the stored status. (Every case in one database, each
/// on an intent of its own.)
fn random_deliveries_keep_the_invariants(db: &Db) {
    let (ledger, clock) = db.open();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    let case = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&prop::collection::vec(any_signal(5), 1..25), |events| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let id = ledger
                .create(deposit(100_000), key(&format!("prop-{n}")))
                .unwrap()
                .intent
                .id;
            let mut final_status: Option<IntentStatus> = None;
            for mut ev in events {
                clock.advance_millis(1_000);
                // Event ids are per case, as a provider's are per intent.
                ev.provider_event_id = ev.provider_event_id.map(|e| format!("{n}-{e}"));
                if let Some(ProviderRef::Pientegra { intent_id, .. }) = &mut ev.provider_ref {
                    *intent_id = format!("{intent_id}-{n}");
                }
                match ledger.apply(id, ev) {
                    Ok(_) => {}
                    Err(e) => prop_assert_eq!(e.code(), "INVALID_TRANSITION"),
                }
                let now = ledger.get(id).unwrap().status;
                if let Some(f) = final_status {
                    prop_assert_eq!(now, f, "left a final status");
                } else if now.is_final() {
                    final_status = Some(now);
                }
            }
            assert_outbox_invariants(&ledger, &ledger.get(id).unwrap())
        })
        .unwrap();
}

/// Each name becomes a test per backend: `sqlite::<name>` and `postgres::<name>`.
macro_rules! backends {
    ($($path:path => $name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { $path(&super::Db::sqlite()) })*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(#[test] fn $name() {
                if let Some(db) = super::Db::postgres() { $path(&db) }
            })*
        }
    };
}

backends! {
    crate::conformance::create_records_the_intent_its_history_and_an_event_together => create_records_the_intent_its_history_and_an_event_together,
    crate::conformance::same_key_same_request_returns_the_original_intent => same_key_same_request_returns_the_original_intent,
    crate::conformance::same_key_different_request_is_an_idempotency_conflict => same_key_different_request_is_an_idempotency_conflict,
    crate::conformance::concurrent_creates_with_one_key_yield_one_intent => concurrent_creates_with_one_key_yield_one_intent,
    crate::conformance::a_full_deposit_flow_writes_one_event_per_transition => a_full_deposit_flow_writes_one_event_per_transition,
    crate::conformance::a_redelivered_provider_event_is_a_duplicate_even_if_its_body_differs => a_redelivered_provider_event_is_a_duplicate_even_if_its_body_differs,
    crate::conformance::a_contrary_outcome_is_recorded_once_as_an_anomaly_and_never_applied => a_contrary_outcome_is_recorded_once_as_an_anomaly_and_never_applied,
    crate::conformance::concurrent_contradicting_deliveries_settle_once => concurrent_contradicting_deliveries_settle_once,
    crate::conformance::commits_grouped_into_one_transaction_keep_their_own_outcomes => commits_grouped_into_one_transaction_keep_their_own_outcomes,
    crate::conformance::a_failed_commit_leaves_no_outbox_event_and_no_change => a_failed_commit_leaves_no_outbox_event_and_no_change,
    crate::conformance::one_provider_intent_cannot_map_to_two_of_ours => one_provider_intent_cannot_map_to_two_of_ours,
    crate::conformance::a_named_consumer_resumes_where_it_acked_after_reopening => a_named_consumer_resumes_where_it_acked_after_reopening,
    crate::conformance::acking_past_the_newest_event_is_refused => acking_past_the_newest_event_is_refused,
    crate::conformance::cancel_after_payment_is_refused_with_a_typed_error => cancel_after_payment_is_refused_with_a_typed_error,
    crate::conformance::migrations_apply_once_and_a_newer_schema_is_refused => migrations_apply_once_and_a_newer_schema_is_refused,
    crate::conformance::two_processes_share_one_database => two_processes_share_one_database,
    crate::conformance::list_filters_and_pages_newest_first_without_gaps_or_repeats => list_filters_and_pages_newest_first_without_gaps_or_repeats,
    crate::conformance::expiry_scan_returns_only_open_intents_past_their_deadline => expiry_scan_returns_only_open_intents_past_their_deadline,
    crate::conformance::a_transient_error_is_noted_on_a_created_intent_without_a_transition => a_transient_error_is_noted_on_a_created_intent_without_a_transition,
    crate::conformance::a_parked_event_is_found_only_for_an_intent_of_the_account_that_received_it => a_parked_event_is_found_only_for_an_intent_of_the_account_that_received_it,
    crate::conformance::parking_is_bounded_per_account_and_deduplicated => parking_is_bounded_per_account_and_deduplicated,
    crate::conformance::a_provider_event_id_is_deduplicated_per_intent => a_provider_event_id_is_deduplicated_per_intent,
    crate::conformance::a_sweep_covers_what_the_provider_has_not_answered_for_good_and_nothing_else => a_sweep_covers_what_the_provider_has_not_answered_for_good_and_nothing_else,
    crate::conformance::a_lease_has_one_holder_and_its_fence_moves_when_it_changes_hands => a_lease_has_one_holder_and_its_fence_moves_when_it_changes_hands,
    crate::conformance::a_rate_slot_is_refused_within_its_interval_and_free_after => a_rate_slot_is_refused_within_its_interval_and_free_after,
    crate::conformance::a_rate_slot_with_tolerance_runs_ahead_and_pushes_later_takers_back => a_rate_slot_with_tolerance_runs_ahead_and_pushes_later_takers_back,
    crate::conformance::concurrent_takers_of_one_free_rate_slot_get_it_once => concurrent_takers_of_one_free_rate_slot_get_it_once,
    crate::random_deliveries_keep_the_invariants => random_deliveries_keep_the_invariants,
}

/// Entry point for the child processes of the next test. It does nothing unless the parent
/// set `INTENTKIT_CHILD_DB`; it is `#[ignore]`d so that a plain `cargo test` skips it.
#[test]
#[ignore = "child-process entry point for two_processes_share_one_database"]
fn child_worker() {
    let Ok(db) = std::env::var("INTENTKIT_CHILD_DB") else {
        return;
    };
    let db = Db::from_child_env(&db);
    let worker: usize = std::env::var("INTENTKIT_CHILD_ID")
        .unwrap()
        .parse()
        .unwrap();
    let (ledger, _) = db.open();
    for n in 0..20 {
        // Both processes race to create the same 20 intents, then to settle each one with
        // contradicting outcomes.
        let created = ledger
            .create(deposit(100_000 + n), key(&format!("shared-{n}")))
            .unwrap();
        let id = created.intent.id;
        let ev = if worker == 0 {
            approved(100_000 + n, &format!("w{worker}-{n}"))
        } else {
            rejected(&format!("w{worker}-{n}"))
        };
        ledger.apply(id, ev).unwrap();
    }
}

#[test]
fn the_database_runs_in_wal_mode_with_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let _store = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
    let side = rusqlite::Connection::open(&path).unwrap();
    let mode: String = side
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_version_2_database_keeps_its_parked_events_as_claims_of_unknown_account() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0), (2, 0);",
        )
        .unwrap();
        conn.execute_batch(include_str!("../../src/store/sqlite/0001_init.sql"))
            .unwrap();
        conn.execute_batch(include_str!("../../src/store/sqlite/0002_engine.sql"))
            .unwrap();
        conn.execute(
            "INSERT INTO parked_events (provider, lookup_key, received_at, event) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                "pientegra",
                "p-late",
                T0.unix_millis(),
                serde_json::to_string(&early_approval("evt-old")).unwrap()
            ],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
    assert_eq!(store.schema_version().unwrap(), 6);
    let ledger = Ledger::new(Arc::new(store), Arc::new(ManualClock::new(T0)));
    let rows = ledger
        .parked_after(Provider::Pientegra, None, 0, 10)
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].account, None,
        "the account that received it is unknown"
    );
    assert_eq!(
        rows[0].proof,
        Proof::Claim,
        "so it is confirmed before it applies"
    );
    assert_eq!(rows[0].event, early_approval("evt-old"));
}
