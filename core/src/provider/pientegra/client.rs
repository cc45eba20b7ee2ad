//! Pientegra's HTTP API: create, the single-intent read, the windowed list, the events list
//! and replay. Every call carries `Authorization: Bearer <api key>`.

use serde::{Deserialize, Serialize};

use super::{Status, codes, create_body, parse_amount, signal_for_status};
use crate::intent::{Intent, IntentRequest, PayerHandoff, ProviderRef};
use crate::lifecycle::{Cause, IntentEvent, Signal};
use crate::provider::config::PientegraAccount;
use crate::provider::http::{Idempotence, Reply, Transport, url_with_segments};
use crate::provider::{Notification, ProviderError, WebhookError};
use crate::types::{Provider, Timestamp};

/// Paths under the base URL (ref; the single read is ours).
mod paths {
    pub(super) const DEPOSITS: &str = "/external/deposits";
    pub(super) const INTENTS: &str = "/external/intents";
    pub(super) const EVENTS: &str = "/external/events";
    // The same two, as path segments under the base URL, for paths that end in an id.
    pub(super) const DEPOSITS_SEGMENTS: [&str; 2] = ["external", "deposits"];
    pub(super) const EVENTS_SEGMENTS: [&str; 2] = ["external", "events"];
}

/// The most items one list page may ask for (ref).
pub const PAGE_LIMIT_MAX: u8 = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateResponse {
    intent_id: String,
    reference_no: Option<String>,
    deposit_url: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

/// One intent as the list and the single read answer it (ref).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntentItem {
    /// Pientegra's id.
    pub intent_id: String,
    /// The `Idempotency-Key` it was created under (ours, name: recovery past the 24-hour
    /// idempotency window finds an intent by it; absent if Pientegra does not list it).
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// For support.
    #[serde(default)]
    pub reference_no: Option<String>,
    /// Where it is.
    pub status: Status,
    /// What was asked, minor units.
    pub requested_amount: String,
    /// What is (or will be) credited, minor units.
    pub amount: String,
    /// `TRY`.
    pub currency: String,
    /// When approved.
    #[serde(default)]
    pub approved_at: Option<String>,
    /// When rejected.
    #[serde(default)]
    pub rejected_at: Option<String>,
    /// Why rejected.
    #[serde(default)]
    pub rejected_reason: Option<String>,
}

impl IntentItem {
    /// What this item says about the intent, as a status-poll event; `None` while it is
    /// still `RESERVED`.
    pub fn event(&self) -> Result<Option<IntentEvent>, ProviderError> {
        let amount = parse_amount(&self.amount).map_err(|e| ProviderError::BadResponse {
            provider: Provider::Pientegra,
            reason: e.to_string(),
        })?;
        Ok(
            signal_for_status(self.status, amount, self.rejected_reason.clone()).map(|signal| {
                IntentEvent::new(signal, Cause::StatusPoll).with_provider_ref(
                    ProviderRef::Pientegra {
                        intent_id: self.intent_id.clone(),
                        reference_no: self.reference_no.clone(),
                    },
                )
            }),
        )
    }
}

/// A delivery state in Pientegra's webhook outbox (ref).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    /// Not attempted yet, or between retries.
    Pending,
    /// Acknowledged with a 2xx.
    Delivered,
    /// The last attempt failed; more will follow.
    Failed,
    /// Retries exhausted.
    Dead,
}

/// One event in Pientegra's webhook outbox (ours, fields). The body is not listed: recovery
/// replays the event, so the original signed body arrives through the receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventItem {
    /// The webhook's `eventId`.
    pub event_id: String,
    /// `intent.approved`, ...
    pub event_type: String,
    /// The intent it is about.
    pub intent_id: String,
    /// When it was created.
    pub created_at: String,
    /// Its delivery state.
    pub delivery_status: DeliveryStatus,
}

/// A page of a list (ref).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items, newest first.
    pub data: Vec<T>,
    /// The next page's cursor; `None` on the last page.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// A time window and filters for `GET /external/intents`.
#[derive(Clone, Debug, Default)]
pub struct IntentsQuery {
    /// Created at or after.
    pub created_from: Option<Timestamp>,
    /// Created before.
    pub created_to: Option<Timestamp>,
    /// Any of these statuses; empty for all.
    pub statuses: Vec<Status>,
    /// From a previous page.
    pub cursor: Option<String>,
    /// 1 to 100.
    pub limit: Option<u8>,
}

