//! The names of the lifecycle: where an intent is ([`IntentStatus`]), what moved it
//! ([`SignalKind`]) and where that came from ([`Cause`]). Plain values with stable snake_case
//! names, used by storage, events and every façade; the rules that connect them live one floor
//! up, in [`crate::lifecycle`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::types::InvalidValue;

/// Where an intent is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    /// Recorded; the provider has not confirmed it yet.
    Created,
    /// The payer hand-off (link, QR) was issued; waiting for the payer.
    Pending,
    /// The payer says they paid; the provider is reviewing.
    PayerConfirmed,
    /// Final: the provider approved it. The only status that credits money.
    Approved,
    /// Final: the provider rejected it.
    Rejected,
    /// The hand-off expired unpaid. Funds may still arrive (late arrival).
    Expired,
    /// Funds arrived after expiry; the provider will still approve or reject.
    LateArrival,
    /// Final: the provider refused the create for good.
    Failed,
    /// Canceled by the caller before payment. A provider approval still wins.
    Canceled,
}

impl IntentStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [IntentStatus; 9] = [
        IntentStatus::Created,
        IntentStatus::Pending,
        IntentStatus::PayerConfirmed,
        IntentStatus::Expired,
        IntentStatus::Canceled,
        IntentStatus::LateArrival,
        IntentStatus::Approved,
        IntentStatus::Rejected,
        IntentStatus::Failed,
    ];

    /// The stable snake_case name used in storage and events.
    pub fn as_str(self) -> &'static str {
        match self {
            IntentStatus::Created => "created",
            IntentStatus::Pending => "pending",
            IntentStatus::PayerConfirmed => "payer_confirmed",
            IntentStatus::Approved => "approved",
            IntentStatus::Rejected => "rejected",
            IntentStatus::Expired => "expired",
            IntentStatus::LateArrival => "late_arrival",
            IntentStatus::Failed => "failed",
            IntentStatus::Canceled => "canceled",
        }
    }

    /// Whether no signal can ever move the intent again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            IntentStatus::Approved | IntentStatus::Rejected | IntentStatus::Failed
        )
    }
}

impl fmt::Display for IntentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for IntentStatus {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IntentStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| InvalidValue::new("status", format!("unknown status {s:?}")))
    }
}

/// The data-free name of a [`Signal`]: the table's column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// The provider accepted the create and issued the payer hand-off.
    HandoffIssued,
    /// The provider refused the create for good.
    CreateFailed,
    /// The payer pressed "I made the payment" (Pientegra `PENDING_REVIEW`).
    PayerConfirmed,
    /// The provider approved (Pientegra `intent.approved`, Decentro `SUCCESS`).
    Approved,
    /// The provider rejected (Pientegra `intent.rejected`, Decentro `FAILURE`).
    Rejected,
    /// The hand-off expired unpaid (our timer, Pientegra `AUTO_CANCELLED`, Decentro `EXPIRED`).
    Expired,
    /// Funds arrived after expiry (Pientegra `LATE_ARRIVAL`).
    LateArrival,
    /// The caller cancels (a command, not a provider fact).
    Cancel,
}

impl SignalKind {
    /// Every signal, in the table's column order.
    pub const ALL: [SignalKind; 8] = [
        SignalKind::HandoffIssued,
        SignalKind::CreateFailed,
        SignalKind::PayerConfirmed,
        SignalKind::Approved,
        SignalKind::Rejected,
        SignalKind::Expired,
        SignalKind::LateArrival,
        SignalKind::Cancel,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::HandoffIssued => "handoff_issued",
            SignalKind::CreateFailed => "create_failed",
            SignalKind::PayerConfirmed => "payer_confirmed",
            SignalKind::Approved => "approved",
            SignalKind::Rejected => "rejected",
            SignalKind::Expired => "expired",
            SignalKind::LateArrival => "late_arrival",
            SignalKind::Cancel => "cancel",
        }
    }
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where a signal came from; recorded in history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A call of ours: create, cancel.
    Api,
    /// A verified provider webhook.
    Webhook,
    /// A provider callback (Decentro), confirmed as configured.
    Callback,
    /// A status look-up: reconciliation, recovery or an on-demand refresh.
    StatusPoll,
    /// Our own expiry timer.
    Timer,
}

impl Cause {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Api => "api",
            Cause::Webhook => "webhook",
            Cause::Callback => "callback",
            Cause::StatusPoll => "status_poll",
            Cause::Timer => "timer",
        }
    }
}

impl FromStr for Cause {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Cause::Api,
            Cause::Webhook,
            Cause::Callback,
            Cause::StatusPoll,
            Cause::Timer,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
        .ok_or_else(|| InvalidValue::new("cause", format!("unknown cause {s:?}")))
    }
}

/// How much a provider signal proves by itself, before anything is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    /// Signed with the receiving account's secret, or read from that account's own API: a
    /// provider fact, applied as it is.
    Signed,
    /// Unsigned (a Decentro callback): a claim. It moves nothing until the provider's status
    /// API confirms it, at the moment it would be applied.
    Claim,
}

impl Proof {
    /// The stable snake_case name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Proof::Signed => "signed",
            Proof::Claim => "claim",
        }
    }
}

impl FromStr for Proof {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Proof::Signed, Proof::Claim]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| InvalidValue::new("proof", format!("unknown proof {s:?}")))
    }
}
