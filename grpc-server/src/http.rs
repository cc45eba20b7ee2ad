//! The provider-facing HTTP receiver (`POST /webhooks/pientegra/{account}`,
//! `POST /callbacks/decentro/{account}`) and the metrics endpoint. The receiver hands the raw
//! bytes and headers to the engine and answers exactly as it says (status, body): 2xx taken,
//! 4xx refused, 404 unknown account, 5xx not stored or not confirmed yet (the provider
//! retries). The same answer comes back from the `HandleWebhook` RPC and the C ABI.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use intentkit_core::{Engine, Provider, WebhookAnswer, WebhookOutcome};

use crate::metrics::Metrics;

#[derive(Clone)]
struct Receiver {
    engine: Engine,
    metrics: Metrics,
}

/// Hands the delivery to the engine and gives the provider the engine's answer as it is.
async fn deliver(
    r: &Receiver,
    provider: Provider,
    account: String,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse + use<> {
    let lookup = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let answer = r
        .engine
        .handle_webhook(provider, &account, lookup, &body)
        .await;
    let outcome = answer.outcome.as_str();
    r.metrics.webhook(provider.as_str(), outcome);
    // The account is logged only once it is known to be one of ours: the path is the
    // sender's text.
    let known = answer.outcome != WebhookOutcome::UnknownAccount;
    let account = if known { account.as_str() } else { "?" };
    match answer.outcome {
        WebhookOutcome::Refused | WebhookOutcome::UnknownAccount => {
            tracing::warn!(
                provider = provider.as_str(),
                account,
                outcome,
                reason = answer.reason,
                "delivery refused"
            )
        }
        WebhookOutcome::RetryLater | WebhookOutcome::Unconfirmed => {
            tracing::warn!(
                provider = provider.as_str(),
                account,
                outcome,
                reason = answer.reason,
                detail = answer.detail,
                "delivery not taken; the provider will send it again"
            )
        }
        _ => tracing::debug!(provider = provider.as_str(), account, outcome, "delivery"),
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
}

/// The receiver's routes, with a body limit (413 past it). `/webhooks/{provider}/{account}` and
/// `/callbacks/{provider}/{account}` are the same: each provider's documentation names one
/// (`/webhooks/pientegra/...`, `/callbacks/decentro/...`), and a new provider needs no route.
pub fn receiver(engine: Engine, metrics: Metrics, body_limit: usize) -> Router {
    let state = Receiver { engine, metrics };
    let handler = post(
        |State(r): State<Receiver>,
         Path((provider, account)): Path<(String, String)>,
         headers: HeaderMap,
         body: Bytes| async move {
            match provider.parse::<Provider>() {
                Ok(p) => deliver(&r, p, account, headers, body).await.into_response(),
                Err(_) => {
                    // Metrics labels stay bounded: an unknown path is counted once, as such.
                    r.metrics
                        .webhook("unknown", WebhookOutcome::UnknownAccount.as_str());
                    let answer = WebhookAnswer::standard(WebhookOutcome::UnknownAccount, None);
                    (
                        StatusCode::NOT_FOUND,
                        [(header::CONTENT_TYPE, "application/json")],
                        answer.body,
                    )
                        .into_response()
                }
            }
        },
    );
    Router::new()
        .route("/webhooks/{provider}/{account}", handler.clone())
        .route("/callbacks/{provider}/{account}", handler)
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
