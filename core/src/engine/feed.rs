//! The outbox as the façades read it: events after a cursor, a consumer's position, acks, the
//! head, history, and a subscription that wakes when this process writes. A façade reads the
//! outbox only through these, never through the ledger or the store beneath.

use super::{Engine, EngineError};
use crate::lifecycle::Transition;
use crate::outbox::OutboxEvent;
use crate::types::{ConsumerName, IntentId};

/// Wakes when the engine in this process has written something. Writes by other processes on
/// the same database do not wake it, so a reader also polls (the gRPC stream does, every
/// 200 ms when idle).
#[derive(Debug)]
pub struct EventFeed {
    changes: tokio::sync::watch::Receiver<()>,
}

impl EventFeed {
    /// Forgets the writes seen so far: call it just before reading, so that a write after the
    /// read is never missed.
    pub fn mark_seen(&mut self) {
        self.changes.mark_unchanged();
    }

    /// Resolves at the next write after [`EventFeed::mark_seen`] (at once if there was one).
    pub async fn changed(&mut self) {
        // An error means the engine is gone; there will be no more writes to wait for.
        if self.changes.changed().await.is_err() {
            std::future::pending::<()>().await;
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

    /// A subscription to this process's writes.
    pub fn subscribe(&self) -> EventFeed {
        EventFeed {
            changes: self.inner.changed.subscribe(),
        }
    }
}
