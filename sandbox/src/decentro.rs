//! A Decentro UPI Penny Pull simulator: a real HTTP server that answers every response key on
//! the provider page from the request that causes it.
//!
//! The keys are written out here independently of core's adapter, so a contract test that
//! round-trips them catches a typo on either side. How requests map to keys, where the page
//! does not say (ours; in this order):
//!
//! | request | key |
//! |---|---|
//! | a method other than POST on the create path | `error_invalid_method` (405) |
//! | none of the four credential headers | `error_missing_credentials` (401) |
//! | `client_id` missing or empty / not visible ASCII | `error_empty_client_id` / `error_invalid_format_client_id` |
//! | `client_secret` missing or empty / not visible ASCII | `error_empty_client_secret` / `error_invalid_format_client_secret` |
//! | both wrong / only the id / only the secret | `error_invalid_client_credentials` / `error_invalid_client_id` / `error_invalid_client_secret` |
//! | `module_secret` missing or empty / wrong | `error_empty_module_secret` (401) / `error_unauthorized_module` (403) |
//! | `provider_secret` missing or wrong | `error_invalid_credentials` (401) |
//! | the account is disabled (control endpoint) | `error_company/account_disabled` (403) |
//! | body not a JSON object, or no `purpose_message` string | `error_malformed_request` |
//! | `reference_id` absent, null or "" / not a string / not 5 to 50 chars | `error_missing_reference_id` / `error_invalid_reference_id` / `error_incorrect_length_reference_id` |
//! | a flag not the integer 0 or 1 | its `error_invalid_..._value` key |
//! | a forbidden character in `purpose_message` | `error_unsanitized_values` |
//! | a `reference_id` used before | `error_duplicate_reference_id` (409) |
//!
//! Links expire ten minutes of simulated time after creation. A callback is sent only when a
//! transaction becomes `SUCCESS`, as Decentro does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use intentkit_core::{Clock, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::Faults;

const LINK_TTL_MS: i64 = 10 * 60 * 1_000;
const FORBIDDEN: &str = ".@#$%^&*!;:'\"~`?=+)(";

/// The four credentials the simulated account accepts.
#[derive(Clone, Debug)]
pub struct Config {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: String,
    /// `module_secret`.
    pub module_secret: String,
    /// `provider_secret`.
    pub provider_secret: String,
    /// Where callbacks go.
    pub callback_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            client_id: "sandbox_client".into(),
            client_secret: "sandbox_client_secret".into(),
            module_secret: "sandbox_module_secret".into(),
            provider_secret: "sandbox_provider_secret".into(),
            callback_url: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxnStatus {
    Pending,
    Success,
    Failure,
    Expired,
}

impl TxnStatus {
    fn as_str(self) -> &'static str {
        match self {
            TxnStatus::Pending => "PENDING",
            TxnStatus::Success => "SUCCESS",
            TxnStatus::Failure => "FAILURE",
            TxnStatus::Expired => "EXPIRED",
        }
    }
}

#[derive(Clone, Debug)]
struct Txn {
    id: String,
    reference_id: String,
    status: TxnStatus,
    created_at: Timestamp,
    payer: Value,
}

struct Inner {
    config: Config,
    disabled: bool,
    txns: HashMap<String, Txn>,
    references: HashMap<String, String>,
    counter: u64,
    faults: Faults,
    callbacks_sent: Vec<Value>,
    api_calls: u64,
}

/// A running simulator.
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
        f.debug_struct("decentro::Simulator")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

type Shared = State<Simulator>;

fn failure(http: u16, key: &str, message: &str, txn: Option<&str>) -> Response {
    let status = StatusCode::from_u16(http).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({
        "decentroTxnId": txn.map_or_else(|| format!("DCTRERR{:08}", fastrand::u32(..)), str::to_string),
        "status": "FAILURE",
        "responseCode": "E00000",
        "message": message,
        "responseKey": key,
    });
    (status, axum::Json(body)).into_response()
}

