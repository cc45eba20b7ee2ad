//! Pientegra as the engine sees it: one [`Adapter`] per configured account.
//!
//! What Pientegra proves: a webhook whose `Pientegra-Signature` verifies with this account's
//! secret, and what this account's own API answers (the create response, the single read, the
//! list). Both are facts and apply as they are. The sweep replays missed webhooks (they come
//! back signed, through the receiver), then lists settled intents only over the time windows
//! that hold intents still open here: its cost follows the open work, not the history.

use super::client::{DeliveryStatus, EventsQuery, IntentsQuery, PientegraClient, refused};
use super::{SIGNATURE_HEADER, Status, create_body, parse_webhook};
use crate::intent::{Intent, IntentRequest, ProviderRef};
use crate::lifecycle::{Cause, IntentEvent, Signal};
use crate::provider::config::PientegraAccount;
use crate::provider::pace::{CallBudget, CallKind, Pacer};
use crate::provider::{
    Adapter, BoxFuture, Created, Inbound, Lookup, ProviderError, ReconcileSink, Recovery,
    SweepError, SweepSettings, SweepStats, WebhookError,
};
use crate::types::{AccountName, Provider, Timestamp};

/// The sweep cursor of the missed-webhook replay: the time up to which failed deliveries were
/// asked for again.
const REPLAYED_UNTIL: &str = "pientegra.events.replayed_until";
/// How far back the first replay looks, when no cursor is stored.
const FIRST_REPLAY_LOOKBACK_MS: i64 = 24 * 60 * 60 * 1_000;
/// Where a replay cut short by its time budget stopped.
const REPLAY_RESUME: &str = "pientegra.events.resume";
/// Where an intents sweep cut short by its time budget stopped.
const SWEEP_RESUME: &str = "pientegra.intents.resume";
/// Margin for the two clocks, on every window.
const CLOCK_MARGIN_MS: i64 = 60_000;
/// Open intents created closer together than this share one window.
const WINDOW_MERGE_GAP_MS: i64 = 10 * 60_000;
/// Items per list page (Pientegra's maximum).
const PAGE: u8 = 100;
/// How long Pientegra keeps an idempotency key's answer (ref).
const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1_000;
/// How long before that window ends recovery stops creating again (the two clocks, and a
/// create's own retries, must not straddle it).
const IDEMPOTENCY_MARGIN_MS: i64 = 60 * 60_000;
/// How long after its last recorded attempt an intent's create can have reached Pientegra:
/// every retry of the request and its timeouts.
const FIND_WINDOW_MS: i64 = 10 * 60_000;

/// One Pientegra account.
#[derive(Debug)]
pub struct PientegraAdapter {
    client: PientegraClient,
    /// This process's floor between its own sweep calls.
    pacer: Pacer,
    /// The account's call budget, shared with every instance (see `provider::pace`).
    budget: Option<std::sync::Arc<dyn CallBudget>>,
    sweep: SweepSettings,
}

impl PientegraAdapter {
    /// The adapter for `account`. Until [`PientegraAdapter::with_budget`], its calls are
    /// paced in this process only.
    pub fn new(account: PientegraAccount, sweep: SweepSettings) -> Result<Self, ProviderError> {
        Ok(PientegraAdapter {
            client: PientegraClient::new(account)?,
            pacer: Pacer::new(sweep.call_interval),
            budget: None,
            sweep,
        })
    }

    /// The same adapter, asking `budget` before every call to Pientegra.
    pub fn with_budget(mut self, budget: std::sync::Arc<dyn CallBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Waits for a call's turn: this process's floor for sweeps, then the account's budget.
    async fn turn(&self, kind: CallKind) {
        if kind == CallKind::Sweep {
            self.pacer.wait().await;
        }
        if let Some(b) = &self.budget {
            b.take(kind).await;
        }
    }

    /// A call a caller waits for: it goes at once, its budget taken alongside.
    async fn foreground<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let ((), answer) = tokio::join!(self.turn(CallKind::Foreground), call);
        answer
    }

    async fn paced<T>(
        &self,
        stats: &mut SweepStats,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        self.turn(CallKind::Sweep).await;
        stats.calls += 1;
        call.await
    }

