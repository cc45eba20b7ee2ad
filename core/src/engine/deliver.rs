//! Deliveries: webhooks and callbacks, from the receiver, the `HandleWebhook` RPC or the C ABI.
//!
//! The trust rules, in the order they are applied:
//!
//! 1. The delivery goes to the adapter of the account it was sent to; no adapter, `404`. The
//!    adapter verifies and parses it into a signal bound to that provider and account.
//! 2. The signal may only touch an intent of the same provider and account: one that names
//!    another account's intent is refused (`WEBHOOK_ACCOUNT_MISMATCH`) and changes nothing.
//! 3. A signed signal is a fact and is applied. An unsigned claim moves nothing by itself: the
//!    provider's status API is asked when it would be applied, and only a reply naming the same
//!    transaction and our reference is applied (the reply, not the claim). A claim the
//!    provider does not confirm yet, or that could not be checked, is kept for maintenance to
//!    check again and answered `503`, without taking the dedup slot of the genuine delivery.
//! 4. A signal for an intent not known yet is parked, with its account, bounded per account.

use std::sync::Arc;

use super::{Engine, EngineError};
use crate::error::CoreError;
use crate::intent::{Intent, ProviderRef};
use crate::ledger::{ApplyOutcome, Ledger};
use crate::lifecycle::{self, Cause, IntentEvent, Rule, Signal};
use crate::provider::{
    Adapter, Inbound, Lookup, Proof, WebhookAnswer, WebhookError, WebhookOutcome,
};
use crate::store::{ParkOutcome, ParkedEvent};
use crate::types::{AccountName, IntentId, Provider};

/// The least time between two claim look-ups for one intent.
pub(super) const CLAIM_LOOKUP_GAP: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a delivery waits for the provider to confirm its claim before it is answered
/// `503` (and the claim kept for maintenance).
pub(super) const CLAIM_LOOKUP_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// What became of a delivery, before the adapter turns it into its provider's answer.
#[derive(Debug)]
pub(super) struct Verdict {
    outcome: WebhookOutcome,
    refusal: Option<WebhookError>,
    detail: Option<String>,
}

impl Verdict {
    fn done(outcome: WebhookOutcome) -> Self {
        Verdict {
            outcome,
            refusal: None,
            detail: None,
        }
    }

    fn refused(e: WebhookError) -> Self {
        Verdict {
            outcome: WebhookOutcome::Refused,
            refusal: Some(e),
            detail: None,
        }
    }

    fn later(outcome: WebhookOutcome, detail: impl Into<String>) -> Self {
        Verdict {
            outcome,
            refusal: None,
            detail: Some(detail.into()),
        }
    }
}

/// The answer to a delivery for `outcome` of applying it.
fn applied(outcome: &ApplyOutcome) -> WebhookOutcome {
    match outcome {
        ApplyOutcome::Applied { .. } => WebhookOutcome::Applied,
        ApplyOutcome::Anomaly { .. } => WebhookOutcome::Anomaly,
        ApplyOutcome::Duplicate { .. } | ApplyOutcome::Stale { .. } => WebhookOutcome::Duplicate,
    }
}

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

