//! The ledger over the SQLite store, on real files: atomicity, idempotent create under threads
//! and processes, dedup, anomalies, outbox cursors across reopen, and migrations.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
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

fn open(path: &Path) -> (Ledger, ManualClock) {
    let store = SqliteStore::open(path, SqliteConfig::default()).expect("open store");
    let clock = ManualClock::new(T0);
    (Ledger::new(Arc::new(store), Arc::new(clock.clone())), clock)
}

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

#[test]
fn create_records_the_intent_its_history_and_an_event_together() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = open(&dir.path().join("k.db"));
    let created = ledger.create(deposit(100_000), key("k-1")).unwrap();
    assert!(!created.replayed);
    let got = ledger.get(created.intent.id).unwrap();
    assert_eq!(got, created.intent);
    assert_eq!(got.status, IntentStatus::Created);
    let history = ledger.history(got.id).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].from, history[0].to, history[0].cause),
        (None, IntentStatus::Created, Cause::Api)
    );
    let events = all_events(&ledger);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, EventType::Created);
    assert_eq!(events[0].business_key, format!("intent.created:{}", got.id));
    assert_eq!(events[0].payload.intent, got);
}

#[test]
fn same_key_same_request_returns_the_original_intent() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, clock) = open(&dir.path().join("k.db"));
    let first = ledger.create(deposit(100_000), key("k-1")).unwrap();
    clock.advance_millis(5_000);
    let again = ledger.create(deposit(100_000), key("k-1")).unwrap();
    assert!(again.replayed);
    assert_eq!(again.intent, first.intent);
    assert_eq!(count(&all_events(&ledger), EventType::Created), 1);
}

#[test]
fn same_key_different_request_is_an_idempotency_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = open(&dir.path().join("k.db"));
    let first = ledger.create(deposit(100_000), key("k-1")).unwrap();
    let err = ledger.create(deposit(100_001), key("k-1")).unwrap_err();
    assert_eq!(err.code(), "IDEMPOTENCY_CONFLICT");
    assert!(!err.is_retryable());
    let CoreError::IdempotencyConflict { existing, .. } = err else {
        panic!("wrong error {err:?}");
    };
    assert_eq!(existing, first.intent.id);
}

#[test]
fn concurrent_creates_with_one_key_yield_one_intent() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = open(&dir.path().join("k.db"));
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let ids: Vec<_> = (0..threads)
        .map(|_| {
            let ledger = ledger.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                ledger.create(deposit(100_000), key("same")).unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let distinct: HashSet<_> = ids.iter().map(|c| c.intent.id).collect();
    assert_eq!(distinct.len(), 1);
    assert_eq!(ids.iter().filter(|c| !c.replayed).count(), 1);
    assert_eq!(count(&all_events(&ledger), EventType::Created), 1);
}

#[test]
fn a_full_deposit_flow_writes_one_event_per_transition() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, clock) = open(&dir.path().join("k.db"));
    let id = ledger
        .create(deposit(100_000), key("k-1"))
        .unwrap()
        .intent
        .id;
    clock.advance_millis(300);
    let applied = ledger.apply(id, handoff("p-1")).unwrap();
    let ApplyOutcome::Applied { intent, .. } = &applied else {
        panic!("{applied:?}");
    };
    assert_eq!(intent.status, IntentStatus::Pending);
    assert_eq!(intent.version, 2);
    assert_eq!(
        ledger
            .find_by_provider_ref(Provider::Pientegra, "p-1")
            .unwrap(),
        Some((**intent).clone())
    );
    clock.advance_millis(60_000);
    let outcome = ledger.apply(id, approved(95_000, "evt-1")).unwrap();
    assert!(matches!(outcome, ApplyOutcome::Applied { .. }));
    let intent = ledger.get(id).unwrap();
    assert_eq!(intent.status, IntentStatus::Approved);
    assert_eq!(intent.approved_amount.map(MinorUnits::get), Some(95_000));

    let events = all_events(&ledger);
    let types: Vec<_> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        [EventType::Created, EventType::Pending, EventType::Approved]
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let approval = &events[2];
    assert_eq!(approval.business_key, format!("intent.approved:{id}"));
    assert_eq!(
        approval.payload.intent.approved_amount.map(MinorUnits::get),
        Some(95_000)
    );
    let history = ledger.history(id).unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[2].provider_event_id.as_deref(), Some("evt-1"));
    assert_eq!(history[2].cause, Cause::Webhook);
    assert_eq!(history[2].at, T0.plus_millis(60_300));
}

