//! The server's configuration: one TOML file (`[server]` plus the provider accounts), with
//! `INTENTKIT_SERVER_<FIELD>` environment variables taking precedence over the file, so that
//! secrets (tokens, provider keys) can stay out of it.

use std::net::SocketAddr;
use std::path::PathBuf;

use intentkit_core::provider::Secret;
use intentkit_core::provider::config::{ConfigError, ProvidersConfig, toml_error};
use serde::Deserialize;

/// Every `[server]` option, with its default and meaning; `--help` prints this.
pub const OPTIONS_HELP: &str = "\
[server] options (file), each overridable by INTENTKIT_SERVER_<NAME> (environment):
  grpc_addr = \"127.0.0.1:50051\"   gRPC listen address (IntentService, health, reflection)
  http_addr = \"127.0.0.1:8080\"    provider-facing HTTP: POST /webhooks/pientegra/{account},
                                   POST /callbacks/decentro/{account}
  metrics_addr = \"127.0.0.1:9464\" Prometheus GET /metrics; \"\" to turn it off
  database = \"intentkit.db\"       SQLite file (relative to the working directory)
  auth_tokens = [\"...\"]           bearer tokens accepted on gRPC; the environment form is
                                   comma-separated. Required unless allow_unauthenticated
  allow_unauthenticated = false    serve gRPC without tokens (local development only)
  tls_cert = \"\", tls_key = \"\"     PEM files: serve gRPC over TLS (rustls) when both are set
  webhook_body_limit = 65536       largest provider request body accepted, in bytes (413 past it)
  http_header_read_timeout_ms = 10000
                                   receiver and metrics: a connection must send a request's
                                   headers within this, from when it opens or its previous
                                   answer was sent (idle keep-alive included); closed past it
  http_body_read_timeout_ms = 10000
                                   a request body must arrive whole within this, from its
                                   headers; 408 and the connection closed past it
  http_request_timeout_ms = 30000  a request must be answered within this, from its headers
                                   (body, queueing and the engine included); 503 past it, which
                                   the provider retries. At least http_body_read_timeout_ms
  http_max_connections = 1024      open connections per listener; past it, new connections wait
                                   in the kernel's accept queue until one closes
  http_concurrency_limit = 256     requests the receiver works on at once (bodies already read);
                                   the rest wait their turn within http_request_timeout_ms
  grpc_request_timeout_ms = 30000  a gRPC call must be answered within this (a stream, opened);
                                   CANCELLED past it. A shorter grpc-timeout from the client wins
  grpc_max_message_bytes = 4194304 largest gRPC request or response message; OUT_OF_RANGE past it
  grpc_concurrency_per_connection = 64
                                   calls served at once on one gRPC connection; the rest queue
  grpc_max_connections = 1024      open gRPC connections; past it, new ones wait in the kernel's
                                   accept queue until one closes
  maintenance_interval_ms = 5000   how often recovery, expiry and reconciliation run
  shutdown_grace_ms = 10000        on SIGTERM, how long in-flight requests may take to finish
  log_format = \"text\"             \"text\" or \"json\" (one JSON object per line)
  log_level = \"info\"              error, warn, info, debug or trace

Provider accounts: [pientegra.<account>] and [decentro.<account>] tables; see docs/decisions.md.
Their secrets may come from INTENTKIT_<PROVIDER>_<ACCOUNT>_<FIELD> instead of the file.";

/// The `[server]` table.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Provider-facing HTTP listen address.
    pub http_addr: SocketAddr,
    /// Prometheus listen address; `None` turns metrics off.
    pub metrics_addr: Option<SocketAddr>,
    /// SQLite database file.
    pub database: PathBuf,
    /// Accepted bearer tokens.
    pub auth_tokens: Vec<Secret>,
    /// Serve without tokens.
    pub allow_unauthenticated: bool,
    /// TLS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Largest provider request body, in bytes.
    pub webhook_body_limit: usize,
    /// Receiver and metrics: time to send a request's headers, from when the connection opens
    /// or its previous answer was sent.
    pub http_header_read_timeout_ms: u64,
    /// Receiver: time to send a whole request body, from its headers.
    pub http_body_read_timeout_ms: u64,
    /// Receiver: time to answer a request, from its headers.
    pub http_request_timeout_ms: u64,
    /// Open connections per HTTP listener.
    pub http_max_connections: usize,
    /// Receiver requests handled at once.
    pub http_concurrency_limit: usize,
    /// Time to answer a gRPC call.
    pub grpc_request_timeout_ms: u64,
    /// Largest gRPC message, either way, in bytes.
    pub grpc_max_message_bytes: usize,
    /// gRPC calls served at once per connection.
    pub grpc_concurrency_per_connection: usize,
    /// Open gRPC connections.
    pub grpc_max_connections: usize,
    /// Maintenance period.
    pub maintenance_interval_ms: u64,
    /// Grace for in-flight requests on shutdown.
    pub shutdown_grace_ms: u64,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// The most verbose level logged.
    pub log_level: String,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            database: PathBuf::from("intentkit.db"),
            auth_tokens: Vec::new(),
            allow_unauthenticated: false,
            tls_cert: None,
            tls_key: None,
            webhook_body_limit: 64 * 1024,
            http_header_read_timeout_ms: 10_000,
            http_body_read_timeout_ms: 10_000,
            http_request_timeout_ms: 30_000,
            http_max_connections: 1_024,
            http_concurrency_limit: 256,
            grpc_request_timeout_ms: 30_000,
            grpc_max_message_bytes: 4 * 1024 * 1024,
            grpc_concurrency_per_connection: 64,
            grpc_max_connections: 1_024,
            maintenance_interval_ms: 5_000,
            shutdown_grace_ms: 10_000,
            log_format: LogFormat::Text,
            log_level: "info".into(),
        }
    }
}

