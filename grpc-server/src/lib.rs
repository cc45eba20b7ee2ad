//! intentkit's gRPC façade: `intentkit.v1.IntentService` over the engine (for Go and Java
//! backends running intentkit as a sidecar), the provider-facing HTTP receiver for webhooks and
//! callbacks, Prometheus metrics, and the background maintenance (recovery, expiry,
//! reconciliation). It translates and schedules; every rule lives in `intentkit-core`, and
//! every mapping to the schema in `intentkit-proto`.
//!
//! [`Server::start`] binds everything and returns at once; [`Server::shutdown`] then
//! [`Server::wait`] stop it the way SIGTERM does: no new work, in-flight requests finish,
//! streams end with `UNAVAILABLE`/`SHUTTING_DOWN`, maintenance passes in progress are cut (each
//! write is its own transaction; the next start goes on).
//!
//! Every listener is bounded: time to send headers and bodies, time to answer, messages' sizes,
//! requests at once, connections open (the `[server]` options; see [`http`] and [`grpc`]).

pub mod auth;
pub mod config;
pub mod grpc;
pub mod http;
pub mod layers;
pub mod metrics;
pub mod options;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod service;
pub mod streams;

use std::net::SocketAddr;
use std::time::Duration;

use intentkit_core::Engine;
use intentkit_proto::v1::intent_service_server::IntentServiceServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Config, ServerConfig};
pub use metrics::Metrics;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The engine could not be opened: the database, or a provider client.
    #[error("opening the engine on {path}: {source}")]
    Engine {
        /// The database: a file's path, or a server and database without credentials.
        path: String,
        /// Why.
        source: intentkit_core::EngineError,
    },
    /// A listen address could not be bound.
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS files could not be read or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The configuration is not usable.
    #[error("config: {0}")]
    Config(String),
    /// The gRPC reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(String),
}

/// Opens the store the config names (SQLite, or PostgreSQL) and builds the engine over it.
pub fn open_engine(config: &Config) -> Result<Engine, StartError> {
    let mut database = config.server.database.clone();
    if let intentkit_core::store::Database::Postgres(pg) = &mut database {
        pg.max_connections = config.server.database_max_connections;
    }
    Engine::open(&database, &config.providers, config.engine.clone()).map_err(|source| {
        StartError::Engine {
            path: database.describe(),
            source,
        }
    })
}

