//! Prometheus metrics: requests and their latency, webhook outcomes, transitions by status,
//! outbox lag, open connections and the limits that stopped or held a client. gRPC requests
//! are recorded by one tower layer ([`crate::layers::GrpcMetricsLayer`]), never by handlers. Transitions are counted by tailing the outbox, so those applied by another
//! instance on the same database, or by a background sweep, are counted too.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use intentkit_core::{ConsumerName, Engine};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 17))
}

/// The server's metrics. Cheap to clone; clones share the series.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<Labels, Counter>,
    latency: Histograms,
    webhooks: Family<Labels, Counter>,
    connections: Family<Labels, Gauge>,
    limit_hits: Family<Labels, Counter>,
    transitions: Family<Labels, Counter>,
    outbox_head: Gauge,
    outbox_lag: Family<Labels, Gauge>,
    maintenance_errors: Counter,
    maintenance_backlog: Family<Labels, Gauge>,
    maintenance_last_success: Family<Labels, Gauge>,
    consumers: Arc<Mutex<BTreeSet<ConsumerName>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every series registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("intentkit");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "grpc_requests",
            "gRPC requests by method and status code",
            requests.clone(),
        );
        let latency: Histograms = Family::new_with_constructor(latency_histogram);
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC request latency by method",
            latency.clone(),
        );
        let webhooks = Family::<Labels, Counter>::default();
        registry.register(
            "webhooks",
            "provider webhooks and callbacks by provider and outcome",
            webhooks.clone(),
        );
        let connections = Family::<Labels, Gauge>::default();
        registry.register(
            "open_connections",
            "connections open now, by listener (receiver, metrics, grpc)",
            connections.clone(),
        );
        let limit_hits = Family::<Labels, Counter>::default();
        registry.register(
            "limit_hits",
            "requests or connections a limit stopped or held, by listener and limit \
             (header_read_timeout, body_read_timeout, body_too_large, request_timeout, \
             connection_limit, preface_timeout, streams_per_token)",
            limit_hits.clone(),
        );
        let transitions = Family::<Labels, Counter>::default();
        registry.register(
            "outbox_events",
            "outbox events written since this server started, by type",
            transitions.clone(),
        );
        let outbox_head = Gauge::default();
        registry.register(
            "outbox_head_seq",
            "the newest outbox sequence number",
            outbox_head.clone(),
        );
        let outbox_lag = Family::<Labels, Gauge>::default();
        registry.register(
            "outbox_lag_events",
            "events written but not yet acknowledged, by consumer",
            outbox_lag.clone(),
        );
        let maintenance_errors = Counter::default();
        registry.register(
            "maintenance_errors",
            "maintenance jobs (recovery, expiry, parked signals, reconciliation) that failed",
            maintenance_errors.clone(),
        );
        let maintenance_backlog = Family::<Labels, Gauge>::default();
        registry.register(
            "maintenance_backlog",
            "work a maintenance job left waiting after its last pass, by provider, account and job",
            maintenance_backlog.clone(),
        );
        let maintenance_last_success = Family::<Labels, Gauge>::default();
        registry.register(
            "maintenance_last_success_timestamp_seconds",
            "when a maintenance job last finished a pass within its budget and without error",
            maintenance_last_success.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            requests,
            latency,
            webhooks,
            connections,
            limit_hits,
            transitions,
            outbox_head,
            outbox_lag,
            maintenance_errors,
            maintenance_backlog,
            maintenance_last_success,
            consumers: Arc::default(),
        }
    }

    /// Records one gRPC request: its method, its status code and, for a unary call, how long
    /// it took (a stream's lifetime says nothing about the server, so streams give `None`).
    pub fn request(&self, method: &str, code: &str, seconds: Option<f64>) {
        self.requests
            .get_or_create(&vec![
                ("method", method.to_string()),
                ("code", code.to_string()),
            ])
            .inc();
        if let Some(seconds) = seconds {
            self.latency
                .get_or_create(&vec![("method", method.to_string())])
                .observe(seconds);
        }
    }

    /// One more (`+1`) or one fewer (`-1`) open connection on `listener`.
    pub fn connections(&self, listener: &'static str, delta: i64) {
        self.connections
            .get_or_create(&vec![("listener", listener.to_string())])
            .inc_by(delta);
    }

    /// Records one request or connection that `limit` stopped or held on `listener`.
    pub fn limit_hit(&self, listener: &'static str, limit: &'static str) {
        self.limit_hits
            .get_or_create(&vec![
                ("listener", listener.to_string()),
                ("limit", limit.to_string()),
            ])
            .inc();
    }

    /// Records one provider delivery.
    pub fn webhook(&self, provider: &str, outcome: &str) {
        self.webhooks
            .get_or_create(&vec![
                ("provider", provider.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    /// Records one maintenance pass: per account and job, when it last succeeded and what it
    /// left waiting; a failed job counts as an error.
    pub fn maintenance(&self, report: &intentkit_core::MaintenanceReport) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        for j in &report.jobs {
            let labels = vec![
                ("provider", j.provider.as_str().to_string()),
                ("account", j.account.to_string()),
                ("job", j.job.as_str().to_string()),
            ];
            self.maintenance_backlog
                .get_or_create(&labels)
                .set(i64::try_from(j.backlog).unwrap_or(i64::MAX));
            if j.error.is_none() && !j.cut_short && !j.held_elsewhere {
                self.maintenance_last_success
                    .get_or_create(&labels)
                    .set(now);
            }
            if j.error.is_some() {
                self.maintenance_errors.inc();
            }
        }
        if !report.errors.is_empty() && report.jobs.is_empty() {
            self.maintenance_errors.inc();
        }
    }

    /// Remembers a consumer, so that its lag is reported.
    pub fn consumer(&self, name: &ConsumerName) {
        if let Ok(mut c) = self.consumers.lock() {
            c.insert(name.clone());
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Tails the outbox after `from` (the head when the server started), counting events by
    /// type and refreshing the lag gauges, until `stop` resolves.
    pub async fn tail_outbox(
        self,
        engine: Engine,
        from: u64,
        every: std::time::Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut cursor = from;
        loop {
            let consumers: Vec<ConsumerName> = self
                .consumers
                .lock()
                .map(|c| c.iter().cloned().collect())
                .unwrap_or_default();
            let step = async {
                let head = engine.head_seq().await?;
                let events = engine.events_after(cursor, 1_000).await?;
                let mut lags = Vec::with_capacity(consumers.len());
                for c in consumers {
                    let p = engine.position(c.clone()).await?;
                    lags.push((c, head.saturating_sub(p)));
                }
                Ok::<_, intentkit_core::EngineError>((head, events, lags))
            }
            .await;
            if let Ok((head, events, lags)) = step {
                self.outbox_head
                    .set(i64::try_from(head).unwrap_or(i64::MAX));
                for e in &events {
                    self.transitions
                        .get_or_create(&vec![("type", e.event_type.as_str().to_string())])
                        .inc();
                    cursor = e.seq;
                }
                for (c, lag) in lags {
                    self.outbox_lag
                        .get_or_create(&vec![("consumer", c.to_string())])
                        .set(i64::try_from(lag).unwrap_or(i64::MAX));
                }
                if events.len() == 1_000 {
                    continue;
                }
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_in_the_text_format() {
        let m = Metrics::new();
        m.request("GetIntent", "OK", Some(0.002));
        m.request("StreamEvents", "UNAVAILABLE", None);
        m.webhook("pientegra", "applied");
        m.limit_hit("receiver", "header_read_timeout");
        let text = m.render();
        assert!(
            text.contains(r#"intentkit_grpc_requests_total{method="GetIntent",code="OK"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("intentkit_grpc_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"intentkit_webhooks_total{provider="pientegra",outcome="applied"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"intentkit_grpc_requests_total{method="StreamEvents",code="UNAVAILABLE"} 1"#
            ),
            "{text}"
        );
        assert!(
            !text.contains(
                r#"intentkit_grpc_request_duration_seconds_count{method="StreamEvents"}"#
            ),
            "a stream has no latency: {text}"
        );
        assert!(
            text.contains(
                r#"intentkit_limit_hits_total{listener="receiver",limit="header_read_timeout"} 1"#
            ),
            "{text}"
        );
    }
}
