//! Provider accounts: base URL, credentials, webhook secrets and timeouts, for several accounts
//! per provider, from a TOML file with environment overrides for every secret.
//!
//! ```toml
//! [pientegra.tr-main]
//! base_url = "https://api.pientegra.example/api/v1"
//! api_key = "..."                 # or INTENTKIT_PIENTEGRA_TR_MAIN_API_KEY
//! webhook_secret = "whsec_..."    # or INTENTKIT_PIENTEGRA_TR_MAIN_WEBHOOK_SECRET
//! previous_webhook_secret = "whsec_..."   # optional, during a rotation, with:
//! previous_webhook_secret_until = "2026-11-29T12:30:00Z"  # the end of its window
//!
//! [decentro.in-main]
//! base_url = "https://in.staging.decentro.tech"
//! client_id = "..."               # each also INTENTKIT_DECENTRO_IN_MAIN_<FIELD>
//! client_secret = "..."
//! module_secret = "..."
//! provider_secret = "..."
//! ```
//!
//! Decentro callbacks are unsigned and always confirmed with the status API (`docs/trust.md`);
//! the old `confirm_callbacks` key is accepted only as `true`.
//!
//! The environment wins over the file, so secrets can stay out of it. A TOML error reports a
//! line, a column and the key, never a value (the parser's message is redacted: it quotes
//! what it did not expect, which may be a secret). Account names that would read the same
//! environment variables (`tr-main`, `tr.main`, `TR_MAIN`) are refused.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::Secret;
pub use super::input::redact_values;
use super::pientegra::{PreviousSecret, WebhookSecrets};
use crate::types::{AccountName, Provider, Timestamp};

/// The furthest ahead a previous webhook secret's window may end: a rotation drains in minutes,
/// so a longer window is a mistake (or an old secret kept alive on purpose).
pub const ROTATION_WINDOW_MAX_MS: i64 = 7 * 24 * 60 * 60 * 1_000;

/// Timeouts and retries of one account's HTTP client.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// TCP + TLS connect timeout.
    pub connect_timeout_ms: u64,
    /// Whole-request timeout, per attempt.
    pub request_timeout_ms: u64,
    /// Retries after the first attempt, where a retry is safe.
    pub max_retries: u32,
    /// The first backoff; each retry doubles it (with full jitter), up to 30 s.
    pub retry_base_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout_ms: 2_000,
            request_timeout_ms: 10_000,
            max_retries: 4,
            retry_base_ms: 250,
        }
    }
}

