//! Loading provider accounts: precedence, validation, and that no error repeats a value.
use super::*;

const FILE: &str = r#"
[pientegra.tr-main]
base_url = "https://api.pientegra.example/api/v1/"
api_key = "pk_file_key"
webhook_secret = "whsec_file"

[pientegra.tr-main.http]
request_timeout_ms = 3000

[decentro.in-main]
base_url = "https://in.staging.decentro.tech"
client_id = "cid"
client_secret = "csecret"
module_secret = "msecret"
"#;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

#[test]
fn loads_several_providers_with_env_overrides_for_secrets() {
    let c = ProvidersConfig::from_toml(
        FILE,
        env(&[
            ("INTENTKIT_PIENTEGRA_TR_MAIN_API_KEY", "pk_env_key"),
            ("INTENTKIT_DECENTRO_IN_MAIN_PROVIDER_SECRET", "psecret"),
        ]),
    )
    .unwrap();
    let p = &c.pientegra[&AccountName::new("tr-main").unwrap()];
    assert_eq!(p.api_key.expose(), "pk_env_key", "env wins over the file");
    assert_eq!(p.webhook.current.expose(), "whsec_file");
    assert!(p.webhook.previous.is_none());
    assert_eq!(p.base_url, "https://api.pientegra.example/api/v1");
    assert_eq!(p.http.request_timeout_ms, 3_000);
    assert_eq!(p.http.connect_timeout_ms, 2_000);
    let d = &c.decentro[&AccountName::new("in-main").unwrap()];
    assert_eq!(d.provider_secret.expose(), "psecret");
}

#[test]
fn a_missing_secret_names_the_variable_that_would_provide_it() {
    let err = ProvidersConfig::from_toml(FILE, env(&[])).unwrap_err();
    assert_eq!(
        err,
        ConfigError::MissingSecret {
            provider: Provider::Decentro,
            account: "in-main".into(),
            field: "provider_secret",
            env: "INTENTKIT_DECENTRO_IN_MAIN_PROVIDER_SECRET".into(),
        }
    );
    assert!(
        err.to_string()
            .contains("INTENTKIT_DECENTRO_IN_MAIN_PROVIDER_SECRET")
    );
}

#[test]
fn a_parse_error_gives_the_position_but_never_the_secret() {
    let text = "[pientegra.tr-main]\nbase_url = \"https://x\"\napi_key = \"pk_live_SECRET_VALUE\n";
    let err = ProvidersConfig::from_toml(text, env(&[])).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("SECRET_VALUE"), "{shown}");
    assert!(matches!(err, ConfigError::Parse { line: 3, .. }), "{err:?}");
}

#[test]
fn a_broken_multi_line_value_is_never_taken_for_a_key() {
    // Found by fuzzing: the line an error points at may be inside a value.
    for text in [
        "[pientegra.tr-main]\nbase_url = \"https://x\"\napi_key = \"\"\"\nsk_tok_99=\\q\"\"\"\n",
        "[server]\nauth_tokens = [\n  \"a\",\n  tok_99=1\n]\n",
    ] {
        let err = ProvidersConfig::from_toml_with(text, env(&[]), &["server"]).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("tok_99"), "{shown}");
    }
}

#[test]
fn a_wrongly_typed_secret_is_named_by_its_key_and_never_repeated() {
    for text in [
        "[pientegra.a]\nbase_url = \"https://x\"\napi_key = 77012345\nwebhook_secret = \"w\"\n",
        "[pientegra.a]\nbase_url = \"https://x\"\napi_key = [\"tok_77012345\"]\n",
        "[decentro.a]\nbase_url = \"https://x\"\nclient_id = { v = \"tok_77012345\" }\n",
        "[pientegra.a]\nbase_url = \"https://x\"\nhttp = \"tok_77012345\"\n",
        "[pientegra.a]\nbase_url = \"https://x\"\n[pientegra.a.http]\nmax_retries = \"tok_77012345\"\n",
    ] {
        let err = ProvidersConfig::from_toml(text, env(&[])).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("77012345"), "{shown}");
        assert!(
            matches!(err, ConfigError::Parse { line, .. } if line >= 3),
            "{err:?}"
        );
    }
    let err = ProvidersConfig::from_toml(
        "[pientegra.a]\nbase_url = \"https://x\"\napi_key = 77012345\n",
        env(&[]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("api_key"), "{err}");
    assert_eq!(
        redact_values(r#"invalid type: string "tok_1", expected a sequence"#),
        "invalid type: string, expected a sequence"
    );
    assert_eq!(
        redact_values("unknown variant `tok_1`, expected `text` or `json`"),
        "unknown variant, expected `text` or `json`"
    );
}

#[test]
fn a_previous_webhook_secret_needs_the_end_of_its_window() {
    let now = Timestamp::parse_rfc3339("2026-11-29T12:00:00Z").unwrap();
    let with = |until: &str| {
        format!(
            "[pientegra.a]\nbase_url = \"https://x\"\napi_key = \"k\"\nwebhook_secret = \"w\"\n\
             previous_webhook_secret = \"old\"\n{until}"
        )
    };
    let err = ProvidersConfig::from_toml_at(&with(""), env(&[]), &[], now).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Field {
                field: "previous_webhook_secret_until",
                ..
            }
        ),
        "{err:?}"
    );
    let far = with("previous_webhook_secret_until = \"2026-12-31T00:00:00Z\"\n");
    let err = ProvidersConfig::from_toml_at(&far, env(&[]), &[], now).unwrap_err();
    assert!(err.to_string().contains("7 days"), "{err}");
    let ok = with("previous_webhook_secret_until = \"2026-11-29T12:30:00Z\"\n");
    let c = ProvidersConfig::from_toml_at(&ok, env(&[]), &[], now).unwrap();
    let p = c.pientegra[&AccountName::new("a").unwrap()]
        .webhook
        .previous
        .clone()
        .unwrap();
    assert_eq!(p.secret.expose(), "old");
    assert_eq!(p.until, now.plus_millis(30 * 60_000));
    // The window's end may come from the environment, like the secret.
    let c = ProvidersConfig::from_toml_at(
        &with(""),
        env(&[(
            "INTENTKIT_PIENTEGRA_A_PREVIOUS_WEBHOOK_SECRET_UNTIL",
            "2026-11-29T12:10:00Z",
        )]),
        &[],
        now,
    )
    .unwrap();
    assert!(
        c.pientegra[&AccountName::new("a").unwrap()]
            .webhook
            .previous
            .is_some()
    );
}

