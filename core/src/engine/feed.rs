//! The outbox as the façades read it: events after a cursor, a consumer's position, acks, the
//! head, history, and a feed that wakes when the outbox's head moves.
//!
//! One watcher per engine learns the head for every open feed: it asks the store for the head
//! at once after this process writes, and every [`FEED_POLL_INTERVAL`] for writes by other
//! processes on the same database (another instance on PostgreSQL, another process on the
//! SQLite file). It publishes the head on a `watch` channel that every feed waits on, so an idle
//! feed costs the store nothing of its own: N idle streams cost one `head_seq` query per
//! interval, not N reads. The watcher runs only while a feed is open: started by the first
//! feed that waits, it stops when the last feed is dropped. `docs/decisions.md` says why a
//! poll and not PostgreSQL's LISTEN/NOTIFY.
//!
//! A façade reads the outbox only through these, never through the ledger or the store beneath.

use std::time::Duration;

use super::{Engine, EngineError};
use crate::lifecycle::Transition;
use crate::outbox::OutboxEvent;
use crate::types::{ConsumerName, IntentId};

/// How often the watcher asks the store for the head while a feed is open, for writes by other
/// processes (this process's writes are looked for at once).
pub const FEED_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What the engine keeps for its feeds: the head as last seen, the nudge a write sends the
/// watcher, and whether the watcher runs.
#[derive(Debug)]
pub(super) struct FeedState {
    /// The newest outbox seq the watcher has seen; every feed holds a receiver.
    head: tokio::sync::watch::Sender<u64>,
    /// A write by this process: the watcher looks at the head now, not at its next tick.
    wrote: tokio::sync::Notify,
    /// Whether a watcher task runs. Checked and set under this lock, with the receiver count,
    /// so that a feed opening as the watcher stops always finds one running.
    running: std::sync::Mutex<bool>,
}

impl FeedState {
    pub(super) fn new() -> Self {
        FeedState {
            head: tokio::sync::watch::channel(0).0,
            wrote: tokio::sync::Notify::new(),
            running: std::sync::Mutex::new(false),
        }
    }

    /// Tells the watcher, if one runs, that this process wrote (a permit is kept if it is busy).
    pub(super) fn wrote(&self) {
        self.wrote.notify_one();
    }
}

/// Wakes when the outbox's head moves past what its reader has read, whoever wrote it (see the
/// module's documentation). Waiting costs no store call.
#[derive(Debug)]
pub struct EventFeed {
    engine: Engine,
    head: tokio::sync::watch::Receiver<u64>,
    /// The cursor and head of the last wake-up: woken at `head` for `cursor` once, a feed
    /// whose read then found nothing waits for the head to move again rather than spin.
    last: Option<(u64, u64)>,
}