#[test]
fn a_redelivered_provider_event_is_a_duplicate_even_if_its_body_differs() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = open(&dir.path().join("k.db"));
    let id = ledger.create(deposit(100_000), key("k")).unwrap().intent.id;
    ledger.apply(id, handoff("p-1")).unwrap();
    ledger
        .apply(
            id,
            IntentEvent::new(Signal::PayerConfirmed, Cause::Webhook).with_event_id("evt-1"),
        )
        .unwrap();
    // Same event id again, now claiming an approval: the delivery was already consumed.
    let again = ledger.apply(id, approved(100_000, "evt-1")).unwrap();
    assert!(matches!(again, ApplyOutcome::Duplicate { .. }), "{again:?}");
    assert_eq!(ledger.get(id).unwrap().status, IntentStatus::PayerConfirmed);
}

#[test]
fn a_contrary_outcome_is_recorded_once_as_an_anomaly_and_never_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = open(&dir.path().join("k.db"));
    let id = ledger.create(deposit(100_000), key("k")).unwrap().intent.id;
    ledger.apply(id, approved(100_000, "evt-a")).unwrap();
    let before = ledger.get(id).unwrap();

    let outcome = ledger.apply(id, rejected("evt-r")).unwrap();
    let ApplyOutcome::Anomaly { anomaly, .. } = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(anomaly.status, IntentStatus::Approved);
    assert_eq!(
        ledger.get(id).unwrap(),
        before,
        "an anomaly changes nothing"
    );
    // The same delivery again, and the same contradiction from repeated status polls.
    assert!(matches!(
        ledger.apply(id, rejected("evt-r")).unwrap(),
        ApplyOutcome::Duplicate { .. }
    ));
    let poll = || IntentEvent::new(Signal::Rejected { reason: None }, Cause::StatusPoll);
    assert!(matches!(
        ledger.apply(id, poll()).unwrap(),
        ApplyOutcome::Anomaly { .. }
    ));
    assert!(matches!(
        ledger.apply(id, poll()).unwrap(),
        ApplyOutcome::Duplicate { .. }
    ));

    let events = all_events(&ledger);
    assert_eq!(count(&events, EventType::Anomaly), 2);
    assert_eq!(count(&events, EventType::Approved), 1);
    assert_eq!(count(&events, EventType::Rejected), 0);
    assert_eq!(ledger.history(id).unwrap().len(), 2);
}

#[test]
fn concurrent_contradicting_deliveries_settle_once() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, _) = open(&dir.path().join("k.db"));
        let id = ledger.create(deposit(100_000), key("k")).unwrap().intent.id;
        ledger.apply(id, handoff("p-1")).unwrap();
        let barrier = Arc::new(Barrier::new(6));
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let ledger = ledger.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let ev = if t % 2 == 0 {
                        approved(100_000, &format!("a-{round}-{t}"))
                    } else {
                        rejected(&format!("r-{round}-{t}"))
                    };
                    ledger.apply(id, ev).unwrap()
                })
            })
            .collect();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let applied = outcomes
            .iter()
            .filter(|o| matches!(o, ApplyOutcome::Applied { .. }))
            .count();
        assert_eq!(applied, 1, "{outcomes:?}");
        let events = all_events(&ledger);
        let terminal = count(&events, EventType::Approved) + count(&events, EventType::Rejected);
        assert_eq!(terminal, 1);
    }
}

