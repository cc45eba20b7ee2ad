//! A Pientegra simulator: a real HTTP server that behaves as `wire-contract.md` says.
//!
//! - API under `/api/v1`: create with the contract's idempotency (replay; `409` for another
//!   body or a key still in flight; a key whose client hung up mid-flight is answered, not
//!   left in flight), the single read, the windowed intent list, the events list and replay.
//! - The hosted page at `depositUrl` (`/d/<signed token>`): amount, account holder, IBAN,
//!   reference, a countdown to `expiresAt`, and the "I made the payment" button. The token is
//!   signed and one-time; after expiry the page shows an expired state and the intent is
//!   `AUTO_CANCELLED`.
//! - Webhooks: every status change becomes an event, delivered to the configured URL with a
//!   `Pientegra-Signature`, retried on non-2xx until `DEAD`. Tests can hold deliveries and
//!   send chosen events in any order, repeated, or signed with the previous secret.
//! - Control endpoints under `/_control` drive outcomes (approve, approve another amount,
//!   reject, expire, late arrival), rotate the secret, and inject faults.
//! - A rate limit per API key, off unless configured ([`Config::rate_limit`] or
//!   `/_control/rate-limit`): past it, `429 rate_limited` with `Retry-After`. Every API call
//!   is logged with its kind and (real) time, so tests count calls per window.
//!
//! Time comes from the injected [`Clock`], so tests move it instead of sleeping.
//!
//! The wire types here (statuses, delivery states, field names) are written out independently
//! of core's adapter on purpose: the simulator is our model of the provider, and contract
//! tests only catch a misspelt field if the two sides do not share the spelling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use intentkit_core::provider::Secret;
use intentkit_core::provider::pientegra::signature_header;
use intentkit_core::{Clock, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::faults::{Faults, dropped_connection};

/// How long a cached idempotent response lives (ref).
const IDEMPOTENCY_TTL_MS: i64 = 24 * 60 * 60 * 1_000;
/// Delivery attempts before an event is `DEAD`.
const MAX_DELIVERY_ATTEMPTS: u32 = 6;

/// How the simulated account is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// The bearer key clients must send.
    pub api_key: Secret,
    /// The webhook signing secret.
    pub webhook_secret: Secret,
    /// Where webhooks go; none to keep them undelivered.
    pub webhook_url: Option<String>,
    /// How long a deposit URL lives.
    pub ttl_ms: i64,
    /// Shown on the hosted page.
    pub account_holder: String,
    /// Shown on the hosted page.
    pub iban: String,
    /// The most API calls one key may make in a sliding window; `None` for no limit.
    pub rate_limit: Option<RateLimit>,
}

/// At most `calls` API calls per key in any `period_ms` (a sliding window, in real time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Calls allowed per window.
    pub calls: u32,
    /// The window, in milliseconds.
    pub period_ms: u64,
}

/// One API call as the simulator saw it (for tests counting calls per window).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiCall {
    /// When it arrived (real time).
    pub at: std::time::Instant,
    /// `create`, `read`, `list_intents`, `list_events` or `replay`.
    pub kind: &'static str,
    /// Whether it was answered `429 rate_limited`.
    pub rate_limited: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_key: Secret::new("pk_sandbox"),
            webhook_secret: Secret::new("whsec_c2FuZGJveA"),
            webhook_url: None,
            ttl_ms: 30 * 60 * 1_000,
            account_holder: "Pientegra Sandbox A.S.".into(),
            iban: "TR33 0006 1005 1978 6457 8413 26".into(),
            rate_limit: None,
        }
    }
}

/// A Pientegra intent status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Awaiting the payer.
    Reserved,
    /// Payer confirmed; under review.
    PendingReview,
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
    /// Expired unpaid.
    AutoCancelled,
    /// Funds after expiry.
    LateArrival,
}

#[derive(Clone, Debug)]
struct SimIntent {
    id: String,
    /// The `Idempotency-Key` it was created under (ours: listed, so that a partner past the
    /// 24-hour idempotency window can still find an intent its lost create made).
    idempotency_key: String,
    reference_no: String,
    external_user_id: String,
    requested_amount: i64,
    amount: i64,
    status: Status,
    created_at: Timestamp,
    expires_at: Timestamp,
    token_used: bool,
    approved_at: Option<Timestamp>,
    rejected_at: Option<Timestamp>,
    rejected_reason: Option<String>,
}