/// The whole file.
#[derive(Clone, Debug)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// The provider accounts.
    pub providers: ProvidersConfig,
}

/// Why the configuration could not be loaded. Never repeats a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerConfigError {
    /// The provider part.
    #[error(transparent)]
    Providers(#[from] ConfigError),
    /// A `[server]` option.
    #[error("[server] {field}: {reason}")]
    Invalid {
        /// The option.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl ServerConfigError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        "INVALID_CONFIG"
    }
}

/// `[server]` as written: every field optional. The file and the environment each give one,
/// the environment's fields win, and [`RawServer::apply`] validates the result.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    grpc_addr: Option<String>,
    http_addr: Option<String>,
    metrics_addr: Option<String>,
    database: Option<String>,
    auth_tokens: Option<Vec<String>>,
    allow_unauthenticated: Option<bool>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    webhook_body_limit: Option<u64>,
    http_header_read_timeout_ms: Option<u64>,
    http_body_read_timeout_ms: Option<u64>,
    http_request_timeout_ms: Option<u64>,
    http_max_connections: Option<u64>,
    http_concurrency_limit: Option<u64>,
    grpc_request_timeout_ms: Option<u64>,
    grpc_max_message_bytes: Option<u64>,
    grpc_concurrency_per_connection: Option<u64>,
    grpc_max_connections: Option<u64>,
    maintenance_interval_ms: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    log_format: Option<String>,
    log_level: Option<String>,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    server: RawServer,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ServerConfigError {
    ServerConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

// Neither error repeats the value: an option set in the wrong variable may hold a secret.
fn addr(field: &'static str, v: &str) -> Result<SocketAddr, ServerConfigError> {
    v.parse()
        .map_err(|_| invalid(field, "is not host:port (e.g. 127.0.0.1:8080)"))
}

fn number(field: &'static str, v: String) -> Result<u64, ServerConfigError> {
    v.parse()
        .map_err(|_| invalid(field, "is not a whole number"))
}

impl RawServer {
    /// The `INTENTKIT_SERVER_<FIELD>` variables that are set.
    fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, ServerConfigError> {
        let var = |name: &str| env(&format!("INTENTKIT_SERVER_{}", name.to_ascii_uppercase()));
        let num = |field: &'static str| var(field).map(|v| number(field, v)).transpose();
        Ok(RawServer {
            grpc_addr: var("grpc_addr"),
            http_addr: var("http_addr"),
            metrics_addr: var("metrics_addr"),
            database: var("database"),
            auth_tokens: var("auth_tokens")
                .map(|v| v.split(',').map(|t| t.trim().to_string()).collect()),
            allow_unauthenticated: var("allow_unauthenticated")
                .map(|v| {
                    v.parse::<bool>()
                        .map_err(|_| invalid("allow_unauthenticated", "must be true or false"))
                })
                .transpose()?,
            tls_cert: var("tls_cert"),
            tls_key: var("tls_key"),
            webhook_body_limit: num("webhook_body_limit")?,
            http_header_read_timeout_ms: num("http_header_read_timeout_ms")?,
            http_body_read_timeout_ms: num("http_body_read_timeout_ms")?,
            http_request_timeout_ms: num("http_request_timeout_ms")?,
            http_max_connections: num("http_max_connections")?,
            http_concurrency_limit: num("http_concurrency_limit")?,
            grpc_request_timeout_ms: num("grpc_request_timeout_ms")?,
            grpc_max_message_bytes: num("grpc_max_message_bytes")?,
            grpc_concurrency_per_connection: num("grpc_concurrency_per_connection")?,
            grpc_max_connections: num("grpc_max_connections")?,
            maintenance_interval_ms: num("maintenance_interval_ms")?,
            shutdown_grace_ms: num("shutdown_grace_ms")?,
            log_format: var("log_format"),
            log_level: var("log_level"),
        })
    }

    /// `self`, with `over`'s fields where it has them.
    fn overlay(self, over: RawServer) -> RawServer {
        RawServer {
            grpc_addr: over.grpc_addr.or(self.grpc_addr),
            http_addr: over.http_addr.or(self.http_addr),
            metrics_addr: over.metrics_addr.or(self.metrics_addr),
            database: over.database.or(self.database),
            auth_tokens: over.auth_tokens.or(self.auth_tokens),
            allow_unauthenticated: over.allow_unauthenticated.or(self.allow_unauthenticated),
            tls_cert: over.tls_cert.or(self.tls_cert),
            tls_key: over.tls_key.or(self.tls_key),
            webhook_body_limit: over.webhook_body_limit.or(self.webhook_body_limit),
            http_header_read_timeout_ms: over
                .http_header_read_timeout_ms
                .or(self.http_header_read_timeout_ms),
            http_body_read_timeout_ms: over
                .http_body_read_timeout_ms
                .or(self.http_body_read_timeout_ms),
            http_request_timeout_ms: over
                .http_request_timeout_ms
                .or(self.http_request_timeout_ms),
            http_max_connections: over.http_max_connections.or(self.http_max_connections),
            http_concurrency_limit: over.http_concurrency_limit.or(self.http_concurrency_limit),
            grpc_request_timeout_ms: over
                .grpc_request_timeout_ms
                .or(self.grpc_request_timeout_ms),
            grpc_max_message_bytes: over.grpc_max_message_bytes.or(self.grpc_max_message_bytes),
            grpc_concurrency_per_connection: over
                .grpc_concurrency_per_connection
                .or(self.grpc_concurrency_per_connection),
            grpc_max_connections: over.grpc_max_connections.or(self.grpc_max_connections),
            maintenance_interval_ms: over
                .maintenance_interval_ms
                .or(self.maintenance_interval_ms),
            shutdown_grace_ms: over.shutdown_grace_ms.or(self.shutdown_grace_ms),
            log_format: over.log_format.or(self.log_format),
            log_level: over.log_level.or(self.log_level),
        }
    }

    /// `base` with every field that is set here, validated.
    fn apply(self, base: ServerConfig) -> Result<ServerConfig, ServerConfigError> {
        let mut s = base;
        if let Some(v) = self.grpc_addr {
            s.grpc_addr = addr("grpc_addr", &v)?;
        }
        if let Some(v) = self.http_addr {
            s.http_addr = addr("http_addr", &v)?;
        }
        if let Some(v) = self.metrics_addr {
            // Empty turns metrics off.
            s.metrics_addr = (!v.is_empty())
                .then(|| addr("metrics_addr", &v))
                .transpose()?;
        }
        if let Some(d) = self.database {
            s.database = PathBuf::from(d);
        }
        if let Some(tokens) = self.auth_tokens {
            s.auth_tokens = tokens
                .into_iter()
                .filter(|t| !t.is_empty())
                .map(Secret::new)
                .collect();
        }
        if let Some(b) = self.allow_unauthenticated {
            s.allow_unauthenticated = b;
        }
        if let Some(p) = self.tls_cert {
            s.tls_cert = (!p.is_empty()).then(|| PathBuf::from(p));
        }
        if let Some(p) = self.tls_key {
            s.tls_key = (!p.is_empty()).then(|| PathBuf::from(p));
        }
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            return Err(invalid(
                "tls_cert",
                "tls_cert and tls_key must be set together",
            ));
        }
        if let Some(n) = self.webhook_body_limit {
            if n < 1_024 {
                return Err(invalid("webhook_body_limit", "must be at least 1024"));
            }
            s.webhook_body_limit = usize::try_from(n).unwrap_or(usize::MAX);
        }
        // Limits: a timeout too short to send a request in, or a count of zero, would refuse
        // everything; an upper bound is the operator's call.
        let at_least = |field: &'static str, v: Option<u64>, min: u64, what: &'static str| {
            v.map(|n| {
                if n < min {
                    Err(invalid(field, what))
                } else {
                    Ok(n)
                }
            })
            .transpose()
        };
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        const MS: &str = "must be at least 100 (milliseconds)";
        const ONE: &str = "must be at least 1";
        if let Some(n) = at_least(
            "http_header_read_timeout_ms",
            self.http_header_read_timeout_ms,
            100,
            MS,
        )? {
            s.http_header_read_timeout_ms = n;
        }
        if let Some(n) = at_least(
            "http_body_read_timeout_ms",
            self.http_body_read_timeout_ms,
            100,
            MS,
        )? {
            s.http_body_read_timeout_ms = n;
        }
        if let Some(n) = at_least(
            "http_request_timeout_ms",
            self.http_request_timeout_ms,
            100,
            MS,
        )? {
            s.http_request_timeout_ms = n;
        }
        if s.http_request_timeout_ms < s.http_body_read_timeout_ms {
            // Otherwise a slow body would get 503 (retry) instead of 408.
            return Err(invalid(
                "http_request_timeout_ms",
                "must be at least http_body_read_timeout_ms: the request's time includes its body",
            ));
        }
        if let Some(n) = at_least("http_max_connections", self.http_max_connections, 1, ONE)? {
            s.http_max_connections = count(n);
        }
        if let Some(n) = at_least(
            "http_concurrency_limit",
            self.http_concurrency_limit,
            1,
            ONE,
        )? {
            s.http_concurrency_limit = count(n);
        }
        if let Some(n) = at_least(
            "grpc_request_timeout_ms",
            self.grpc_request_timeout_ms,
            100,
            MS,
        )? {
            s.grpc_request_timeout_ms = n;
        }
        if let Some(n) = at_least(
            "grpc_max_message_bytes",
            self.grpc_max_message_bytes,
            1_024,
            "must be at least 1024",
        )? {
            s.grpc_max_message_bytes = count(n);
        }
        if let Some(n) = at_least(
            "grpc_concurrency_per_connection",
            self.grpc_concurrency_per_connection,
            1,
            ONE,
        )? {
            s.grpc_concurrency_per_connection = count(n);
        }
        if let Some(n) = at_least("grpc_max_connections", self.grpc_max_connections, 1, ONE)? {
            s.grpc_max_connections = count(n);
        }
        if let Some(n) = self.maintenance_interval_ms {
            if n < 100 {
                return Err(invalid("maintenance_interval_ms", "must be at least 100"));
            }
            s.maintenance_interval_ms = n;
        }
        if let Some(n) = self.shutdown_grace_ms {
            s.shutdown_grace_ms = n;
        }
        if let Some(f) = self.log_format {
            s.log_format = match f.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(invalid("log_format", "must be \"text\" or \"json\"")),
            };
        }
        if let Some(l) = self.log_level {
            if !["error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
                return Err(invalid(
                    "log_level",
                    "must be error, warn, info, debug or trace",
                ));
            }
            s.log_level = l;
        }
        Ok(s)
    }
}