impl HttpSettings {
    /// Connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Per-attempt timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// One Pientegra account.
#[derive(Clone, Debug)]
pub struct PientegraAccount {
    /// The account's name in intentkit.
    pub name: AccountName,
    /// e.g. `https://api.pientegra.example/api/v1`.
    pub base_url: String,
    /// Bearer API key.
    pub api_key: Secret,
    /// Webhook signing secrets.
    pub webhook: WebhookSecrets,
    /// HTTP client settings.
    pub http: HttpSettings,
}

/// One Decentro account.
#[derive(Clone, Debug)]
pub struct DecentroAccount {
    /// The account's name in intentkit.
    pub name: AccountName,
    /// e.g. `https://in.staging.decentro.tech`.
    pub base_url: String,
    /// `client_id` header.
    pub client_id: Secret,
    /// `client_secret` header.
    pub client_secret: Secret,
    /// `module_secret` header.
    pub module_secret: Secret,
    /// `provider_secret` header.
    pub provider_secret: Secret,
    /// HTTP client settings.
    pub http: HttpSettings,
}

/// Every configured provider account.
#[derive(Clone, Debug, Default)]
pub struct ProvidersConfig {
    /// Pientegra accounts by name.
    pub pientegra: BTreeMap<AccountName, PientegraAccount>,
    /// Decentro accounts by name.
    pub decentro: BTreeMap<AccountName, DecentroAccount>,
}

/// Why the provider configuration could not be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The TOML is invalid (the offending text is not repeated: it may be a secret).
    #[error("invalid provider config at line {line}, column {column}: {reason}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        reason: String,
    },
    /// An account name is not valid.
    #[error("invalid account name {0:?}: use 1 to 64 of A-Z a-z 0-9 _ - .")]
    AccountName(String),
    /// A required secret is in neither the file nor the environment.
    #[error("{provider} account {account}: {field} is not set; put it in the file or set {env}")]
    MissingSecret {
        /// The provider.
        provider: Provider,
        /// The account.
        account: String,
        /// The field.
        field: &'static str,
        /// The environment variable that would provide it.
        env: String,
    },
    /// A top-level key no part of intentkit reads (a typo, most likely).
    #[error("unknown top-level key {0:?} in the config file")]
    UnknownKey(String),
    /// A field holds a value intentkit refuses.
    #[error("{provider} account {account}: {field}: {reason}")]
    Field {
        /// The provider.
        provider: Provider,
        /// The account.
        account: String,
        /// The field.
        field: &'static str,
        /// Why, in words that never repeat the value.
        reason: &'static str,
    },
    /// Two account names of one provider read the same environment variables.
    #[error(
        "{provider} accounts {first:?} and {second:?} read the same environment variables \
         ({env}_*): rename one"
    )]
    AmbiguousAccounts {
        /// The provider.
        provider: Provider,
        /// One name.
        first: String,
        /// The other.
        second: String,
        /// The shared variable prefix.
        env: String,
    },
    /// A setting of a table outside the provider accounts (e.g. `[engine]`).
    #[error("[{table}] {field}: {reason}")]
    Setting {
        /// The table.
        table: &'static str,
        /// The setting.
        field: &'static str,
        /// Why, in words that never repeat the value.
        reason: &'static str,
    },
    /// A base URL is not http(s).
    #[error("{provider} account {account}: base_url must start with https:// or http://")]
    BaseUrl {
        /// The provider.
        provider: Provider,
        /// The account.
        account: String,
    },
}

impl ConfigError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        "INVALID_CONFIG"
    }
}

// Not `deny_unknown_fields`: a façade keeps its own tables (`[server]`) in the same file, and
// `from_toml_with` refuses any top-level key that neither side claims.
#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    pientegra: BTreeMap<String, RawPientegra>,
    #[serde(default)]
    decentro: BTreeMap<String, RawDecentro>,
    #[serde(flatten)]
    rest: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPientegra {
    base_url: String,
    api_key: Option<Secret>,
    webhook_secret: Option<Secret>,
    previous_webhook_secret: Option<Secret>,
    previous_webhook_secret_until: Option<String>,
    #[serde(default)]
    http: HttpSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecentro {
    base_url: String,
    client_id: Option<Secret>,
    client_secret: Option<Secret>,
    module_secret: Option<Secret>,
    provider_secret: Option<Secret>,
    /// Retired: callbacks are always confirmed. Kept so that old files still load when it is
    /// `true`, and fail with a clear word when it is `false`.
    confirm_callbacks: Option<bool>,
    #[serde(default)]
    http: HttpSettings,
}

/// `INTENTKIT_<PROVIDER>_<ACCOUNT>_<FIELD>`, upper-cased, with `-` and `.` as `_`.
pub fn env_var_name(provider: Provider, account: &str, field: &str) -> String {
    format!("INTENTKIT_{}_{}_{}", provider.as_str(), account, field)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

struct Resolver<'a, E: Fn(&str) -> Option<String>> {
    env: &'a E,
    provider: Provider,
    account: &'a str,
}

impl<E: Fn(&str) -> Option<String>> Resolver<'_, E> {
    fn field_error(&self, field: &'static str, reason: &'static str) -> ConfigError {
        ConfigError::Field {
            provider: self.provider,
            account: self.account.to_string(),
            field,
            reason,
        }
    }

    /// The previous webhook secret and the end of its window, which must come together and
    /// end at most [`ROTATION_WINDOW_MAX_MS`] after `now`.
    fn previous_secret(
        &self,
        secret: Option<Secret>,
        until: Option<String>,
        now: Timestamp,
    ) -> Result<Option<PreviousSecret>, ConfigError> {
        const UNTIL: &str = "previous_webhook_secret_until";
        let secret = self.optional("previous_webhook_secret", secret);
        let until = (self.env)(&env_var_name(self.provider, self.account, UNTIL)).or(until);
        let Some(secret) = secret else {
            return Ok(None);
        };
        let until = until.ok_or_else(|| {
            self.field_error(
                UNTIL,
                "required with previous_webhook_secret: when the rotation window ends, as an \
                 RFC 3339 date-time (Pientegra signs in-flight deliveries with the old secret \
                 for about 10 minutes)",
            )
        })?;
        let until = Timestamp::parse_rfc3339(&until)
            .map_err(|_| self.field_error(UNTIL, "must be an RFC 3339 date-time"))?;
        if until > now.plus_millis(ROTATION_WINDOW_MAX_MS) {
            return Err(self.field_error(
                UNTIL,
                "must be at most 7 days ahead: a replaced secret must stop working",
            ));
        }
        Ok(Some(PreviousSecret { secret, until }))
    }

    fn optional(&self, field: &'static str, from_file: Option<Secret>) -> Option<Secret> {
        (self.env)(&env_var_name(self.provider, self.account, field))
            .map(Secret::new)
            .or(from_file)
            .filter(|s| !s.is_empty())
    }

    fn required(
        &self,
        field: &'static str,
        from_file: Option<Secret>,
    ) -> Result<Secret, ConfigError> {
        self.optional(field, from_file)
            .ok_or_else(|| ConfigError::MissingSecret {
                provider: self.provider,
                account: self.account.to_string(),
                field,
                env: env_var_name(self.provider, self.account, field),
            })
    }

    fn base_url(&self, url: String) -> Result<String, ConfigError> {
        if url.starts_with("https://") || url.starts_with("http://") {
            Ok(url.trim_end_matches('/').to_string())
        } else {
            Err(ConfigError::BaseUrl {
                provider: self.provider,
                account: self.account.to_string(),
            })
        }
    }
}

