//! The ledger: the one path by which intents are created and change status.
//!
//! Creation is idempotent on the caller's key. A change is decided by the pure
//! [`lifecycle::plan`] on a snapshot and committed under an optimistic version check; if
//! another writer got there first, the ledger re-reads and decides again, so concurrent
//! deliveries of contradicting signals still go through the table one at a time.

use std::sync::Arc;

use crate::clock::Clock;
use crate::error::CoreError;
use crate::intent::{Intent, IntentRequest};
use crate::lifecycle::{self, Anomaly, IntentEvent, Plan, Transition};
use crate::outbox::{NewEvent, OutboxEvent};
use crate::store::{
    Backlog, Commit, CommitOutcome, InsertOutcome, ListCursor, ListFilter, NewIntent, ParkOutcome,
    ParkedEvent, ProviderDelivery, Store,
};
use crate::types::{AccountName, ConsumerName, IdempotencyKey, IntentId, Provider, Timestamp};

/// How many times a change is re-decided after losing a version race before the caller is told
/// to retry. Each round re-reads the intent, so this only runs out under pathological
/// contention on one intent.
const MAX_ATTEMPTS: usize = 16;

/// The most events one poll returns.
pub const MAX_POLL: usize = 1_000;

/// The result of a create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    /// The intent.
    pub intent: Intent,
    /// `true` when the key was seen before and this is the original intent.
    pub replayed: bool,
}

/// The result of applying an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The intent moved; history and outbox were written.
    Applied {
        /// The intent after the change.
        intent: Box<Intent>,
        /// The history row written.
        transition: Transition,
        /// The outbox event's seq.
        seq: u64,
    },
    /// The intent was already where the event would take it, or this provider delivery was
    /// applied before. Nothing was written.
    Duplicate {
        /// The intent as it is.
        intent: Box<Intent>,
    },
    /// The event describes a step the intent already moved past. Nothing was written.
    Stale {
        /// The intent as it is.
        intent: Box<Intent>,
    },
    /// The event contradicted the intent; it was recorded as an `intent.anomaly` event and not
    /// applied.
    Anomaly {
        /// The intent, unchanged.
        intent: Box<Intent>,
        /// What was refused.
        anomaly: Box<Anomaly>,
        /// The `intent.anomaly` event's seq.
        seq: u64,
    },
}

impl ApplyOutcome {
    /// The intent after the call.
    pub fn intent(&self) -> &Intent {
        match self {
            ApplyOutcome::Applied { intent, .. }
            | ApplyOutcome::Duplicate { intent }
            | ApplyOutcome::Stale { intent }
            | ApplyOutcome::Anomaly { intent, .. } => intent,
        }
    }
}

/// Intents, their lifecycle and their outbox, over a [`Store`].
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

impl Ledger {
    /// A ledger over `store`, reading time from `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Ledger { store, clock }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Records a new intent in `Created`, or returns the one this key already created.
    ///
    /// The same key with the same parameters returns the original intent (`replayed`); with
    /// different parameters it fails with [`CoreError::IdempotencyConflict`]. Concurrent
    /// creates with one key, from threads or processes, yield one intent.
    pub fn create(
        &self,
        request: IntentRequest,
        key: IdempotencyKey,
    ) -> Result<Created, CoreError> {
        let fingerprint = request.fingerprint()?;
        let intent = Intent::new(request, key, self.clock.now())?;
        let transition = Transition {
            from: None,
            to: intent.status,
            cause: lifecycle::Cause::Api,
            at: intent.created_at,
            provider_event_id: None,
        };
        let event = NewEvent::transition(&intent, &transition);
        let outcome = self.store.insert_intent(NewIntent {
            intent: &intent,
            fingerprint: &fingerprint,
            transition: &transition,
            event: &event,
        })?;
        match outcome {
            InsertOutcome::Inserted { .. } => Ok(Created {
                intent,
                replayed: false,
            }),
            InsertOutcome::Existing {
                intent: existing,
                fingerprint: stored,
            } => {
                if stored == fingerprint {
                    Ok(Created {
                        intent: *existing,
                        replayed: true,
                    })
                } else {
                    Err(CoreError::IdempotencyConflict {
                        key: existing.idempotency_key.clone(),
                        existing: existing.id,
                    })
                }
            }
        }
    }

