#![doc = include_str!("../docs/lifecycle.md")]
//!
//! [`plan`] is pure: it reads an intent snapshot and a signal and says what to write
//! ([`apply`] does the same to an intent held in memory). The
//! [`crate::Ledger`] commits the plan through a [`crate::Store`] under an optimistic version
//! check, so the same decision holds whether one thread, many threads or several processes
//! deliver the signal.

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::intent::{Intent, PayerHandoff, ProviderRef, VerifiedPayer};
pub use crate::status::{Cause, IntentStatus, SignalKind};
use crate::types::{MinorUnits, Timestamp};

/// A fact about an intent, with the data it brings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum Signal {
    /// The provider accepted the create.
    HandoffIssued {
        /// What the payer is handed.
        handoff: PayerHandoff,
        /// When the hand-off stops working.
        expires_at: Option<Timestamp>,
    },
    /// The provider refused the create for good.
    CreateFailed {
        /// The provider's stable error code (e.g. `amount_below_min`).
        code: String,
        /// The provider's message.
        message: String,
    },
    /// The payer says they paid.
    PayerConfirmed,
    /// The provider approved.
    Approved {
        /// What the provider approved: credit this amount.
        amount: MinorUnits,
        /// For verifications, the account the payer proved.
        payer: Option<VerifiedPayer>,
    },
    /// The provider rejected.
    Rejected {
        /// The provider's reason, if it gave one.
        reason: Option<String>,
    },
    /// The hand-off expired unpaid.
    Expired,
    /// Funds arrived after expiry.
    LateArrival,
    /// The caller cancels.
    Cancel {
        /// The caller's reason.
        reason: Option<String>,
    },
}

impl Signal {
    /// The table column for this signal.
    pub fn kind(&self) -> SignalKind {
        match self {
            Signal::HandoffIssued { .. } => SignalKind::HandoffIssued,
            Signal::CreateFailed { .. } => SignalKind::CreateFailed,
            Signal::PayerConfirmed => SignalKind::PayerConfirmed,
            Signal::Approved { .. } => SignalKind::Approved,
            Signal::Rejected { .. } => SignalKind::Rejected,
            Signal::Expired => SignalKind::Expired,
            Signal::LateArrival => SignalKind::LateArrival,
            Signal::Cancel { .. } => SignalKind::Cancel,
        }
    }
}

/// A signal on its way to an intent, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentEvent {
    /// The fact.
    pub signal: Signal,
    /// Its source.
    pub cause: Cause,
    /// The provider's event id (Pientegra `eventId`), the dedup key for deliveries.
    pub provider_event_id: Option<String>,
    /// The provider references the signal carries, merged into the intent when applied.
    pub provider_ref: Option<ProviderRef>,
}

impl IntentEvent {
    /// An event with no provider event id or references.
    pub fn new(signal: Signal, cause: Cause) -> Self {
        IntentEvent {
            signal,
            cause,
            provider_event_id: None,
            provider_ref: None,
        }
    }

    /// With the provider's event id.
    pub fn with_event_id(mut self, id: impl Into<String>) -> Self {
        self.provider_event_id = Some(id.into());
        self
    }

    /// With the provider's references.
    pub fn with_provider_ref(mut self, r: ProviderRef) -> Self {
        self.provider_ref = Some(r);
        self
    }
}

/// One cell of the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Move to this status.
    To(IntentStatus),
    /// Already there: no-op.
    Duplicate,
    /// Already past it: no-op.
    Stale,
    /// Contradicts a final outcome: record, never apply.
    Anomaly,
    /// A command this status does not allow.
    Refuse,
}

/// The transition table: the one place that says what a signal does to a status. The crate
/// docs show it as a table, and a test keeps the two identical.
pub const fn rule(from: IntentStatus, signal: SignalKind) -> Rule {
    use IntentStatus as S;
    use Rule::*;
    use SignalKind as K;
    match (from, signal) {
        // A failed create is final; every provider fact about it contradicts that.
        (S::Failed, K::CreateFailed) => Duplicate,
        (S::Failed, K::Cancel) => Refuse,
        (S::Failed, _) => Anomaly,
        // A definitive create failure after the provider accepted the intent is contradictory.
        (S::Created, K::CreateFailed) => To(S::Failed),
        (_, K::CreateFailed) => Anomaly,

        // The provider is authoritative: from Created, any provider status applies.
        (S::Created, K::HandoffIssued) => To(S::Pending),
        (S::Pending, K::HandoffIssued) => Duplicate,
        (_, K::HandoffIssued) => Stale,

        (S::Created | S::Pending, K::PayerConfirmed) => To(S::PayerConfirmed),
        (S::PayerConfirmed, K::PayerConfirmed) => Duplicate,
        (_, K::PayerConfirmed) => Stale,

        (S::Created | S::Pending | S::PayerConfirmed, K::Expired) => To(S::Expired),
        (S::Expired, K::Expired) => Duplicate,
        (_, K::Expired) => Stale,

        (S::Created | S::Pending, K::Cancel) => To(S::Canceled),
        (S::Canceled, K::Cancel) => Duplicate,
        (_, K::Cancel) => Refuse,

        // Funds after an approval are the late-arrival notice arriving out of order. Funds
        // after a rejection are money the host has not credited and must hear about.
        (S::Approved, K::LateArrival) => Stale,
        (S::Rejected, K::LateArrival) => Anomaly,
        (S::LateArrival, K::LateArrival) => Duplicate,
        (_, K::LateArrival) => To(S::LateArrival),

        (S::Approved, K::Approved) => Duplicate,
        (S::Rejected, K::Approved) => Anomaly,
        (_, K::Approved) => To(S::Approved),

        (S::Rejected, K::Rejected) => Duplicate,
        (S::Approved, K::Rejected) => Anomaly,
        (_, K::Rejected) => To(S::Rejected),
    }
}

