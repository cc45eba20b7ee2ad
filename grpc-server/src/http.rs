//! The provider-facing HTTP receiver (`POST /webhooks/pientegra/{account}`,
//! `POST /callbacks/decentro/{account}`) and the metrics endpoint. The receiver hands the raw
//! bytes and headers to the engine and answers exactly as it says: 2xx applied or duplicate,
//! 4xx refused, 5xx not stored (so the provider retries).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use intentkit_core::{AccountName, Engine, Provider};
use tokio::sync::Notify;

use crate::metrics::Metrics;

#[derive(Clone)]
struct Receiver {
    engine: Engine,
    metrics: Metrics,
    changed: Arc<Notify>,
}

async fn deliver(
    r: &Receiver,
    provider: Provider,
    account: String,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse + use<> {
    let json = [(header::CONTENT_TYPE, "application/json")];
    let Ok(account) = AccountName::new(account) else {
        r.metrics.webhook(provider.as_str(), "unknown_account");
        return (
            StatusCode::NOT_FOUND,
            json,
            r#"{"error":{"code":"UNKNOWN_ACCOUNT"}}"#.to_string(),
        );
    };
    let lookup = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let d = r
        .engine
        .handle_webhook(provider, &account, lookup, &body)
        .await;
    r.changed.notify_waiters();
    let answer = intentkit_proto::convert::webhook_response(&d, provider);
    r.metrics.webhook(provider.as_str(), &answer.outcome);
    match answer.outcome.as_str() {
        "refused" | "unknown_account" => {
            tracing::warn!(provider = provider.as_str(), account = %account, outcome = answer.outcome, reason = answer.reason, "delivery refused")
        }
        "retry_later" => {
            tracing::error!(provider = provider.as_str(), account = %account, "delivery not stored; the provider will retry")
        }
        outcome => {
            tracing::debug!(provider = provider.as_str(), account = %account, outcome, "delivery")
        }
    }
    let status = StatusCode::from_u16(d.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, json, answer.http_body)
}

/// The receiver's routes, with a body limit (413 past it).
pub fn receiver(
    engine: Engine,
    metrics: Metrics,
    changed: Arc<Notify>,
    body_limit: usize,
) -> Router {
    let state = Receiver {
        engine,
        metrics,
        changed,
    };
    Router::new()
        .route(
            "/webhooks/pientegra/{account}",
            post(
                |State(r): State<Receiver>,
                 Path(account): Path<String>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    deliver(&r, Provider::Pientegra, account, headers, body).await
                },
            ),
        )
        .route(
            "/callbacks/decentro/{account}",
            post(
                |State(r): State<Receiver>,
                 Path(account): Path<String>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    deliver(&r, Provider::Decentro, account, headers, body).await
                },
            ),
        )
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// `GET /metrics` in Prometheus' text format.
pub fn metrics(metrics: Metrics) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Metrics>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.render(),
                )
            }),
        )
        .with_state(metrics)
}