    /// Asks Pientegra to send again every delivery that `FAILED` or went `DEAD` since the last
    /// pass; they arrive signed, through the receiver, like any webhook. A replay that runs
    /// out of time keeps its place (its window and page); `Ok(false)` then.
    async fn replay_missed(
        &self,
        sink: &dyn ReconcileSink,
        stats: &mut SweepStats,
        earliest: Timestamp,
    ) -> Result<bool, SweepError> {
        let resume = sink
            .cursor(REPLAY_RESUME)
            .await?
            .and_then(|c| ReplayResume::parse(&c));
        let (since, until, mut cursor) = match resume {
            Some(r) => (r.since, r.until, r.page),
            None => {
                let now = sink.now();
                let since = sink
                    .cursor(REPLAYED_UNTIL)
                    .await?
                    .and_then(|c| Timestamp::parse_rfc3339(&c).ok())
                    .unwrap_or_else(|| now.plus_millis(-FIRST_REPLAY_LOOKBACK_MS));
                (since, now, None)
            }
        };
        loop {
            if sink.out_of_time() {
                stats.cut_short = true;
                let here = ReplayResume {
                    since,
                    until,
                    page: cursor,
                };
                sink.set_cursor(REPLAY_RESUME, here.to_string()).await?;
                return Ok(false);
            }
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
        // The whole window since the last replay is done: the next starts where this began.
        sink.set_cursor(REPLAYED_UNTIL, until.to_rfc3339()).await?;
        sink.set_cursor(REPLAY_RESUME, String::new()).await?;
        Ok(true)
    }

    /// Reads the provider's settled intents over the windows that hold intents still open
    /// here, and applies what differs. A pass that runs out of time keeps its place (window
    /// and page) in the store; the next pass goes on from there, and after the last window
    /// starts again at the first.
    async fn settle_windows(
        &self,
        sink: &dyn ReconcileSink,
        stats: &mut SweepStats,
        earliest: Timestamp,
    ) -> Result<(), SweepError> {
        let open = sink.open_created().await?;
        let windows = windows(&open, earliest);
        stats.windows = windows.len();
        if windows.is_empty() {
            return Ok(());
        }
        let resume = sink
            .cursor(SWEEP_RESUME)
            .await?
            .and_then(|c| Resume::parse(&c));
        // Go on from the window the last pass stopped in (or the first after it).
        let start = resume
            .as_ref()
            .and_then(|r| windows.iter().position(|w| w.1 > r.from))
            .unwrap_or(0);
        for (i, &(from, to)) in windows.iter().enumerate().skip(start) {
            let mut cursor = resume
                .as_ref()
                .filter(|r| i == start && r.from == from)
                .and_then(|r| r.page.clone());
            loop {
                if sink.out_of_time() {
                    stats.cut_short = true;
                    let here = Resume { from, page: cursor };
                    sink.set_cursor(SWEEP_RESUME, here.to_string()).await?;
                    return Ok(());
                }
                let q = IntentsQuery {
                    created_from: Some(from),
                    created_to: Some(to),
                    statuses: vec![
                        Status::PendingReview,
                        Status::Approved,
                        Status::Rejected,
                        Status::AutoCancelled,
                        Status::LateArrival,
                    ],
                    cursor: cursor.take(),
                    limit: Some(PAGE),
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
            stats.windows_swept += 1;
        }
        // A full cycle: the next pass starts again at the first window.
        sink.set_cursor(SWEEP_RESUME, String::new()).await?;
        Ok(())
    }
}

/// The windows a sweep lists: each open intent's creation time, widened by the clock margin,
/// merged with its neighbours when they are less than [`WINDOW_MERGE_GAP_MS`] apart (one call
/// for both costs less than two), and never before `earliest`.
fn windows(open: &[Timestamp], earliest: Timestamp) -> Vec<(Timestamp, Timestamp)> {
    let mut out: Vec<(Timestamp, Timestamp)> = Vec::new();
    for &t in open {
        let (from, to) = (
            t.plus_millis(-CLOCK_MARGIN_MS).max(earliest),
            t.plus_millis(CLOCK_MARGIN_MS),
        );
        if to <= earliest {
            continue;
        }
        match out.last_mut() {
            Some(last) if from <= last.1.plus_millis(WINDOW_MERGE_GAP_MS) => {
                last.1 = last.1.max(to)
            }
            _ => out.push((from, to)),
        }
    }
    out
}

/// Where a replay cut short stopped: the window it covers, and the page inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ReplayResume {
    since: Timestamp,
    until: Timestamp,
    page: Option<String>,
}

impl ReplayResume {
    fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, ' ');
        let since = Timestamp::from_unix_millis(parts.next()?.parse().ok()?);
        let until = Timestamp::from_unix_millis(parts.next()?.parse().ok()?);
        let page = parts.next().filter(|p| !p.is_empty()).map(str::to_string);
        Some(ReplayResume { since, until, page })
    }
}

impl std::fmt::Display for ReplayResume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.since.unix_millis(),
            self.until.unix_millis(),
            self.page.as_deref().unwrap_or("")
        )
    }
}