/// A running server.
pub struct Server {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    grace: Duration,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

fn local(l: &tokio::net::TcpListener, what: &'static str) -> Result<SocketAddr, StartError> {
    l.local_addr().map_err(|source| StartError::Bind {
        what,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

/// The server's listeners, bound before it starts (so that, e.g., sandbox simulators can be
/// told where to deliver before the engine exists).
#[derive(Debug)]
pub struct Listeners {
    grpc: tokio::net::TcpListener,
    http: tokio::net::TcpListener,
    metrics: Option<tokio::net::TcpListener>,
}

impl Listeners {
    /// Binds the addresses in `config` (port 0 picks a free port).
    pub async fn bind(config: &ServerConfig) -> Result<Self, StartError> {
        Ok(Listeners {
            grpc: bind("gRPC", config.grpc_addr).await?,
            http: bind("HTTP receiver", config.http_addr).await?,
            metrics: match config.metrics_addr {
                Some(a) => Some(bind("metrics", a).await?),
                None => None,
            },
        })
    }

    /// The receiver's bound address.
    pub fn http_addr(&self) -> Result<SocketAddr, StartError> {
        local(&self.http, "HTTP receiver")
    }
}

impl Server {
    /// Binds the listeners in `config` and starts; see [`Server::start_on`].
    pub async fn start(config: &ServerConfig, engine: Engine) -> Result<Server, StartError> {
        let listeners = Listeners::bind(config).await?;
        Self::start_on(config, engine, listeners).await
    }

    /// Starts serving on `listeners`, and starts the background tasks. Returns once
    /// everything is listening.
    pub async fn start_on(
        config: &ServerConfig,
        engine: Engine,
        listeners: Listeners,
    ) -> Result<Server, StartError> {
        let (shutdown, stop) = watch::channel(false);
        let metrics = Metrics::new();
        let mut tasks = Vec::new();
        let Listeners {
            grpc: grpc_listener,
            http: http_listener,
            metrics: metrics_listener,
        } = listeners;
        let grpc_addr = local(&grpc_listener, "gRPC")?;
        let http_addr = local(&http_listener, "HTTP receiver")?;
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(local(l, "metrics")?),
            None => None,
        };

        // gRPC: the service behind the token check, health and reflection open (probes and
        // tooling carry no tokens, and reveal nothing but the schema and serving state).
        let service = service::Service::new(
            engine.clone(),
            metrics.clone(),
            stop.clone(),
            config.max_streams_per_token,
        );
        let auth = auth::Auth::new(&config.auth_tokens, config.allow_unauthenticated);
        let intents = tonic::service::interceptor::InterceptedService::new(
            IntentServiceServer::new(service)
                .max_decoding_message_size(config.grpc_max_message_bytes)
                .max_encoding_message_size(config.grpc_max_message_bytes),
            move |r| auth.check(r),
        );
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<IntentServiceServer<service::Service>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(intentkit_proto::FILE_DESCRIPTOR_SET)
            // So `grpcurl list` shows health too, and tools can call it by reflection alone.
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartError::Reflection(e.to_string()))?;
        let mut builder = tonic::transport::Server::builder()
            .timeout(Duration::from_millis(config.grpc_request_timeout_ms))
            .concurrency_limit_per_connection(config.grpc_concurrency_per_connection)
            .max_concurrent_streams(grpc::MAX_STREAMS)
            .http2_keepalive_interval(Some(grpc::KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(grpc::KEEPALIVE_TIMEOUT));
        if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| StartError::Tls(format!("{}: {e}", p.display())))
            };
            let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
            builder = builder
                .tls_config(
                    tonic::transport::ServerTlsConfig::new()
                        .identity(identity)
                        .timeout(grpc::HANDSHAKE_TIMEOUT),
                )
                .map_err(|e| StartError::Tls(e.to_string()))?;
        }
        let router = builder
            .layer(layers::GrpcMetricsLayer::new(metrics.clone()))
            .add_service(health)
            .add_service(reflection)
            .add_service(intents);
        let mut grpc_stop = stop.clone();
        // Small unary answers: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms to each.
        let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(grpc::TCP_KEEPALIVE));
        let incoming = grpc::limited(incoming, config.grpc_max_connections, metrics.clone());
        let reporter = health_reporter.clone();
        tasks.push((
            "gRPC",
            tokio::spawn(async move {
                let signal = async move {
                    let _ = grpc_stop.wait_for(|s| *s).await;
                    reporter
                        .set_not_serving::<IntentServiceServer<service::Service>>()
                        .await;
                };
                if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
                    tracing::error!(error = %e, "gRPC server failed");
                }
            }),
        ));

        // The provider-facing receiver, and metrics, each under the same HTTP limits.
        let limits = http::HttpLimits::from_config(config);
        let app = http::receiver(engine.clone(), metrics.clone(), config.webhook_body_limit);
        tasks.push((
            "HTTP receiver",
            tokio::spawn(http::serve(
                http_listener,
                app,
                limits.clone(),
                metrics.clone(),
                "receiver",
                stop.clone(),
            )),
        ));

        if let Some(listener) = metrics_listener {
            let app = http::metrics(metrics.clone());
            tasks.push((
                "metrics",
                tokio::spawn(http::serve(
                    listener,
                    app,
                    limits,
                    metrics.clone(),
                    "metrics",
                    stop.clone(),
                )),
            ));
        }

        // Maintenance: at once (crash recovery on start), then every interval.
        let every = Duration::from_millis(config.maintenance_interval_ms);
        let (m_engine, m_metrics) = (engine.clone(), metrics.clone());
        let mut maint_stop = stop.clone();
        tasks.push((
            "maintenance",
            tokio::spawn(async move {
                m_engine
                    .run_maintenance(
                        every,
                        async move {
                            let _ = maint_stop.wait_for(|s| *s).await;
                        },
                        move |report| {
                            m_metrics.maintenance(&report);
                            log_maintenance(&report);
                        },
                    )
                    .await;
            }),
        ));

        // Events written before this start are not this server's to count.
        let head = engine.head_seq().await.unwrap_or(0);
        let mut tail_stop = stop.clone();
        tasks.push((
            "metrics tail",
            tokio::spawn(metrics.clone().tail_outbox(
                engine,
                head,
                Duration::from_secs(1),
                async move {
                    let _ = tail_stop.wait_for(|s| *s).await;
                },
            )),
        ));

        tracing::info!(%grpc_addr, %http_addr, metrics = ?metrics_addr, tls = config.tls_cert.is_some(), "intentkit serving");
        Ok(Server {
            grpc_addr,
            http_addr,
            metrics_addr,
            shutdown,
            grace: Duration::from_millis(config.shutdown_grace_ms),
            tasks,
        })
    }

    /// Where gRPC listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where the provider-facing receiver listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where metrics are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Starts a graceful shutdown: no new connections, streams end, in-flight requests finish.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits for everything to stop, up to the configured grace; what is still running then
    /// is aborted (a SQLite transaction is atomic, so nothing is left half-written). Returns
    /// the names of the tasks that had to be aborted.
    pub async fn wait(self) -> Vec<&'static str> {
        let deadline = tokio::time::Instant::now() + self.grace;
        let mut aborted = Vec::new();
        for (name, mut task) in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                tracing::warn!(task = name, "did not stop within the grace period; aborted");
                aborted.push(name);
            }
        }
        aborted
    }
}

/// One maintenance pass in the log: every pass at `debug` (replays and sweeps included, so
/// that they are never invisible), at `info` when it changed something or a job was cut short
/// by its budget, at `warn` when a job failed.
fn log_maintenance(r: &intentkit_core::MaintenanceReport) {
    let account = r.jobs.first().map_or_else(
        || "*".to_string(),
        |j| format!("{}/{}", j.provider, j.account),
    );
    let backlog: Vec<String> = r
        .jobs
        .iter()
        .filter(|j| j.backlog > 0 || j.cut_short)
        .map(|j| {
            format!(
                "{}={}{}",
                j.job.as_str(),
                j.backlog,
                if j.cut_short { " (cut short)" } else { "" }
            )
        })
        .collect();
    let (rc, errors) = (&r.reconcile, r.errors.iter().chain(&r.reconcile.errors));
    let errors: Vec<&String> = errors.collect();
    if !errors.is_empty() {
        tracing::warn!(account, ?errors, ?backlog, "maintenance pass had errors");
    } else if r.changed_anything() || !backlog.is_empty() {
        tracing::info!(
            account,
            recovered = r.recovered,
            expired = r.expired,
            parked_settled = r.parked_settled,
            parked_pruned = r.parked_pruned,
            settled = rc.settled,
            replayed = rc.replayed,
            provider_calls = rc.calls,
            windows = rc.windows,
            ?backlog,
            "maintenance pass"
        );
    } else {
        tracing::debug!(
            account,
            provider_calls = rc.calls,
            windows = rc.windows,
            "maintenance pass: nothing to do"
        );
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
