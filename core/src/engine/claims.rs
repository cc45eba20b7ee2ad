//! Unsigned claims (Decentro callbacks), confirmed by the provider's status API at the moment
//! they would be applied, whether they just arrived or were parked; and the parked claims'
//! settlement. The claim itself is never applied: the provider's answer is.

use std::sync::Arc;

use super::deliver::applied;
use super::{Engine, EngineError};
use crate::intent::{Intent, ProviderRef};
use crate::lifecycle::{self, Cause, IntentEvent, Rule, Signal};
use crate::provider::{Adapter, Inbound, Lookup, WebhookOutcome};
use crate::store::ParkedEvent;
use crate::types::IntentId;

/// The least time between two claim look-ups for one intent.
pub(super) const CLAIM_LOOKUP_GAP: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a delivery waits for the provider to confirm its claim before it is answered
/// `503` (and the claim kept for maintenance).
pub(super) const CLAIM_LOOKUP_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// What a status look-up made of a claim.
pub(super) enum Confirmation {
    /// The provider's record was applied (or recorded as contradicting the claim).
    Settled(WebhookOutcome),
    /// The provider's record names another intent; the claim was recorded as an anomaly.
    Denied,
    /// The provider has nothing to confirm yet.
    NotYet,
    /// The provider could not be asked.
    Failed(String),
}

impl Engine {
    /// Whether a claim look-up for `intent` may go to the provider now: at most one per
    /// [`CLAIM_LOOKUP_GAP`] per intent, counted in the store, so that every instance and every
    /// C ABI handle on it shares the one gap (a slot taken is this look-up's). `Err` (why)
    /// when the store could not say: then no look-up goes out (a flood must not get through a
    /// failing store), and the claim is kept and answered as one to send again.
    pub(super) async fn may_look_up(&self, intent: IntentId) -> Result<bool, String> {
        let key = format!("lookup:{intent}");
        let now = self.inner.clock.now();
        let gap = i64::try_from(CLAIM_LOOKUP_GAP.as_millis()).unwrap_or(i64::MAX);
        match self
            .blocking(move |l| Ok(l.store().take_slot(&key, now, gap, 0)?))
            .await
        {
            Ok(taken) => Ok(taken.is_ok()),
            Err(e) => Err(format!("taking the look-up slot failed: {e}")),
        }
    }

    /// Asks the provider about `intent`, which `claim` (naming `claimed`) says moved, and
    /// applies what the provider proves. The claim itself is never applied. What is recorded
    /// about it never carries its delivery id (so a forged claim cannot use up the genuine
    /// delivery's dedup slot) nor the data it brought (a forger's payer).
    pub(super) async fn confirm_claim(
        &self,
        adapter: &Arc<dyn Adapter>,
        intent: &Intent,
        claimed: &ProviderRef,
        claim: &IntentEvent,
    ) -> Result<Confirmation, EngineError> {
        let looked =
            match tokio::time::timeout(CLAIM_LOOKUP_BUDGET, adapter.look_up(intent, Some(claimed)))
                .await
            {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => return Ok(Confirmation::Failed(format!("{}: {e}", e.code()))),
                Err(_) => {
                    return Ok(Confirmation::Failed(format!(
                        "no answer within {} ms",
                        CLAIM_LOOKUP_BUDGET.as_millis()
                    )));
                }
            };
        let id = intent.id;
        // Our own re-checks (cause timer) are not claims from outside: no anomaly for them.
        let from_outside = claim.cause != Cause::Timer;
        match looked {
            Lookup::Open => Ok(Confirmation::NotYet),
            Lookup::Unproven(why) => Ok(Confirmation::Failed(why)),
            Lookup::Mismatch(detail) => {
                if from_outside {
                    let unproven = unproven(claim, "denied");
                    self.blocking(move |l| l.record_anomaly(id, &unproven, &detail))
                        .await?;
                }
                Ok(Confirmation::Denied)
            }
            Lookup::Fact(mut fact) => {
                let same_kind = fact.signal.kind() == claim.signal.kind();
                let same_ref = fact.provider_ref.as_ref().map(ProviderRef::lookup_key)
                    == Some(claimed.lookup_key());
                let same = same_kind && same_ref;
                if same {
                    // The provider's record is applied, deduplicated by the claim's delivery id
                    // (the same transaction's callback sent again is a duplicate); history says
                    // what brought it in (a confirmed callback).
                    fact.provider_event_id = claim.provider_event_id.clone();
                    fact.cause = claim.cause;
                }
                let detail = if same_kind {
                    format!(
                        "{} names transaction {:?}; the intent's is another",
                        claim.cause.as_str(),
                        claimed.lookup_key()
                    )
                } else {
                    format!(
                        "{} says {}, the provider's status says {}",
                        claim.cause.as_str(),
                        claim.signal.kind(),
                        fact.signal.kind()
                    )
                };
                let unproven = unproven(claim, "contradicted");
                let outcome = self
                    .blocking(move |l| {
                        let outcome = l.apply(id, fact)?;
                        if !same && from_outside {
                            l.record_anomaly(id, &unproven, &detail)?;
                            return Ok(WebhookOutcome::Anomaly);
                        }
                        Ok(applied(&outcome))
                    })
                    .await?;
                Ok(Confirmation::Settled(outcome))
            }
        }
    }