#[test]
fn commits_grouped_into_one_transaction_keep_their_own_outcomes() {
    // 8 threads deliver to 16 intents at once, so commits queue and are written in groups:
    // each commit's outcome must be its own, a failing one must not take its group with it,
    // and the outbox must stay gapless.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let store = Arc::new(SqliteStore::open(&path, SqliteConfig::default()).unwrap());
    let ledger = Ledger::new(store.clone(), Arc::new(ManualClock::new(T0)));
    let ids: Vec<_> = (0..16)
        .map(|n| {
            let id = ledger
                .create(deposit(100_000 + n), key(&format!("g-{n}")))
                .unwrap()
                .intent
                .id;
            ledger.apply(id, handoff(&format!("p-{n}"))).unwrap();
            id
        })
        .collect();
    // Intent 0's approval fails in the database, whichever group it lands in.
    let side = rusqlite::Connection::open(&path).unwrap();
    side.execute_batch(&format!(
        "CREATE TRIGGER fail_one BEFORE INSERT ON outbox
         WHEN NEW.event_type = 'intent.approved' AND NEW.intent_id = '{}'
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        ids[0]
    ))
    .unwrap();
    let (tx_before, writes_before) = store.group_commit_stats();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (ledger, ids, barrier) = (ledger.clone(), ids.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                // Every thread delivers every intent's approval (the same event id): one
                // applies, the rest are duplicates.
                ids.iter()
                    .cycle()
                    .skip(t * 2)
                    .take(ids.len())
                    .map(|id| {
                        (
                            *id,
                            ledger.apply(*id, approved(100_000, &format!("evt-{id}"))),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let outcomes: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    for (id, results) in ids
        .iter()
        .map(|id| (id, outcomes.iter().filter(move |(i, _)| i == id)))
    {
        let results: Vec<_> = results.map(|(_, r)| r).collect();
        if *id == ids[0] {
            assert!(
                results
                    .iter()
                    .all(|r| matches!(r, Err(CoreError::Store(_)))),
                "{results:?}"
            );
        } else {
            let applied = results
                .iter()
                .filter(|r| matches!(r, Ok(ApplyOutcome::Applied { .. })))
                .count();
            assert_eq!(applied, 1, "{id}: {results:?}");
            assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        }
    }
    let events = all_events(&ledger);
    assert_eq!(count(&events, EventType::Approved), 15);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless");
    assert_eq!(ledger.get(ids[0]).unwrap().status, IntentStatus::Pending);
    // The writes were grouped: fewer transactions than commits.
    let (tx_after, writes_after) = store.group_commit_stats();
    let (transactions, writes) = (tx_after - tx_before, writes_after - writes_before);
    // Each intent's approval reached the writer at least once (later copies may be answered
    // as duplicates before they queue).
    assert!(writes >= 16, "{writes} writes");
    assert!(
        transactions < writes,
        "{writes} commits in {transactions} transactions: nothing was grouped"
    );
}

#[test]
fn a_failed_commit_leaves_no_outbox_event_and_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let (ledger, _) = open(&path);
    let id = ledger.create(deposit(100_000), key("k")).unwrap().intent.id;
    ledger.apply(id, handoff("p-1")).unwrap();
    // Make the outbox insert fail: it is the last statement of the commit, after the intent
    // update and the history row, so everything before it must roll back with it.
    let side = rusqlite::Connection::open(&path).unwrap();
    side.execute_batch(
        "CREATE TRIGGER fail_approvals BEFORE INSERT ON outbox
         WHEN NEW.event_type = 'intent.approved'
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();
    let before = ledger.get(id).unwrap();
    let seq_before = ledger.store().head_seq().unwrap();

    let err = ledger.apply(id, approved(100_000, "evt-1")).unwrap_err();
    assert!(matches!(err, CoreError::Store(_)), "{err:?}");

    assert_eq!(ledger.get(id).unwrap(), before);
    assert_eq!(ledger.history(id).unwrap().len(), 2);
    assert_eq!(ledger.store().head_seq().unwrap(), seq_before);
    let delivered: i64 = side
        .query_row("SELECT COUNT(*) FROM provider_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(delivered, 0, "the delivery must not be marked consumed");

    // Once the fault is gone, the provider's retry of the same event applies.
    side.execute_batch("DROP TRIGGER fail_approvals").unwrap();
    assert!(matches!(
        ledger.apply(id, approved(100_000, "evt-1")).unwrap(),
        ApplyOutcome::Applied { .. }
    ));
    assert_eq!(count(&all_events(&ledger), EventType::Approved), 1);
}

#[test]
fn one_provider_intent_cannot_map_to_two_of_ours() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = open(&dir.path().join("k.db"));
    let a = ledger.create(deposit(100_000), key("a")).unwrap().intent.id;
    let b = ledger.create(deposit(100_000), key("b")).unwrap().intent.id;
    ledger.apply(a, handoff("p-1")).unwrap();
    let seq = ledger.store().head_seq().unwrap();
    let err = ledger.apply(b, handoff("p-1")).unwrap_err();
    assert!(
        matches!(err, CoreError::Store(StoreError::Constraint(_))),
        "{err:?}"
    );
    assert_eq!(ledger.get(b).unwrap().status, IntentStatus::Created);
    assert_eq!(ledger.store().head_seq().unwrap(), seq);
}

#[test]
fn a_named_consumer_resumes_where_it_acked_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let consumer = ConsumerName::new("ledger-sync").unwrap();
    let acked = {
        let (ledger, _) = open(&path);
        for n in 0..5 {
            let id = ledger
                .create(deposit(100_000 + n), key(&format!("k-{n}")))
                .unwrap()
                .intent
                .id;
            ledger.apply(id, handoff(&format!("p-{n}"))).unwrap();
        }
        let first = ledger.poll(&consumer, 4).unwrap();
        assert_eq!(first.len(), 4);
        let acked = first[3].seq;
        assert_eq!(ledger.ack(&consumer, acked).unwrap(), acked);
        // Acknowledging an earlier event again never moves the position back.
        assert_eq!(ledger.ack(&consumer, first[0].seq).unwrap(), acked);
        acked
    };
    let (ledger, _) = open(&path);
    assert_eq!(ledger.position(&consumer).unwrap(), acked);
    let rest = ledger.poll(&consumer, 100).unwrap();
    assert_eq!(rest.len(), 6);
    assert_eq!(rest[0].seq, acked + 1);
    let other = ConsumerName::new("analytics").unwrap();
    assert_eq!(ledger.poll(&other, 100).unwrap().len(), 10);
}

#[test]
fn acking_past_the_newest_event_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = open(&dir.path().join("k.db"));
    ledger.create(deposit(100_000), key("k")).unwrap();
    let consumer = ConsumerName::new("c").unwrap();
    let err = ledger.ack(&consumer, 2).unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT");
    assert_eq!(ledger.position(&consumer).unwrap(), 0);
}

#[test]
fn cancel_after_payment_is_refused_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = open(&dir.path().join("k.db"));
    let id = ledger.create(deposit(100_000), key("k")).unwrap().intent.id;
    ledger.apply(id, approved(100_000, "evt-1")).unwrap();
    let err = ledger
        .apply(
            id,
            IntentEvent::new(Signal::Cancel { reason: None }, Cause::Api),
        )
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_TRANSITION");
    let missing = intentkit_core::IntentId::generate();
    assert_eq!(ledger.get(missing).unwrap_err().code(), "INTENT_NOT_FOUND");
}

#[test]
fn migrations_apply_once_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    {
        let store = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
        assert_eq!(store.schema_version().unwrap(), 4);
    }
    {
        let store = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
        assert_eq!(store.schema_version().unwrap(), 4);
    }
    let side = rusqlite::Connection::open(&path).unwrap();
    side.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)",
        [],
    )
    .unwrap();
    let err = SqliteStore::open(&path, SqliteConfig::default()).unwrap_err();
    assert_eq!(err.code(), "SCHEMA_TOO_NEW");
    assert!(err.to_string().contains("99"), "{err}");
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

