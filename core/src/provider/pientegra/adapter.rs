//! Pientegra as the engine sees it: one [`Adapter`] per configured account.
//!
//! What Pientegra proves: a webhook whose `Pientegra-Signature` verifies with this account's
//! secret, and what this account's own API answers (the create response, the single read, the
//! list). Both are facts and apply as they are. The sweep replays missed webhooks (they come
//! back signed, through the receiver) and reads the settled intents over one time window.

use super::client::{DeliveryStatus, EventsQuery, IntentsQuery, PientegraClient};
use super::{SIGNATURE_HEADER, Status, create_body, parse_webhook};
use crate::intent::{Intent, IntentRequest, ProviderRef};
use crate::provider::config::PientegraAccount;
use crate::provider::pace::Pacer;
use crate::provider::{
    Adapter, BoxFuture, Created, Inbound, Lookup, ProviderError, ReconcileSink, SweepError,
    SweepSettings, SweepStats, WebhookError,
};
use crate::types::{AccountName, Provider, Timestamp};

/// The sweep cursor of the missed-webhook replay: the time up to which failed deliveries were
/// asked for again.
const REPLAYED_UNTIL: &str = "pientegra.events.replayed_until";
/// How far back the first replay looks, when no cursor is stored.
const FIRST_REPLAY_LOOKBACK_MS: i64 = 24 * 60 * 60 * 1_000;
/// Margin for the two clocks, on every window.
const CLOCK_MARGIN_MS: i64 = 60_000;
/// Items per list page (Pientegra's maximum).
const PAGE: u8 = 100;

/// One Pientegra account.
#[derive(Debug)]
pub struct PientegraAdapter {
    client: PientegraClient,
    pacer: Pacer,
    sweep: SweepSettings,
}

impl PientegraAdapter {
    /// The adapter for `account`.
    pub fn new(account: PientegraAccount, sweep: SweepSettings) -> Result<Self, ProviderError> {
        Ok(PientegraAdapter {
            client: PientegraClient::new(account)?,
            pacer: Pacer::new(sweep.call_interval),
            sweep,
        })
    }

    async fn paced<T>(
        &self,
        stats: &mut SweepStats,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        self.pacer.wait().await;
        stats.calls += 1;
        call.await
    }

    /// Asks Pientegra to send again every delivery that `FAILED` or went `DEAD` since the last
    /// pass; they arrive signed, through the receiver, like any webhook.
    async fn replay_missed(
        &self,
        sink: &dyn ReconcileSink,
        stats: &mut SweepStats,
        earliest: Timestamp,
    ) -> Result<(), SweepError> {
        let now = sink.now();
        let since = sink
            .cursor(REPLAYED_UNTIL)
            .await?
            .and_then(|c| Timestamp::parse_rfc3339(&c).ok())
            .unwrap_or_else(|| now.plus_millis(-FIRST_REPLAY_LOOKBACK_MS));
        let mut cursor = None;
        loop {
            let q = EventsQuery {
                created_from: Some(since.plus_millis(-CLOCK_MARGIN_MS).max(earliest)),
                delivery_statuses: vec![DeliveryStatus::Failed, DeliveryStatus::Dead],
                cursor: cursor.take(),
                limit: Some(PAGE),
                ..Default::default()
            };
            let page = self.paced(stats, self.client.list_events(&q)).await?;
            for e in &page.data {
                self.paced(stats, self.client.replay_event(&e.event_id))
                    .await?;
                stats.replayed += 1;
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        sink.set_cursor(REPLAYED_UNTIL, now.to_rfc3339()).await?;
        Ok(())
    }

    /// Reads the provider's settled intents over one window, from the oldest intent still open
    /// here, and applies what differs.
    async fn settle_window(
        &self,
        sink: &dyn ReconcileSink,
        stats: &mut SweepStats,
        earliest: Timestamp,
    ) -> Result<(), SweepError> {
        let Some(oldest) = sink.oldest_open().await? else {
            return Ok(());
        };
        let mut cursor = None;
        loop {
            let q = IntentsQuery {
                created_from: Some(oldest.plus_millis(-CLOCK_MARGIN_MS).max(earliest)),
                statuses: vec![
                    Status::PendingReview,
                    Status::Approved,
                    Status::Rejected,
                    Status::AutoCancelled,
                    Status::LateArrival,
                ],
                cursor: cursor.take(),
                limit: Some(PAGE),
                ..Default::default()
            };
            let page = self.paced(stats, self.client.list_intents(&q)).await?;
            for item in page.data {
                if let Some(event) = item.event()?
                    && sink.apply(event).await?
                {
                    stats.settled += 1;
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(())
    }
}

impl Adapter for PientegraAdapter {
    fn provider(&self) -> Provider {
        Provider::Pientegra
    }

    fn account(&self) -> &AccountName {
        &self.client.account().name
    }

    fn check(&self, request: &IntentRequest) -> Result<(), ProviderError> {
        let IntentRequest::Deposit(request) = request else {
            return Err(refused(
                super::codes::VALIDATION_FAILED,
                "Pientegra takes deposits only",
            ));
        };
        create_body(request)
            .map(|_| ())
            .map_err(|r| refused(r.code, &r.message))
    }

    fn create<'a>(
        &'a self,
        intent: &'a Intent,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<Created, ProviderError>> {
        Box::pin(async move {
            self.client
                .create_deposit(intent)
                .await
                .map(Created::Issued)
        })
    }

    fn look_up<'a>(
        &'a self,
        intent: &'a Intent,
        claimed: Option<&'a ProviderRef>,
    ) -> BoxFuture<'a, Result<Lookup, ProviderError>> {
        Box::pin(async move {
            // Pientegra's records carry nothing of ours to compare (not our idempotency key),
            // so only the reference the intent learned from our own create call is looked up;
            // a reference only a claim names proves nothing.
            let _ = claimed;
            let Some(ProviderRef::Pientegra { intent_id, .. }) = intent.provider_ref.as_ref()
            else {
                return Ok(Lookup::Open);
            };
            let item = self.client.get_intent(intent_id).await?;
            if item.intent_id != *intent_id {
                return Ok(Lookup::Mismatch(
                    "Pientegra answered for another intentId".to_string(),
                ));
            }
            Ok(item.event()?.map_or(Lookup::Open, Lookup::Fact))
        })
    }

    fn receive(
        &self,
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Option<Inbound>, WebhookError> {
        let signature = header(SIGNATURE_HEADER);
        let Some(n) = parse_webhook(
            signature.as_deref(),
            body,
            &self.client.account().webhook,
            now,
        )?
        else {
            return Ok(None);
        };
        let reference = n
            .event
            .provider_ref
            .clone()
            .ok_or_else(|| WebhookError::MalformedBody("no intent id".into()))?;
        Ok(Some(Inbound {
            provider: Provider::Pientegra,
            account: self.account().clone(),
            reference,
            our_intent: None,
            event: n.event,
            proof: n.proof,
        }))
    }

    fn reconcile<'a>(
        &'a self,
        sink: &'a dyn ReconcileSink,
        stats: &'a mut SweepStats,
    ) -> BoxFuture<'a, Result<(), SweepError>> {
        Box::pin(async move {
            let earliest = sink.now().plus_millis(-self.sweep.max_window_ms);
            self.replay_missed(sink, stats, earliest).await?;
            self.settle_window(sink, stats, earliest).await
        })
    }
}

fn refused(code: &str, message: &str) -> ProviderError {
    ProviderError::Pientegra {
        status: 0,
        code: code.to_string(),
        message: message.to_string(),
        retry_after: None,
    }
}