/// Where a sweep cut short stopped: the window's start, and the page cursor inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Resume {
    from: Timestamp,
    page: Option<String>,
}

impl Resume {
    fn parse(s: &str) -> Option<Self> {
        let (from, page) = s.split_once(' ').unwrap_or((s, ""));
        Some(Resume {
            from: Timestamp::from_unix_millis(from.parse().ok()?),
            page: (!page.is_empty()).then(|| page.to_string()),
        })
    }
}

impl std::fmt::Display for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.from.unix_millis(),
            self.page.as_deref().unwrap_or("")
        )
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
            self.foreground(self.client.create_deposit(intent))
                .await
                .map(Created::Issued)
        })
    }

    fn recovery(&self, intent: &Intent, now: Timestamp) -> Recovery {
        // Pientegra keeps an idempotency key's answer for 24 hours (ref); past that (with a
        // margin for the two clocks) the same key would create a second deposit.
        if now
            >= intent
                .created_at
                .plus_millis(IDEMPOTENCY_WINDOW_MS - IDEMPOTENCY_MARGIN_MS)
        {
            Recovery::Find
        } else {
            Recovery::Create
        }
    }

    fn find_created<'a>(
        &'a self,
        intent: &'a Intent,
    ) -> BoxFuture<'a, Result<Option<IntentEvent>, ProviderError>> {
        Box::pin(async move {
            // The create was sent after the intent was recorded, within its request timeouts.
            let mut cursor = None;
            loop {
                let q = IntentsQuery {
                    created_from: Some(intent.created_at.plus_millis(-CLOCK_MARGIN_MS)),
                    // Until the last attempt recorded on it (each failed create notes one), and
                    // the time such an attempt may have taken to reach Pientegra.
                    created_to: Some(intent.updated_at.plus_millis(FIND_WINDOW_MS)),
                    cursor: cursor.take(),
                    limit: Some(PAGE),
                    ..Default::default()
                };
                self.turn(CallKind::Sweep).await;
                let page = self.client.list_intents(&q).await?;
                if let Some(item) = page
                    .data
                    .iter()
                    .find(|i| i.idempotency_key.as_deref() == Some(&intent.provider_key))
                {
                    let reference = ProviderRef::Pientegra {
                        intent_id: item.intent_id.clone(),
                        reference_no: item.reference_no.clone(),
                    };
                    // Still RESERVED a day later: nobody was given its page, and it has long
                    // expired. Ours expires by our timer, keeping the reference, so that a
                    // sweep still covers it.
                    let event = item.event()?.unwrap_or_else(|| {
                        IntentEvent::new(Signal::Expired, Cause::Timer).with_provider_ref(reference)
                    });
                    return Ok(Some(event));
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => return Ok(None),
                }
            }
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
            let item = self.foreground(self.client.get_intent(intent_id)).await?;
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
        match parse_webhook(
            signature.as_deref(),
            body,
            &self.client.account().webhook,
            now,
        )? {
            Some(n) => n
                .bind(Provider::Pientegra, self.account().clone(), None)
                .map(Some),
            None => Ok(None),
        }
    }

    fn reconcile<'a>(
        &'a self,
        sink: &'a dyn ReconcileSink,
        stats: &'a mut SweepStats,
    ) -> BoxFuture<'a, Result<(), SweepError>> {
        Box::pin(async move {
            let earliest = sink.now().plus_millis(-self.sweep.max_window_ms);
            if self.replay_missed(sink, stats, earliest).await? {
                self.settle_windows(sink, stats, earliest).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(min: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_795_000_000_000 + min * 60_000)
    }

    #[test]
    fn windows_follow_the_open_intents_and_merge_when_close() {
        let open = [t(0), t(5), t(30), t(31), t(200)];
        let w = windows(&open, t(-10_000));
        assert_eq!(
            w,
            [(t(-1), t(6)), (t(29), t(32)), (t(199), t(201))],
            "one window per cluster of open intents, one minute of margin each side"
        );
        assert_eq!(windows(&[], t(0)), []);
        // Nothing before the earliest time a sweep looks at.
        assert_eq!(windows(&open, t(100)), [(t(199), t(201))]);
    }

    #[test]
    fn a_resume_cursor_round_trips() {
        let r = ReplayResume {
            since: t(1),
            until: t(2),
            page: Some("opaque==".into()),
        };
        assert_eq!(ReplayResume::parse(&r.to_string()), Some(r));
        for r in [
            Resume {
                from: t(3),
                page: Some("opaque==".into()),
            },
            Resume {
                from: t(3),
                page: None,
            },
        ] {
            assert_eq!(Resume::parse(&r.to_string()), Some(r));
        }
        assert_eq!(Resume::parse(""), None);
    }
}
