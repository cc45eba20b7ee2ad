//! Decentro as the engine sees it: one [`Adapter`] per configured account.
//!
//! What Decentro proves: only what its status API answers for this account's credentials, and
//! only when that answer names the intent's transaction, our `reference_id` and the penny
//! ([`StatusReply::check`](super::StatusReply::check)). The callback is unsigned, so it is a
//! claim: it tells us when to look, never what happened. Decentro never calls back on failure
//! or expiry, so every verification is looked up at its deadline; there is no sweep.

use super::client::DecentroClient;
use super::{
    CALLBACK_ACK, DecentroError, KEY_NO_SUCH_TRANSACTION, LINK_TTL_MS, check_request,
    parse_callback,
};
use crate::intent::{Intent, IntentRequest, ProviderRef};
use crate::provider::config::DecentroAccount;
use crate::provider::{
    Adapter, BoxFuture, Created, Inbound, Lookup, ProviderError, Recovery, WebhookAnswer,
    WebhookError, WebhookOutcome,
};
use crate::types::{AccountName, IntentId, Provider, Timestamp};

/// What a create that Decentro already holds leaves on the intent.
const ALREADY_HELD: &str = "Decentro already holds this reference_id; waiting for its callback \
                            or the link's expiry";

/// One Decentro account.
#[derive(Debug)]
pub struct DecentroAdapter {
    client: DecentroClient,
}

impl DecentroAdapter {
    /// The adapter for `account`.
    pub fn new(account: DecentroAccount) -> Result<Self, ProviderError> {
        Ok(DecentroAdapter {
            client: DecentroClient::new(account)?,
        })
    }
}

/// Our intent, from the `reference_id` Decentro echoes: the intent id in its simple form.
fn intent_for_reference(reference: &str) -> Option<IntentId> {
    let uuid = uuid::Uuid::try_parse(reference).ok()?;
    // Only the exact form we send names an intent.
    if uuid.simple().to_string() != reference {
        return None;
    }
    uuid.hyphenated().to_string().parse().ok()
}

impl Adapter for DecentroAdapter {
    fn provider(&self) -> Provider {
        Provider::Decentro
    }

    fn account(&self) -> &AccountName {
        &self.client.account().name
    }

    fn check(&self, request: &IntentRequest) -> Result<(), ProviderError> {
        match request {
            IntentRequest::AccountVerification(r) => check_request(r).map_err(Into::into),
            IntentRequest::Deposit(_) => Err(DecentroError::MalformedRequest.into()),
        }
    }

    fn create<'a>(
        &'a self,
        intent: &'a Intent,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Created, ProviderError>> {
        Box::pin(async move {
            match self.client.create(intent, now).await {
                Ok(event) => Ok(Created::Issued(event)),
                // Decentro has it, but the answer carrying its id was lost. The callback names
                // it (by reference_id); otherwise the link runs out and expiry settles it.
                Err(ProviderError::Decentro(DecentroError::DuplicateReferenceId)) => {
                    Ok(Created::AlreadyHeld(ALREADY_HELD))
                }
                Err(e) => Err(e),
            }
        })
    }

    fn recovery(&self, intent: &Intent, now: Timestamp) -> Recovery {
        // Past the link's life a payer can no longer pay it, whatever Decentro holds.
        if now >= intent.created_at.plus_millis(LINK_TTL_MS) {
            Recovery::Expire
        } else {
            Recovery::Create
        }
    }

    fn look_up<'a>(
        &'a self,
        intent: &'a Intent,
        claimed: Option<&'a ProviderRef>,
    ) -> BoxFuture<'a, Result<Lookup, ProviderError>> {
        Box::pin(async move {
            let Some(ProviderRef::Decentro { txn_id }) = intent.provider_ref.as_ref().or(claimed)
            else {
                return Ok(Lookup::Open);
            };
            let reply = match self.client.status_reply(txn_id).await {
                Ok(r) => r,
                // A transaction only a claim names, and Decentro does not have: a denial.
                Err(ProviderError::Decentro(DecentroError::Other { key, .. }))
                    if key == KEY_NO_SUCH_TRANSACTION && intent.provider_ref.is_none() =>
                {
                    return Ok(Lookup::Mismatch(
                        "Decentro has no such transaction".to_string(),
                    ));
                }
                Err(e) => return Err(e),
            };
            Ok(reply.check(intent, txn_id))
        })
    }

    fn looks_up_at_expiry(&self) -> bool {
        true
    }

    fn receive(
        &self,
        _header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
        _now: Timestamp,
    ) -> Result<Option<Inbound>, WebhookError> {
        let n = parse_callback(body)?;
        let ours = n.our_reference.as_deref().and_then(intent_for_reference);
        n.bind(Provider::Decentro, self.account().clone(), ours)
            .map(Some)
    }

    fn answer(&self, outcome: WebhookOutcome, refusal: Option<&WebhookError>) -> WebhookAnswer {
        let mut answer = WebhookAnswer::standard(outcome, refusal);
        // Decentro wants its own acknowledgement shape for anything it should not resend.
        if outcome.is_success() {
            answer.body = CALLBACK_ACK.to_string();
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_simple_form_we_send_names_an_intent() {
        let id = IntentId::generate();
        let simple = id.as_uuid().simple().to_string();
        assert_eq!(intent_for_reference(&simple), Some(id));
        assert_eq!(intent_for_reference(&id.to_string()), None, "hyphenated");
        assert_eq!(intent_for_reference("kyc-9"), None);
    }
}