impl Simulator {
    /// Starts the simulator on `addr` (port 0 for an ephemeral one).
    pub async fn start(
        config: Config,
        clock: Arc<dyn Clock>,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<Simulator> {
        intentkit_core::provider::http::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(std::io::Error::other)?;
        let sim = Simulator {
            inner: Arc::new(Mutex::new(Inner {
                config,
                disabled: false,
                txns: HashMap::new(),
                references: HashMap::new(),
                counter: 0,
                faults: Faults::default(),
                callbacks_sent: Vec::new(),
                api_calls: 0,
            })),
            clock,
            http,
            base_url,
            shutdown: Arc::new(tokio::sync::Notify::new()),
        };
        let app = Router::new()
            .route(
                "/v2/payments/penny_pull",
                post(create).fallback(invalid_method),
            )
            .route(
                "/v2/payments/penny_pull/fetch/{id}/status",
                get(status).fallback(invalid_method),
            )
            .route("/_control/transactions/{id}/{action}", post(control))
            .route("/_control/account", post(account))
            .route("/_control/faults", post(set_faults))
            .route("/_control/callback-url", post(set_callback_url))
            .with_state(sim.clone());
        crate::serve(listener, app, sim.shutdown.clone());
        Ok(sim)
    }

    /// `http://<addr>`: the adapter's `base_url`, and the control endpoints' root.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stops the server.
    pub fn shutdown(&self) {
        self.shutdown.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many transactions exist (for tests).
    pub fn transaction_count(&self) -> usize {
        self.lock().txns.len()
    }

    /// How many API calls arrived (for tests: retries are visible here).
    pub fn api_calls(&self) -> u64 {
        self.lock().api_calls
    }

    /// The callbacks sent so far (for tests).
    pub fn callbacks_sent(&self) -> Vec<Value> {
        self.lock().callbacks_sent.clone()
    }

    fn expire(&self, inner: &mut Inner) {
        let now = self.clock.now();
        for t in inner.txns.values_mut() {
            if t.status == TxnStatus::Pending && now >= t.created_at.plus_millis(LINK_TTL_MS) {
                t.status = TxnStatus::Expired;
            }
        }
    }
}

async fn invalid_method() -> Response {
    failure(
        405,
        "error_invalid_method",
        "The method is not allowed for the requested URL.",
        None,
    )
}

enum Header {
    Missing,
    Empty,
    BadFormat,
    Value(String),
}

fn header(h: &HeaderMap, name: &str) -> Header {
    match h.get(name) {
        None => Header::Missing,
        Some(v) if v.is_empty() => Header::Empty,
        Some(v) => match v.to_str() {
            Ok(s) if s.bytes().all(|b| b.is_ascii_graphic()) => Header::Value(s.to_string()),
            _ => Header::BadFormat,
        },
    }
}

/// Faults, then the credential checks in the order the module docs give.
async fn gate(sim: &Simulator, h: &HeaderMap) -> Result<(), Response> {
    let faults = {
        let mut inner = sim.lock();
        inner.api_calls += 1;
        inner.faults.clone()
    };
    if faults.before_call().await {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "simulated outage").into_response());
    }
    let inner = sim.lock();
    let c = &inner.config;
    let (id, secret, module, provider) = (
        header(h, "client_id"),
        header(h, "client_secret"),
        header(h, "module_secret"),
        header(h, "provider_secret"),
    );
    if [&id, &secret, &module, &provider]
        .iter()
        .all(|h| matches!(h, Header::Missing))
    {
        return Err(failure(
            401,
            "error_missing_credentials",
            "No API key found in request",
            None,
        ));
    }
    let id_ok = match &id {
        Header::Missing | Header::Empty => {
            return Err(failure(
                401,
                "error_empty_client_id",
                "Client ID cannot be empty. Hint: client_id (string)",
                None,
            ));
        }
        Header::BadFormat => {
            return Err(failure(
                401,
                "error_invalid_format_client_id",
                "Client ID is not of type string. Hint: client_id (string)",
                None,
            ));
        }
        Header::Value(v) => v == &c.client_id,
    };
    let secret_ok = match &secret {
        Header::Missing | Header::Empty => {
            return Err(failure(
                401,
                "error_empty_client_secret",
                "Client Secret cannot be empty. Hint: client_secret (string)",
                None,
            ));
        }
        Header::BadFormat => {
            return Err(failure(
                401,
                "error_invalid_format_client_secret",
                "Client Secret is not of type string. Hint: client_secret (string)",
                None,
            ));
        }
        Header::Value(v) => v == &c.client_secret,
    };
    match (id_ok, secret_ok) {
        (false, false) => {
            return Err(failure(
                401,
                "error_invalid_client_credentials",
                "Authentication failed. Please use valid Client ID and Client Secret.",
                None,
            ));
        }
        (false, true) => {
            return Err(failure(
                401,
                "error_invalid_client_id",
                "Authentication failed. Please use a valid Client ID.",
                None,
            ));
        }
        (true, false) => {
            return Err(failure(
                401,
                "error_invalid_client_secret",
                "Authentication failed. Please use a valid Client Secret.",
                None,
            ));
        }
        (true, true) => {}
    }
    match &module {
        Header::Value(v) if v == &c.module_secret => {}
        Header::Value(_) | Header::BadFormat => {
            return Err(failure(
                403,
                "error_unauthorized_module",
                "Authentication failed for accessing the module",
                None,
            ));
        }
        Header::Missing | Header::Empty => {
            return Err(failure(
                401,
                "error_empty_module_secret",
                "Module Secret cannot be empty. Hint: module_secret (string)",
                None,
            ));
        }
    }
    if !matches!(&provider, Header::Value(v) if v == &c.provider_secret) {
        return Err(failure(
            401,
            "error_invalid_credentials",
            "Invalid authentication credentials",
            None,
        ));
    }
    if inner.disabled {
        return Err(failure(
            403,
            "error_company/account_disabled",
            "UPI Credit transactions are disabled for the company/account.",
            None,
        ));
    }
    Ok(())
}

