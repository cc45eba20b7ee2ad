//! Every `[server]` option, defined once: its key in the file, its flag, its environment
//! variable and its help all come from [`ServerArgs`], so that `--help`, the errors and the
//! variable names cannot drift apart. Values are read as text from the file, the environment
//! and the command line alike, and validated in one place ([`crate::config`]), whose errors
//! name the option and never repeat its value.

use std::collections::BTreeMap;

use clap::Args;

/// The `[server]` options. Each is optional everywhere; what is not set keeps its default.
/// The file's key is the field's name, the flag the same with `-`, the variable
/// `INTENTKIT_SERVER_<KEY>`. Precedence: flag, then environment, then file.
#[derive(Args, Clone, Debug, Default)]
#[command(
    next_help_heading = "[server] options: the file's key, this flag, or INTENTKIT_SERVER_<KEY>"
)]
pub struct ServerArgs {
    /// gRPC listen address (IntentService, health, reflection)
    #[arg(long, env = "INTENTKIT_SERVER_GRPC_ADDR", value_name = "HOST:PORT")]
    pub grpc_addr: Option<String>,
    /// Provider-facing HTTP: POST /webhooks/{provider}/{account}, /callbacks/{provider}/{account}
    #[arg(long, env = "INTENTKIT_SERVER_HTTP_ADDR", value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// Prometheus GET /metrics; "" turns it off
    #[arg(long, env = "INTENTKIT_SERVER_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// SQLite file (relative to the working directory), or postgres://user@host:port/db for
    /// several instances on one PostgreSQL (TLS with ?sslmode=require; keep a password out of
    /// the file: set INTENTKIT_SERVER_DATABASE)
    #[arg(long, env = "INTENTKIT_SERVER_DATABASE", value_name = "PATH|URL")]
    pub database: Option<String>,
    /// PostgreSQL: connections this instance keeps at most
    #[arg(
        long,
        env = "INTENTKIT_SERVER_DATABASE_MAX_CONNECTIONS",
        value_name = "N"
    )]
    pub database_max_connections: Option<String>,
    /// Bearer tokens accepted on gRPC, comma-separated (a list in the file). Required unless
    /// allow_unauthenticated
    #[arg(long, env = "INTENTKIT_SERVER_AUTH_TOKENS", value_name = "TOKEN,...")]
    pub auth_tokens: Option<String>,
    /// Serve gRPC without tokens (local development only)
    #[arg(
        long,
        env = "INTENTKIT_SERVER_ALLOW_UNAUTHENTICATED",
        value_name = "true|false"
    )]
    pub allow_unauthenticated: Option<String>,
    /// PEM certificate chain: gRPC over TLS (rustls) when set with tls_key
    #[arg(long, env = "INTENTKIT_SERVER_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<String>,
    /// PEM private key, with tls_cert
    #[arg(long, env = "INTENTKIT_SERVER_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<String>,
    /// Largest provider request body accepted, bytes (413 past it)
    #[arg(
        long,
        env = "INTENTKIT_SERVER_WEBHOOK_BODY_LIMIT",
        value_name = "BYTES"
    )]
    pub webhook_body_limit: Option<String>,
    /// Receiver and metrics: a connection must send a request's headers within this, from
    /// when it opens or its previous answer was sent (idle keep-alive included); closed past it
    #[arg(
        long,
        env = "INTENTKIT_SERVER_HTTP_HEADER_READ_TIMEOUT_MS",
        value_name = "MS"
    )]
    pub http_header_read_timeout_ms: Option<String>,
    /// A request body must arrive whole within this, from its headers; 408 and the connection
    /// closed past it
    #[arg(
        long,
        env = "INTENTKIT_SERVER_HTTP_BODY_READ_TIMEOUT_MS",
        value_name = "MS"
    )]
    pub http_body_read_timeout_ms: Option<String>,
    /// A request must be answered within this, from its headers (body, queueing and the
    /// engine included); 503 past it, which the provider retries. At least the body's
    #[arg(
        long,
        env = "INTENTKIT_SERVER_HTTP_REQUEST_TIMEOUT_MS",
        value_name = "MS"
    )]
    pub http_request_timeout_ms: Option<String>,
    /// Open connections per HTTP listener; past it, new ones wait in the kernel's accept queue
    #[arg(long, env = "INTENTKIT_SERVER_HTTP_MAX_CONNECTIONS", value_name = "N")]
    pub http_max_connections: Option<String>,
    /// Requests the receiver works on at once (bodies read); the rest wait their turn
    #[arg(
        long,
        env = "INTENTKIT_SERVER_HTTP_CONCURRENCY_LIMIT",
        value_name = "N"
    )]
    pub http_concurrency_limit: Option<String>,
    /// A gRPC call must be answered within this (a stream: opened); CANCELLED past it
    #[arg(
        long,
        env = "INTENTKIT_SERVER_GRPC_REQUEST_TIMEOUT_MS",
        value_name = "MS"
    )]
    pub grpc_request_timeout_ms: Option<String>,
    /// Largest gRPC request or response message; OUT_OF_RANGE past it
    #[arg(
        long,
        env = "INTENTKIT_SERVER_GRPC_MAX_MESSAGE_BYTES",
        value_name = "BYTES"
    )]
    pub grpc_max_message_bytes: Option<String>,
    /// Calls served at once on one gRPC connection; the rest queue
    #[arg(
        long,
        env = "INTENTKIT_SERVER_GRPC_CONCURRENCY_PER_CONNECTION",
        value_name = "N"
    )]
    pub grpc_concurrency_per_connection: Option<String>,
    /// Open gRPC connections; past it, new ones wait in the kernel's accept queue
    #[arg(long, env = "INTENTKIT_SERVER_GRPC_MAX_CONNECTIONS", value_name = "N")]
    pub grpc_max_connections: Option<String>,
    /// Event streams (StreamEvents) one token may hold open at once, over all its connections;
    /// RESOURCE_EXHAUSTED / TOO_MANY_STREAMS past it
    #[arg(long, env = "INTENTKIT_SERVER_MAX_STREAMS_PER_TOKEN", value_name = "N")]
    pub max_streams_per_token: Option<String>,
    /// How often each provider account's maintenance pass runs
    #[arg(
        long,
        env = "INTENTKIT_SERVER_MAINTENANCE_INTERVAL_MS",
        value_name = "MS"
    )]
    pub maintenance_interval_ms: Option<String>,
    /// On SIGTERM, how long in-flight requests and passes may take to finish
    #[arg(long, env = "INTENTKIT_SERVER_SHUTDOWN_GRACE_MS", value_name = "MS")]
    pub shutdown_grace_ms: Option<String>,
    /// Log lines as "text" or "json" (one object per line)
    #[arg(long, env = "INTENTKIT_SERVER_LOG_FORMAT", value_name = "text|json")]
    pub log_format: Option<String>,
    /// The most verbose level logged: error, warn, info, debug or trace
    #[arg(long, env = "INTENTKIT_SERVER_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// Option values as text, by key.
