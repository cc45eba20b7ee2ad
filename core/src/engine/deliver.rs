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

use super::claims::{Confirmation, worth_a_look};
use super::{Engine, EngineError};
use crate::error::CoreError;
use crate::intent::Intent;
use crate::ledger::{ApplyOutcome, Ledger};

use crate::provider::{Adapter, Inbound, Proof, WebhookAnswer, WebhookError, WebhookOutcome};
use crate::store::{ParkOutcome, ParkedEvent};
use crate::types::{AccountName, IntentId, Provider};

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
pub(super) fn applied(outcome: &ApplyOutcome) -> WebhookOutcome {
    match outcome {
        ApplyOutcome::Applied { .. } => WebhookOutcome::Applied,
        ApplyOutcome::Anomaly { .. } => WebhookOutcome::Anomaly,
        ApplyOutcome::Duplicate { .. } | ApplyOutcome::Stale { .. } => WebhookOutcome::Duplicate,
    }
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
        // Streams wake only when the outbox may have grown: a refused or repeated delivery
        // (a flood, say) costs them nothing.
        if matches!(
            verdict.outcome,
            WebhookOutcome::Applied | WebhookOutcome::Anomaly | WebhookOutcome::Parked
        ) {
            self.wrote();
        }
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
        let confirmation = match self.may_look_up(intent.id).await {
            Ok(true) => {
                self.confirm_claim(adapter, &intent, &inbound.reference, &inbound.event)
                    .await?
            }
            // The provider was asked about this intent a moment ago (by any instance): a flood
            // of claims costs one look-up per interval, not one each.
            Ok(false) => Confirmation::NotYet,
            Err(why) => Confirmation::Failed(why),
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

    /// `inbound` as a row to park, for an intent not known yet or (for a claim) known but not
    /// confirmed.
    pub(super) fn parked(&self, inbound: &Inbound, intent: Option<IntentId>) -> ParkedEvent {
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
