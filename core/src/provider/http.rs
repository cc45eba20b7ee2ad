//! The HTTP transport under the adapters: timeouts, and retries only where a retry is safe.
//!
//! - A request that never left (connect failure) is always retried.
//! - A request that may have reached the provider (timeout, 5xx, 429, reset) is retried only
//!   when the caller says the operation is safe to repeat: a Pientegra create under the same
//!   `Idempotency-Key`, or a status read. A Decentro create is not: its `reference_id` may not
//!   be reused, so an ambiguous failure goes back to the engine, which looks it up instead.
//! - No other 4xx is retried.
//!
//! Backoff is exponential with full jitter (`base * 2^attempt`, capped), and a `Retry-After`
//! from the provider replaces it when longer (capped too).

use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};

use super::ProviderError;
use super::config::HttpSettings;
use crate::types::Provider;

/// The longest single backoff, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Whether an operation may be repeated after it may have reached the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotence {
    /// Repeating has no further effect (idempotency key, reads).
    Safe,
    /// Repeating could create a second effect, or is refused by the provider.
    Unsafe,
}

/// A provider's answer, once the transport is done retrying.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Raw body.
    pub body: Vec<u8>,
    /// `Retry-After`, when the provider sent one.
    pub retry_after: Option<Duration>,
}

/// An HTTP client for one provider account.
#[derive(Clone, Debug)]
pub struct Transport {
    provider: Provider,
    client: reqwest::Client,
    settings: HttpSettings,
}

/// Installs ring as rustls' process-wide crypto provider, unless the host installed one.
/// reqwest is built without a provider of its own (keeping aws-lc out of the build).
pub fn install_crypto_provider() {
    // `Err` means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Transport {
    /// A client with the account's timeouts.
    pub fn new(provider: Provider, settings: HttpSettings) -> Result<Self, ProviderError> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout())
            .timeout(settings.request_timeout())
            .user_agent(concat!("intentkit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Unavailable {
                provider,
                reason: format!("building the HTTP client: {e}"),
                retry_after: None,
            })?;
        Ok(Transport {
            provider,
            client,
            settings,
        })
    }

    /// The underlying client, for building requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the request `build` makes, again on retryable failures as `idempotence` allows.
    /// `also_retry` marks provider-specific answers that mean "try again with the same
    /// request" (Pientegra's `409 duplicate_idempotency_key` while the first is in flight).
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
        idempotence: Idempotence,
        also_retry: impl Fn(&Reply) -> bool,
    ) -> Result<Reply, ProviderError> {
        let mut attempt: u32 = 0;
        loop {
            // A body cut off after the headers is as ambiguous as a reset: treat both alike.
            let outcome = match build(&self.client).send().await {
                Ok(resp) => read(resp).await,
                Err(e) => Err(e),
            };
            let retry_after = match outcome {
                Ok(reply) => {
                    let transient = reply.status.is_server_error()
                        || reply.status == StatusCode::TOO_MANY_REQUESTS
                        || also_retry(&reply);
                    if !transient
                        || idempotence == Idempotence::Unsafe
                        || attempt >= self.settings.max_retries
                    {
                        return Ok(reply);
                    }
                    reply.retry_after
                }
                Err(e) => {
                    // A connect failure means the provider never saw the request.
                    let may_have_arrived = !e.is_connect();
                    if (may_have_arrived && idempotence == Idempotence::Unsafe)
                        || attempt >= self.settings.max_retries
                    {
                        return Err(self.unavailable(e));
                    }
                    None
                }
            };
            tokio::time::sleep(self.backoff(attempt, retry_after)).await;
            attempt += 1;
        }
    }

    /// Full-jitter exponential backoff, or the provider's `Retry-After` when that is longer.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = Duration::from_millis(self.settings.retry_base_ms);
        let cap = base
            .saturating_mul(1u32 << attempt.min(16))
            .min(MAX_BACKOFF);
        let jittered = cap.mul_f64(fastrand::f64());
        retry_after.map_or(jittered, |ra| ra.min(MAX_BACKOFF).max(jittered))
    }

    fn unavailable(&self, e: reqwest::Error) -> ProviderError {
        // reqwest's Display names the URL and the cause; it never includes headers, so no
        // credential reaches the message.
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        ProviderError::Unavailable {
            provider: self.provider,
            reason: format!("{kind}: {}", e.without_url()),
            retry_after: None,
        }
    }
}

/// `base` with `segments` appended to its path, each percent-encoded as one segment: an id from
/// outside can never add a path segment, a query or a fragment, whatever it holds.
pub fn url_with_segments(
    provider: Provider,
    base: &str,
    segments: &[&str],
) -> Result<reqwest::Url, ProviderError> {
    let bad = |reason: &str| ProviderError::BadResponse {
        provider,
        reason: reason.to_string(),
    };
    // `.` and `..` would be resolved as path steps, not sent as ids.
    if segments.iter().any(|s| matches!(*s, "" | "." | "..")) {
        return Err(bad("an id cannot be empty, `.` or `..`"));
    }
    let mut url = reqwest::Url::parse(base).map_err(|_| bad("the base URL does not parse"))?;
    url.path_segments_mut()
        .map_err(|()| bad("the base URL cannot take a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

async fn read(resp: reqwest::Response) -> Result<Reply, reqwest::Error> {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp.bytes().await?.to_vec();
    Ok(Reply {
        status,
        body,
        retry_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_outside_stay_one_escaped_path_segment() {
        let url = url_with_segments(
            Provider::Decentro,
            "https://in.staging.decentro.tech/v2/payments/penny_pull/fetch",
            &["../../admin?x=1#f", "status"],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://in.staging.decentro.tech/v2/payments/penny_pull/fetch/..%2F..%2Fadmin%3Fx=1%23f/status"
        );
        assert_eq!(url.query(), None);
        assert_eq!(url.fragment(), None);
        for dots in ["..", ".", ""] {
            assert!(
                url_with_segments(Provider::Pientegra, "https://p.example/api/v1", &[dots])
                    .is_err()
            );
        }
    }
}
