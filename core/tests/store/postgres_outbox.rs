//! The outbox's order on PostgreSQL, with writers in parallel: a consumer reading "after my
//! cursor" never skips an event that commits late (store/postgres.rs, "The outbox's order").

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;

fn side(db: &Db) -> ::postgres::Client {
    let Db::Postgres(_, url) = db else {
        unreachable!("a PostgreSQL test")
    };
    ::postgres::Client::connect(url, ::postgres::NoTls).unwrap()
}

/// 8 writers settle 40 intents each while a reader tails the outbox from its cursor: what the
/// reader saw, in order, is every event, each once, with seqs 1, 2, 3, ... (the reader would
/// miss any event whose seq became visible after a higher one).
#[test]
fn a_tailing_reader_sees_every_event_once_in_order_while_writers_race() {
    let Some(db) = Db::postgres() else { return };
    let (ledger, _) = db.open();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (ledger, done) = (ledger.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen: Vec<u64> = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let after = seen.last().copied().unwrap_or(0);
                let batch = ledger.events_after(after, 500).unwrap();
                seen.extend(batch.iter().map(|e| e.seq));
                if finished && batch.is_empty() {
                    return seen;
                }
            }
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                for n in 0..40 {
                    let id = ledger
                        .create(deposit(100_000), key(&format!("w{w}-{n}")))
                        .unwrap()
                        .intent
                        .id;
                    ledger.apply(id, handoff(&format!("p-{w}-{n}"))).unwrap();
                    ledger
                        .apply(id, approved(100_000, &format!("e-{w}-{n}")))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.join().unwrap();
    assert_eq!(seen.len(), 8 * 40 * 3, "every event, once");
    assert_eq!(
        seen,
        (1..=seen.len() as u64).collect::<Vec<_>>(),
        "in order, none skipped"
    );
}

/// A transaction that inserted its event and stalls (a long-running writer, a paused host)
/// holds no one up before its last step and takes the next seq when it commits; one that
/// stalls inside its last step delays the writers after it, and nothing is skipped either way.
#[test]
fn a_stalled_writer_delays_later_events_and_never_makes_the_reader_skip() {
    let Some(db) = Db::postgres() else { return };
    let (ledger, _) = db.open();
    ledger.create(deposit(100_000), key("first")).unwrap();
    assert_eq!(ledger.events_after(0, 10).unwrap().len(), 1);

    // 1. Stalled before its last step: others commit and are read meanwhile.
    let mut stalled = side(&db);
    let mut tx = stalled.transaction().unwrap();
    let row: i64 = tx
        .query_one(
            "INSERT INTO outbox (event_id, event_type, intent_id, business_key, created_at, payload)
             SELECT '00000000-0000-7000-8000-000000000001', event_type, intent_id, 'stalled',
                    created_at, payload
             FROM outbox WHERE seq = 1
             RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    let second = ledger
        .create(deposit(100_000), key("second"))
        .unwrap()
        .intent
        .id;
    let read: Vec<u64> = ledger
        .events_after(1, 10)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(read, vec![2], "the other writer was not held up");
    // Its last step and commit: it takes the next seq, after what the reader already has.
    let seq: i64 = tx
        .query_one("UPDATE outbox_head SET seq = seq + 1 RETURNING seq", &[])
        .unwrap()
        .get(0);
    tx.execute("UPDATE outbox SET seq = $1 WHERE id = $2", &[&seq, &row])
        .unwrap();
    tx.commit().unwrap();
    let read: Vec<u64> = ledger
        .events_after(2, 10)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(read, vec![3]);

    // 2. Stalled inside its last step (holding the head): the next writer waits for it.
    let mut tx = stalled.transaction().unwrap();
    tx.query_one("UPDATE outbox_head SET seq = seq + 1 RETURNING seq", &[])
        .unwrap();
    let blocked = {
        let ledger = ledger.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            ledger.apply(second, handoff("p-2")).unwrap();
            started.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        ledger.events_after(3, 10).unwrap().is_empty(),
        "nothing after seq 3 is visible while seq 4 is being assigned"
    );
    tx.execute(
        "INSERT INTO outbox (seq, event_id, event_type, intent_id, business_key, created_at, payload)
         SELECT 4, '00000000-0000-7000-8000-000000000002', event_type, intent_id, 'stalled-2',
                created_at, payload
         FROM outbox WHERE seq = 1",
        &[],
    )
    .unwrap();
    tx.commit().unwrap();
    let waited = blocked.join().unwrap();
    assert!(waited >= Duration::from_millis(250), "waited {waited:?}");
    let read: Vec<u64> = ledger
        .events_after(3, 10)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(read, vec![4, 5], "delayed, in order, none skipped");
}

/// The store runs its transactions at READ COMMITTED whatever the database's default: its
/// write statements re-check rows they waited for, which stricter levels answer with
/// serialization failures. Eight writers racing for the outbox head on a database whose
/// default is SERIALIZABLE all commit.
#[test]
fn a_stricter_database_default_does_not_turn_races_into_failures() {
    let Some(db) = Db::postgres() else { return };
    let Db::Postgres(_, url) = &db else {
        unreachable!()
    };
    let name = url.rsplit('/').next().unwrap().to_string();
    side(&db)
        .batch_execute(&format!(
            "ALTER DATABASE {name} SET default_transaction_isolation = 'serializable'"
        ))
        .unwrap();
    let (ledger, _) = db.open();
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (ledger, barrier) = (ledger.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for n in 0..10 {
                    let id = ledger
                        .create(deposit(100_000), key(&format!("s{w}-{n}")))
                        .unwrap()
                        .intent
                        .id;
                    ledger.apply(id, handoff(&format!("ps-{w}-{n}"))).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("no writer failed");
    }
    assert_eq!(ledger.events_after(0, 1_000).unwrap().len(), 160);
}
