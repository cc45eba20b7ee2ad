//! A [`Store`] that counts the calls made to the store it wraps, by method: how tests and
//! benchmarks see what a piece of the engine costs the database (an idle event stream, say,
//! should cost nothing). Test support only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::*;

/// `inner`, with every call counted by method name.
pub struct CountingStore {
    inner: Arc<dyn Store>,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl std::fmt::Debug for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingStore")
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl CountingStore {
    /// Counts the calls made to `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        CountingStore {
            inner,
            calls: Mutex::default(),
        }
    }

    /// Calls so far, by method.
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Calls so far, all methods together.
    pub fn total(&self) -> u64 {
        self.calls().values().sum()
    }

    /// Calls so far to `method`.
    pub fn of(&self, method: &str) -> u64 {
        self.calls().get(method).copied().unwrap_or(0)
    }

    fn count(&self, method: &'static str) -> &dyn Store {
        if let Ok(mut c) = self.calls.lock() {
            *c.entry(method).or_default() += 1;
        }
        &*self.inner
    }
}

impl Store for CountingStore {
    fn reads_in_place(&self) -> bool {
        self.inner.reads_in_place()
    }
    fn insert_intent(&self, new: NewIntent<'_>) -> Result<InsertOutcome, StoreError> {
        self.count("insert_intent").insert_intent(new)
    }
    fn commit(&self, commit: Commit<'_>) -> Result<CommitOutcome, StoreError> {
        self.count("commit").commit(commit)
    }
    fn get_intent(&self, id: IntentId) -> Result<Option<Intent>, StoreError> {
        self.count("get_intent").get_intent(id)
    }
    fn get_by_idempotency_key(&self, key: &IdempotencyKey) -> Result<Option<Intent>, StoreError> {
        self.count("get_by_idempotency_key")
            .get_by_idempotency_key(key)
    }
    fn find_by_provider_ref(
        &self,
        provider: Provider,
        lookup_key: &str,
    ) -> Result<Option<Intent>, StoreError> {
        self.count("find_by_provider_ref")
            .find_by_provider_ref(provider, lookup_key)
    }
    fn history(&self, id: IntentId) -> Result<Vec<Transition>, StoreError> {
        self.count("history").history(id)
    }
    fn read_events(&self, after: u64, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        self.count("read_events").read_events(after, limit)
    }
    fn head_seq(&self) -> Result<u64, StoreError> {
        self.count("head_seq").head_seq()
    }
    fn consumer_position(&self, consumer: &ConsumerName) -> Result<u64, StoreError> {
        self.count("consumer_position").consumer_position(consumer)
    }
    fn advance_consumer(
        &self,
        consumer: &ConsumerName,
        seq: u64,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.count("advance_consumer")
            .advance_consumer(consumer, seq, now)
    }
    fn list_intents(
        &self,
        filter: &ListFilter,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<Intent>, StoreError> {
        self.count("list_intents")
            .list_intents(filter, after, limit)
    }
    fn reconcile_open(
        &self,
        provider: Provider,
        account: &AccountName,
        now: Timestamp,
        created_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<Timestamp>, StoreError> {
        self.count("reconcile_open")
            .reconcile_open(provider, account, now, created_before, limit)
    }
    fn due_for_expiry(
        &self,
        provider: Provider,
        account: &AccountName,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Intent>, StoreError> {
        self.count("due_for_expiry")
            .due_for_expiry(provider, account, now, limit)
    }
    fn stuck_in_created(
        &self,
        provider: Provider,
        account: &AccountName,
        updated_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<Intent>, StoreError> {
        self.count("stuck_in_created")
            .stuck_in_created(provider, account, updated_before, limit)
    }
    fn backlog(
        &self,
        provider: Provider,
        account: &AccountName,
        now: Timestamp,
        updated_before: Timestamp,
    ) -> Result<Backlog, StoreError> {
        self.count("backlog")
            .backlog(provider, account, now, updated_before)
    }
    fn update_snapshot(&self, intent: &Intent, expected_version: u64) -> Result<bool, StoreError> {
        self.count("update_snapshot")
            .update_snapshot(intent, expected_version)
    }
    fn park_event(&self, event: &ParkedEvent, cap: usize) -> Result<ParkOutcome, StoreError> {
        self.count("park_event").park_event(event, cap)
    }
    fn parked_for(
        &self,
        provider: Provider,
        account: &AccountName,
        lookup_key: Option<&str>,
        intent: IntentId,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        self.count("parked_for")
            .parked_for(provider, account, lookup_key, intent)
    }
    fn parked_after(
        &self,
        provider: Provider,
        account: Option<&AccountName>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        self.count("parked_after")
            .parked_after(provider, account, after, limit)
    }
    fn drop_parked(&self, id: i64) -> Result<(), StoreError> {
        self.count("drop_parked").drop_parked(id)
    }
    fn prune_parked(&self, received_before: Timestamp) -> Result<usize, StoreError> {
        self.count("prune_parked").prune_parked(received_before)
    }
    fn sweep_cursor(
        &self,
        provider: Provider,
        account: &AccountName,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        self.count("sweep_cursor")
            .sweep_cursor(provider, account, name)
    }
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<u64>, StoreError> {
        self.count("acquire_lease")
            .acquire_lease(name, holder, now, until)
    }
    fn release_lease(&self, name: &str, holder: &str, fence: u64) -> Result<(), StoreError> {
        self.count("release_lease")
            .release_lease(name, holder, fence)
    }
    fn set_sweep_cursor(
        &self,
        provider: Provider,
        account: &AccountName,
        name: &str,
        value: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.count("set_sweep_cursor")
            .set_sweep_cursor(provider, account, name, value, now)
    }
    fn take_slot(
        &self,
        key: &str,
        now: Timestamp,
        interval_ms: i64,
        tolerance_ms: i64,
    ) -> Result<Result<(), i64>, StoreError> {
        self.count("take_slot")
            .take_slot(key, now, interval_ms, tolerance_ms)
    }
    fn prune_slots(&self, free_before: Timestamp) -> Result<usize, StoreError> {
        self.count("prune_slots").prune_slots(free_before)
    }
}