    /// Applies one event to one intent, atomically with its history row and outbox event.
    /// Never panics; a provider event always gets an outcome, and only a refused command
    /// (cancel after payment) is an error.
    pub fn apply(&self, id: IntentId, event: IntentEvent) -> Result<ApplyOutcome, CoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let intent = self.get(id)?;
            let now = self.clock.now();
            let delivery = event
                .provider_event_id
                .as_deref()
                .map(|event_id| ProviderDelivery {
                    provider: intent.provider,
                    event_id,
                });
            let plan = lifecycle::plan(&intent, &event, now)?;
            let (update, new_event) = match &plan {
                Plan::Duplicate => {
                    return Ok(ApplyOutcome::Duplicate {
                        intent: Box::new(intent),
                    });
                }
                Plan::Stale => {
                    return Ok(ApplyOutcome::Stale {
                        intent: Box::new(intent),
                    });
                }
                Plan::Apply { next, transition } => (
                    Some((&**next, transition)),
                    NewEvent::transition(next, transition),
                ),
                Plan::Anomaly(a) => (None, NewEvent::anomaly(&intent, a)),
            };
            let outcome = self.store.commit(Commit {
                intent_id: id,
                expected_version: intent.version,
                update,
                event: &new_event,
                delivery,
                now,
            })?;
            match outcome {
                CommitOutcome::Committed { seq } => {
                    let intent = Box::new(intent);
                    return Ok(match plan {
                        Plan::Apply { next, transition } => ApplyOutcome::Applied {
                            intent: next,
                            transition,
                            seq,
                        },
                        Plan::Anomaly(anomaly) => ApplyOutcome::Anomaly {
                            intent,
                            anomaly,
                            seq,
                        },
                        // Returned before the commit; listed so the match stays total.
                        Plan::Duplicate => ApplyOutcome::Duplicate { intent },
                        Plan::Stale => ApplyOutcome::Stale { intent },
                    });
                }
                CommitOutcome::AlreadyRecorded => {
                    return Ok(ApplyOutcome::Duplicate {
                        intent: Box::new(intent),
                    });
                }
                CommitOutcome::VersionConflict => continue,
            }
        }
        Err(CoreError::Contention(id))
    }

    /// Records `event` as an anomaly without applying it, for contradictions the table cannot
    /// see (a callback the provider's own status API denies). Recorded once per provider
    /// event; a repeat is a duplicate.
    pub fn record_anomaly(
        &self,
        id: IntentId,
        event: &IntentEvent,
        detail: &str,
    ) -> Result<ApplyOutcome, CoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let intent = self.get(id)?;
            let now = self.clock.now();
            let anomaly = Box::new(Anomaly {
                status: intent.status,
                signal: event.signal.clone(),
                cause: event.cause,
                provider_event_id: event.provider_event_id.clone(),
                detail: detail.to_string(),
                at: now,
            });
            let new_event = NewEvent::anomaly(&intent, &anomaly);
            let outcome = self.store.commit(Commit {
                intent_id: id,
                expected_version: intent.version,
                update: None,
                event: &new_event,
                delivery: event
                    .provider_event_id
                    .as_deref()
                    .map(|event_id| ProviderDelivery {
                        provider: intent.provider,
                        event_id,
                    }),
                now,
            })?;
            match outcome {
                CommitOutcome::Committed { seq } => {
                    return Ok(ApplyOutcome::Anomaly {
                        intent: Box::new(intent),
                        anomaly,
                        seq,
                    });
                }
                CommitOutcome::AlreadyRecorded => {
                    return Ok(ApplyOutcome::Duplicate {
                        intent: Box::new(intent),
                    });
                }
                CommitOutcome::VersionConflict => continue,
            }
        }
        Err(CoreError::Contention(id))
    }

    /// Records a transient provider failure on an intent still in `created`, without a
    /// transition. A no-op if the intent moved on meanwhile.
    pub fn note_error(&self, id: IntentId, error: &str) -> Result<Intent, CoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.get(id)?;
            if current.status != lifecycle::IntentStatus::Created {
                return Ok(current);
            }
            let mut next = current.clone();
            next.last_error = Some(error.to_string());
            next.version += 1;
            next.updated_at = self.clock.now();
            if self.store.update_snapshot(&next, current.version)? {
                return Ok(next);
            }
        }
        Err(CoreError::Contention(id))
    }

    /// A page of intents, newest first, and the cursor of the next page (`None` at the end).
    pub fn list(
        &self,
        filter: &ListFilter,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<(Vec<Intent>, Option<ListCursor>), CoreError> {
        let limit = limit.clamp(1, MAX_POLL);
        // One extra row says whether another page exists.
        let mut rows = self.store.list_intents(filter, after, limit + 1)?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = more.then(|| rows.last()).flatten().map(|i| ListCursor {
            created_at: i.created_at,
            id: i.id,
        });
        Ok((rows, next))
    }

    /// When the intents of one account that a sweep must still cover were created, oldest
    /// first, leaving out those younger than `min_age_ms` (their webhooks are not late yet).
    pub fn reconcile_open(
        &self,
        provider: Provider,
        account: &AccountName,
        min_age_ms: i64,
        limit: usize,
    ) -> Result<Vec<Timestamp>, CoreError> {
        let now = self.clock.now();
        Ok(self.store.reconcile_open(
            provider,
            account,
            now,
            now.plus_millis(-min_age_ms),
            limit,
        )?)
    }

    /// One account's intents whose hand-off expired unsettled (see [`Store::due_for_expiry`]).
    pub fn due_for_expiry(
        &self,
        provider: Provider,
        account: &AccountName,
        limit: usize,
    ) -> Result<Vec<Intent>, CoreError> {
        Ok(self
            .store
            .due_for_expiry(provider, account, self.clock.now(), limit)?)
    }

    /// One account's intents left in `created` for at least `age_ms`.
    pub fn stuck_in_created(
        &self,
        provider: Provider,
        account: &AccountName,
        age_ms: i64,
        limit: usize,
    ) -> Result<Vec<Intent>, CoreError> {
        let before = self.clock.now().plus_millis(-age_ms);
        Ok(self
            .store
            .stuck_in_created(provider, account, before, limit)?)
    }

    /// How much maintenance work one account has waiting; `age_ms` as for
    /// [`Ledger::stuck_in_created`].
    pub fn backlog(
        &self,
        provider: Provider,
        account: &AccountName,
        age_ms: i64,
    ) -> Result<Backlog, CoreError> {
        let now = self.clock.now();
        Ok(self
            .store
            .backlog(provider, account, now, now.plus_millis(-age_ms))?)
    }

    /// Keeps a provider signal until it can be applied, under its account's `cap`.
    pub fn park(&self, event: &ParkedEvent, cap: usize) -> Result<ParkOutcome, CoreError> {
        Ok(self.store.park_event(event, cap)?)
    }

    /// The signals kept for `intent`: those naming its provider reference, or the intent
    /// itself, and received by its own account (or by an unknown one, before events carried
    /// their account). Oldest first.
    pub fn parked_for(&self, intent: &Intent) -> Result<Vec<ParkedEvent>, CoreError> {
        let key = intent.provider_ref.as_ref().map(|r| r.lookup_key());
        Ok(self
            .store
            .parked_for(intent.provider, &intent.account, key, intent.id)?)
    }

    /// A page of the signals kept for one provider and account (`None`: those kept before
    /// events carried their account), after row `after`.
    pub fn parked_after(
        &self,
        provider: Provider,
        account: Option<&AccountName>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ParkedEvent>, CoreError> {
        Ok(self.store.parked_after(provider, account, after, limit)?)
    }

    /// Forgets a kept signal.
    pub fn drop_parked(&self, id: i64) -> Result<(), CoreError> {
        Ok(self.store.drop_parked(id)?)
    }

    /// Forgets every signal kept for longer than `ttl_ms`; returns how many.
    pub fn prune_parked(&self, ttl_ms: i64) -> Result<usize, CoreError> {
        let before = self.clock.now().plus_millis(-ttl_ms);
        Ok(self.store.prune_parked(before)?)
    }

    /// Where one account's named provider sweep stopped.
    pub fn sweep_cursor(
        &self,
        provider: Provider,
        account: &AccountName,
        name: &str,
    ) -> Result<Option<String>, CoreError> {
        Ok(self.store.sweep_cursor(provider, account, name)?)
    }

    /// Records where one account's named provider sweep stopped.
    pub fn set_sweep_cursor(
        &self,
        provider: Provider,
        account: &AccountName,
        name: &str,
        value: &str,
    ) -> Result<(), CoreError> {
        Ok(self
            .store
            .set_sweep_cursor(provider, account, name, value, self.clock.now())?)
    }

    /// The newest outbox seq (0 when empty).
    pub fn head_seq(&self) -> Result<u64, CoreError> {
        Ok(self.store.head_seq()?)
    }

    /// One intent.
    pub fn get(&self, id: IntentId) -> Result<Intent, CoreError> {
        self.store
            .get_intent(id)?
            .ok_or(CoreError::IntentNotFound(id))
    }

    /// The intent a provider reference names, if any.
    pub fn find_by_provider_ref(
        &self,
        provider: Provider,
        lookup_key: &str,
    ) -> Result<Option<Intent>, CoreError> {
        Ok(self.store.find_by_provider_ref(provider, lookup_key)?)
    }

    /// An intent's history, oldest first.
    pub fn history(&self, id: IntentId) -> Result<Vec<Transition>, CoreError> {
        let rows = self.store.history(id)?;
        if rows.is_empty() {
            return Err(CoreError::IntentNotFound(id));
        }
        Ok(rows)
    }

    /// Up to `limit` (at most [`MAX_POLL`]) events after `cursor`, for hosts that keep their
    /// own cursor.
    pub fn events_after(&self, cursor: u64, limit: usize) -> Result<Vec<OutboxEvent>, CoreError> {
        Ok(self.store.read_events(cursor, limit.clamp(1, MAX_POLL))?)
    }

    /// Up to `limit` events after where `consumer` last acknowledged.
    pub fn poll(
        &self,
        consumer: &ConsumerName,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, CoreError> {
        let cursor = self.store.consumer_position(consumer)?;
        self.events_after(cursor, limit)
    }

    /// Where `consumer` last acknowledged (0 for a new consumer).
    pub fn position(&self, consumer: &ConsumerName) -> Result<u64, CoreError> {
        Ok(self.store.consumer_position(consumer)?)
    }

    /// Acknowledges every event up to and including `seq` for `consumer`. Acknowledging an
    /// earlier seq again is a no-op (positions never move back); acknowledging past the newest
    /// event is refused, since it would silently skip events not yet written.
    pub fn ack(&self, consumer: &ConsumerName, seq: u64) -> Result<u64, CoreError> {
        let head = self.store.head_seq()?;
        if seq > head {
            return Err(CoreError::invalid(
                "seq",
                format!("{seq} is past the newest event ({head})"),
            ));
        }
        Ok(self
            .store
            .advance_consumer(consumer, seq, self.clock.now())?)
    }
}
