//! The durable event outbox: how a host learns each outcome exactly once.
//!
//! Every applied transition (and every anomaly) writes one event in the same transaction as
//! the intent change. The store numbers events with a sequence that only grows and becomes
//! visible in order, so a consumer that reads "everything after the last seq I acked" never
//! skips one. Delivery to the host is at least once (it may read an event again after a crash
//! before its ack); the event's `business_key` is what makes the host's effect exactly once:
//! it is unique per intent and type (`intent.approved:<id>`), and the store refuses a second
//! event with the same key, so there is at most one `intent.approved` per intent, ever.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::intent::Intent;
use crate::lifecycle::{Anomaly, IntentStatus, Transition};
use crate::types::{IntentId, Timestamp};

/// The outbox event types. Their names are part of the public contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// `intent.created`: recorded, before the provider call.
    #[serde(rename = "intent.created")]
    Created,
    /// `intent.pending`: the payer hand-off was issued.
    #[serde(rename = "intent.pending")]
    Pending,
    /// `intent.payer_confirmed`: the payer says they paid; not a credit.
    #[serde(rename = "intent.payer_confirmed")]
    PayerConfirmed,
    /// `intent.approved`: credit `approved_amount`. At most one per intent.
    #[serde(rename = "intent.approved")]
    Approved,
    /// `intent.rejected`.
    #[serde(rename = "intent.rejected")]
    Rejected,
    /// `intent.expired`.
    #[serde(rename = "intent.expired")]
    Expired,
    /// `intent.late_arrival`: funds came after expiry; an outcome will follow.
    #[serde(rename = "intent.late_arrival")]
    LateArrival,
    /// `intent.failed`: the provider refused the create for good.
    #[serde(rename = "intent.failed")]
    Failed,
    /// `intent.canceled`.
    #[serde(rename = "intent.canceled")]
    Canceled,
    /// `intent.anomaly`: a provider signal contradicted the intent and was not applied.
    #[serde(rename = "intent.anomaly")]
    Anomaly,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 10] = [
        EventType::Created,
        EventType::Pending,
        EventType::PayerConfirmed,
        EventType::Approved,
        EventType::Rejected,
        EventType::Expired,
        EventType::LateArrival,
        EventType::Failed,
        EventType::Canceled,
        EventType::Anomaly,
    ];

    /// The event type announcing that an intent entered `status`.
    pub fn entering(status: IntentStatus) -> Self {
        match status {
            IntentStatus::Created => EventType::Created,
            IntentStatus::Pending => EventType::Pending,
            IntentStatus::PayerConfirmed => EventType::PayerConfirmed,
            IntentStatus::Approved => EventType::Approved,
            IntentStatus::Rejected => EventType::Rejected,
            IntentStatus::Expired => EventType::Expired,
            IntentStatus::LateArrival => EventType::LateArrival,
            IntentStatus::Failed => EventType::Failed,
            IntentStatus::Canceled => EventType::Canceled,
        }
    }

    /// The dotted name, e.g. `intent.approved`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "intent.created",
            EventType::Pending => "intent.pending",
            EventType::PayerConfirmed => "intent.payer_confirmed",
            EventType::Approved => "intent.approved",
            EventType::Rejected => "intent.rejected",
            EventType::Expired => "intent.expired",
            EventType::LateArrival => "intent.late_arrival",
            EventType::Failed => "intent.failed",
            EventType::Canceled => "intent.canceled",
            EventType::Anomaly => "intent.anomaly",
        }
    }

    /// Parses the dotted name.
    pub fn parse(s: &str) -> Option<Self> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What an event says: the intent as it is after the change, and the change itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPayload {
    /// The intent snapshot after the transition (unchanged for an anomaly).
    pub intent: Intent,
    /// The transition, for status events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<Transition>,
    /// The refused signal, for `intent.anomaly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<Anomaly>,
}

/// An event about to be written; the store assigns its sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique id (UUIDv7).
    pub event_id: Uuid,
    /// Its type.
    pub event_type: EventType,
    /// The intent it is about.
    pub intent_id: IntentId,
    /// The host's ledger key: `<type>:<intent id>`, or for anomalies
    /// `intent.anomaly:<intent id>:<what makes it distinct>`.
    pub business_key: String,
    /// When it was written.
    pub created_at: Timestamp,
    /// The contents.
    pub payload: EventPayload,
}

impl NewEvent {
    /// The event for an applied transition.
    pub fn transition(intent: &Intent, transition: &Transition) -> Self {
        let event_type = EventType::entering(transition.to);
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type,
            intent_id: intent.id,
            business_key: format!("{}:{}", event_type, intent.id),
            created_at: transition.at,
            payload: EventPayload {
                intent: intent.clone(),
                transition: Some(transition.clone()),
                anomaly: None,
            },
        }
    }

    /// The event recording an anomaly.
    pub fn anomaly(intent: &Intent, anomaly: &Anomaly) -> Self {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: EventType::Anomaly,
            intent_id: intent.id,
            business_key: format!(
                "{}:{}:{}",
                EventType::Anomaly,
                intent.id,
                anomaly.discriminator()
            ),
            created_at: anomaly.at,
            payload: EventPayload {
                intent: intent.clone(),
                transition: None,
                anomaly: Some(anomaly.clone()),
            },
        }
    }
}

/// A committed outbox event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// Position in the outbox: strictly increasing, never reused. The consumer cursor.
    pub seq: u64,
    /// Unique id.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: EventType,
    /// The intent it is about.
    pub intent_id: IntentId,
    /// The host's ledger key (see [`NewEvent::business_key`]).
    pub business_key: String,
    /// When it was written.
    pub created_at: Timestamp,
    /// The contents.
    pub payload: EventPayload,
}