impl SimIntent {
    fn item(&self) -> Value {
        json!({
            "intentId": self.id,
            "idempotencyKey": self.idempotency_key,
            "referenceNo": self.reference_no,
            "status": self.status,
            "requestedAmount": self.requested_amount.to_string(),
            "amount": self.amount.to_string(),
            "currency": "TRY",
            "approvedAt": self.approved_at.map(Timestamp::to_rfc3339),
            "rejectedAt": self.rejected_at.map(Timestamp::to_rfc3339),
            "rejectedReason": self.rejected_reason,
        })
    }
}

/// A delivery state (ref).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    /// Waiting for an attempt.
    Pending,
    /// Answered 2xx.
    Delivered,
    /// Last attempt failed; retrying.
    Failed,
    /// Retries exhausted.
    Dead,
}

#[derive(Clone, Debug)]
struct SimEvent {
    event_id: String,
    event_type: &'static str,
    intent_id: String,
    created_at: Timestamp,
    body: Bytes,
    delivery: DeliveryStatus,
    attempts: u32,
    next_attempt: std::time::Instant,
}

/// A claimed idempotency key: still in flight (the intent committed, its answer held back by
/// `create_hold_ms`), or done and replayable for 24 hours. Only a live [`Claim`] leaves a key
/// in flight: however its handler ends, the key ends done.
enum Idem {
    InFlight {
        response: Value,
    },
    Done {
        hash: String,
        at: Timestamp,
        response: Value,
    },
}

struct Inner {
    config: Config,
    previous_secret: Option<Secret>,
    intents: HashMap<String, SimIntent>,
    order: Vec<String>,
    idempotency: HashMap<String, Idem>,
    events: Vec<SimEvent>,
    faults: Faults,
    hold_deliveries: bool,
    counter: u64,
    public_url: String,
    api_calls: u64,
    /// Every API call that passed authentication, in order.
    call_log: Vec<ApiCall>,
    /// Per API key, when its calls inside the rate limit's window were taken.
    windows: HashMap<String, std::collections::VecDeque<std::time::Instant>>,
}

/// A running simulator. Dropping it does not stop the server; call [`Simulator::shutdown`].
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Mutex<Inner>>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    base_url: String,
    shutdown: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("pientegra::Simulator")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

type Shared = State<Simulator>;

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

fn money(minor: i64) -> String {
    let units = (minor / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(c);
    }
    format!("{grouped},{:02} TRY", minor % 100)
}

