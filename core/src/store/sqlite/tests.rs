//! Group commit from the inside: what a batch's writes are told when the one transaction that
//! carries them fails.

use std::sync::Arc;

use super::*;
use crate::clock::ManualClock;
use crate::intent::fixtures::deposit_request;
use crate::intent::{PayerHandoff, ProviderRef};
use crate::ledger::Ledger;
use crate::lifecycle::{self, IntentEvent, Plan, Signal};
use crate::types::{IdempotencyKey, MinorUnits};

const T0: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

fn pending(ledger: &Ledger, n: u32) -> Intent {
    let key = IdempotencyKey::new(format!("k-{n}")).unwrap();
    let id = ledger
        .create(deposit_request(100_000 + i64::from(n)), key)
        .unwrap()
        .intent
        .id;
    let handoff = IntentEvent::new(
        Signal::HandoffIssued {
            handoff: PayerHandoff::HostedPage {
                url: format!("https://pay.example/d/{n}"),
            },
            expires_at: None,
        },
        Cause::Api,
    )
    .with_provider_ref(ProviderRef::Pientegra {
        intent_id: format!("p-{n}"),
        reference_no: None,
    });
    ledger.apply(id, handoff).unwrap().intent().clone()
}

/// The approval of `intent`, decided but not written.
fn approval(intent: &Intent) -> Write {
    let event = IntentEvent::new(
        Signal::Approved {
            amount: MinorUnits::new(100_000).unwrap(),
            payer: None,
        },
        Cause::Webhook,
    );
    let Plan::Apply { next, transition } = lifecycle::plan(intent, &event, T0).unwrap() else {
        panic!("an approval of a pending intent applies");
    };
    Write::Commit(Box::new(OwnedCommit {
        intent_id: intent.id,
        expected_version: intent.version,
        event: NewEvent::transition(&next, &transition),
        update: Some((*next, transition)),
        delivery: None,
        now: T0,
    }))
}

fn setup() -> (tempfile::TempDir, Arc<SqliteStore>, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(dir.path().join("g.db"), SqliteConfig::default()).unwrap());
    let ledger = Ledger::new(store.clone(), Arc::new(ManualClock::new(T0)));
    (dir, store, ledger)
}

#[test]
fn a_batch_commits_every_write_in_one_transaction() {
    let (_dir, store, ledger) = setup();
    let (a, b) = (pending(&ledger, 1), pending(&ledger, 2));
    let (tx_before, _) = store.group_commit_stats();
    let results = store.write_batch(vec![(1, approval(&a)), (2, approval(&b))]);
    assert!(
        results
            .iter()
            .all(|(_, r)| matches!(r, Ok(Written::Commit(CommitOutcome::Committed { .. })))),
        "{results:?}"
    );
    assert_eq!(store.group_commit_stats().0, tx_before + 1);
    for i in [a.id, b.id] {
        assert_eq!(ledger.get(i).unwrap().status, IntentStatus::Approved);
    }
}

#[test]
fn an_error_that_aborts_the_transaction_fails_every_write_in_it() {
    let (dir, store, ledger) = setup();
    let (a, b) = (pending(&ledger, 1), pending(&ledger, 2));
    // A deferred foreign key: its violation is found at COMMIT, after both savepoints were
    // released, so it aborts the whole transaction, `a`'s approval with `b`'s.
    let side = rusqlite::Connection::open(dir.path().join("g.db")).unwrap();
    side.execute_batch(&format!(
        "CREATE TABLE nowhere (id TEXT PRIMARY KEY);
         CREATE TABLE trap (id TEXT REFERENCES nowhere (id) DEFERRABLE INITIALLY DEFERRED);
         CREATE TRIGGER spring AFTER INSERT ON outbox
         WHEN NEW.event_type = 'intent.approved' AND NEW.intent_id = '{}'
         BEGIN INSERT INTO trap VALUES ('missing'); END;",
        b.id
    ))
    .unwrap();
    let results = store.write_batch(vec![(1, approval(&a)), (2, approval(&b))]);
    assert_eq!(results.len(), 2);
    for (ticket, r) in &results {
        assert!(
            matches!(r, Err(StoreError::Constraint(_))),
            "write {ticket} must share the transaction's failure: {r:?}"
        );
    }
    for i in [a.id, b.id] {
        let now = ledger.get(i).unwrap();
        assert_eq!(
            now.status,
            IntentStatus::Pending,
            "nothing of the batch is kept"
        );
        assert_eq!(now.version, 2);
    }
    assert_eq!(
        ledger.head_seq().unwrap(),
        4,
        "no outbox event from the batch"
    );
}