/// The intent a signal names: by the provider's reference, or by ours when the provider echoes
/// it. Only an intent of `provider` is returned; its account is the caller's to check.
pub(super) fn find_intent(
    l: &Ledger,
    provider: Provider,
    lookup_key: &str,
    our_intent: Option<IntentId>,
) -> Result<Option<Intent>, CoreError> {
    if let Some(i) = l.find_by_provider_ref(provider, lookup_key)? {
        return Ok(Some(i));
    }
    let Some(id) = our_intent else {
        return Ok(None);
    };
    match l.get(id) {
        Ok(i) => Ok((i.provider == provider).then_some(i)),
        Err(CoreError::IntentNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Applies the signed signals parked for `intent` by its own account, and returns the claims
/// (and rows of unknown account) left to confirm.
pub(super) fn apply_signed_parked(
    l: &Ledger,
    intent: &Intent,
) -> Result<Vec<ParkedEvent>, CoreError> {
    let mut claims = Vec::new();
    for p in l.parked_for(intent)? {
        let own = p.account.as_ref() == Some(&intent.account);
        if p.proof == Proof::Signed && own {
            match l.apply(intent.id, p.event.clone()) {
                // A parked cancel cannot exist; anything refused is dropped with the rest.
                Ok(_) | Err(CoreError::InvalidTransition { .. }) => l.drop_parked(p.id)?,
                Err(e) => return Err(e),
            }
        } else {
            claims.push(p);
        }
    }
    Ok(claims)
}

impl Engine {
    /// Handles a provider webhook or callback sent to `account`'s URL: verify, bind to the
    /// account, confirm if unsigned, then dedup, apply, history and outbox in one transaction.
    /// `header` looks a request header up by name (case-insensitively). The answer is the same
    /// whichever façade received the delivery.
    pub async fn handle_webhook(
        &self,
        provider: Provider,
        account: &str,
        header: impl Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> WebhookAnswer {
        // An account name that cannot exist is as unknown as one that is not configured.
        let adapter = AccountName::new(account)
            .ok()
            .and_then(|a| self.inner.adapters.get(&(provider, a)).cloned());
        let Some(adapter) = adapter else {
            return WebhookAnswer::standard(WebhookOutcome::UnknownAccount, None);
        };
        let inbound = match adapter.receive(&header, body, self.inner.clock.now()) {
            Ok(Some(inbound)) => inbound,
            Ok(None) => return adapter.answer(WebhookOutcome::Ignored, None),
            Err(e) => return adapter.answer(WebhookOutcome::Refused, Some(&e)),
        };
        let verdict = match self.deliver(&adapter, inbound).await {
            Ok(v) => v,
            Err(e) => Verdict::later(WebhookOutcome::RetryLater, format!("{}: {e}", e.code())),
        };
        self.wrote();
        let answer = adapter.answer(verdict.outcome, verdict.refusal.as_ref());
        match verdict.detail {
            Some(d) => answer.with_detail(d),
            None => answer,
        }
    }

    async fn deliver(
        &self,
        adapter: &Arc<dyn Adapter>,
        inbound: Inbound,
    ) -> Result<Verdict, EngineError> {
        match inbound.proof {
            Proof::Signed => self.deliver_signed(adapter, inbound).await,
            Proof::Claim => self.deliver_claim(adapter, inbound).await,
        }
    }

    /// A signed signal: find, apply and drain parked signals in one trip to the blocking pool.
    async fn deliver_signed(
        &self,
        adapter: &Arc<dyn Adapter>,
        inbound: Inbound,
    ) -> Result<Verdict, EngineError> {
        let parked = self.parked(&inbound, None);
        let cap = self.inner.settings.parked_cap_per_account;
        let (verdict, claims) = self
            .blocking(move |l| {
                let found = find_intent(
                    l,
                    inbound.provider,
                    inbound.reference.lookup_key(),
                    inbound.our_intent,
                )?;
                let Some(intent) = found else {
                    return Ok((park_verdict(l.park(&parked, cap)?), None));
                };
                if intent.account != inbound.account {
                    return Ok((Verdict::refused(WebhookError::AccountMismatch), None));
                }
                let outcome = l.apply(intent.id, inbound.event)?;
                let claims = apply_signed_parked(l, outcome.intent())?;
                Ok((Verdict::done(applied(&outcome)), Some((outcome, claims))))
            })
            .await?;
        // Claims parked for this intent (rare: a callback before the create answer) are
        // confirmed now that the intent is known; maintenance retries any left.
        if let Some((outcome, claims)) = claims
            && !claims.is_empty()
        {
            self.settle_parked(adapter, outcome.intent(), claims)
                .await?;
        }
        Ok(verdict)
    }

    /// An unsigned claim: confirmed by the provider's status API before anything moves.
    async fn deliver_claim(
        &self,
        adapter: &Arc<dyn Adapter>,
        inbound: Inbound,
    ) -> Result<Verdict, EngineError> {
        let (provider, key, ours) = (
            inbound.provider,
            inbound.reference.lookup_key().to_string(),
            inbound.our_intent,
        );
        let found = self
            .blocking(move |l| find_intent(l, provider, &key, ours))
            .await?;
        let Some(intent) = found else {
            // A genuine claim names an intent recorded before its create call was made: one we
            // do not know is not ours, and nothing of it is kept.
            return Ok(Verdict::refused(WebhookError::UnknownIntent));
        };
        if intent.account != inbound.account {
            return Ok(Verdict::refused(WebhookError::AccountMismatch));
        }
        if !worth_a_look(&intent, &inbound.event) {
            // It could neither move the intent nor contradict it: no need to ask the provider.
            return Ok(Verdict::done(WebhookOutcome::Duplicate));
        }
        let confirmation = if self.may_look_up(intent.id) {
            self.confirm_claim(adapter, &intent, &inbound.reference, &inbound.event)
                .await?
        } else {
            // The provider was asked about this intent a moment ago: a flood of claims costs
            // one look-up per interval, not one each.
            Confirmation::NotYet
        };
        Ok(match confirmation {
            Confirmation::Settled(outcome) => Verdict::done(outcome),
            Confirmation::Denied => Verdict::refused(WebhookError::NotConfirmed),
            Confirmation::NotYet | Confirmation::Failed(_) => {
                // Kept for maintenance to check again; the provider is asked to send it again.
                let parked = self.parked_claim(&inbound, &intent);
                let cap = self.inner.settings.parked_cap_per_account;
                self.blocking(move |l| l.park(&parked, cap)).await?;
                match confirmation {
                    Confirmation::Failed(why) => Verdict::later(
                        WebhookOutcome::RetryLater,
                        format!("confirming with the provider failed: {why}"),
                    ),
                    _ => Verdict::later(
                        WebhookOutcome::Unconfirmed,
                        "the provider does not confirm it yet",
                    ),
                }
            }
        })
    }

    /// Whether a claim look-up for `intent` may go to the provider now: at most one per
    /// [`CLAIM_LOOKUP_GAP`] per intent. Remembers this one.
    pub(super) fn may_look_up(&self, intent: IntentId) -> bool {
        let now = std::time::Instant::now();
        let mut last = self
            .inner
            .claim_lookups
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.len() > 4_096 {
            last.retain(|_, t| now.duration_since(*t) < CLAIM_LOOKUP_GAP);
        }
        match last.get(&intent) {
            Some(t) if now.duration_since(*t) < CLAIM_LOOKUP_GAP => false,
            _ => {
                last.insert(intent, now);
                true
            }
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

    /// Applies what is parked for `intent`, which just learned its provider reference or was
    /// settled: signed signals of its own account as they are, claims once confirmed.
    pub(super) async fn drain_parked(
        &self,
        adapter: &Arc<dyn Adapter>,
        intent: Intent,
    ) -> Result<(), EngineError> {
        let (i, claims) = self
            .blocking(move |l| {
                let claims = apply_signed_parked(l, &intent)?;
                let now = if claims.is_empty() {
                    intent
                } else {
                    l.get(intent.id)?
                };
                Ok((now, claims))
            })
            .await?;
        if !claims.is_empty() {
            self.settle_parked(adapter, &i, claims).await?;
        }
        Ok(())
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
            let settled = if !worth_a_look(intent, &first.event) {
                true
            } else {
                let claimed = first
                    .event
                    .provider_ref
                    .clone()
                    .or_else(|| intent.provider_ref.clone());
                // Not throttled like deliveries: maintenance asks once per intent per pass.
                match claimed {
                    // A claim without a reference cannot be asked about.
                    None => true,
                    Some(claimed) => matches!(
                        self.confirm_claim(adapter, intent, &claimed, &first.event)
                            .await?,
                        Confirmation::Settled(_) | Confirmation::Denied
                    ),
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

    /// A claim about `intent` not confirmed yet, as a row to keep. When the intent holds its
    /// own reference, that is what a re-check looks up, so a flood of claims naming it (with
    /// any transaction ids) is one row.
    fn parked_claim(&self, inbound: &Inbound, intent: &Intent) -> ParkedEvent {
        let mut row = self.parked(inbound, Some(intent.id));
        if let Some(own) = &intent.provider_ref {
            row.lookup_key = own.lookup_key().to_string();
        }
        row
    }

    /// `inbound` as a row to park, for an intent not known yet or (for a claim) known but not
    /// confirmed.
    fn parked(&self, inbound: &Inbound, intent: Option<IntentId>) -> ParkedEvent {
        ParkedEvent {
            id: 0,
            provider: inbound.provider,
            account: Some(inbound.account.clone()),
            lookup_key: inbound.reference.lookup_key().to_string(),
            intent_id: intent,
            proof: inbound.proof,
            received_at: self.inner.clock.now(),
            event: inbound.event.clone(),
        }
    }
}

/// Whether a claim could move `intent` or contradict it: otherwise it is answered as a
/// duplicate without asking the provider.
fn worth_a_look(intent: &Intent, claim: &IntentEvent) -> bool {
    !matches!(
        lifecycle::rule(intent.status, claim.signal.kind()),
        Rule::Duplicate | Rule::Stale | Rule::Refuse
    )
}

/// What is recorded of a claim the provider did not confirm: neither its delivery id (the
/// genuine delivery's dedup slot stays free; a suffix keeps one record per claim and verdict)
/// nor the payer it brought.
fn unproven(claim: &IntentEvent, verdict: &str) -> IntentEvent {
    let mut e = claim.clone();
    e.provider_event_id = claim
        .provider_event_id
        .as_ref()
        .map(|id| format!("{id}#{verdict}"));
    if let Signal::Approved { payer, .. } = &mut e.signal {
        *payer = None;
    }
    e
}

/// The answer to a delivery that was parked (or could not be).
fn park_verdict(outcome: ParkOutcome) -> Verdict {
    match outcome {
        ParkOutcome::Parked | ParkOutcome::AlreadyParked => Verdict::done(WebhookOutcome::Parked),
        ParkOutcome::Full => Verdict::later(
            WebhookOutcome::RetryLater,
            "this account keeps its cap of parked signals; sent back to the provider to retry",
        ),
    }
}