impl Simulator {
    /// Starts the simulator on `addr` (use port 0 for an ephemeral one).
    pub async fn start(
        config: Config,
        clock: Arc<dyn Clock>,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<Simulator> {
        intentkit_core::provider::http::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let root = format!("http://{local}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(std::io::Error::other)?;
        let sim = Simulator {
            inner: Arc::new(Mutex::new(Inner {
                config,
                previous_secret: None,
                intents: HashMap::new(),
                order: Vec::new(),
                idempotency: HashMap::new(),
                events: Vec::new(),
                faults: Faults::default(),
                hold_deliveries: false,
                counter: 0,
                public_url: root.clone(),
                api_calls: 0,
                call_log: Vec::new(),
                windows: HashMap::new(),
            })),
            clock,
            http,
            base_url: format!("{root}/api/v1"),
            shutdown: Arc::new(tokio::sync::Notify::new()),
        };
        let app = Router::new()
            .route("/api/v1/external/deposits", post(create))
            .route("/api/v1/external/deposits/{id}", get(read_one))
            .route("/api/v1/external/intents", get(list_intents))
            .route("/api/v1/external/events", get(list_events))
            .route("/api/v1/external/events/{id}/replay", post(replay))
            .route("/d/{token}", get(hosted_page))
            .route("/d/{token}/confirm", post(confirm))
            .route("/_control/intents/{id}/{action}", post(control_intent))
            .route("/_control/faults", post(set_faults))
            .route("/_control/rate-limit", post(set_rate_limit))
            .route("/_control/rotate-secret", post(rotate_secret))
            .route("/_control/webhook-url", post(set_webhook_url))
            .route("/_control/deliveries/hold", post(hold))
            .route("/_control/deliveries/release", post(release))
            .route("/_control/deliveries/send", post(send_now))
            .with_state(sim.clone());
        crate::serve(listener, app, sim.shutdown.clone());
        let worker = sim.clone();
        tokio::spawn(async move { worker.deliver_forever().await });
        Ok(sim)
    }

    /// `http://<addr>/api/v1`: the adapter's `base_url`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `http://<addr>`: where the hosted pages and control endpoints live.
    pub fn root_url(&self) -> String {
        self.lock().public_url.clone()
    }

    /// Stops the server and the delivery worker.
    pub fn shutdown(&self) {
        self.shutdown.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Expires every reserved intent whose deadline passed, as Pientegra's own timer would.
    fn tick(&self, inner: &mut Inner) {
        let now = self.now();
        let due: Vec<String> = inner
            .intents
            .values()
            .filter(|i| i.status == Status::Reserved && i.expires_at <= now)
            .map(|i| i.id.clone())
            .collect();
        for id in due {
            transition(inner, &id, Status::AutoCancelled, now);
        }
    }

    /// The status Pientegra holds for an intent (for tests).
    pub fn status_of(&self, intent_id: &str) -> Option<Status> {
        let mut inner = self.lock();
        self.tick(&mut inner);
        inner.intents.get(intent_id).map(|i| i.status)
    }

    /// How many API calls arrived (for tests: retries are visible here).
    pub fn api_calls(&self) -> u64 {
        self.lock().api_calls
    }

    /// Every authenticated API call so far, in order of arrival (for tests).
    pub fn call_log(&self) -> Vec<ApiCall> {
        self.lock().call_log.clone()
    }

    /// Every intent id Pientegra holds, oldest first (for tests).
    pub fn intent_ids(&self) -> Vec<String> {
        self.lock().order.clone()
    }

    /// How many intents Pientegra holds (for tests: one per idempotency key).
    pub fn intent_count(&self) -> usize {
        self.lock().intents.len()
    }

    /// The delivery state of every event, oldest first (for tests).
    pub fn deliveries(&self) -> Vec<(String, &'static str, DeliveryStatus)> {
        self.lock()
            .events
            .iter()
            .map(|e| (e.event_id.clone(), e.event_type, e.delivery))
            .collect()
    }

    async fn deliver_forever(self) {
        loop {
            tokio::select! {
                () = self.shutdown.notified() => return,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            self.deliver_due().await;
        }
    }

    /// Sends every event that is due, oldest first, stopping at the first failure: an event
    /// waits for the ones before it (Pientegra delivers in order).
    async fn deliver_due(&self) {
        loop {
            let due = {
                let mut inner = self.lock();
                self.tick(&mut inner);
                if inner.hold_deliveries {
                    return;
                }
                let Some(url) = inner.config.webhook_url.clone() else {
                    return;
                };
                let now = std::time::Instant::now();
                let next = inner.events.iter().position(|e| {
                    matches!(e.delivery, DeliveryStatus::Pending | DeliveryStatus::Failed)
                });
                match next {
                    Some(i) if inner.events[i].next_attempt <= now => (
                        i,
                        url,
                        inner.events[i].body.clone(),
                        inner.config.webhook_secret.clone(),
                    ),
                    _ => return,
                }
            };
            let (i, url, body, secret) = due;
            let ok = self.post_webhook(&url, &secret, body).await;
            let mut inner = self.lock();
            if let Some(e) = inner.events.get_mut(i) {
                e.attempts += 1;
                e.delivery = if ok {
                    DeliveryStatus::Delivered
                } else if e.attempts >= MAX_DELIVERY_ATTEMPTS {
                    DeliveryStatus::Dead
                } else {
                    DeliveryStatus::Failed
                };
                e.next_attempt = std::time::Instant::now()
                    + Duration::from_millis(50 * (1 << e.attempts.min(6)));
            }
            if !ok {
                return;
            }
        }
    }

    async fn post_webhook(&self, url: &str, secret: &Secret, body: Bytes) -> bool {
        let header_value = signature_header(secret, self.now().unix_millis(), &body);
        self.http
            .post(url)
            .header("Pientegra-Signature", header_value)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

/// Applies a status change and records its webhook event (one per change, as Pientegra does).
fn transition(inner: &mut Inner, id: &str, to: Status, now: Timestamp) {
    let Some(intent) = inner.intents.get_mut(id) else {
        return;
    };
    intent.status = to;
    match to {
        Status::Approved => intent.approved_at = Some(now),
        Status::Rejected => intent.rejected_at = Some(now),
        _ => {}
    }
    let event_type = match to {
        Status::Approved => "intent.approved",
        Status::Rejected => "intent.rejected",
        Status::LateArrival => "intent.late_arrival",
        Status::AutoCancelled => "intent.auto_cancelled",
        // Reserved and PendingReview send no webhook (ref: outcomes only).
        Status::Reserved | Status::PendingReview => return,
    };
    let event_id = uuid::Uuid::now_v7().to_string();
    let body = json!({
        "eventId": event_id,
        "eventType": event_type,
        "occurredAt": now.to_rfc3339(),
        "intent": {
            "id": intent.id,
            "referenceNo": intent.reference_no,
            "externalUserId": intent.external_user_id,
            "requestedAmount": intent.requested_amount.to_string(),
            "amount": intent.amount.to_string(),
            "currency": "TRY",
            "status": to,
            "rejectedReason": intent.rejected_reason,
        }
    });
    inner.events.push(SimEvent {
        event_id,
        event_type,
        intent_id: intent.id.clone(),
        created_at: now,
        body: Bytes::from(body.to_string()),
        delivery: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt: std::time::Instant::now(),
    });
}

fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", inner.config.api_key.expose());
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

/// The common front of every API call: faults, then auth.
/// Counts a call against its key's rate limit: `Err(retry after, seconds)` past it.
fn within_rate_limit(inner: &mut Inner, headers: &HeaderMap) -> Result<(), u64> {
    let Some(limit) = inner.config.rate_limit else {
        return Ok(());
    };
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let now = std::time::Instant::now();
    let period = Duration::from_millis(limit.period_ms);
    let taken = inner.windows.entry(key).or_default();
    while taken
        .front()
        .is_some_and(|t| now.duration_since(*t) >= period)
    {
        taken.pop_front();
    }
    if taken.len() >= usize::try_from(limit.calls).unwrap_or(usize::MAX) {
        let free_at = taken.front().map_or(now, |t| *t + period);
        return Err(free_at.duration_since(now).as_secs().max(1));
    }
    taken.push_back(now);
    Ok(())
}

async fn gate(sim: &Simulator, headers: &HeaderMap, kind: &'static str) -> Result<(), Response> {
    let faults = {
        let mut inner = sim.lock();
        inner.api_calls += 1;
        if inner.faults.rate_limit_next > 0 {
            inner.faults.rate_limit_next -= 1;
            let secs = inner.faults.retry_after_secs.to_string();
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
            if let Ok(v) = secs.parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Err(r);
        }
        inner.faults.clone()
    };
    if faults.before_call().await {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "simulated outage",
        ));
    }
    let mut inner = sim.lock();
    sim.tick(&mut inner);
    if !authorized(&inner, headers) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "missing or invalid API key",
        ));
    }
    let limited = within_rate_limit(&mut inner, headers);
    inner.call_log.push(ApiCall {
        at: std::time::Instant::now(),
        kind,
        rate_limited: limited.is_err(),
    });
    if let Err(secs) = limited {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rate limit exceeded for this API key",
        );
        r.headers_mut().insert(header::RETRY_AFTER, secs.into());
        return Err(r);
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    external_user_id: Option<String>,
    external_user_label: Option<String>,
    amount: Option<Value>,
    currency: Option<String>,
}

fn validate(body: &CreateBody) -> Result<(String, i64), Response> {
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "validation_failed", m);
    let user = body
        .external_user_id
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| bad("externalUserId is required"))?;
    if body
        .external_user_label
        .as_ref()
        .is_some_and(|l| l.chars().count() > 128)
    {
        return Err(bad("externalUserLabel is longer than 128 characters"));
    }
    let amount = match &body.amount {
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse::<i64>()
            .map_err(|_| bad("amount is out of range"))?,
        _ => return Err(bad("amount must be a string of minor units")),
    };
    if amount < 100 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "amount_below_min",
            "amount is below 100",
        ));
    }
    if amount > 100_000_000 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "amount_above_max",
            "amount is above 100000000",
        ));
    }
    if body.currency.as_deref().is_some_and(|c| c != "TRY") {
        return Err(bad("currency must be TRY"));
    }
    Ok((user, amount))
}