/// Entry point for the child processes of the next test. It does nothing unless the parent
/// set `INTENTKIT_CHILD_DB`; it is `#[ignore]`d so that a plain `cargo test` skips it.
#[test]
#[ignore = "child-process entry point for two_processes_share_one_database_file"]
fn child_worker() {
    let Ok(db) = std::env::var("INTENTKIT_CHILD_DB") else {
        return;
    };
    let worker: usize = std::env::var("INTENTKIT_CHILD_ID")
        .unwrap()
        .parse()
        .unwrap();
    let (ledger, _) = open(Path::new(&db));
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
fn two_processes_share_one_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|worker| {
            Command::new(&exe)
                .args(["--exact", "child_worker", "--ignored", "--quiet"])
                .env("INTENTKIT_CHILD_DB", &path)
                .env("INTENTKIT_CHILD_ID", worker.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        // The children's own test-harness lines stay out of this run's output unless one fails.
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a child process failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (ledger, _) = open(&path);
    let events = all_events(&ledger);
    assert_eq!(count(&events, EventType::Created), 20);
    let mut terminal: BTreeMap<_, usize> = BTreeMap::new();
    for e in &events {
        if matches!(e.event_type, EventType::Approved | EventType::Rejected) {
            *terminal.entry(e.intent_id).or_default() += 1;
        }
    }
    assert_eq!(terminal.len(), 20);
    assert!(terminal.values().all(|n| *n == 1), "{terminal:?}");
    let seqs: Vec<_> = events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}

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
    let events = all_events(ledger);
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random deliveries, with redelivered event ids and contradictions, through the real
    /// store: a final status is never left, at most one `intent.approved` is written, every
    /// history row has its event, and the history replays to the stored status.
    #[test]
    fn random_deliveries_through_sqlite_keep_the_invariants(
        events in prop::collection::vec(any_signal(5), 1..25)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, clock) = open(&dir.path().join("p.db"));
        let id = ledger.create(deposit(100_000), key("prop")).unwrap().intent.id;
        let mut final_status: Option<IntentStatus> = None;
        for ev in events {
            clock.advance_millis(1_000);
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
        assert_outbox_invariants(&ledger, &ledger.get(id).unwrap())?;
    }
}

#[test]
fn list_filters_and_pages_newest_first_without_gaps_or_repeats() {
    use intentkit_core::store::ListFilter;
    let dir = tempfile::tempdir().unwrap();
    let (ledger, clock) = open(&dir.path().join("k.db"));
    let mut ids = Vec::new();
    for n in 0..7 {
        clock.advance_millis(1_000);
        let id = ledger
            .create(deposit(100_000 + n), key(&format!("k-{n}")))
            .unwrap()
            .intent
            .id;
        if n % 2 == 0 {
            ledger.apply(id, handoff(&format!("p-{n}"))).unwrap();
        }
        ids.push(id);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = ledger
            .list(&ListFilter::default(), cursor.as_ref(), 3)
            .unwrap();
        seen.extend(page.iter().map(|i| i.id));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every intent once");
    let pending = ListFilter {
        statuses: vec![IntentStatus::Pending],
        ..Default::default()
    };
    assert_eq!(ledger.list(&pending, None, 100).unwrap().0.len(), 4);
    let window = ListFilter {
        created_from: Some(T0.plus_millis(2_000)),
        created_to: Some(T0.plus_millis(4_000)),
        provider: Some(Provider::Pientegra),
        ..Default::default()
    };
    assert_eq!(ledger.list(&window, None, 100).unwrap().0.len(), 2);
}

#[test]
fn expiry_scan_returns_only_open_intents_past_their_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, clock) = open(&dir.path().join("k.db"));
    let due = ledger.create(deposit(100_000), key("a")).unwrap().intent.id;
    ledger.apply(due, handoff("p-a")).unwrap();
    let settled = ledger.create(deposit(100_000), key("b")).unwrap().intent.id;
    ledger.apply(settled, handoff("p-b")).unwrap();
    ledger.apply(settled, approved(100_000, "e-b")).unwrap();
    assert!(
        ledger
            .due_for_expiry(
                Provider::Pientegra,
                &AccountName::new("tr-main").unwrap(),
                10
            )
            .unwrap()
            .is_empty()
    );
    clock.advance_millis(15 * 60_000);
    let found: Vec<_> = ledger
        .due_for_expiry(
            Provider::Pientegra,
            &AccountName::new("tr-main").unwrap(),
            10,
        )
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(found, vec![due]);
}

