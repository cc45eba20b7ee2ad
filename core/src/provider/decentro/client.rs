//! Decentro's HTTP API: create a penny-pull intent, read a transaction's status. Every call
//! carries the four credential headers.

use super::{
    DecentroError, StatusReply, create_body, parse_callback, parse_create_response,
    parse_status_reply,
};
use crate::intent::{Intent, IntentRequest};
use crate::lifecycle::IntentEvent;
use crate::provider::config::DecentroAccount;
use crate::provider::http::{Idempotence, Reply, Transport, url_with_segments};
use crate::provider::{Notification, ProviderError, WebhookError, check_id};
use crate::types::{Provider, Timestamp};

/// Paths under the base URL (the provider page and the wire contract).
mod paths {
    pub(super) const CREATE: &str = "/v2/payments/penny_pull";
    pub(super) const STATUS_SEGMENTS: [&str; 4] = ["v2", "payments", "penny_pull", "fetch"];
}

/// A client for one Decentro account.
#[derive(Clone, Debug)]
pub struct DecentroClient {
    account: DecentroAccount,
    transport: Transport,
}

impl DecentroClient {
    /// A client for `account`.
    pub fn new(account: DecentroAccount) -> Result<Self, ProviderError> {
        let transport = Transport::new(Provider::Decentro, account.http.clone())?;
        Ok(DecentroClient { account, transport })
    }

    /// The account.
    pub fn account(&self) -> &DecentroAccount {
        &self.account
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.header("client_id", self.account.client_id.expose())
            .header("client_secret", self.account.client_secret.expose())
            .header("module_secret", self.account.module_secret.expose())
            .header("provider_secret", self.account.provider_secret.expose())
    }

    /// Creates the penny-pull link with the intent's `reference_id`. Validated first, so a
    /// request Decentro would refuse fails here with the same key and is never sent. Not
    /// retried once it may have reached Decentro: a `reference_id` cannot be reused.
    /// `now` is when the link's ten minutes start.
    pub async fn create(
        &self,
        intent: &Intent,
        now: Timestamp,
    ) -> Result<IntentEvent, ProviderError> {
        let IntentRequest::AccountVerification(request) = &intent.request else {
            return Err(DecentroError::MalformedRequest.into());
        };
        let body = create_body(request, &intent.provider_key)?;
        let body = serde_json::to_vec(&body).map_err(|_| DecentroError::MalformedRequest)?;
        let url = format!("{}{}", self.account.base_url, paths::CREATE);
        let reply = self
            .transport
            .send(
                |c| {
                    self.authed(c.post(&url))
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                },
                Idempotence::Unsafe,
                |_| false,
            )
            .await?;
        unavailable_on_5xx(&reply)?;
        Ok(parse_create_response(&reply.body, now)?.event)
    }

    /// The transaction's status reply. A transaction id outside Decentro's character set is
    /// refused before any request; a valid one is one escaped path segment.
    pub async fn status_reply(&self, txn_id: &str) -> Result<StatusReply, ProviderError> {
        check_id("decentroTxnId", txn_id).map_err(|_| DecentroError::MalformedRequest)?;
        let mut segments: Vec<&str> = paths::STATUS_SEGMENTS.to_vec();
        segments.extend([txn_id, "status"]);
        let url = url_with_segments(Provider::Decentro, &self.account.base_url, &segments)?;
        let reply = self
            .transport
            .send(
                |c| self.authed(c.get(url.clone())),
                Idempotence::Safe,
                |_| false,
            )
            .await?;
        unavailable_on_5xx(&reply)?;
        Ok(parse_status_reply(&reply.body)?)
    }

    /// The transaction's status as an event with cause "status poll"; `None` while pending.
    /// Not checked against any intent: see [`StatusReply::check`].
    pub async fn status(&self, txn_id: &str) -> Result<Option<IntentEvent>, ProviderError> {
        Ok(self.status_reply(txn_id).await?.event)
    }

    /// Parses a callback (unsigned: confirm it with [`DecentroClient::status`]).
    pub fn parse_callback(&self, body: &[u8]) -> Result<Notification, WebhookError> {
        parse_callback(body)
    }
}

fn unavailable_on_5xx(reply: &Reply) -> Result<(), ProviderError> {
    if reply.status.is_server_error() || reply.status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(ProviderError::Unavailable {
            provider: Provider::Decentro,
            reason: format!("HTTP {}", reply.status.as_u16()),
            retry_after: reply.retry_after,
        });
    }
    Ok(())
}
