//! Persistence. [`Store`] is what core needs from a database; [`sqlite::SqliteStore`] is the
//! embedded default. A store holds no business rules: it writes what the [`crate::Ledger`]
//! decided, atomically, and enforces the invariants a database can enforce better than code
//! (unique idempotency keys, one provider intent per intent, one event per business key).
//!
//! [`postgres::PostgresStore`] (feature `postgres`) implements the same trait for several
//! instances on one database; every SQL dialect detail stays inside its module. The one
//! subtle duty of any implementation is outbox order: an event with a higher `seq` must never
//! become visible before one with a lower `seq`, or a consumer reading "after my cursor" could
//! skip it. SQLite's single writer gives that for free; the PostgreSQL store assigns seqs as
//! each transaction's last step, in commit order.

mod codec;
#[cfg(any(test, feature = "test-support"))]
pub mod counting;
pub(crate) mod group;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

use crate::error::StoreError;
use crate::intent::Intent;
use crate::lifecycle::{IntentEvent, IntentStatus, Transition};
use crate::outbox::{NewEvent, OutboxEvent};
use crate::status::Proof;
use crate::types::{AccountName, ConsumerName, IdempotencyKey, IntentId, Provider, Timestamp};

/// Where intents live: a SQLite file (the zero-configuration default, one host) or a
/// PostgreSQL database (several instances sharing state).
#[derive(Clone, Debug)]
pub enum Database {
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(postgres::PostgresConfig),
}

impl Database {
    /// A `postgres://` or `postgresql://` URL names PostgreSQL; anything else is a SQLite
    /// file's path. The error never repeats the value (a URL may hold a password).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("is empty".into());
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                return Ok(Database::Postgres(postgres::PostgresConfig::new(s)));
            }
            #[cfg(not(feature = "postgres"))]
            {
                return Err("names PostgreSQL, and this build has no PostgreSQL support".into());
            }
        }
        Ok(Database::Sqlite(std::path::PathBuf::from(s)))
    }

    /// Opens it (creating a SQLite file if needed) and brings its schema up to date.
    pub fn open(&self) -> Result<std::sync::Arc<dyn Store>, StoreError> {
        Ok(match self {
            Database::Sqlite(path) => std::sync::Arc::new(sqlite::SqliteStore::open(
                path,
                sqlite::SqliteConfig::default(),
            )?),
            #[cfg(feature = "postgres")]
            Database::Postgres(config) => {
                std::sync::Arc::new(postgres::PostgresStore::open(config.clone())?)
            }
        })
    }

    /// For logs and errors: the file's path, or the server and database without credentials.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            #[cfg(feature = "postgres")]
            Database::Postgres(config) => postgres::redacted_url(&config.url),
        }
    }
}

/// Which intents to list. Empty fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Any of these statuses.
    pub statuses: Vec<IntentStatus>,
    /// One provider.
    pub provider: Option<Provider>,
    /// One configured account.
    pub account: Option<AccountName>,
    /// Created at or after.
    pub created_from: Option<Timestamp>,
    /// Created before.
    pub created_to: Option<Timestamp>,
}

/// Where a listing stopped: the last intent returned. Lists run newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListCursor {
    /// Its creation time.
    pub created_at: Timestamp,
    /// Its id (breaks ties).
    pub id: IntentId,
}

/// A provider signal kept until it can be applied: its intent is not known yet (a webhook that
/// beat the create response), or it is an unsigned claim the provider has not confirmed yet.
/// Parked events are bounded per account (a cap, a time to live, one row per dedup key), so a
/// flood of unsigned bodies costs bounded disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedEvent {
    /// Its row (0 before it is stored).
    pub id: i64,
    /// The provider it came from.
    pub provider: Provider,
    /// The account that received it. It may only ever touch intents of this account. `None`
    /// only for rows kept before events carried their account; those are confirmed with the
    /// status API of the intent's own account, like a claim.
    pub account: Option<AccountName>,
    /// The provider reference it names (Pientegra `intentId`, `decentroTxnId`).
    pub lookup_key: String,
    /// For a claim whose intent is known but not yet confirmed: that intent.
    pub intent_id: Option<IntentId>,
    /// What it proves by itself.
    pub proof: Proof,
    /// When it arrived.
    pub received_at: Timestamp,
    /// The signal.
    pub event: IntentEvent,
}

impl ParkedEvent {
    /// One row per dedup key and account: a redelivery of the same signed event, or another
    /// copy of the same claim, is not kept twice. A claim's content is never applied (the
    /// provider's status is), so one claim per kind, reference and intent is enough.
    pub fn dedup_key(&self) -> String {
        match (self.proof, &self.event.provider_event_id) {
            (Proof::Signed, Some(id)) => format!("event:{id}"),
            (Proof::Signed, None) => format!("signal:{}", self.event.signal.kind()),
            // Per intent, so that a claim naming one intent never takes the place of a claim
            // naming another.
            (Proof::Claim, _) => format!(
                "claim:{}:{}",
                self.event.signal.kind(),
                self.intent_id.map(|i| i.to_string()).unwrap_or_default()
            ),
        }
    }
}

