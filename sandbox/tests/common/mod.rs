//! Shared wiring for the contract tests: simulators on ephemeral ports, adapters pointed at
//! them, and an HTTP receiver that verifies deliveries with the adapter.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use intentkit_core::provider::config::{DecentroAccount, HttpSettings, PientegraAccount};
use intentkit_core::provider::pientegra::{PreviousSecret, WebhookSecrets};
use intentkit_core::provider::{Notification, Secret};
use intentkit_core::{AccountName, ManualClock, Timestamp};

pub const T0: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub fn fast_http() -> HttpSettings {
    HttpSettings {
        connect_timeout_ms: 1_000,
        request_timeout_ms: 3_000,
        max_retries: 4,
        retry_base_ms: 10,
    }
}

pub fn pientegra_account(base_url: &str, previous: Option<&str>) -> PientegraAccount {
    PientegraAccount {
        name: AccountName::new("tr-main").unwrap(),
        base_url: base_url.to_string(),
        api_key: Secret::new("pk_sandbox"),
        webhook: WebhookSecrets {
            current: Secret::new("whsec_c2FuZGJveA"),
            previous: previous.map(|p| PreviousSecret {
                secret: Secret::new(p),
                until: Timestamp::from_unix_millis(i64::MAX),
            }),
        },
        http: fast_http(),
    }
}

/// What the receiver saw: parsed notifications, or the refusal's code.
pub type Seen = Arc<Mutex<Vec<Result<Option<Notification>, String>>>>;

pub struct Receiver {
    pub url: String,
    pub seen: Seen,
    /// The status the receiver answers with (200 unless a test wants failures).
    pub answer: Arc<AtomicU16>,
}

type Verify = Arc<dyn Fn(&HeaderMap, &[u8]) -> Result<Option<Notification>, String> + Send + Sync>;

/// An HTTP endpoint that verifies each delivery with `verify` and records the result.
pub async fn receiver(verify: Verify) -> Receiver {
    let seen: Seen = Arc::default();
    let answer = Arc::new(AtomicU16::new(200));
    let state = (verify, seen.clone(), answer.clone());
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                |State((verify, seen, answer)): State<(Verify, Seen, Arc<AtomicU16>)>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let result = verify(&headers, &body);
                    let code = match &result {
                        Ok(_) => StatusCode::from_u16(answer.load(Ordering::SeqCst))
                            .unwrap_or(StatusCode::OK),
                        Err(_) => StatusCode::BAD_REQUEST,
                    };
                    if code.is_success() || result.is_err() {
                        seen.lock().unwrap().push(result);
                    }
                    code
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, seen, answer }
}

pub fn clock() -> ManualClock {
    ManualClock::new(T0)
}

/// Polls `f` until it is true, for up to five seconds of real time (deliveries are async).
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..250 {
        if f() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

/// An HTTP receiver that hands every delivery to the engine, as the gRPC server's receiver
/// will: `POST <url>/webhooks/<provider>/<account>`.
pub async fn receiver_for(engine: intentkit_core::Engine) -> String {
    let app = axum::Router::new()
        .route(
            "/webhooks/{provider}/{account}",
            axum::routing::post(
                |State(engine): State<intentkit_core::Engine>,
                 axum::extract::Path((provider, account)): axum::extract::Path<(
                    String,
                    String,
                )>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let Ok(provider) = provider.parse::<intentkit_core::Provider>() else {
                        return (axum::http::StatusCode::NOT_FOUND, String::new());
                    };
                    let lookup = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let d = engine
                        .handle_webhook(provider, &account, lookup, &body)
                        .await;
                    (axum::http::StatusCode::from_u16(d.status).unwrap(), d.body)
                },
            ),
        )
        .with_state(engine);
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The Decentro account the simulator's default credentials accept.
pub fn decentro_account(base_url: &str) -> DecentroAccount {
    let c = intentkit_sandbox::decentro::Config::default();
    DecentroAccount {
        name: AccountName::new("in-main").unwrap(),
        base_url: base_url.to_string(),
        client_id: Secret::new(c.client_id),
        client_secret: Secret::new(c.client_secret),
        module_secret: Secret::new(c.module_secret),
        provider_secret: Secret::new(c.provider_secret),
        http: fast_http(),
    }
}

/// POSTs a JSON control request (`<root>/_control/<path>`) and returns the HTTP status.
pub async fn post_control(root: &str, path: &str, body: serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{root}/_control/{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