pub type Values = BTreeMap<String, String>;

impl ServerArgs {
    /// Every option's key (the file's key), in definition order.
    pub fn keys() -> Vec<String> {
        command()
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect()
    }

    /// The options a command line set (flags, or their variables), as text, by key. The
    /// defaults `--help` shows are not among them: a file's value wins over a default.
    pub fn values_from(matches: &clap::ArgMatches) -> Values {
        Self::keys()
            .into_iter()
            .filter(|k| matches.value_source(k) != Some(clap::parser::ValueSource::DefaultValue))
            .filter_map(|k| {
                let v = matches.get_one::<String>(&k).cloned();
                v.map(|v| (k, v))
            })
            .collect()
    }

    /// `cmd` with each option's default (as `values` gives them) shown in its help, and no
    /// variable's value shown in it (a token may be set).
    pub fn with_defaults(cmd: clap::Command, defaults: &Values) -> clap::Command {
        let mut cmd = cmd.mut_args(|a| a.hide_env_values(true));
        for key in Self::keys() {
            let default = defaults.get(&key).cloned();
            let file = format!("[file: {key}]");
            cmd = cmd.mut_arg(&key, move |a| {
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                let a = a.help(format!("{help}\n{file}"));
                match default {
                    Some(d) => a.default_value(d),
                    None => a,
                }
            });
        }
        cmd
    }

    /// The options set by the variables `env` knows (a lookup by name), as text. The names
    /// are the ones the definition declares.
    pub fn values_from_env(env: impl Fn(&str) -> Option<String>) -> Values {
        command()
            .get_arguments()
            .filter_map(|a| {
                let var = a.get_env()?.to_str()?;
                env(var).map(|v| (a.get_id().to_string(), v))
            })
            .collect()
    }

    /// The variable that sets `key`.
    pub fn env_var(key: &str) -> Option<String> {
        command()
            .get_arguments()
            .find(|a| a.get_id() == key)
            .and_then(|a| a.get_env().and_then(|e| e.to_str()).map(str::to_string))
    }
}

/// The clap command of the options alone (its help is part of `intentkitd --help`).
pub fn command() -> clap::Command {
    ServerArgs::augment_args(clap::Command::new("intentkitd"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_its_flag_and_its_variable() {
        let cmd = command();
        for a in cmd.get_arguments() {
            let key = a.get_id().as_str();
            assert_eq!(a.get_long(), Some(key.replace('_', "-").as_str()), "{key}");
            let env = a.get_env().and_then(|e| e.to_str()).unwrap_or_default();
            assert_eq!(
                env,
                format!("INTENTKIT_SERVER_{}", key.to_ascii_uppercase())
            );
        }
        let matches = command()
            .no_binary_name(true)
            .try_get_matches_from(["--grpc-addr", "127.0.0.1:1", "--log-level=debug"])
            .unwrap();
        let v = ServerArgs::values_from(&matches);
        assert_eq!(v.get("grpc_addr").map(String::as_str), Some("127.0.0.1:1"));
        assert_eq!(v.get("log_level").map(String::as_str), Some("debug"));
        assert_eq!(
            ServerArgs::env_var("webhook_body_limit").as_deref(),
            Some("INTENTKIT_SERVER_WEBHOOK_BODY_LIMIT")
        );
    }
}