fn token_for(inner: &Inner, id: &str, expires_at: Timestamp) -> String {
    let mac = Sha256::digest(format!(
        "{}|{id}|{}",
        inner.config.api_key.expose(),
        expires_at.unix_millis()
    ));
    format!("{id}.{}", hex::encode(&mac[..16]))
}

async fn create(State(sim): Shared, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = gate(&sim, &headers, "create").await {
        return r;
    }
    let Some(key) = headers
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_string)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "Idempotency-Key header is required",
        );
    };
    let Ok(parsed_value) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "body is not JSON",
        );
    };
    // serde_json's maps are sorted, so this is a canonical form of the payload.
    let hash = hex::encode(Sha256::digest(parsed_value.to_string()));
    let now = sim.now();
    let hold_ms = {
        let mut inner = sim.lock();
        match inner.idempotency.get(&key) {
            Some(Idem::InFlight { .. }) => {
                return error(
                    StatusCode::CONFLICT,
                    "duplicate_idempotency_key",
                    "a request with this key is still in flight; retry later with the same key",
                );
            }
            Some(Idem::Done {
                hash: h,
                at,
                response,
            }) if now.unix_millis() - at.unix_millis() < IDEMPOTENCY_TTL_MS => {
                return if *h == hash {
                    let response = response.clone();
                    // A replayed answer can be lost on the way too.
                    if inner.faults.drop_after_commit > 0 {
                        inner.faults.drop_after_commit -= 1;
                        return dropped_connection();
                    }
                    (StatusCode::CREATED, axum::Json(response)).into_response()
                } else {
                    error(
                        StatusCode::CONFLICT,
                        "idempotency_key_reuse_with_different_body",
                        "this key was used with a different body",
                    )
                };
            }
            _ => {}
        }
        let parsed: CreateBody = match serde_json::from_value(parsed_value) {
            Ok(p) => p,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "validation_failed",
                    "malformed body",
                );
            }
        };
        let (user, amount) = match validate(&parsed) {
            Ok(v) => v,
            Err(r) => return r,
        };
        inner.counter += 1;
        let id = uuid::Uuid::now_v7().to_string();
        let expires_at = now.plus_millis(inner.config.ttl_ms);
        let intent = SimIntent {
            id: id.clone(),
            idempotency_key: key.clone(),
            reference_no: format!("D-2026-{:07}", inner.counter),
            external_user_id: user,
            requested_amount: amount,
            amount,
            status: Status::Reserved,
            created_at: now,
            expires_at,
            token_used: false,
            approved_at: None,
            rejected_at: None,
            rejected_reason: None,
        };
        let response = json!({
            "intentId": id,
            "referenceNo": intent.reference_no,
            "depositUrl": format!("{}/d/{}", inner.public_url, token_for(&inner, &id, expires_at)),
            "requestedAmount": amount.to_string(),
            "amount": amount.to_string(),
            "currency": "TRY",
            "expiresAt": expires_at.to_rfc3339(),
        });
        inner.intents.insert(id.clone(), intent);
        inner.order.push(id);
        inner
            .idempotency
            .insert(key.clone(), Idem::InFlight { response });
        inner.faults.create_hold_ms
    };
    // No await between the claim above and its guard: from here the key ends done even if
    // the client hangs up during the hold and axum drops this future.
    let claim = Claim {
        sim: sim.clone(),
        key,
        hash,
        at: now,
        open: true,
    };
    if hold_ms > 0 {
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
    }
    let (response, drop_it) = {
        let mut inner = sim.lock();
        let Some(response) = claim.finish(&mut inner) else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "lost the answer",
            );
        };
        let drop_it = inner.faults.drop_after_commit > 0;
        if drop_it {
            inner.faults.drop_after_commit -= 1;
        }
        (response, drop_it)
    };
    if drop_it {
        return dropped_connection();
    }
    (StatusCode::CREATED, axum::Json(response)).into_response()
}