/// Maintenance work one account has waiting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Intents past their deadline, not expired yet.
    pub due_for_expiry: usize,
    /// Intents left in `created` long enough for recovery.
    pub stuck_in_created: usize,
    /// Signals parked for the account.
    pub parked: usize,
}

/// What parking did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParkOutcome {
    /// Kept.
    Parked,
    /// The same event (same account, reference and dedup key) is already kept.
    AlreadyParked,
    /// The account already keeps its cap of parked events; nothing was written.
    Full,
}

/// A new intent with the rows that accompany its creation.
#[derive(Debug)]
pub struct NewIntent<'a> {
    /// The intent, in `Created`.
    pub intent: &'a Intent,
    /// The caller's request fingerprint, compared on idempotent replay.
    pub fingerprint: &'a str,
    /// Its first history row (none → created).
    pub transition: &'a Transition,
    /// Its `intent.created` event.
    pub event: &'a NewEvent,
}

/// What an insert found.
#[derive(Debug)]
pub enum InsertOutcome {
    /// Inserted; the event got this sequence number.
    Inserted {
        /// The `intent.created` event's seq.
        seq: u64,
    },
    /// An intent with the same idempotency key already exists; nothing was written.
    Existing {
        /// That intent.
        intent: Box<Intent>,
        /// Its request fingerprint.
        fingerprint: String,
    },
}

/// The provider delivery a commit consumes, for dedup of redeliveries.
#[derive(Clone, Copy, Debug)]
pub struct ProviderDelivery<'a> {
    /// The provider.
    pub provider: Provider,
    /// Its event id.
    pub event_id: &'a str,
}

/// A decided change to one intent, committed all together or not at all.
#[derive(Debug)]
pub struct Commit<'a> {
    /// The intent.
    pub intent_id: IntentId,
    /// The version the decision was made on; the commit fails if the stored one differs.
    pub expected_version: u64,
    /// The new snapshot and its history row; `None` for an anomaly, which changes nothing.
    pub update: Option<(&'a Intent, &'a Transition)>,
    /// The outbox event.
    pub event: &'a NewEvent,
    /// The provider delivery, recorded so that a redelivery is recognised.
    pub delivery: Option<ProviderDelivery<'a>>,
    /// When it is committed.
    pub now: Timestamp,
}

/// What a commit did.
#[derive(Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Written; the event got this sequence number.
    Committed {
        /// The event's seq.
        seq: u64,
    },
    /// The intent changed since it was read; nothing was written. Re-read and re-decide.
    VersionConflict,
    /// The provider delivery, or an identical anomaly, was recorded before; nothing was
    /// written.
    AlreadyRecorded,
}

