//! The store conformance suite: every test here runs against each backend (`main.rs` lists
//! them once; the macro there makes a SQLite and a PostgreSQL case of each).

use super::*;

pub(crate) fn create_records_the_intent_its_history_and_an_event_together(db: &Db) {
    let (ledger, _) = db.open();
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

pub(crate) fn same_key_same_request_returns_the_original_intent(db: &Db) {
    let (ledger, clock) = db.open();
    let first = ledger.create(deposit(100_000), key("k-1")).unwrap();
    clock.advance_millis(5_000);
    let again = ledger.create(deposit(100_000), key("k-1")).unwrap();
    assert!(again.replayed);
    assert_eq!(again.intent, first.intent);
    assert_eq!(count(&all_events(&ledger), EventType::Created), 1);
}

pub(crate) fn same_key_different_request_is_an_idempotency_conflict(db: &Db) {
    let (ledger, _) = db.open();
    let first = ledger.create(deposit(100_000), key("k-1")).unwrap();
    let err = ledger.create(deposit(100_001), key("k-1")).unwrap_err();
    assert_eq!(err.code(), "IDEMPOTENCY_CONFLICT");
    assert!(!err.is_retryable());
    let CoreError::IdempotencyConflict { existing, .. } = err else {
        panic!("wrong error {err:?}");
    };
    assert_eq!(existing, first.intent.id);
}

pub(crate) fn concurrent_creates_with_one_key_yield_one_intent(db: &Db) {
    let (ledger, _) = db.open();
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

pub(crate) fn a_full_deposit_flow_writes_one_event_per_transition(db: &Db) {
    let (ledger, clock) = db.open();
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

pub(crate) fn a_redelivered_provider_event_is_a_duplicate_even_if_its_body_differs(db: &Db) {
    let (ledger, _) = db.open();
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

pub(crate) fn a_contrary_outcome_is_recorded_once_as_an_anomaly_and_never_applied(db: &Db) {
    let (ledger, _) = db.open();
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

pub(crate) fn concurrent_contradicting_deliveries_settle_once(db: &Db) {
    let (ledger, _) = db.open();
    for round in 0..5 {
        let id = ledger
            .create(deposit(100_000), key(&format!("k-{round}")))
            .unwrap()
            .intent
            .id;
        ledger.apply(id, handoff(&format!("p-{round}"))).unwrap();
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
        let events: Vec<_> = all_events(&ledger)
            .into_iter()
            .filter(|e| e.intent_id == id)
            .collect();
        let terminal = count(&events, EventType::Approved) + count(&events, EventType::Rejected);
        assert_eq!(terminal, 1);
    }
}

pub(crate) fn commits_grouped_into_one_transaction_keep_their_own_outcomes(db: &Db) {
    // 8 threads deliver to 16 intents at once, so commits queue and are written in groups:
    // each commit's outcome must be its own, a failing one must not take its group with it,
    // and the outbox must stay gapless.
    let store = db.open_store();
    let ledger = Ledger::new(store.as_store(), Arc::new(ManualClock::new(T0)));
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
    db.fail_approvals(Some(ids[0]));
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

pub(crate) fn a_failed_commit_leaves_no_outbox_event_and_no_change(db: &Db) {
    let (ledger, _) = db.open();
    let id = ledger.create(deposit(100_000), key("k")).unwrap().intent.id;
    ledger.apply(id, handoff("p-1")).unwrap();
    // Make the outbox insert fail: it comes after the intent update and the history row, so
    // everything before it must roll back with it.
    db.fail_approvals(None);
    let before = ledger.get(id).unwrap();
    let seq_before = ledger.store().head_seq().unwrap();

    let err = ledger.apply(id, approved(100_000, "evt-1")).unwrap_err();
    assert!(matches!(err, CoreError::Store(_)), "{err:?}");

    assert_eq!(ledger.get(id).unwrap(), before);
    assert_eq!(ledger.history(id).unwrap().len(), 2);
    assert_eq!(ledger.store().head_seq().unwrap(), seq_before);
    assert_eq!(
        db.count("provider_events"),
        0,
        "the delivery must not be marked consumed"
    );

    // Once the fault is gone, the provider's retry of the same event applies.
    db.heal();
    assert!(matches!(
        ledger.apply(id, approved(100_000, "evt-1")).unwrap(),
        ApplyOutcome::Applied { .. }
    ));
    assert_eq!(count(&all_events(&ledger), EventType::Approved), 1);
}

pub(crate) fn one_provider_intent_cannot_map_to_two_of_ours(db: &Db) {
    let (ledger, _) = db.open();
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

pub(crate) fn a_named_consumer_resumes_where_it_acked_after_reopening(db: &Db) {
    let consumer = ConsumerName::new("ledger-sync").unwrap();
    let acked = {
        let (ledger, _) = db.open();
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
    let (ledger, _) = db.open();
    assert_eq!(ledger.position(&consumer).unwrap(), acked);
    let rest = ledger.poll(&consumer, 100).unwrap();
    assert_eq!(rest.len(), 6);
    assert_eq!(rest[0].seq, acked + 1);
    let other = ConsumerName::new("analytics").unwrap();
    assert_eq!(ledger.poll(&other, 100).unwrap().len(), 10);
}

pub(crate) fn acking_past_the_newest_event_is_refused(db: &Db) {
    let (ledger, _) = db.open();
    ledger.create(deposit(100_000), key("k")).unwrap();
    let consumer = ConsumerName::new("c").unwrap();
    let err = ledger.ack(&consumer, 2).unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT");
    assert_eq!(ledger.position(&consumer).unwrap(), 0);
}

pub(crate) fn cancel_after_payment_is_refused_with_a_typed_error(db: &Db) {
    let (ledger, _) = db.open();
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

pub(crate) fn migrations_apply_once_and_a_newer_schema_is_refused(db: &Db) {
    assert_eq!(db.open_store().schema_version(), db.latest_schema());
    assert_eq!(db.open_store().schema_version(), db.latest_schema());
    db.sql("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)");
    let err = db.try_open().unwrap_err();
    assert_eq!(err.code(), "SCHEMA_TOO_NEW");
    assert!(err.to_string().contains("99"), "{err}");
}

pub(crate) fn two_processes_share_one_database(db: &Db) {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|worker| {
            Command::new(&exe)
                .args(["--exact", "child_worker", "--ignored", "--quiet"])
                .env("INTENTKIT_CHILD_DB", db.child_env())
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
    let (ledger, _) = db.open();
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

pub(crate) fn list_filters_and_pages_newest_first_without_gaps_or_repeats(db: &Db) {
    use intentkit_core::store::ListFilter;
    let (ledger, clock) = db.open();
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

pub(crate) fn expiry_scan_returns_only_open_intents_past_their_deadline(db: &Db) {
    let (ledger, clock) = db.open();
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

pub(crate) fn a_transient_error_is_noted_on_a_created_intent_without_a_transition(db: &Db) {
    let (ledger, clock) = db.open();
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

pub(crate) fn a_parked_event_is_found_only_for_an_intent_of_the_account_that_received_it(db: &Db) {
    let (ledger, _) = db.open();
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

pub(crate) fn parking_is_bounded_per_account_and_deduplicated(db: &Db) {
    let (ledger, clock) = db.open();
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

pub(crate) fn a_provider_event_id_is_deduplicated_per_intent(db: &Db) {
    // The same event id for two intents (one of them an impostor's) must not silence the
    // other's delivery.
    let (ledger, _) = db.open();
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

pub(crate) fn a_sweep_covers_what_the_provider_has_not_answered_for_good_and_nothing_else(db: &Db) {
    let (ledger, clock) = db.open();
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

pub(crate) fn a_lease_has_one_holder_and_its_fence_moves_when_it_changes_hands(db: &Db) {
    let (ledger, _) = db.open();
    let store = ledger.store();
    let t = |s: i64| T0.plus_millis(s * 1_000);
    let job = "maintenance:expiry:pientegra:tr-main";
    assert_eq!(store.acquire_lease(job, "a", t(0), t(30)).unwrap(), Some(1));
    assert_eq!(store.acquire_lease(job, "b", t(1), t(31)).unwrap(), None);
    // Renewed by its holder: the same fence.
    assert_eq!(
        store.acquire_lease(job, "a", t(10), t(40)).unwrap(),
        Some(1)
    );
    assert_eq!(store.acquire_lease(job, "b", t(39), t(69)).unwrap(), None);
    // Lapsed: another holder takes it, with a new fence; the old holder's late release of its
    // old fence gives nothing back.
    assert_eq!(
        store.acquire_lease(job, "b", t(40), t(70)).unwrap(),
        Some(2)
    );
    store.release_lease(job, "a", 1).unwrap();
    assert_eq!(store.acquire_lease(job, "a", t(41), t(71)).unwrap(), None);
    store.release_lease(job, "b", 2).unwrap();
    assert_eq!(
        store.acquire_lease(job, "a", t(42), t(72)).unwrap(),
        Some(3)
    );
    // Other names are other leases.
    assert_eq!(
        store
            .acquire_lease("maintenance:expiry:decentro:in-main", "b", t(42), t(72))
            .unwrap(),
        Some(1)
    );

    // Eight contenders at once for a free lease: exactly one wins.
    let barrier = Arc::new(Barrier::new(8));
    let winners: Vec<_> = (0..8)
        .map(|n| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store
                    .acquire_lease("race", &format!("h{n}"), t(0), t(30))
                    .unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(winners, vec![1]);
}

pub(crate) fn a_rate_slot_is_refused_within_its_interval_and_free_after(db: &Db) {
    let (ledger, _) = db.open();
    let store = ledger.store();
    let t = |ms: i64| T0.plus_millis(ms);
    let key = "lookup:one";
    assert_eq!(store.take_slot(key, t(0), 1_000, 0).unwrap(), Ok(()));
    // Within the interval: refused, with the time left, and nothing moved.
    assert_eq!(store.take_slot(key, t(1), 1_000, 0).unwrap(), Err(999));
    assert_eq!(store.take_slot(key, t(600), 1_000, 0).unwrap(), Err(400));
    assert_eq!(store.take_slot(key, t(999), 1_000, 0).unwrap(), Err(1));
    // After it: free again, and the next interval runs from there.
    assert_eq!(store.take_slot(key, t(1_000), 1_000, 0).unwrap(), Ok(()));
    assert_eq!(store.take_slot(key, t(1_500), 1_000, 0).unwrap(), Err(500));
    // A long pause builds up no credit: one slot, then the interval again.
    assert_eq!(store.take_slot(key, t(60_000), 1_000, 0).unwrap(), Ok(()));
    assert_eq!(store.take_slot(key, t(60_001), 1_000, 0).unwrap(), Err(999));
    // Other keys are other rates.
    assert_eq!(
        store.take_slot("lookup:two", t(60_001), 1_000, 0).unwrap(),
        Ok(())
    );
    // Pruning forgets only slots already free.
    assert_eq!(store.prune_slots(t(61_000)).unwrap(), 0);
    assert_eq!(store.prune_slots(t(61_002)).unwrap(), 2);
    assert_eq!(store.take_slot(key, t(61_002), 1_000, 0).unwrap(), Ok(()));
}

pub(crate) fn a_rate_slot_with_tolerance_runs_ahead_and_pushes_later_takers_back(db: &Db) {
    let (ledger, _) = db.open();
    let store = ledger.store();
    let t = |ms: i64| T0.plus_millis(ms);
    let key = "calls:pientegra:tr-main";
    // Three takers with a tolerance (creates) at once: all served, each a slot further ahead.
    for _ in 0..3 {
        assert_eq!(store.take_slot(key, t(0), 100, 10_000).unwrap(), Ok(()));
    }
    // A taker without tolerance (a sweep) waits until the rate has caught up with them.
    assert_eq!(store.take_slot(key, t(0), 100, 0).unwrap(), Err(300));
    assert_eq!(store.take_slot(key, t(300), 100, 0).unwrap(), Ok(()));
    // The tolerance bounds how far ahead they may run.
    assert_eq!(store.take_slot(key, t(400), 100, 150).unwrap(), Ok(()));
    assert_eq!(store.take_slot(key, t(400), 100, 150).unwrap(), Ok(()));
    assert_eq!(store.take_slot(key, t(400), 100, 150).unwrap(), Err(50));
}

pub(crate) fn concurrent_takers_of_one_free_rate_slot_get_it_once(db: &Db) {
    // Eight takers at once, over stores of their own (as instances or handles would be):
    // exactly one gets the slot.
    let stores: Vec<_> = (0..8).map(|_| db.open_store().as_store()).collect();
    let barrier = Arc::new(Barrier::new(stores.len()));
    let winners = stores
        .into_iter()
        .map(|store| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                store.take_slot("race", T0, 1_000, 0).unwrap().is_ok()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|won| *won)
        .count();
    assert_eq!(winners, 1);
}