/// A create's claim on its idempotency key, from the commit of its intent. The claim ends with
/// the key done and the committed answer cached, whether the handler finishes or is dropped:
/// axum drops a handler whose client hung up (say during `create_hold_ms`), and a key left in
/// flight would answer every retry `409 duplicate_idempotency_key` while Pientegra holds the
/// intent. The retry then replays the one intent, as after a lost answer.
struct Claim {
    sim: Simulator,
    key: String,
    hash: String,
    at: Timestamp,
    open: bool,
}

impl Claim {
    /// Marks the key done and returns the committed answer (none if the key is not in flight).
    fn finish(mut self, inner: &mut Inner) -> Option<Value> {
        self.open = false;
        finish_claim(inner, &self.key, &self.hash, self.at)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.open {
            let mut inner = self.sim.lock();
            finish_claim(&mut inner, &self.key, &self.hash, self.at);
        }
    }
}

fn finish_claim(inner: &mut Inner, key: &str, hash: &str, at: Timestamp) -> Option<Value> {
    let Some(Idem::InFlight { response }) = inner.idempotency.get(key) else {
        return None;
    };
    let response = response.clone();
    inner.idempotency.insert(
        key.to_string(),
        Idem::Done {
            hash: hash.to_string(),
            at,
            response: response.clone(),
        },
    );
    Some(response)
}