    /// Confirms parked claims about `intent` and forgets those the provider has answered for
    /// good. One look-up answers every claim when the intent holds its own reference (that is
    /// what is looked up); otherwise one per distinct claimed reference, each answer covering
    /// only its own claims. Returns whether every claim was settled.
    pub(super) async fn settle_parked(
        &self,
        adapter: &Arc<dyn Adapter>,
        intent: &Intent,
        claims: Vec<ParkedEvent>,
    ) -> Result<bool, EngineError> {
        let mut groups: std::collections::BTreeMap<String, Vec<ParkedEvent>> = Default::default();
        for c in claims {
            let asked = match (&intent.provider_ref, &c.event.provider_ref) {
                (Some(own), _) => own.lookup_key().to_string(),
                (None, Some(claimed)) => claimed.lookup_key().to_string(),
                (None, None) => c.lookup_key.clone(),
            };
            groups.entry(asked).or_default().push(c);
        }
        let mut all = true;
        for rows in groups.into_values() {
            let first = &rows[0];
            // Our own re-checks (cause timer) ask whatever the intent says: a look-up that
            // failed at expiry left it `expired`, and only Decentro knows whether it was paid.
            let ours = first.event.cause == Cause::Timer;
            let settled =
                if intent.status.is_final() || (!ours && !worth_a_look(intent, &first.event)) {
                    true
                } else {
                    let claimed = first
                        .event
                        .provider_ref
                        .clone()
                        .or_else(|| intent.provider_ref.clone());
                    match claimed {
                        // A claim without a reference cannot be asked about.
                        None => true,
                        // Within the gap deliveries keep (a delivery, or another instance's
                        // pass, asked a moment ago): kept for the next pass.
                        Some(claimed) => {
                            self.may_look_up(intent.id).await == Ok(true)
                                && matches!(
                                    self.confirm_claim(adapter, intent, &claimed, &first.event)
                                        .await?,
                                    Confirmation::Settled(_) | Confirmation::Denied
                                )
                        }
                    }
                };
            if settled {
                let ids: Vec<i64> = rows.iter().map(|c| c.id).collect();
                self.blocking(move |l| ids.into_iter().try_for_each(|id| l.drop_parked(id)))
                    .await?;
            } else {
                all = false;
            }
        }
        Ok(all)
    }

    /// A claim about `intent` not confirmed yet, as a row to keep: one per intent and kind,
    /// whatever transaction the claims name, so that a flood of them is one row. It is keyed
    /// by the intent's own reference when it holds one (what a re-check looks up), else by
    /// the intent; the first claim's transaction is the one a re-check asks about.
    pub(super) fn parked_claim(&self, inbound: &Inbound, intent: &Intent) -> ParkedEvent {
        let mut row = self.parked(inbound, Some(intent.id));
        row.lookup_key = match &intent.provider_ref {
            Some(own) => own.lookup_key().to_string(),
            None => intent.id.to_string(),
        };
        row
    }
}

/// Whether a claim could move `intent` or contradict it: otherwise it is answered as a
/// duplicate without asking the provider.
pub(super) fn worth_a_look(intent: &Intent, claim: &IntentEvent) -> bool {
    !matches!(
        lifecycle::rule(intent.status, claim.signal.kind()),
        Rule::Duplicate | Rule::Stale | Rule::Refuse
    )
}

/// What is recorded of a claim the provider did not confirm: neither its delivery id (the
/// genuine delivery's dedup slot stays free) nor the payer it brought. One record per intent
/// and verdict: a forger sending claim after claim, each with a fresh id, is reported once,
/// not once per claim.
fn unproven(claim: &IntentEvent, verdict: &str) -> IntentEvent {
    let mut e = claim.clone();
    e.provider_event_id = Some(format!("unconfirmed-claim#{verdict}"));
    if let Signal::Approved { payer, .. } = &mut e.signal {
        *payer = None;
    }
    e
}