#[test]
fn a_transient_error_is_noted_on_a_created_intent_without_a_transition() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, clock) = open(&dir.path().join("k.db"));
    let id = ledger.create(deposit(100_000), key("a")).unwrap().intent.id;
    let noted = ledger
        .note_error(id, "PROVIDER_UNAVAILABLE: timed out")
        .unwrap();
    assert_eq!(noted.status, IntentStatus::Created);
    assert_eq!(
        noted.last_error.as_deref(),
        Some("PROVIDER_UNAVAILABLE: timed out")
    );
    assert_eq!(ledger.get(id).unwrap(), noted);
    assert_eq!(ledger.history(id).unwrap().len(), 1, "no history row");
    assert_eq!(all_events(&ledger).len(), 1, "no outbox event");
    assert!(
        ledger
            .stuck_in_created(
                Provider::Pientegra,
                &AccountName::new("tr-main").unwrap(),
                60_000,
                10
            )
            .unwrap()
            .is_empty()
    );
    clock.advance_millis(60_000);
    assert_eq!(
        ledger
            .stuck_in_created(
                Provider::Pientegra,
                &AccountName::new("tr-main").unwrap(),
                60_000,
                10
            )
            .unwrap()
            .len(),
        1
    );
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

#[test]
fn a_parked_event_is_found_only_for_an_intent_of_the_account_that_received_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = open(&dir.path().join("k.db"));
    let own = parked(
        Some("tr-main"),
        "p-late",
        early_approval("evt-own"),
        Proof::Signed,
    );
    let other = parked(
        Some("tr-other"),
        "p-late",
        early_approval("evt-other"),
        Proof::Signed,
    );
    assert_eq!(ledger.park(&own, 10).unwrap(), ParkOutcome::Parked);
    assert_eq!(ledger.park(&other, 10).unwrap(), ParkOutcome::Parked);
    let id = ledger.create(deposit(100_000), key("a")).unwrap().intent.id;
    let before = ledger.get(id).unwrap();
    assert!(
        ledger.parked_for(&before).unwrap().is_empty(),
        "no reference yet"
    );
    ledger.apply(id, handoff("p-late")).unwrap();
    let found = ledger.parked_for(&ledger.get(id).unwrap()).unwrap();
    let accounts: Vec<_> = found.iter().map(|p| p.account.clone()).collect();
    assert_eq!(accounts, [Some(AccountName::new("tr-main").unwrap())]);
    assert_eq!(found[0].event, own.event);
}