async fn read_one(State(sim): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = gate(&sim, &headers, "read").await {
        return r;
    }
    let inner = sim.lock();
    match inner.intents.get(&id) {
        Some(i) => axum::Json(i.item()).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such intent"),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Window {
    created_from: Option<String>,
    created_to: Option<String>,
    status: Option<String>,
    event_type: Option<String>,
    delivery_status: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

struct Bounds {
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    offset: usize,
    limit: usize,
}

fn bounds(w: &Window) -> Result<Bounds, Response> {
    let bad = |m: String| error(StatusCode::BAD_REQUEST, "validation_failed", m);
    let ts = |s: &Option<String>, name: &str| {
        s.as_deref()
            .map(Timestamp::parse_rfc3339)
            .transpose()
            .map_err(|_| bad(format!("{name} is not RFC 3339")))
    };
    let limit = match &w.limit {
        None => 50,
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=100) => n,
            _ => return Err(bad("limit must be 1 to 100".into())),
        },
    };
    let offset = match &w.cursor {
        None => 0,
        Some(c) => c
            .strip_prefix("o")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad("unknown cursor".into()))?,
    };
    Ok(Bounds {
        from: ts(&w.created_from, "createdFrom")?,
        to: ts(&w.created_to, "createdTo")?,
        offset,
        limit,
    })
}

fn paginate(items: Vec<Value>, b: &Bounds) -> Value {
    let total = items.len();
    let data: Vec<Value> = items.into_iter().skip(b.offset).take(b.limit).collect();
    let next = (b.offset + data.len() < total).then(|| format!("o{}", b.offset + data.len()));
    json!({ "data": data, "nextCursor": next })
}

fn in_window(t: Timestamp, b: &Bounds) -> bool {
    b.from.is_none_or(|f| t >= f) && b.to.is_none_or(|to| t < to)
}

fn parse_list<T: for<'de> Deserialize<'de>>(s: &Option<String>) -> Result<Vec<T>, Response> {
    let Some(s) = s else { return Ok(Vec::new()) };
    s.split(',')
        .map(|v| {
            serde_json::from_value(Value::String(v.trim().to_string())).map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    "validation_failed",
                    format!("unknown status {v:?}"),
                )
            })
        })
        .collect()
}

async fn list_intents(State(sim): Shared, headers: HeaderMap, Query(w): Query<Window>) -> Response {
    if let Err(r) = gate(&sim, &headers, "list_intents").await {
        return r;
    }
    let b = match bounds(&w) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let statuses: Vec<Status> = match parse_list(&w.status) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let inner = sim.lock();
    let items: Vec<Value> = inner
        .order
        .iter()
        .rev()
        .filter_map(|id| inner.intents.get(id))
        .filter(|i| in_window(i.created_at, &b))
        .filter(|i| statuses.is_empty() || statuses.contains(&i.status))
        .map(SimIntent::item)
        .collect();
    axum::Json(paginate(items, &b)).into_response()
}

async fn list_events(State(sim): Shared, headers: HeaderMap, Query(w): Query<Window>) -> Response {
    if let Err(r) = gate(&sim, &headers, "list_events").await {
        return r;
    }
    let b = match bounds(&w) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let states: Vec<DeliveryStatus> = match parse_list(&w.delivery_status) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let inner = sim.lock();
    let items: Vec<Value> = inner
        .events
        .iter()
        .rev()
        .filter(|e| in_window(e.created_at, &b))
        .filter(|e| w.event_type.as_deref().is_none_or(|t| t == e.event_type))
        .filter(|e| states.is_empty() || states.contains(&e.delivery))
        .map(|e| {
            json!({
                "eventId": e.event_id,
                "eventType": e.event_type,
                "intentId": e.intent_id,
                "createdAt": e.created_at.to_rfc3339(),
                "deliveryStatus": e.delivery,
            })
        })
        .collect();
    axum::Json(paginate(items, &b)).into_response()
}

async fn replay(State(sim): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = gate(&sim, &headers, "replay").await {
        return r;
    }
    let (url, body, secret) = {
        let inner = sim.lock();
        let Some(e) = inner.events.iter().find(|e| e.event_id == id) else {
            return error(StatusCode::NOT_FOUND, "not_found", "no such event");
        };
        (
            inner.config.webhook_url.clone(),
            e.body.clone(),
            inner.config.webhook_secret.clone(),
        )
    };
    let Some(url) = url else {
        return error(
            StatusCode::CONFLICT,
            "no_webhook_url",
            "no webhook URL is configured",
        );
    };
    let delivered = sim.post_webhook(&url, &secret, body).await;
    let mut inner = sim.lock();
    if let Some(e) = inner.events.iter_mut().find(|e| e.event_id == id) {
        e.attempts += 1;
        if delivered {
            e.delivery = DeliveryStatus::Delivered;
        }
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"eventId": id, "delivered": delivered})),
    )
        .into_response()
}

fn find_by_token(sim: &Simulator, inner: &mut Inner, token: &str) -> Option<String> {
    sim.tick(inner);
    let id = token.split('.').next()?;
    let intent = inner.intents.get(id)?;
    (token_for(inner, id, intent.expires_at) == token).then(|| id.to_string())
}