/// Refuses two account names that would read the same environment variables.
fn refuse_ambiguous(provider: Provider, names: &[&String]) -> Result<(), ConfigError> {
    let mut seen: BTreeMap<String, &String> = BTreeMap::new();
    for name in names {
        let prefix = env_var_name(provider, name, "");
        let prefix = prefix.trim_end_matches('_').to_string();
        if let Some(first) = seen.insert(prefix.clone(), name) {
            return Err(ConfigError::AmbiguousAccounts {
                provider,
                first: first.to_string(),
                second: name.to_string(),
                env: prefix,
            });
        }
    }
    Ok(())
}

/// A TOML error as a [`ConfigError::Parse`]: its position, the key on that line, and the
/// parser's words with every value it quoted taken out.
pub fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
    // The key is named only when the document itself is well formed (the error is about a
    // value's type or a missing field): then the error's line is a `key = value` line. In a
    // broken document the line may sit inside a multi-line value, whose text is not a key.
    let well_formed = toml::from_str::<toml::Table>(text).is_ok();
    let key = well_formed
        .then(|| text.lines())
        .into_iter()
        .flatten()
        .nth(line.saturating_sub(1))
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        });
    let reason = redact_values(e.message());
    ConfigError::Parse {
        line,
        column,
        reason: match key {
            Some(k) => format!("{k}: {reason}"),
            None => reason,
        },
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl ProvidersConfig {
    /// Parses TOML text, taking secrets from `env` first (a lookup by variable name).
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::from_toml_with(text, env, &[])
    }

    /// As [`ProvidersConfig::from_toml`], in a file that also holds the named top-level tables
    /// of a façade (e.g. `server`), which are left to it.
    pub fn from_toml_with(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
        other_tables: &[&str],
    ) -> Result<Self, ConfigError> {
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        Self::from_toml_at(text, env, other_tables, now)
    }

    /// As [`ProvidersConfig::from_toml_with`], at `now` (which bounds rotation windows).
    pub fn from_toml_at(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
        other_tables: &[&str],
        now: Timestamp,
    ) -> Result<Self, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        for (provider, names) in [
            (
                Provider::Pientegra,
                raw.pientegra.keys().collect::<Vec<_>>(),
            ),
            (Provider::Decentro, raw.decentro.keys().collect()),
        ] {
            refuse_ambiguous(provider, &names)?;
        }
        if let Some(key) = raw
            .rest
            .keys()
            .find(|k| !other_tables.contains(&k.as_str()))
        {
            return Err(ConfigError::UnknownKey(key.clone()));
        }
        let mut config = ProvidersConfig::default();
        for (name, acc) in raw.pientegra {
            let account = AccountName::new(name.clone())
                .map_err(|_| ConfigError::AccountName(name.clone()))?;
            let r = Resolver {
                env: &env,
                provider: Provider::Pientegra,
                account: &name,
            };
            config.pientegra.insert(
                account.clone(),
                PientegraAccount {
                    name: account,
                    base_url: r.base_url(acc.base_url)?,
                    api_key: r.required("api_key", acc.api_key)?,
                    webhook: WebhookSecrets {
                        current: r.required("webhook_secret", acc.webhook_secret)?,
                        previous: r.previous_secret(
                            acc.previous_webhook_secret,
                            acc.previous_webhook_secret_until,
                            now,
                        )?,
                    },
                    http: acc.http,
                },
            );
        }
        for (name, acc) in raw.decentro {
            let account = AccountName::new(name.clone())
                .map_err(|_| ConfigError::AccountName(name.clone()))?;
            let r = Resolver {
                env: &env,
                provider: Provider::Decentro,
                account: &name,
            };
            if acc.confirm_callbacks == Some(false) {
                return Err(ConfigError::Field {
                    provider: Provider::Decentro,
                    account: name.clone(),
                    field: "confirm_callbacks",
                    reason: "callbacks are unsigned and are always confirmed with the status \
                             API (docs/trust.md); remove the key",
                });
            }
            config.decentro.insert(
                account.clone(),
                DecentroAccount {
                    name: account,
                    base_url: r.base_url(acc.base_url)?,
                    client_id: r.required("client_id", acc.client_id)?,
                    client_secret: r.required("client_secret", acc.client_secret)?,
                    module_secret: r.required("module_secret", acc.module_secret)?,
                    provider_secret: r.required("provider_secret", acc.provider_secret)?,
                    http: acc.http,
                },
            );
        }
        Ok(config)
    }

    /// Reads a TOML file, with secrets from the process environment first.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text, |k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests;