/// A time window and filters for `GET /external/events`.
#[derive(Clone, Debug, Default)]
pub struct EventsQuery {
    /// Created at or after.
    pub created_from: Option<Timestamp>,
    /// Created before.
    pub created_to: Option<Timestamp>,
    /// One event type.
    pub event_type: Option<String>,
    /// Any of these delivery states; empty for all.
    pub delivery_statuses: Vec<DeliveryStatus>,
    /// From a previous page.
    pub cursor: Option<String>,
    /// 1 to 100.
    pub limit: Option<u8>,
}

fn screaming<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn window(
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    cursor: &Option<String>,
    limit: Option<u8>,
) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(t) = from {
        q.push(("createdFrom", t.to_rfc3339()));
    }
    if let Some(t) = to {
        q.push(("createdTo", t.to_rfc3339()));
    }
    if let Some(c) = cursor {
        q.push(("cursor", c.clone()));
    }
    if let Some(l) = limit {
        q.push(("limit", l.clamp(1, PAGE_LIMIT_MAX).to_string()));
    }
    q
}

/// A client for one Pientegra account.
#[derive(Clone, Debug)]
pub struct PientegraClient {
    account: PientegraAccount,
    transport: Transport,
}

impl PientegraClient {
    /// A client for `account`.
    pub fn new(account: PientegraAccount) -> Result<Self, ProviderError> {
        let transport = Transport::new(Provider::Pientegra, account.http.clone())?;
        Ok(PientegraClient { account, transport })
    }