fn flag(body: &Value, name: &str, key: &str, message: &str) -> Result<i64, Response> {
    match body.get(name) {
        None => Ok(0),
        Some(Value::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
            Ok(n.as_i64().unwrap_or(0))
        }
        Some(_) => Err(failure(400, key, message, None)),
    }
}

async fn create(State(sim): Shared, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = gate(&sim, &headers).await {
        return r;
    }
    let malformed = || {
        failure(
            400,
            "error_malformed_request",
            "Malformed request detected.",
            None,
        )
    };
    let Ok(body @ Value::Object(_)) = serde_json::from_slice::<Value>(&body) else {
        return malformed();
    };
    let reference = match body.get("reference_id") {
        None | Some(Value::Null) => {
            return failure(
                400,
                "error_missing_reference_id",
                "Request reference id cannot be null or empty. Hint: reference_id (string)",
                None,
            );
        }
        Some(Value::String(s)) if s.is_empty() => {
            return failure(
                400,
                "error_missing_reference_id",
                "Request reference id cannot be null or empty. Hint: reference_id (string)",
                None,
            );
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return failure(
                400,
                "error_invalid_reference_id",
                "Reference URL is not of type string",
                None,
            );
        }
    };
    if !(5..=50).contains(&reference.chars().count()) {
        return failure(
            400,
            "error_incorrect_length_reference_id",
            "Reference ID needs to be between 5 and 50 characters",
            None,
        );
    }
    let flags = (
        flag(
            &body,
            "generate_qr",
            "error_invalid_generate_QR_value",
            "Invalid value entered for Generate QR. Generate QR can be either 0 or 1. Hint : generate_qr (int)",
        ),
        flag(
            &body,
            "generate_uri",
            "error_invalid_generate_uri_value",
            "Invalid value entered for Generate URI flag. Generate URI can be either 0 or 1. Hint : generate_uri (int)",
        ),
        flag(
            &body,
            "customized_qr_with_logo",
            "error_invalid_customized_qr_with_logo",
            "Invalid value entered for Customized QR with logo flag. Value can be either 0 or 1. Hint : generate_customized_qr_with_logo (int)",
        ),
    );
    let (qr, uri, logo) = match flags {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let Some(Value::String(purpose)) = body.get("purpose_message") else {
        return malformed();
    };
    if purpose.chars().any(|c| FORBIDDEN.contains(c)) {
        return failure(
            400,
            "error_unsanitized_values",
            "Unsanitized values detected for key(s): purpose_message. Kindly sanitize the corresponding values by removing special characters such as . @ # $ % ^ & * ! ; : ' \" ~ ` ? = + ) ( and retry.",
            None,
        );
    }
    let mut inner = sim.lock();
    if inner.references.contains_key(&reference) {
        return failure(
            409,
            "error_duplicate_reference_id",
            "Duplicate Request Reference ID",
            None,
        );
    }
    inner.counter += 1;
    let id = format!("DCTRSIM{:010}", inner.counter);
    inner.references.insert(reference.clone(), id.clone());
    inner.txns.insert(
        id.clone(),
        Txn {
            id: id.clone(),
            reference_id: reference,
            status: TxnStatus::Pending,
            created_at: sim.clock.now(),
            payer: Value::Null,
        },
    );
    let upi = format!("upi://pay?pa=verify.sandbox@dcnt&pn=Sandbox&tr={id}&am=1.00&cu=INR");
    let mut data = json!({
        "validationShortLink": format!("{}/u/{id}", sim.base_url),
        "validationStatus": "PENDING",
        "validationDescription": "Payment link created; waiting for the payer",
    });
    if qr == 1 {
        data["encodedDynamicQrCode"] = json!(format!(
            "data:image/png;base64,U0lNVUxBVEVEIFFSIHtsb2dvOiB7fX0{}",
            if logo == 1 { "TE9HTw" } else { "" }
        ));
    }
    if uri == 1 {
        data["gpayUri"] = json!(upi.replacen("upi://", "tez://upi/", 1));
        data["phonepeUri"] = json!(upi.replacen("upi://", "phonepe://", 1));
        data["paytmUri"] = json!(upi.replacen("upi://", "paytmmp://", 1));
    }
    axum::Json(json!({
        "decentroTxnId": id,
        "status": "SUCCESS",
        "responseCode": "S00000",
        "message": "Intent link created successfully",
        "responseKey": "successful_payment_link_created",
        "data": data,
    }))
    .into_response()
}

async fn status(State(sim): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = gate(&sim, &headers).await {
        return r;
    }
    let mut inner = sim.lock();
    sim.expire(&mut inner);
    let Some(t) = inner.txns.get(&id) else {
        return failure(
            404,
            "error_invalid_decentro_txn_id",
            "No transaction found for this Decentro transaction ID",
            Some(&id),
        );
    };
    // What the transaction was created with (ours, names): an integration checks these
    // before it believes the status is about its own verification.
    let mut data = json!({
        "transactionStatus": t.status.as_str(),
        "referenceId": t.reference_id,
        "transactionAmount": "1.00",
    });
    if let (TxnStatus::Success, Value::Object(payer)) = (t.status, &t.payer) {
        for (k, v) in payer {
            data[k] = v.clone();
        }
    }
    axum::Json(json!({
        "decentroTxnId": t.id,
        "status": "SUCCESS",
        "responseCode": "S00000",
        "message": match t.status {
            TxnStatus::Failure => "Payer did not complete the payment",
            _ => "Transaction status fetched",
        },
        "responseKey": "success_transaction_status",
        "data": data,
    }))
    .into_response()
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PayerBody {
    payer_name: Option<String>,
    payer_vpa: Option<String>,
    payer_account_number: Option<String>,
    payer_ifsc: Option<String>,
}

async fn control(
    State(sim): Shared,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let payer: PayerBody = serde_json::from_slice(&body).unwrap_or_default();
    let callback = {
        let mut inner = sim.lock();
        sim.expire(&mut inner);
        let url = inner.config.callback_url.clone();
        let Some(t) = inner.txns.get_mut(&id) else {
            return (StatusCode::NOT_FOUND, "no such transaction").into_response();
        };
        if t.status != TxnStatus::Pending {
            return (
                StatusCode::CONFLICT,
                format!("transaction is {}", t.status.as_str()),
            )
                .into_response();
        }
        match action.as_str() {
            "pay" => {
                t.status = TxnStatus::Success;
                t.payer = json!({
                    "payerName": payer.payer_name.unwrap_or_else(|| "Sandbox Payer".into()),
                    "payerVpa": payer.payer_vpa.unwrap_or_else(|| "payer@oksandbox".into()),
                    "payerAccountNumber": payer.payer_account_number.unwrap_or_else(|| "XXXXXXXX4321".into()),
                    "payerIfsc": payer.payer_ifsc.unwrap_or_else(|| "SBIN0000001".into()),
                    "bankReferenceNumber": format!("{:012}", fastrand::u64(..1_000_000_000_000)),
                });
                let mut cb = t.payer.clone();
                cb["decentroTxnId"] = json!(t.id);
                cb["referenceId"] = json!(t.reference_id);
                cb["transactionStatus"] = json!("SUCCESS");
                cb["timestamp"] = json!(sim.clock.now().to_rfc3339());
                url.map(|u| (u, cb))
            }
            "fail" => {
                t.status = TxnStatus::Failure;
                None
            }
            other => {
                return (StatusCode::NOT_FOUND, format!("unknown action {other}")).into_response();
            }
        }
    };
    if let Some((url, cb)) = callback {
        // Callbacks only on SUCCESS, retried a few times on non-2xx.
        sim.lock().callbacks_sent.push(cb.clone());
        for attempt in 0..3u32 {
            let ok = sim
                .http
                .post(&url)
                .json_body(&cb)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

trait JsonBody {
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(v.to_string())
    }
}

#[derive(Deserialize)]
struct AccountBody {
    disabled: bool,
}

async fn account(State(sim): Shared, axum::Json(a): axum::Json<AccountBody>) -> Response {
    sim.lock().disabled = a.disabled;
    StatusCode::NO_CONTENT.into_response()
}

async fn set_faults(State(sim): Shared, axum::Json(f): axum::Json<Faults>) -> Response {
    sim.lock().faults = f;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct CallbackUrl {
    url: Option<String>,
}

async fn set_callback_url(State(sim): Shared, axum::Json(c): axum::Json<CallbackUrl>) -> Response {
    sim.lock().config.callback_url = c.url;
    StatusCode::NO_CONTENT.into_response()
}
