//! The server's configuration: one TOML file (`[server]` plus the provider accounts), with
//! `INTENTKIT_SERVER_<FIELD>` environment variables taking precedence over the file, so that
//! secrets (tokens, provider keys) can stay out of it.

use std::net::SocketAddr;
use std::path::PathBuf;

use intentkit_core::provider::Secret;
use intentkit_core::provider::config::{ConfigError, ProvidersConfig};
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
    webhook_body_limit: Option<usize>,
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

impl Config {
    /// Parses the file's text, with `env` (a lookup by variable name) taking precedence.
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ServerConfigError> {
        let providers = ProvidersConfig::from_toml_with(text, &env, &["server"])?;
        // The provider parser has already reported any syntax error with its position.
        let raw: RawFile = toml::from_str(text).map_err(|e| invalid("table", e.message()))?;
        let raw = raw.server;
        let var = |name: &str| env(&format!("INTENTKIT_SERVER_{}", name.to_ascii_uppercase()));
        let mut s = ServerConfig::default();

        let addr = |field: &'static str, file: Option<String>| -> Result<_, ServerConfigError> {
            match var(field).or(file) {
                None => Ok(None),
                Some(v) if v.is_empty() => Ok(Some(None)),
                Some(v) => v
                    .parse::<SocketAddr>()
                    .map(|a| Some(Some(a)))
                    .map_err(|e| invalid(field, format!("{v:?} is not host:port ({e})"))),
            }
        };
        if let Some(a) = addr("grpc_addr", raw.grpc_addr)? {
            s.grpc_addr = a.ok_or_else(|| invalid("grpc_addr", "must be set"))?;
        }
        if let Some(a) = addr("http_addr", raw.http_addr)? {
            s.http_addr = a.ok_or_else(|| invalid("http_addr", "must be set"))?;
        }
        if let Some(a) = addr("metrics_addr", raw.metrics_addr)? {
            s.metrics_addr = a;
        }
        if let Some(d) = var("database").or(raw.database) {
            s.database = PathBuf::from(d);
        }
        let tokens = match var("auth_tokens") {
            Some(v) => v.split(',').map(|t| t.trim().to_string()).collect(),
            None => raw.auth_tokens.unwrap_or_default(),
        };
        s.auth_tokens = tokens
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .collect();
        let flag = |field: &'static str, file: Option<bool>| -> Result<_, ServerConfigError> {
            match var(field) {
                Some(v) => v
                    .parse::<bool>()
                    .map(Some)
                    .map_err(|_| invalid(field, "must be true or false")),
                None => Ok(file),
            }
        };
        if let Some(b) = flag("allow_unauthenticated", raw.allow_unauthenticated)? {
            s.allow_unauthenticated = b;
        }
        s.tls_cert = var("tls_cert")
            .or(raw.tls_cert)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        s.tls_key = var("tls_key")
            .or(raw.tls_key)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            return Err(invalid(
                "tls_cert",
                "tls_cert and tls_key must be set together",
            ));
        }
        let number = |field: &'static str, file: Option<u64>| -> Result<_, ServerConfigError> {
            match var(field) {
                Some(v) => v
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| invalid(field, format!("{v:?} is not a whole number"))),
                None => Ok(file),
            }
        };
        if let Some(n) = number(
            "webhook_body_limit",
            raw.webhook_body_limit.map(|n| n as u64),
        )? {
            if n < 1_024 {
                return Err(invalid("webhook_body_limit", "must be at least 1024"));
            }
            s.webhook_body_limit = n as usize;
        }
        if let Some(n) = number("maintenance_interval_ms", raw.maintenance_interval_ms)? {
            if n < 100 {
                return Err(invalid("maintenance_interval_ms", "must be at least 100"));
            }
            s.maintenance_interval_ms = n;
        }
        if let Some(n) = number("shutdown_grace_ms", raw.shutdown_grace_ms)? {
            s.shutdown_grace_ms = n;
        }
        if let Some(f) = var("log_format").or(raw.log_format) {
            s.log_format = match f.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(invalid("log_format", "must be \"text\" or \"json\"")),
            };
        }
        if let Some(l) = var("log_level").or(raw.log_level) {
            if !["error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
                return Err(invalid(
                    "log_level",
                    "must be error, warn, info, debug or trace",
                ));
            }
            s.log_level = l;
        }
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