impl EventFeed {
    /// Resolves once the outbox's head is past `cursor` (at once if it already is): then
    /// events after `cursor` are there to read. Returns the head.
    pub async fn past(&mut self, cursor: u64) -> u64 {
        self.engine.start_watcher();
        loop {
            let head = *self.head.borrow_and_update();
            if head > cursor && self.last != Some((cursor, head)) {
                self.last = Some((cursor, head));
                return head;
            }
            // An error means the engine is gone; there will be no more writes to wait for.
            if self.head.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Engine {
    /// Up to `limit` events after `cursor`, in seq order.
    pub async fn events_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, EngineError> {
        self.blocking(move |l| l.events_after(cursor, limit)).await
    }

    /// Where `consumer` last acknowledged (0 for a new consumer).
    pub async fn position(&self, consumer: ConsumerName) -> Result<u64, EngineError> {
        self.blocking(move |l| l.position(&consumer)).await
    }

    /// Acknowledges every event up to and including `seq` for `consumer`; returns the position
    /// after the call (it never moves back).
    pub async fn ack(&self, consumer: ConsumerName, seq: u64) -> Result<u64, EngineError> {
        self.blocking(move |l| l.ack(&consumer, seq)).await
    }

    /// The newest outbox seq (0 when empty).
    pub async fn head_seq(&self) -> Result<u64, EngineError> {
        self.blocking(|l| l.head_seq()).await
    }

    /// An intent's history, oldest first.
    pub async fn history(&self, id: IntentId) -> Result<Vec<Transition>, EngineError> {
        self.blocking(move |l| l.history(id)).await
    }

    /// A feed of the outbox's head. Waiting on it ([`EventFeed::past`]) starts this engine's
    /// watcher if none runs; call that inside the tokio runtime that runs the engine.
    pub fn subscribe(&self) -> EventFeed {
        EventFeed {
            engine: self.clone(),
            head: self.inner.feed.head.subscribe(),
            last: None,
        }
    }

    /// Starts the watcher unless one runs.
    fn start_watcher(&self) {
        let Ok(mut running) = self.inner.feed.running.lock() else {
            return;
        };
        if !*running {
            *running = true;
            tokio::spawn(self.clone().watch_head());
        }
    }

    /// The watcher: publishes the head after each write by this process and every
    /// [`FEED_POLL_INTERVAL`], until no feed is left.
    async fn watch_head(self) {
        let feed = &self.inner.feed;
        loop {
            // A failed look is tried again at the next tick; the feeds' own reads report
            // store errors to their clients.
            if let Ok(seq) = self.head_seq().await {
                feed.head.send_if_modified(|h| {
                    let moved = seq > *h;
                    *h = (*h).max(seq);
                    moved
                });
            }
            tokio::select! {
                () = tokio::time::sleep(FEED_POLL_INTERVAL) => {}
                () = feed.wrote.notified() => {}
                () = feed.head.closed() => {
                    // No feed is left, unless one opened just now: decided under the lock a
                    // new feed's wait takes to start a watcher.
                    let Ok(mut running) = feed.running.lock() else { return };
                    if feed.head.receiver_count() == 0 {
                        *running = false;
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::EngineSettings;
    use crate::clock::SystemClock;
    use crate::intent::{DepositRequest, IntentRequest, Metadata};
    use crate::ledger::Ledger;
    use crate::provider::config::ProvidersConfig;
    use crate::store::counting::CountingStore;
    use crate::store::sqlite::{SqliteConfig, SqliteStore};
    use crate::types::{
        AccountName, Currency, IdempotencyKey, MinorUnits, PartnerReference, UserId,
    };

    fn ledger_on(path: &std::path::Path) -> (Ledger, Arc<CountingStore>) {
        let store = SqliteStore::open(path, SqliteConfig::default()).unwrap();
        let counting = Arc::new(CountingStore::new(Arc::new(store)));
        (
            Ledger::new(counting.clone(), Arc::new(SystemClock)),
            counting,
        )
    }

    fn engine_on(ledger: Ledger) -> Engine {
        Engine::new(
            ledger,
            Arc::new(SystemClock),
            &ProvidersConfig::default(),
            EngineSettings::default(),
        )
        .unwrap()
    }

    fn create(ledger: &Ledger, n: usize) -> IntentId {
        let request = IntentRequest::Deposit(DepositRequest {
            account: AccountName::new("tr-main").unwrap(),
            amount: MinorUnits::new(100).unwrap(),
            currency: Currency::TRY,
            reference: PartnerReference::new(format!("order-{n}")).unwrap(),
            user_id: UserId::new("user-1").unwrap(),
            user_label: None,
            metadata: Metadata::default(),
        });
        let key = IdempotencyKey::new(format!("key-{n}")).unwrap();
        ledger.create(request, key).unwrap().intent.id
    }

    /// What the gRPC stream does: read after its cursor, then wait for the head to pass it.
    /// Reports each seq it reads.
    fn reader(engine: &Engine, seen: tokio::sync::mpsc::UnboundedSender<u64>) {
        let engine = engine.clone();
        let mut feed = engine.subscribe();
        tokio::spawn(async move {
            let mut cursor = 0;
            loop {
                for e in engine.events_after(cursor, 100).await.unwrap() {
                    cursor = e.seq;
                    if seen.send(e.seq).is_err() {
                        return;
                    }
                }
                feed.past(cursor).await;
            }
        });
    }

    /// Waits until `n` readers have each reported `seq`.
    async fn all_read(rx: &mut tokio::sync::mpsc::UnboundedReceiver<u64>, n: usize, seq: u64) {
        let mut count = 0;
        while count < n {
            let s = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("every reader to read the event")
                .unwrap();
            if s == seq {
                count += 1;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_feeds_cost_the_store_nothing_and_every_write_wakes_them() {
        const READERS: usize = 50;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.db");
        let (ledger, counting) = ledger_on(&path);
        let engine = engine_on(ledger.clone());
        // Another process on the same file: its writes tell this engine nothing.
        let (other, _) = ledger_on(&path);
        let first = create(&other, 0);

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..READERS {
            reader(&engine, tx.clone());
        }
        all_read(&mut rx, READERS, 1).await;

        // Idle: over a second, the readers make no store call of their own; the one watcher
        // looks at the head about once per interval.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = counting.calls();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = counting.calls();
        let delta = |m: &str| after.get(m).unwrap_or(&0) - before.get(m).unwrap_or(&0);
        assert_eq!(delta("read_events"), 0, "idle readers read: {after:?}");
        let polls = delta("head_seq");
        assert!(
            (1..=8).contains(&polls),
            "one watcher polls about 5 times a second, whatever the readers: {polls}"
        );
        let total: u64 = after.values().sum::<u64>() - before.values().sum::<u64>();
        assert_eq!(total, polls, "nothing but the watcher's polls: {after:?}");

        // A write by the other process reaches every reader within a few polls.
        let started = Instant::now();
        create(&other, 1);
        all_read(&mut rx, READERS, 2).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );

        // A write by this engine reaches every reader at once (no poll needed).
        let started = Instant::now();
        engine.cancel(first, None).await.unwrap();
        all_read(&mut rx, READERS, 3).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    // A plain test: the blocking driver must not be opened, used or dropped on a runtime's
    // worker thread, so the pools live outside the runtime.
    #[test]
    fn a_write_by_another_engine_on_postgres_wakes_a_feed_within_a_poll() {
        let Some(db) = crate::store::postgres::testing::TestDatabase::create() else {
            return;
        };
        let database = crate::store::Database::parse(db.url()).unwrap();
        // Two instances: each its own pool, its own engine, its own watcher.
        let ours = Ledger::new(database.open().unwrap(), Arc::new(SystemClock));
        let theirs = Ledger::new(database.open().unwrap(), Arc::new(SystemClock));
        let id = create(&theirs, 0);
        let (ours, other_engine) = (engine_on(ours), engine_on(theirs));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut feed = ours.subscribe();
            assert_eq!(
                tokio::time::timeout(Duration::from_secs(2), feed.past(0)).await,
                Ok(1)
            );
            let started = Instant::now();
            other_engine.cancel(id, None).await.unwrap();
            assert_eq!(
                tokio::time::timeout(Duration::from_secs(2), feed.past(1)).await,
                Ok(2),
                "the other instance's event did not wake this one's feed"
            );
            assert!(
                started.elapsed() < FEED_POLL_INTERVAL * 5,
                "{:?}",
                started.elapsed()
            );
        });
        drop(rt);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watcher_runs_only_while_a_feed_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, counting) = ledger_on(&dir.path().join("feed.db"));
        let engine = engine_on(ledger.clone());
        create(&ledger, 0);

        // No feed: nothing watches.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(counting.of("head_seq"), 0);

        let mut feed = engine.subscribe();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(2), feed.past(0)).await,
            Ok(1)
        );
        drop(feed);
        // The watcher notices within an interval that no feed is left, and stops.
        tokio::time::sleep(FEED_POLL_INTERVAL * 3).await;
        let stopped = counting.of("head_seq");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(counting.of("head_seq"), stopped, "the watcher still polls");

        // A new feed starts it again.
        create(&ledger, 1);
        let mut feed = engine.subscribe();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(2), feed.past(1)).await,
            Ok(2)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_feed_woken_for_a_head_it_cannot_read_waits_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, counting) = ledger_on(&dir.path().join("feed.db"));
        let engine = engine_on(ledger.clone());
        create(&ledger, 0);
        let mut feed = engine.subscribe();
        assert_eq!(feed.past(0).await, 1);
        // Woken at head 1 for cursor 0, a reader that then read nothing does not spin.
        let reads = counting.of("read_events");
        let again = tokio::time::timeout(Duration::from_millis(500), feed.past(0)).await;
        assert!(again.is_err(), "woke again for the same head");
        assert_eq!(counting.of("read_events"), reads);
        create(&ledger, 1);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(2), feed.past(0)).await,
            Ok(2)
        );
    }
}