impl ServerConfig {
    /// `self` with the `INTENTKIT_SERVER_<FIELD>` variables `env` has applied on top (what the
    /// sandbox, which has no file, honours).
    pub fn with_env(self, env: impl Fn(&str) -> Option<String>) -> Result<Self, ServerConfigError> {
        RawServer::from_env(env)?.apply(self)
    }
}

impl Config {
    /// Parses the file's text, with `env` (a lookup by variable name) taking precedence.
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ServerConfigError> {
        let providers = ProvidersConfig::from_toml_with(text, &env, &["server"])?;
        // The provider parser has already reported any syntax error with its position.
        let file: RawFile =
            toml::from_str(text).map_err(|e| ServerConfigError::Providers(toml_error(text, &e)))?;
        let s = file
            .server
            .overlay(RawServer::from_env(&env)?)
            .apply(ServerConfig::default())?;
        if s.auth_tokens.is_empty() && !s.allow_unauthenticated {
            return Err(invalid(
                "auth_tokens",
                "no token configured; set auth_tokens (or INTENTKIT_SERVER_AUTH_TOKENS), or \
                 allow_unauthenticated = true for local development",
            ));
        }
        Ok(Config {
            server: s,
            providers,
        })
    }

    /// Reads a file, with the process environment taking precedence.
    pub fn load(path: &std::path::Path) -> Result<Self, ServerConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ServerConfigError::Providers(ConfigError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        })?;
        Self::from_toml(&text, |k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const FILE: &str = r#"
[server]
grpc_addr = "127.0.0.1:6000"
metrics_addr = ""
auth_tokens = ["file-token"]
log_format = "json"

[pientegra.tr-main]
base_url = "https://api.pientegra.example/api/v1"
api_key = "pk_live_secret"
webhook_secret = "whsec_secret"
"#;

    #[test]
    fn the_file_is_read_and_the_environment_wins() {
        let c = Config::from_toml(FILE, env(&[])).unwrap();
        assert_eq!(c.server.grpc_addr.port(), 6000);
        assert_eq!(c.server.metrics_addr, None);
        assert_eq!(c.server.log_format, LogFormat::Json);
        assert_eq!(c.server.auth_tokens[0].expose(), "file-token");
        assert_eq!(c.providers.pientegra.len(), 1);

        let c = Config::from_toml(
            FILE,
            env(&[
                ("INTENTKIT_SERVER_GRPC_ADDR", "0.0.0.0:7000"),
                ("INTENTKIT_SERVER_AUTH_TOKENS", "a, b"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.grpc_addr.port(), 7000);
        let tokens: Vec<_> = c.server.auth_tokens.iter().map(|t| t.expose()).collect();
        assert_eq!(tokens, ["a", "b"]);
    }

    #[test]
    fn the_environment_applies_on_top_of_a_config_without_a_file() {
        let base = ServerConfig {
            maintenance_interval_ms: 2_000,
            ..ServerConfig::default()
        };
        let c = base
            .clone()
            .with_env(env(&[
                ("INTENTKIT_SERVER_GRPC_ADDR", "127.0.0.1:0"),
                ("INTENTKIT_SERVER_METRICS_ADDR", ""),
                ("INTENTKIT_SERVER_LOG_FORMAT", "json"),
            ]))
            .unwrap();
        assert_eq!(c.grpc_addr.port(), 0);
        assert_eq!(c.metrics_addr, None);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(
            c.maintenance_interval_ms, 2_000,
            "unset variables keep the base"
        );
        let e = base
            .with_env(env(&[("INTENTKIT_SERVER_SHUTDOWN_GRACE_MS", "soon")]))
            .unwrap_err();
        assert!(e.to_string().contains("shutdown_grace_ms"), "{e}");
    }

    #[test]
    fn a_secret_in_the_wrong_place_is_never_repeated() {
        // A token pasted into a number or an address variable, or given where a list goes.
        for (name, value) in [
            ("INTENTKIT_SERVER_WEBHOOK_BODY_LIMIT", "tok_live_4471"),
            ("INTENTKIT_SERVER_GRPC_ADDR", "tok_live_4471"),
            ("INTENTKIT_SERVER_SHUTDOWN_GRACE_MS", "tok_live_4471"),
        ] {
            let e =
                Config::from_toml(FILE, |k| (k == name).then(|| value.to_string())).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("4471"), "{name}: {shown}");
        }
        for file in [
            "[server]\nauth_tokens = \"tok_live_4471\"\n",
            "[server]\nallow_unauthenticated = \"tok_live_4471\"\n",
            "[server]\nwebhook_body_limit = \"tok_live_4471\"\nauth_tokens = [\"t\"]\n",
        ] {
            let e = Config::from_toml(file, env(&[])).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("4471"), "{file}: {shown}");
            assert!(shown.contains("line 2"), "{shown}");
        }
    }

    #[test]
    fn listener_limits_have_defaults_overrides_and_floors() {
        let minimal = "[server]\nauth_tokens = [\"t\"]\n";
        let c = Config::from_toml(minimal, env(&[])).unwrap().server;
        assert_eq!(
            (
                c.http_header_read_timeout_ms,
                c.http_body_read_timeout_ms,
                c.http_request_timeout_ms,
                c.http_max_connections,
                c.http_concurrency_limit,
            ),
            (10_000, 10_000, 30_000, 1_024, 256)
        );
        assert_eq!(
            (
                c.grpc_request_timeout_ms,
                c.grpc_max_message_bytes,
                c.grpc_concurrency_per_connection,
                c.grpc_max_connections,
            ),
            (30_000, 4 * 1024 * 1024, 64, 1_024)
        );

        // The file sets them; the environment wins over the file.
        let file = "[server]\nauth_tokens = [\"t\"]\nhttp_max_connections = 60\n\
                    grpc_max_message_bytes = 65536\nhttp_body_read_timeout_ms = 1000\n";
        let c = Config::from_toml(
            file,
            env(&[
                ("INTENTKIT_SERVER_HTTP_MAX_CONNECTIONS", "70"),
                ("INTENTKIT_SERVER_HTTP_HEADER_READ_TIMEOUT_MS", "1500"),
                ("INTENTKIT_SERVER_HTTP_REQUEST_TIMEOUT_MS", "2000"),
                ("INTENTKIT_SERVER_HTTP_CONCURRENCY_LIMIT", "8"),
                ("INTENTKIT_SERVER_GRPC_REQUEST_TIMEOUT_MS", "5000"),
                ("INTENTKIT_SERVER_GRPC_CONCURRENCY_PER_CONNECTION", "16"),
                ("INTENTKIT_SERVER_GRPC_MAX_CONNECTIONS", "32"),
            ]),
        )
        .unwrap()
        .server;
        assert_eq!(c.http_max_connections, 70);
        assert_eq!(c.grpc_max_message_bytes, 65_536);
        assert_eq!(c.http_body_read_timeout_ms, 1_000);
        assert_eq!(c.http_header_read_timeout_ms, 1_500);
        assert_eq!(c.http_request_timeout_ms, 2_000);
        assert_eq!(c.http_concurrency_limit, 8);
        assert_eq!(c.grpc_request_timeout_ms, 5_000);
        assert_eq!(c.grpc_concurrency_per_connection, 16);
        assert_eq!(c.grpc_max_connections, 32);

        // Values that would refuse everything are named, and never repeated.
        for (name, value, field) in [
            (
                "HTTP_HEADER_READ_TIMEOUT_MS",
                "42",
                "http_header_read_timeout_ms",
            ),
            (
                "HTTP_BODY_READ_TIMEOUT_MS",
                "42",
                "http_body_read_timeout_ms",
            ),
            ("HTTP_REQUEST_TIMEOUT_MS", "42", "http_request_timeout_ms"),
            // Shorter than the body's own deadline (10 s by default).
            ("HTTP_REQUEST_TIMEOUT_MS", "4471", "http_request_timeout_ms"),
            ("HTTP_MAX_CONNECTIONS", "0", "http_max_connections"),
            ("HTTP_CONCURRENCY_LIMIT", "0", "http_concurrency_limit"),
            ("GRPC_REQUEST_TIMEOUT_MS", "42", "grpc_request_timeout_ms"),
            ("GRPC_MAX_MESSAGE_BYTES", "442", "grpc_max_message_bytes"),
            (
                "GRPC_CONCURRENCY_PER_CONNECTION",
                "0",
                "grpc_concurrency_per_connection",
            ),
            ("GRPC_MAX_CONNECTIONS", "0", "grpc_max_connections"),
            (
                "GRPC_MAX_CONNECTIONS",
                "tok_live_4471",
                "grpc_max_connections",
            ),
        ] {
            let var = format!("INTENTKIT_SERVER_{name}");
            let e =
                Config::from_toml(minimal, |k| (k == var).then(|| value.to_string())).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(shown.contains(field), "{name}: {shown}");
            if value != "0" {
                assert!(!shown.contains(value), "{name} repeated its value: {shown}");
            }
        }

        for option in [
            "http_header_read_timeout_ms = 10000",
            "http_body_read_timeout_ms = 10000",
            "http_request_timeout_ms = 30000",
            "http_max_connections = 1024",
            "http_concurrency_limit = 256",
            "grpc_request_timeout_ms = 30000",
            "grpc_max_message_bytes = 4194304",
            "grpc_concurrency_per_connection = 64",
            "grpc_max_connections = 1024",
        ] {
            assert!(OPTIONS_HELP.contains(option), "--help lacks {option}");
        }
    }

    #[test]
    fn mistakes_are_named_and_secrets_are_not_repeated() {
        let no_token = "[server]\ngrpc_addr = \"127.0.0.1:1\"\n";
        let e = Config::from_toml(no_token, env(&[])).unwrap_err();
        assert!(e.to_string().contains("auth_tokens"), "{e}");

        let typo = "[server]\ngrpc_adr = \"x\"\nauth_tokens = [\"t\"]\n";
        let e = Config::from_toml(typo, env(&[])).unwrap_err();
        assert!(e.to_string().contains("grpc_adr"), "{e}");

        let bad_addr = "[server]\nhttp_addr = \"nowhere\"\nauth_tokens = [\"t\"]\n";
        let e = Config::from_toml(bad_addr, env(&[])).unwrap_err();
        assert!(e.to_string().contains("http_addr"), "{e}");

        let c = Config::from_toml(FILE, env(&[])).unwrap();
        let shown = format!("{c:?}");
        for secret in ["file-token", "pk_live_secret", "whsec_secret"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
    }
}
