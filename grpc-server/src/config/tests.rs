//! The configuration's rules: precedence, validation, and that no error repeats a value.
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
        let e = Config::from_toml(FILE, |k| (k == name).then(|| value.to_string())).unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("4471"), "{name}: {shown}");
    }
    for (file, key) in [
        (
            "[server]\nallow_unauthenticated = \"tok_live_4471\"\n",
            "allow_unauthenticated",
        ),
        (
            "[server]\nwebhook_body_limit = \"tok_live_4471\"\nauth_tokens = [\"t\"]\n",
            "webhook_body_limit",
        ),
        (
            "[server]\nauth_tokens = [1, \"tok_live_4471\"]\n",
            "auth_tokens",
        ),
        (
            "[server]\nlog_level = { tok = \"tok_live_4471\" }\n",
            "log_level",
        ),
    ] {
        let e = Config::from_toml(file, env(&[])).unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("4471"), "{file}: {shown}");
        assert!(shown.contains(key), "{shown}");
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
        let e = Config::from_toml(minimal, |k| (k == var).then(|| value.to_string())).unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(shown.contains(field), "{name}: {shown}");
        if value != "0" {
            assert!(!shown.contains(value), "{name} repeated its value: {shown}");
        }
    }
}

#[test]
fn every_option_the_definition_declares_is_read_and_nothing_else() {
    let mut declared = ServerArgs::keys();
    declared.sort();
    let mut read: Vec<String> = super::raw::OPTION_KEYS
        .iter()
        .map(|k| k.to_string())
        .collect();
    read.sort();
    assert_eq!(declared, read);
    // A file's key that no option has is refused by name.
    let e = Config::from_toml("[server]\nauth_tokenz = [\"t\"]\n", env(&[])).unwrap_err();
    assert!(
        matches!(e, ServerConfigError::UnknownOption(ref k) if k == "auth_tokenz"),
        "{e}"
    );
    // The engine's table is read beside the server's.
    let c = Config::from_toml(
        "[server]\nauth_tokens = [\"t\"]\n[engine]\nrecover_after_ms = 1234\n",
        env(&[]),
    )
    .unwrap();
    assert_eq!(c.engine.recover_after_ms, 1_234);
}

#[test]
fn every_option_with_a_default_shows_it_and_a_token_with_a_comma_is_refused() {
    let shown: Vec<String> = ServerConfig::default().as_values().into_keys().collect();
    let mut expected: Vec<String> = ServerArgs::keys()
        .into_iter()
        .filter(|k| !["auth_tokens", "tls_cert", "tls_key"].contains(&k.as_str()))
        .collect();
    expected.sort();
    assert_eq!(shown, expected, "options without a default in --help");
    let e = Config::from_toml("[server]\nauth_tokens = [\"a,b\"]\n", env(&[])).unwrap_err();
    assert!(e.to_string().contains("auth_tokens"), "{e}");
}

#[test]
fn the_defaults_help_shows_are_the_defaults() {
    let d = ServerConfig::default();
    let again = ServerConfig {
        grpc_addr: SocketAddr::from(([10, 0, 0, 1], 1)),
        log_level: "trace".into(),
        webhook_body_limit: 1_024,
        ..ServerConfig::default()
    }
    .with_values(&d.as_values())
    .unwrap();
    assert_eq!(format!("{again:?}"), format!("{d:?}"));
}

#[test]
fn the_example_config_is_accepted() {
    let text = include_str!("../../../docs/intentkit.example.toml");
    let c = Config::from_toml(text, env(&[])).unwrap();
    assert_eq!(c.providers.pientegra.len(), 1);
    assert_eq!(c.providers.decentro.len(), 1);
    // Every [server] option and [engine] setting is in the example and in docs/config.md.
    let doc = include_str!("../../../docs/config.md");
    for key in ServerArgs::keys()
        .iter()
        .map(String::as_str)
        .chain(EngineSettings::KEYS.iter().copied())
    {
        assert!(text.contains(key), "{key} is not in the example config");
        assert!(
            doc.contains(&format!("`{key}`")),
            "{key} is not in docs/config.md"
        );
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