#[test]
fn parking_is_bounded_per_account_and_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, clock) = open(&dir.path().join("k.db"));
    let claim = |n: u32| {
        parked(
            Some("in-main"),
            &format!("TXN{n}"),
            early_approval(&format!("cb-{n}")),
            Proof::Claim,
        )
    };
    for n in 0..3 {
        assert_eq!(ledger.park(&claim(n), 3).unwrap(), ParkOutcome::Parked);
    }
    assert_eq!(
        ledger.park(&claim(0), 3).unwrap(),
        ParkOutcome::AlreadyParked,
        "the same claim again is kept once, even when the account is full"
    );
    assert_eq!(ledger.park(&claim(3), 3).unwrap(), ParkOutcome::Full);
    // Another account has its own room.
    let signed = parked(
        Some("tr-main"),
        "p-1",
        early_approval("evt-1"),
        Proof::Signed,
    );
    assert_eq!(ledger.park(&signed, 3).unwrap(), ParkOutcome::Parked);
    assert_eq!(all_parked(&ledger).len(), 4);

    // Maintenance forgets what outlived its time to live, which frees the room again.
    clock.advance_millis(60_000);
    assert_eq!(ledger.prune_parked(30_000).unwrap(), 4);
    assert!(all_parked(&ledger).is_empty());
    assert_eq!(ledger.park(&claim(3), 3).unwrap(), ParkOutcome::Parked);
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
        conn.execute_batch(include_str!("../src/store/sqlite/0001_init.sql"))
            .unwrap();
        conn.execute_batch(include_str!("../src/store/sqlite/0002_engine.sql"))
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
    assert_eq!(store.schema_version().unwrap(), 4);
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