/// One applied change, as written to the intent's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The status before; `None` for the creation itself.
    pub from: Option<IntentStatus>,
    /// The status after.
    pub to: IntentStatus,
    /// Where the signal came from.
    pub cause: Cause,
    /// When we applied it.
    pub at: Timestamp,
    /// The provider's event id, when the signal had one.
    pub provider_event_id: Option<String>,
}

/// A signal that contradicted the intent and was recorded instead of applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    /// The intent's status when the signal arrived.
    pub status: IntentStatus,
    /// The refused signal, with its data, for whoever investigates.
    pub signal: Signal,
    /// Where it came from.
    pub cause: Cause,
    /// The provider's event id, when it had one.
    pub provider_event_id: Option<String>,
    /// Why it was not applied.
    pub detail: String,
    /// When it arrived.
    pub at: Timestamp,
}

impl Anomaly {
    /// What makes this anomaly the same as an earlier one: the provider event if there is one,
    /// else the contradicting signal and its source (so a status poll that keeps disagreeing
    /// is recorded once, not on every sweep).
    pub fn discriminator(&self) -> String {
        match &self.provider_event_id {
            Some(id) => format!("event:{id}"),
            None => format!("{}:{}", self.signal.kind(), self.cause.as_str()),
        }
    }
}

/// What applying a signal to a snapshot would do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Write `next` (version incremented), its history row and outbox event.
    Apply {
        /// The intent after the transition.
        next: Box<Intent>,
        /// The history row.
        transition: Transition,
    },
    /// No-op: the intent is already there.
    Duplicate,
    /// No-op: the intent is already past it.
    Stale,
    /// Record the anomaly; leave the intent as it is.
    Anomaly(Box<Anomaly>),
}

/// The outcome of [`apply`] on an intent held in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The intent moved; this is its history row.
    Applied(Transition),
    /// No-op: the intent is already there.
    Duplicate,
    /// No-op: the intent is already past it.
    Stale,
    /// Not applied; the intent is unchanged.
    Anomaly(Box<Anomaly>),
}

/// The decision for one signal, before anything is written.
enum Decision {
    To(IntentStatus),
    Duplicate,
    Stale,
    Anomaly(String),
}

/// Decides what `event` does to `intent`: the table, plus the two checks that need the
/// signal's data (a repeated approval's amount, and the provider reference).
fn decide(intent: &Intent, event: &IntentEvent) -> Result<Decision, CoreError> {
    let from = intent.status;
    let kind = event.signal.kind();
    if let (Some(have), Some(got)) = (&intent.provider_ref, &event.provider_ref)
        && (have.provider() != got.provider() || have.lookup_key() != got.lookup_key())
    {
        return Ok(Decision::Anomaly(format!(
            "signal carries provider reference {:?}, intent holds {:?}",
            got.lookup_key(),
            have.lookup_key()
        )));
    }
    Ok(match rule(from, kind) {
        Rule::To(to) => Decision::To(to),
        Rule::Stale => Decision::Stale,
        Rule::Duplicate => match &event.signal {
            // A repeated approval must approve the same amount; a different one is contrary.
            Signal::Approved { amount, .. } if intent.approved_amount != Some(*amount) => {
                Decision::Anomaly(format!(
                    "approved again with amount {amount}, already approved {}",
                    intent
                        .approved_amount
                        .map_or_else(|| "none".to_string(), |a| a.to_string())
                ))
            }
            _ => Decision::Duplicate,
        },
        Rule::Anomaly if (from, kind) == (IntentStatus::Rejected, SignalKind::LateArrival) => {
            Decision::Anomaly(
                "funds arrived for a rejected intent; the provider holds money the host has not \
                 credited: settle it with the provider"
                    .to_string(),
            )
        }
        Rule::Anomaly => Decision::Anomaly(format!("intent is {from}; {kind} contradicts it")),
        Rule::Refuse => {
            return Err(CoreError::InvalidTransition {
                id: intent.id,
                from,
                signal: kind,
            });
        }
    })
}

/// Moves `intent` to `to`, taking the signal's data, and returns the history row.
/// How long after its creation an intent the provider has not answered for good stays in
/// reconciliation sweeps (ours): a week, Pientegra's longest list window in practice. Past it a
/// sweep stops asking; a late webhook still applies.
pub const RECONCILE_HORIZON_MS: i64 = 7 * 24 * 60 * 60 * 1_000;