#[test]
fn account_names_that_read_the_same_environment_variables_are_refused() {
    let text = "[pientegra.tr-main]\nbase_url = \"https://x\"\napi_key = \"k\"\nwebhook_secret = \"w\"\n\
                [pientegra.\"TR.main\"]\nbase_url = \"https://y\"\napi_key = \"k\"\nwebhook_secret = \"w\"\n";
    let err = ProvidersConfig::from_toml(text, env(&[])).unwrap_err();
    assert!(
        matches!(err, ConfigError::AmbiguousAccounts { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("INTENTKIT_PIENTEGRA_TR_MAIN"),
        "{err}"
    );
    // The same name under two providers is fine: their variables differ.
    let text = "[pientegra.main]\nbase_url = \"https://x\"\napi_key = \"k\"\nwebhook_secret = \"w\"\n\
                [decentro.main]\nbase_url = \"https://y\"\nclient_id = \"a\"\nclient_secret = \"b\"\nmodule_secret = \"c\"\nprovider_secret = \"d\"\n";
    assert!(ProvidersConfig::from_toml(text, env(&[])).is_ok());
}

#[test]
fn confirm_callbacks_false_is_refused() {
    let text = "[decentro.a]\nbase_url = \"https://y\"\nclient_id = \"a\"\nclient_secret = \"b\"\nmodule_secret = \"c\"\nprovider_secret = \"d\"\nconfirm_callbacks = false\n";
    let err = ProvidersConfig::from_toml(text, env(&[])).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Field {
                field: "confirm_callbacks",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(ProvidersConfig::from_toml(&text.replace("false", "true"), env(&[])).is_ok());
}

#[test]
fn debug_output_of_a_loaded_config_has_no_secrets() {
    let c = ProvidersConfig::from_toml(
        FILE,
        env(&[("INTENTKIT_DECENTRO_IN_MAIN_PROVIDER_SECRET", "psecret_zz")]),
    )
    .unwrap();
    let shown = format!("{c:?}");
    for secret in [
        "pk_file_key",
        "whsec_file",
        "cid",
        "csecret",
        "msecret",
        "psecret_zz",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}

#[test]
fn unknown_fields_bad_urls_and_bad_account_names_are_refused() {
    let typo = "[pientegra.a]\nbase_url = \"https://x\"\napi_kye = \"k\"\n";
    assert!(matches!(
        ProvidersConfig::from_toml(typo, env(&[])),
        Err(ConfigError::Parse { .. })
    ));
    let url = "[pientegra.a]\nbase_url = \"ftp://x\"\napi_key = \"k\"\nwebhook_secret = \"w\"\n";
    assert!(matches!(
        ProvidersConfig::from_toml(url, env(&[])),
        Err(ConfigError::BaseUrl { .. })
    ));
    let name =
        "[pientegra.\"a b\"]\nbase_url = \"https://x\"\napi_key = \"k\"\nwebhook_secret = \"w\"\n";
    assert!(matches!(
        ProvidersConfig::from_toml(name, env(&[])),
        Err(ConfigError::AccountName(_))
    ));
    let section = "[pientgra.a]\nbase_url = \"https://x\"\n[server]\nx = 1\n";
    assert_eq!(
        ProvidersConfig::from_toml_with(section, env(&[]), &["server"]).unwrap_err(),
        ConfigError::UnknownKey("pientgra".into())
    );
    assert_eq!(
        ProvidersConfig::from_toml("[server]\nx = 1\n", env(&[])).unwrap_err(),
        ConfigError::UnknownKey("server".into())
    );
    assert!(ProvidersConfig::from_toml_with("[server]\nx = 1\n", env(&[]), &["server"]).is_ok());
}