#[test]
fn a_provider_event_id_is_deduplicated_per_intent() {
    // The same event id for two intents (one of them an impostor's) must not silence the
    // other's delivery.
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = open(&dir.path().join("k.db"));
    let a = ledger.create(deposit(100_000), key("a")).unwrap().intent.id;
    let b = ledger.create(deposit(100_000), key("b")).unwrap().intent.id;
    ledger.apply(a, handoff("p-a")).unwrap();
    ledger.apply(b, handoff("p-b")).unwrap();
    assert!(matches!(
        ledger.apply(a, approved(100_000, "evt-shared")).unwrap(),
        ApplyOutcome::Applied { .. }
    ));
    assert!(matches!(
        ledger.apply(b, approved(100_000, "evt-shared")).unwrap(),
        ApplyOutcome::Applied { .. }
    ));
    assert!(matches!(
        ledger.apply(b, approved(100_000, "evt-shared")).unwrap(),
        ApplyOutcome::Duplicate { .. }
    ));
}

#[test]
fn a_sweep_covers_what_the_provider_has_not_answered_for_good_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, clock) = open(&dir.path().join("r.db"));
    let account = AccountName::new("tr-main").unwrap();
    let open = |ledger: &Ledger| {
        ledger
            .reconcile_open(Provider::Pientegra, &account, 60_000, 100)
            .unwrap()
    };
    let mk = |n: u32| {
        let id = ledger
            .create(deposit(100_000), key(&format!("r-{n}")))
            .unwrap()
            .intent
            .id;
        ledger.apply(id, handoff(&format!("p-{n}"))).unwrap();
        id
    };
    let pending = mk(0);
    let approved = mk(1);
    ledger.apply(approved, approved_event(1)).unwrap();
    let ours_expired = mk(2);
    ledger
        .apply(
            ours_expired,
            IntentEvent::new(Signal::Expired, Cause::Timer),
        )
        .unwrap();
    let theirs_expired = mk(3);
    ledger
        .apply(
            theirs_expired,
            IntentEvent::new(Signal::Expired, Cause::Webhook).with_event_id("evt-ac"),
        )
        .unwrap();
    let created_only = ledger
        .create(deposit(100_000), key("r-created"))
        .unwrap()
        .intent
        .id;
    assert!(open(&ledger).is_empty(), "too young to be late yet");
    clock.advance_millis(120_000);
    // Pending, and expired by our own timer (the provider has not said): covered. Approved,
    // expired by the provider, and never at the provider: not.
    assert_eq!(open(&ledger), vec![T0, T0]);
    for (id, covered) in [
        (pending, true),
        (ours_expired, true),
        (approved, false),
        (theirs_expired, false),
        (created_only, false),
    ] {
        assert_eq!(
            ledger.get(id).unwrap().reconcile_until.is_some(),
            covered,
            "{id}"
        );
    }
    // Past the horizon a sweep stops asking.
    clock.advance_millis(intentkit_core::lifecycle::RECONCILE_HORIZON_MS);
    assert!(open(&ledger).is_empty());
}

fn approved_event(n: u32) -> IntentEvent {
    approved(100_000, &format!("evt-ok-{n}"))
}