/// What core needs from a database. Implementations are blocking; async callers run them on a
/// blocking pool.
pub trait Store: Send + Sync + 'static {
    /// Whether a point read by id is cheap enough to run on an async worker thread (an
    /// embedded file's indexed read) rather than on the blocking pool (a network round trip).
    fn reads_in_place(&self) -> bool {
        false
    }

    /// Inserts a new intent with its history row and event, unless its idempotency key exists.
    fn insert_intent(&self, new: NewIntent<'_>) -> Result<InsertOutcome, StoreError>;

    /// Commits a decided change (see [`Commit`]).
    fn commit(&self, commit: Commit<'_>) -> Result<CommitOutcome, StoreError>;

    /// One intent by our id.
    fn get_intent(&self, id: IntentId) -> Result<Option<Intent>, StoreError>;

    /// One intent by the caller's idempotency key.
    fn get_by_idempotency_key(&self, key: &IdempotencyKey) -> Result<Option<Intent>, StoreError>;

    /// One intent by the provider's id for it (Pientegra `intentId`, `decentroTxnId`).
    fn find_by_provider_ref(
        &self,
        provider: Provider,
        lookup_key: &str,
    ) -> Result<Option<Intent>, StoreError>;

    /// An intent's history, oldest first.
    fn history(&self, id: IntentId) -> Result<Vec<Transition>, StoreError>;

    /// Up to `limit` outbox events with `seq > after`, in order.
    fn read_events(&self, after: u64, limit: usize) -> Result<Vec<OutboxEvent>, StoreError>;

    /// The highest committed seq (0 when the outbox is empty).
    fn head_seq(&self) -> Result<u64, StoreError>;

    /// The seq a named consumer last acknowledged (0 if it never did).
    fn consumer_position(&self, consumer: &ConsumerName) -> Result<u64, StoreError>;

    /// Moves a consumer's position forward to `seq`; never backwards. Returns the position
    /// after the call.
    fn advance_consumer(
        &self,
        consumer: &ConsumerName,
        seq: u64,
        now: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Up to `limit` intents matching `filter`, newest first, after `after`.
    fn list_intents(
        &self,
        filter: &ListFilter,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<Intent>, StoreError>;

    /// When the provider's side was created (the hand-off's time, else the intent's
    /// creation), oldest first, for up to `limit` intents of one account that a
    /// reconciliation sweep must still cover at `now` (their `reconcile_until` is later), and
    /// only those before `created_before`. Must cost in proportion to the intents returned.
    fn reconcile_open(
        &self,
        provider: Provider,
        account: &AccountName,
        now: Timestamp,
        created_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<Timestamp>, StoreError>;

    /// Up to `limit` intents of one account in `created` or `pending` whose `expires_at` has
    /// passed, soonest first. Must cost in proportion to the intents returned, not to the table.
    fn due_for_expiry(
        &self,
        provider: Provider,
        account: &AccountName,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Intent>, StoreError>;

    /// Up to `limit` intents of one account still `created` and unchanged since
    /// `updated_before`.
    fn stuck_in_created(
        &self,
        provider: Provider,
        account: &AccountName,
        updated_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<Intent>, StoreError>;

    /// How much maintenance work one account has waiting (for metrics).
    fn backlog(
        &self,
        provider: Provider,
        account: &AccountName,
        now: Timestamp,
        updated_before: Timestamp,
    ) -> Result<Backlog, StoreError>;

    /// Replaces a snapshot without a transition (same status), under the version check. For
    /// facts that are not lifecycle steps, such as the last transient error. Returns whether
    /// it was written.
    fn update_snapshot(&self, intent: &Intent, expected_version: u64) -> Result<bool, StoreError>;

    /// Keeps a parked event unless the same one is kept, or its account already keeps `cap`
    /// events. Must not write anything in the last two cases.
    fn park_event(&self, event: &ParkedEvent, cap: usize) -> Result<ParkOutcome, StoreError>;

    /// The events kept for one intent of `account`: those naming `lookup_key` (its provider
    /// reference, when it has one) or the intent itself, oldest first. Rows kept for another
    /// account are never returned; rows whose account is unknown are.
    fn parked_for(
        &self,
        provider: Provider,
        account: &AccountName,
        lookup_key: Option<&str>,
        intent: IntentId,
    ) -> Result<Vec<ParkedEvent>, StoreError>;

    /// Up to `limit` parked events of one provider and account (`None`: those kept before
    /// events carried their account) with a row id above `after`, in row order (maintenance
    /// walks them all, a page at a time).
    fn parked_after(
        &self,
        provider: Provider,
        account: Option<&AccountName>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ParkedEvent>, StoreError>;

    /// Forgets a kept event once it has been applied or settled.
    fn drop_parked(&self, id: i64) -> Result<(), StoreError>;

    /// Forgets every event kept since before `received_before`; returns how many.
    fn prune_parked(&self, received_before: Timestamp) -> Result<usize, StoreError>;

    /// Where one account's named provider sweep stopped, if it ever ran.
    fn sweep_cursor(
        &self,
        provider: Provider,
        account: &AccountName,
        name: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Takes the lease `name` for `holder` until `until`, if no one holds it at `now` or
    /// `holder` already does; returns its fence, which grows each time the lease changes hands
    /// (and stays while one holder renews it), or `None` if another holder has it. Background
    /// work that several instances could do (a maintenance job of one account) runs only
    /// under its lease.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<u64>, StoreError>;

    /// Gives the lease back, if `holder` still holds it with `fence`.
    fn release_lease(&self, name: &str, holder: &str, fence: u64) -> Result<(), StoreError>;

    /// Records where one account's named provider sweep stopped.
    fn set_sweep_cursor(
        &self,
        provider: Provider,
        account: &AccountName,
        name: &str,
        value: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Takes one slot of the rate named `key` at `now`, if it is free: a GCRA rate whose
    /// "theoretical arrival time" (TAT) is kept per key. With `tat = max(stored, now)`, the
    /// slot is free when `tat - now <= tolerance_ms`, and taking it stores `tat +
    /// interval_ms`. So with no tolerance, takers are spaced at least `interval_ms` apart;
    /// with a tolerance, they may run that far ahead of the rate, and push later takers back.
    /// `Err(wait_ms)` when it is not free: how long until it is. Must be one conditional write,
    /// so that every process and instance sharing the store takes turns on the one row.
    fn take_slot(
        &self,
        key: &str,
        now: Timestamp,
        interval_ms: i64,
        tolerance_ms: i64,
    ) -> Result<Result<(), i64>, StoreError>;

    /// Forgets rate slots whose time passed before `free_before` (taking them again would start
    /// afresh anyway); returns how many.
    fn prune_slots(&self, free_before: Timestamp) -> Result<usize, StoreError>;
}