/// Until when a sweep must still cover `intent`, now in `to` by `cause`: while the provider may
/// still change its answer (awaiting the payer or a review, funds after expiry), or has not
/// been heard from since our own timer or a cancel, up to [`RECONCILE_HORIZON_MS`] after its
/// creation. `None` once the provider has answered for good (approved, rejected, its own
/// expiry), or before it holds the intent at all (`created`: recovery's work).
pub fn reconcile_until(intent: &Intent, to: IntentStatus, cause: Cause) -> Option<Timestamp> {
    let horizon = intent.created_at.plus_millis(RECONCILE_HORIZON_MS);
    match to {
        IntentStatus::Pending
        | IntentStatus::PayerConfirmed
        | IntentStatus::LateArrival
        | IntentStatus::Canceled => Some(horizon),
        IntentStatus::Expired if cause == Cause::Timer => Some(horizon),
        IntentStatus::Expired
        | IntentStatus::Created
        | IntentStatus::Approved
        | IntentStatus::Rejected
        | IntentStatus::Failed => None,
    }
}

fn advance(
    intent: &mut Intent,
    to: IntentStatus,
    event: &IntentEvent,
    now: Timestamp,
) -> Transition {
    let from = intent.status;
    intent.reconcile_until = reconcile_until(intent, to, event.cause);
    intent.status = to;
    intent.version += 1;
    intent.updated_at = now;
    match (&mut intent.provider_ref, &event.provider_ref) {
        (None, Some(got)) => intent.provider_ref = Some(got.clone()),
        (
            Some(ProviderRef::Pientegra { reference_no, .. }),
            Some(ProviderRef::Pientegra {
                reference_no: Some(new_no),
                ..
            }),
        ) if reference_no.is_none() => *reference_no = Some(new_no.clone()),
        _ => {}
    }
    match &event.signal {
        Signal::HandoffIssued {
            handoff,
            expires_at,
        } => {
            intent.handoff = Some(handoff.clone());
            intent.expires_at = *expires_at;
            intent.handed_off_at = Some(now);
        }
        Signal::CreateFailed { code, message } => {
            intent.reason = Some(format!("{code}: {message}"));
        }
        Signal::Approved { amount, payer } => {
            intent.approved_amount = Some(*amount);
            if payer.is_some() {
                intent.verified_payer = payer.clone();
            }
        }
        Signal::Rejected { reason } | Signal::Cancel { reason } => {
            intent.reason = reason.clone();
        }
        Signal::PayerConfirmed | Signal::Expired | Signal::LateArrival => {}
    }
    Transition {
        from: Some(from),
        to,
        cause: event.cause,
        at: now,
        provider_event_id: event.provider_event_id.clone(),
    }
}

fn anomaly(intent: &Intent, event: &IntentEvent, detail: String, now: Timestamp) -> Box<Anomaly> {
    Box::new(Anomaly {
        status: intent.status,
        signal: event.signal.clone(),
        cause: event.cause,
        provider_event_id: event.provider_event_id.clone(),
        detail,
        at: now,
    })
}

/// Applies `event` to an intent held in memory. Pure: no I/O, no clock; never panics.
///
/// Errors only for a refused command ([`CoreError::InvalidTransition`]); every provider fact
/// has an answer in the table.
pub fn apply(intent: &mut Intent, event: &IntentEvent, now: Timestamp) -> Result<Step, CoreError> {
    Ok(match decide(intent, event)? {
        Decision::To(to) => Step::Applied(advance(intent, to, event, now)),
        Decision::Duplicate => Step::Duplicate,
        Decision::Stale => Step::Stale,
        Decision::Anomaly(detail) => Step::Anomaly(anomaly(intent, event, detail, now)),
    })
}

/// Decides what `event` does to a stored snapshot, leaving the snapshot as it is: the
/// [`crate::Ledger`] commits the plan under a version check. Same rules as [`apply`].
pub fn plan(intent: &Intent, event: &IntentEvent, now: Timestamp) -> Result<Plan, CoreError> {
    Ok(match decide(intent, event)? {
        Decision::To(to) => {
            let mut next = Box::new(intent.clone());
            let transition = advance(&mut next, to, event, now);
            Plan::Apply { next, transition }
        }
        Decision::Duplicate => Plan::Duplicate,
        Decision::Stale => Plan::Stale,
        Decision::Anomaly(detail) => Plan::Anomaly(anomaly(intent, event, detail, now)),
    })
}

/// Replays a history from creation and returns the status it ends in, or `None` if a row does
/// not follow from the one before it under the table. Used by tests and by support tooling to
/// check an intent's audit trail.
pub fn replay(history: &[Transition]) -> Option<IntentStatus> {
    let mut rows = history.iter();
    let first = rows.next()?;
    if first.from.is_some() || first.to != IntentStatus::Created {
        return None;
    }
    rows.try_fold(IntentStatus::Created, |status, t| {
        let reachable = SignalKind::ALL
            .into_iter()
            .any(|k| rule(status, k) == Rule::To(t.to));
        (t.from == Some(status) && reachable).then_some(t.to)
    })
}

#[cfg(test)]
mod tests;