fn page_shell(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:30rem;margin:3rem auto;padding:0 1rem;color:#1d2433}}
dl{{display:grid;grid-template-columns:auto 1fr;gap:.5rem 1rem}}dt{{color:#5b6475}}dd{{margin:0;font-weight:600}}
button{{font-size:1.1rem;padding:.7rem 1.2rem;border:0;border-radius:.4rem;background:#1f6feb;color:#fff;cursor:pointer}}
.expired{{color:#b42318}}</style></head><body><h1>{title}</h1>{body}</body></html>"#
    ))
}

async fn hosted_page(State(sim): Shared, Path(token): Path<String>) -> Response {
    let mut inner = sim.lock();
    let Some(id) = find_by_token(&sim, &mut inner, &token) else {
        return (
            StatusCode::NOT_FOUND,
            page_shell("Link not valid", "<p>This deposit link is not valid.</p>"),
        )
            .into_response();
    };
    let intent = &inner.intents[&id];
    if intent.status == Status::AutoCancelled || sim.now() >= intent.expires_at {
        return page_shell(
            "Deposit link expired",
            r#"<p class="expired" id="state" data-status="AUTO_CANCELLED">This deposit link has expired. Please start a new deposit; do not transfer to this reference.</p>"#,
        )
        .into_response();
    }
    if intent.token_used || intent.status != Status::Reserved {
        return page_shell(
            "Payment reported",
            r#"<p id="state" data-status="PENDING_REVIEW">Your payment was reported and is under review. This link can no longer be used.</p>"#,
        )
        .into_response();
    }
    let body = format!(
        r#"<dl>
<dt>Amount</dt><dd id="amount">{amount}</dd>
<dt>Account holder</dt><dd id="holder">{holder}</dd>
<dt>IBAN</dt><dd id="iban">{iban}</dd>
<dt>Reference</dt><dd id="reference">{reference}</dd>
<dt>Time left</dt><dd id="countdown" data-expires-at="{expires}" data-now="{now}">--:--</dd>
</dl>
<form method="post" action="/d/{token}/confirm"><button id="confirm" type="submit">I made the payment</button></form>
<script>
const el = document.getElementById('countdown');
const offset = Number(el.dataset.now) - Date.now();
function tick() {{
  const left = Math.max(0, Date.parse(el.dataset.expiresAt) - (Date.now() + offset));
  const m = Math.floor(left / 60000), s = Math.floor(left % 60000 / 1000);
  el.textContent = String(m).padStart(2, '0') + ':' + String(s).padStart(2, '0');
  if (left === 0) location.reload();
}}
tick(); setInterval(tick, 1000);
</script>"#,
        amount = money(intent.amount),
        holder = inner.config.account_holder,
        iban = inner.config.iban,
        reference = intent.reference_no,
        expires = intent.expires_at.to_rfc3339(),
        now = sim.now().unix_millis(),
    );
    page_shell("Complete your deposit", &body).into_response()
}

async fn confirm(State(sim): Shared, Path(token): Path<String>) -> Response {
    let mut inner = sim.lock();
    let Some(id) = find_by_token(&sim, &mut inner, &token) else {
        return (StatusCode::NOT_FOUND, page_shell("Link not valid", "")).into_response();
    };
    let now = sim.now();
    let Some(intent) = inner.intents.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, page_shell("Link not valid", "")).into_response();
    };
    if intent.status == Status::Reserved && !intent.token_used && now < intent.expires_at {
        intent.token_used = true;
        transition(&mut inner, &id, Status::PendingReview, now);
    }
    axum::response::Redirect::to(&format!("/d/{token}")).into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OutcomeBody {
    amount: Option<i64>,
    reason: Option<String>,
}

async fn control_intent(
    State(sim): Shared,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let opts: OutcomeBody = if body.is_empty() {
        OutcomeBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(o) => o,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_control", e.to_string()),
        }
    };
    let now = sim.now();
    let mut inner = sim.lock();
    sim.tick(&mut inner);
    let Some(intent) = inner.intents.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such intent");
    };
    let to = match action.as_str() {
        "approve" => {
            if let Some(a) = opts.amount {
                intent.amount = a;
            }
            Status::Approved
        }
        "reject" => {
            intent.rejected_reason = opts.reason.or(Some("Transfer not received".into()));
            Status::Rejected
        }
        "expire" => {
            intent.expires_at = now;
            Status::AutoCancelled
        }
        "late-arrival" => Status::LateArrival,
        "payer-confirmed" => {
            intent.token_used = true;
            Status::PendingReview
        }
        other => {
            return error(
                StatusCode::NOT_FOUND,
                "bad_control",
                format!("unknown action {other}"),
            );
        }
    };
    transition(&mut inner, &id, to, now);
    axum::Json(inner.intents[&id].item()).into_response()
}

async fn set_faults(State(sim): Shared, axum::Json(f): axum::Json<Faults>) -> Response {
    sim.lock().faults = f;
    StatusCode::NO_CONTENT.into_response()
}

async fn set_rate_limit(
    State(sim): Shared,
    axum::Json(limit): axum::Json<Option<RateLimit>>,
) -> Response {
    let mut inner = sim.lock();
    inner.config.rate_limit = limit;
    inner.windows.clear();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct Rotate {
    secret: String,
}

async fn rotate_secret(State(sim): Shared, axum::Json(r): axum::Json<Rotate>) -> Response {
    let mut inner = sim.lock();
    let old = std::mem::replace(&mut inner.config.webhook_secret, Secret::new(r.secret));
    inner.previous_secret = Some(old);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct WebhookUrl {
    url: Option<String>,
}

async fn set_webhook_url(State(sim): Shared, axum::Json(w): axum::Json<WebhookUrl>) -> Response {
    sim.lock().config.webhook_url = w.url;
    StatusCode::NO_CONTENT.into_response()
}

async fn hold(State(sim): Shared) -> Response {
    sim.lock().hold_deliveries = true;
    StatusCode::NO_CONTENT.into_response()
}

async fn release(State(sim): Shared) -> Response {
    sim.lock().hold_deliveries = false;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct SendNow {
    /// Events to send now, in this order; repeat an id to duplicate it.
    event_ids: Vec<String>,
    /// Sign with the previous secret, as a delivery in flight during a rotation would be.
    #[serde(default)]
    with_previous_secret: bool,
}

async fn send_now(State(sim): Shared, axum::Json(req): axum::Json<SendNow>) -> Response {
    let mut statuses = Vec::new();
    for id in &req.event_ids {
        let found = {
            let inner = sim.lock();
            let secret = if req.with_previous_secret {
                inner.previous_secret.clone()
            } else {
                Some(inner.config.webhook_secret.clone())
            };
            inner
                .events
                .iter()
                .find(|e| &e.event_id == id)
                .map(|e| (e.body.clone(), inner.config.webhook_url.clone(), secret))
        };
        let Some((body, Some(url), Some(secret))) = found else {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("cannot send {id}"),
            );
        };
        let ok = sim.post_webhook(&url, &secret, body).await;
        if ok {
            let mut inner = sim.lock();
            if let Some(e) = inner.events.iter_mut().find(|e| &e.event_id == id) {
                e.delivery = DeliveryStatus::Delivered;
            }
        }
        statuses.push(ok);
    }
    axum::Json(json!({ "delivered": statuses })).into_response()
}

impl Simulator {
    /// Adds `count` deposits already approved, created evenly over `[from, to)`, with no
    /// events: the history of a busy account, for reconciliation-cost tests and benchmarks.
    pub fn seed_approved(&self, count: usize, from: Timestamp, to: Timestamp) {
        let mut inner = self.lock();
        let span = to.unix_millis().saturating_sub(from.unix_millis()).max(1);
        let step = (span / i64::try_from(count.max(1)).unwrap_or(i64::MAX)).max(1);
        for n in 0..count {
            inner.counter += 1;
            let created_at = from.plus_millis(step.saturating_mul(i64::try_from(n).unwrap_or(0)));
            let id = uuid::Uuid::now_v7().to_string();
            let intent = SimIntent {
                id: id.clone(),
                idempotency_key: format!("seed-{}", inner.counter),
                reference_no: format!("D-2026-{:07}", inner.counter),
                external_user_id: format!("seed-user-{n}"),
                requested_amount: 100_000,
                amount: 100_000,
                status: Status::Approved,
                created_at,
                expires_at: created_at.plus_millis(inner.config.ttl_ms),
                token_used: true,
                approved_at: Some(created_at.plus_millis(60_000)),
                rejected_at: None,
                rejected_reason: None,
            };
            inner.intents.insert(id.clone(), intent);
            inner.order.push(id);
        }
    }

    /// The events recorded for one intent, oldest first: `(event id, event type)`.
    pub fn events_for(&self, intent_id: &str) -> Vec<(String, &'static str)> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.intent_id == intent_id)
            .map(|e| (e.event_id.clone(), e.event_type))
            .collect()
    }
}