    /// The account.
    pub fn account(&self) -> &PientegraAccount {
        &self.account
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.account.base_url)
    }

    /// Creates the deposit at Pientegra under the intent's stored idempotency key. Repeating
    /// this after a crash or a lost response returns the same Pientegra intent. Returns the
    /// event that moves the intent to `pending`.
    pub async fn create_deposit(&self, intent: &Intent) -> Result<IntentEvent, ProviderError> {
        let IntentRequest::Deposit(request) = &intent.request else {
            return Err(refused(codes::VALIDATION_FAILED, "not a deposit intent"));
        };
        let body = create_body(request).map_err(|r| refused(r.code, &r.message))?;
        let body = serde_json::to_vec(&body)
            .map_err(|e| refused(codes::VALIDATION_FAILED, &e.to_string()))?;
        let url = self.url(paths::DEPOSITS);
        let reply = self
            .transport
            .send(
                |c| {
                    c.post(&url)
                        .bearer_auth(self.account.api_key.expose())
                        .header("Idempotency-Key", &intent.provider_key)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                },
                Idempotence::Safe,
                |r| {
                    r.status == reqwest::StatusCode::CONFLICT
                        && error_code(r).as_deref() == Some(codes::DUPLICATE_IDEMPOTENCY_KEY)
                },
            )
            .await?;
        let created: CreateResponse = ok_json(reply)?;
        let expires_at = Timestamp::parse_rfc3339(&created.expires_at).map_err(|_| {
            ProviderError::BadResponse {
                provider: Provider::Pientegra,
                reason: format!("expiresAt {:?} is not RFC 3339", created.expires_at),
            }
        })?;
        Ok(IntentEvent::new(
            Signal::HandoffIssued {
                handoff: PayerHandoff::HostedPage {
                    url: created.deposit_url,
                },
                expires_at: Some(expires_at),
            },
            Cause::Api,
        )
        .with_provider_ref(ProviderRef::Pientegra {
            intent_id: created.intent_id,
            reference_no: created.reference_no,
        }))
    }

    /// One intent, for support and reconciliation only: never a polling loop. The id is one
    /// escaped path segment, whatever it holds.
    pub async fn get_intent(&self, intent_id: &str) -> Result<IntentItem, ProviderError> {
        let url = self.url_to(&[
            paths::DEPOSITS_SEGMENTS[0],
            paths::DEPOSITS_SEGMENTS[1],
            intent_id,
        ])?;
        self.get_url(url, &[]).await
    }

    /// One page of intents in a time window: the reconciliation primitive.
    pub async fn list_intents(&self, q: &IntentsQuery) -> Result<Page<IntentItem>, ProviderError> {
        let mut query = window(q.created_from, q.created_to, &q.cursor, q.limit);
        if !q.statuses.is_empty() {
            let s: Vec<String> = q.statuses.iter().map(screaming).collect();
            query.push(("status", s.join(",")));
        }
        self.get_json(paths::INTENTS, &query).await
    }

    /// One page of Pientegra's webhook outbox: how missed deliveries are found.
    pub async fn list_events(&self, q: &EventsQuery) -> Result<Page<EventItem>, ProviderError> {
        let mut query = window(q.created_from, q.created_to, &q.cursor, q.limit);
        if let Some(t) = &q.event_type {
            query.push(("eventType", t.clone()));
        }
        if !q.delivery_statuses.is_empty() {
            let s: Vec<String> = q.delivery_statuses.iter().map(screaming).collect();
            query.push(("deliveryStatus", s.join(",")));
        }
        self.get_json(paths::EVENTS, &query).await
    }

    /// `base_url` plus escaped path segments.
    fn url_to(&self, segments: &[&str]) -> Result<reqwest::Url, ProviderError> {
        url_with_segments(Provider::Pientegra, &self.account.base_url, segments)
    }

    /// An authenticated read, retried as reads may be.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ProviderError> {
        let url = self.url(path);
        self.get_url(url, query).await
    }

    async fn get_url<T: serde::de::DeserializeOwned, U: reqwest::IntoUrl + Clone>(
        &self,
        url: U,
        query: &[(&str, String)],
    ) -> Result<T, ProviderError> {
        let reply = self
            .transport
            .send(
                |c| {
                    c.get(url.clone())
                        .bearer_auth(self.account.api_key.expose())
                        .query(query)
                },
                Idempotence::Safe,
                |_| false,
            )
            .await?;
        ok_json(reply)
    }

    /// Asks Pientegra to send an event's identical signed body again. Safe to repeat: the
    /// receiver deduplicates on `eventId`.
    pub async fn replay_event(&self, event_id: &str) -> Result<(), ProviderError> {
        let url = self.url_to(&[
            paths::EVENTS_SEGMENTS[0],
            paths::EVENTS_SEGMENTS[1],
            event_id,
            "replay",
        ])?;
        let reply = self
            .transport
            .send(
                |c| {
                    c.post(url.clone())
                        .bearer_auth(self.account.api_key.expose())
                },
                Idempotence::Safe,
                |_| false,
            )
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(error_from(reply))
        }
    }

    /// Verifies and parses a webhook delivered to this account.
    pub fn parse_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Option<Notification>, WebhookError> {
        super::parse_webhook(signature, body, &self.account.webhook, now)
    }
}

/// A refusal before sending, with the code Pientegra would answer.
pub(super) fn refused(code: &str, message: &str) -> ProviderError {
    ProviderError::Pientegra {
        status: 0,
        code: code.to_string(),
        message: message.to_string(),
        retry_after: None,
    }
}

fn error_code(r: &Reply) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(&r.body)
        .ok()
        .map(|b| b.error.code)
}

fn error_from(reply: Reply) -> ProviderError {
    if reply.status.is_server_error() {
        return ProviderError::Unavailable {
            provider: Provider::Pientegra,
            reason: format!("HTTP {}", reply.status.as_u16()),
            retry_after: reply.retry_after,
        };
    }
    match serde_json::from_slice::<ErrorBody>(&reply.body) {
        Ok(b) => ProviderError::Pientegra {
            status: reply.status.as_u16(),
            code: b.error.code,
            message: b.error.message,
            retry_after: reply.retry_after,
        },
        Err(_) => ProviderError::BadResponse {
            provider: Provider::Pientegra,
            reason: format!("HTTP {} without an error body", reply.status.as_u16()),
        },
    }
}

fn ok_json<T: serde::de::DeserializeOwned>(reply: Reply) -> Result<T, ProviderError> {
    if !reply.status.is_success() {
        return Err(error_from(reply));
    }
    serde_json::from_slice(&reply.body).map_err(|e| ProviderError::BadResponse {
        provider: Provider::Pientegra,
        reason: e.to_string(),
    })
}
