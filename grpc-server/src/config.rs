//! The server's configuration: one TOML file (`[server]`, `[engine]` and the provider
//! accounts), with the command line and the `INTENTKIT_SERVER_<KEY>` variables taking
//! precedence over the file, so that secrets (tokens, provider keys) can stay out of it.
//!
//! The `[server]` options are defined once, in [`crate::options::ServerArgs`]: their keys,
//! flags, variables and help. Every value arrives as text (a file's numbers and lists too) and
//! is validated here; an error names the option and never repeats its value.

use std::net::SocketAddr;
use std::path::PathBuf;

use intentkit_core::EngineSettings;
use intentkit_core::provider::Secret;
use intentkit_core::provider::config::{ConfigError, ProvidersConfig};
use serde::Deserialize;

use self::raw::{RawServer, file_values, invalid};
use crate::options::{ServerArgs, Values};

/// The `[server]` table.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Provider-facing HTTP listen address.
    pub http_addr: SocketAddr,
    /// Prometheus listen address; `None` turns metrics off.
    pub metrics_addr: Option<SocketAddr>,
    /// The database: a SQLite file, or PostgreSQL.
    pub database: intentkit_core::store::Database,
    /// PostgreSQL: connections this instance keeps at most.
    pub database_max_connections: usize,
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
    /// Event streams open at once per token (on a server without tokens: in all).
    pub max_streams_per_token: usize,
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
            database: intentkit_core::store::Database::Sqlite(PathBuf::from("intentkit.db")),
            database_max_connections: 16,
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
            max_streams_per_token: 16,
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
    /// `[engine]`.
    pub engine: EngineSettings,
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
    /// A `[server]` key no option has (a typo, most likely).
    #[error("[server] unknown option {0:?}; `intentkitd --help` lists them")]
    UnknownOption(String),
}

impl ServerConfigError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        "INVALID_CONFIG"
    }
}

impl ServerConfig {
    /// `self` as option values (what `--help` shows as defaults). Tokens are never shown.
    pub fn as_values(&self) -> Values {
        let mut v = Values::new();
        let mut put = |k: &str, s: String| {
            v.insert(k.to_string(), s);
        };
        put("grpc_addr", self.grpc_addr.to_string());
        put("http_addr", self.http_addr.to_string());
        put(
            "metrics_addr",
            self.metrics_addr.map(|a| a.to_string()).unwrap_or_default(),
        );
        // A PostgreSQL URL is shown without its credentials.
        put("database", self.database.describe());
        put(
            "database_max_connections",
            self.database_max_connections.to_string(),
        );
        put(
            "allow_unauthenticated",
            self.allow_unauthenticated.to_string(),
        );
        put("webhook_body_limit", self.webhook_body_limit.to_string());
        put(
            "http_header_read_timeout_ms",
            self.http_header_read_timeout_ms.to_string(),
        );
        put(
            "http_body_read_timeout_ms",
            self.http_body_read_timeout_ms.to_string(),
        );
        put(
            "http_request_timeout_ms",
            self.http_request_timeout_ms.to_string(),
        );
        put(
            "http_max_connections",
            self.http_max_connections.to_string(),
        );
        put(
            "http_concurrency_limit",
            self.http_concurrency_limit.to_string(),
        );
        put(
            "grpc_request_timeout_ms",
            self.grpc_request_timeout_ms.to_string(),
        );
        put(
            "grpc_max_message_bytes",
            self.grpc_max_message_bytes.to_string(),
        );
        put(
            "grpc_concurrency_per_connection",
            self.grpc_concurrency_per_connection.to_string(),
        );
        put(
            "grpc_max_connections",
            self.grpc_max_connections.to_string(),
        );
        put(
            "max_streams_per_token",
            self.max_streams_per_token.to_string(),
        );
        put(
            "maintenance_interval_ms",
            self.maintenance_interval_ms.to_string(),
        );
        put("shutdown_grace_ms", self.shutdown_grace_ms.to_string());
        put(
            "log_format",
            match self.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }
            .to_string(),
        );
        put("log_level", self.log_level.clone());
        v
    }

    /// `self` with the `INTENTKIT_SERVER_<KEY>` variables `env` has applied on top (what the
    /// sandbox, which has no file, honours).
    pub fn with_env(self, env: impl Fn(&str) -> Option<String>) -> Result<Self, ServerConfigError> {
        self.with_values(&ServerArgs::values_from_env(env))
    }

    /// `self` with these option values on top (a command line's, say), validated.
    pub fn with_values(self, values: &Values) -> Result<Self, ServerConfigError> {
        RawServer::from_values(values)?.apply(self)
    }
}

impl Config {
    /// Parses the file's text, with `env` (a lookup by variable name) taking precedence.
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ServerConfigError> {
        Self::from_toml_with(text, &env, &Values::new())
    }

    /// As [`Config::from_toml`], with `over` (a command line's option values) taking
    /// precedence over the environment, which takes it over the file.
    pub fn from_toml_with(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
        over: &Values,
    ) -> Result<Self, ServerConfigError> {
        let providers = ProvidersConfig::from_toml_with(text, &env, &["server", "engine"])?;
        let engine = EngineSettings::from_toml(text)?;
        let mut values = file_values(text)?;
        values.extend(ServerArgs::values_from_env(&env));
        values.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
        let s = RawServer::from_values(&values)?.apply(ServerConfig::default())?;
        if s.auth_tokens.is_empty() && !s.allow_unauthenticated {
            return Err(invalid(
                "auth_tokens",
                "no token configured; set auth_tokens (or INTENTKIT_SERVER_AUTH_TOKENS), or \
                 allow_unauthenticated = true for local development",
            ));
        }
        Ok(Config {
            server: s,
            engine,
            providers,
        })
    }

    /// Reads a file, with `over` (a command line's option values) and then the process
    /// environment taking precedence.
    pub fn load(path: &std::path::Path, over: &Values) -> Result<Self, ServerConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ServerConfigError::Providers(ConfigError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        })?;
        Self::from_toml_with(&text, |k| std::env::var(k).ok(), over)
    }
}

mod raw;
#[cfg(test)]
mod tests;