/// The field names a serde definition reads, taken from the definition itself (the derive
/// passes them to `deserialize_struct`), so that documentation can be tested against the very
/// list the loader accepts.
pub fn serde_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    struct Fields(Option<&'static [&'static str]>);

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names taken")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }

    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut f = Fields(None);
    let _ = T::deserialize(&mut f);
    f.0.unwrap_or(&[])
}

/// The keys of `[pientegra.<account>]`, `[decentro.<account>]` and their `.http` table, from
/// the definitions the loader uses.
pub fn table_keys() -> [(&'static str, &'static [&'static str]); 3] {
    [
        ("pientegra", serde_fields::<RawPientegra>()),
        ("decentro", serde_fields::<RawDecentro>()),
        ("http", serde_fields::<HttpSettings>()),
    ]
}

#[cfg(test)]
mod doc_tests {
    /// Every key the loader reads is in docs/config.md, in its own table's section, and in the
    /// complete example `--check-config` accepts.
    #[test]
    fn every_provider_key_is_documented_in_its_table() {
        let doc = include_str!("../../../docs/config.md");
        let example = include_str!("../../../docs/intentkit.example.toml");
        let section = |heading: &str| {
            let start = doc.find(heading).unwrap_or_else(|| panic!("no {heading}"));
            let rest = &doc[start + heading.len()..];
            &rest[..rest.find("\n## ").unwrap_or(rest.len())]
        };
        for (table, keys) in super::table_keys() {
            let heading = match table {
                "http" => "## `[<provider>.<account>.http]`",
                "pientegra" => "## `[pientegra.<account>]`",
                _ => "## `[decentro.<account>]`",
            };
            assert!(!keys.is_empty(), "{table}: no keys read");
            for key in keys {
                if *key == "http" {
                    continue; // the sub-table, documented under its own heading
                }
                assert!(
                    section(heading).contains(&format!("`{key}`")),
                    "{table}.{key} is not documented under {heading}"
                );
                // Retired keys are documented but not in the example.
                if *key != "confirm_callbacks" {
                    assert!(example.contains(key), "{table}.{key} is not in the example");
                }
            }
        }
    }
}
