//! `[server]` from text to typed: the file's table as option values, each value parsed and
//! validated over a base. Errors name the option and never repeat its value.

use std::net::SocketAddr;
use std::path::PathBuf;

use intentkit_core::provider::Secret;
use intentkit_core::provider::config::toml_error;
use serde::Deserialize;

use super::{LogFormat, ServerConfig, ServerConfigError};
use crate::options::{ServerArgs, Values};

/// `[server]`, typed: every field optional. Built from the options' text values
/// ([`RawServer::from_values`]), then [`RawServer::apply`] validates it over a base.
#[derive(Default)]
pub(super) struct RawServer {
    grpc_addr: Option<String>,
    http_addr: Option<String>,
    metrics_addr: Option<String>,
    database: Option<String>,
    database_max_connections: Option<u64>,
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
    max_streams_per_token: Option<u64>,
    maintenance_interval_ms: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    log_format: Option<String>,
    log_level: Option<String>,
}

/// The file's `[server]` table as text values by key. A number, a boolean or a list of text
/// is written as the command line would give it; anything else is refused, by key.
pub(super) fn file_values(text: &str) -> Result<Values, ServerConfigError> {
    #[derive(Deserialize)]
    struct RawFile {
        #[serde(default)]
        server: toml::Table,
    }
    let file: RawFile =
        toml::from_str(text).map_err(|e| ServerConfigError::Providers(toml_error(text, &e)))?;
    let keys = ServerArgs::keys();
    let mut values = Values::new();
    for (key, value) in file.server {
        let Some(known) = keys.iter().find(|k| **k == key) else {
            return Err(ServerConfigError::UnknownOption(key));
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    // A list travels as comma-separated text, as on the command line.
                    toml::Value::String(s) if s.contains(',') => Err(ServerConfigError::Invalid {
                        field: static_key(known),
                        reason: "an item cannot contain a comma".into(),
                    }),
                    toml::Value::String(s) => Ok(s),
                    _ => Err(ServerConfigError::Invalid {
                        field: static_key(known),
                        reason: "must be a list of text".into(),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            _ => {
                return Err(ServerConfigError::Invalid {
                    field: static_key(known),
                    reason: "must be text, a whole number, true or false, or a list of text".into(),
                });
            }
        };
        values.insert(key, text);
    }
    Ok(values)
}

/// The `'static` name of a known option (errors name options by `&'static str`).
fn static_key(key: &str) -> &'static str {
    OPTION_KEYS
        .iter()
        .find(|k| **k == key)
        .copied()
        .unwrap_or("option")
}

/// The options [`RawServer::from_values`] reads; a test checks it is exactly the definition's.
pub(super) const OPTION_KEYS: &[&str] = &[
    "grpc_addr",
    "http_addr",
    "metrics_addr",
    "database",
    "database_max_connections",
    "auth_tokens",
    "allow_unauthenticated",
    "tls_cert",
    "tls_key",
    "webhook_body_limit",
    "http_header_read_timeout_ms",
    "http_body_read_timeout_ms",
    "http_request_timeout_ms",
    "http_max_connections",
    "http_concurrency_limit",
    "grpc_request_timeout_ms",
    "grpc_max_message_bytes",
    "grpc_concurrency_per_connection",
    "grpc_max_connections",
    "max_streams_per_token",
    "maintenance_interval_ms",
    "shutdown_grace_ms",
    "log_format",
    "log_level",
];

pub(super) fn invalid(field: &'static str, reason: impl Into<String>) -> ServerConfigError {
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
    /// The options' text values, typed. A value that does not parse is refused by its option,
    /// never repeated.
    pub(super) fn from_values(values: &Values) -> Result<Self, ServerConfigError> {
        let mut r = RawServer::default();
        for (key, v) in values {
            let field = static_key(key);
            let num = || number(field, v.clone()).map(Some);
            match key.as_str() {
                "grpc_addr" => r.grpc_addr = Some(v.clone()),
                "http_addr" => r.http_addr = Some(v.clone()),
                "metrics_addr" => r.metrics_addr = Some(v.clone()),
                "database" => r.database = Some(v.clone()),
                "database_max_connections" => r.database_max_connections = num()?,
                "auth_tokens" => {
                    r.auth_tokens = Some(v.split(',').map(|t| t.trim().to_string()).collect());
                }
                "allow_unauthenticated" => {
                    r.allow_unauthenticated = Some(
                        v.parse::<bool>()
                            .map_err(|_| invalid(field, "must be true or false"))?,
                    );
                }
                "tls_cert" => r.tls_cert = Some(v.clone()),
                "tls_key" => r.tls_key = Some(v.clone()),
                "webhook_body_limit" => r.webhook_body_limit = num()?,
                "http_header_read_timeout_ms" => r.http_header_read_timeout_ms = num()?,
                "http_body_read_timeout_ms" => r.http_body_read_timeout_ms = num()?,
                "http_request_timeout_ms" => r.http_request_timeout_ms = num()?,
                "http_max_connections" => r.http_max_connections = num()?,
                "http_concurrency_limit" => r.http_concurrency_limit = num()?,
                "grpc_request_timeout_ms" => r.grpc_request_timeout_ms = num()?,
                "grpc_max_message_bytes" => r.grpc_max_message_bytes = num()?,
                "grpc_concurrency_per_connection" => r.grpc_concurrency_per_connection = num()?,
                "grpc_max_connections" => r.grpc_max_connections = num()?,
                "max_streams_per_token" => r.max_streams_per_token = num()?,
                "maintenance_interval_ms" => r.maintenance_interval_ms = num()?,
                "shutdown_grace_ms" => r.shutdown_grace_ms = num()?,
                "log_format" => r.log_format = Some(v.clone()),
                "log_level" => r.log_level = Some(v.clone()),
                other => return Err(ServerConfigError::UnknownOption(other.to_string())),
            }
        }
        Ok(r)
    }

    /// `base` with every field that is set here, validated.
    pub(super) fn apply(self, base: ServerConfig) -> Result<ServerConfig, ServerConfigError> {
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
            s.database = intentkit_core::store::Database::parse(&d)
                .map_err(|reason| invalid("database", reason))?;
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
            "database_max_connections",
            self.database_max_connections,
            1,
            ONE,
        )? {
            s.database_max_connections = count(n);
        }
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
        if let Some(n) = at_least("max_streams_per_token", self.max_streams_per_token, 1, ONE)? {
            s.max_streams_per_token = count(n);
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
