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
