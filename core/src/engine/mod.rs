//! The engine: the one async API every façade wraps. It joins the ledger (lifecycle, store,
//! outbox) to the provider adapters, so that one call creates an intent at a provider and
//! every outcome reaches the outbox exactly once, and only if a provider proved it.
//!
//! The engine never names a provider's module or wire type: it holds one
//! [`Adapter`](crate::provider::Adapter) per configured `(provider, account)` and asks it. Its
//! work is split by concern:
//!
//! - [`create`](self::create): record, then create at the provider; cancel; refresh.
//! - [`deliver`](self::deliver): webhooks and callbacks, bound to the account that received
//!   them; unsigned claims confirmed by the provider's status API when they would be applied;
//!   parked signals, bounded per account.
//! - [`maintain`](self::maintain): recovery, expiry, reconciliation, parked-signal upkeep.
//! - [`feed`](self::feed): the outbox as the façades read it, and change notifications.
//!
//! Store calls are blocking; they run on tokio's blocking pool.

mod claims;
mod create;
mod deliver;
mod feed;
mod maintain;
mod report;
mod sink;

use std::sync::Arc;

pub use self::feed::EventFeed;
pub use self::maintain::PROVIDER_WINDOW_PASSED;
pub use self::report::{Job, JobReport, MaintenanceReport, ReconcileReport};
use crate::clock::Clock;
use crate::error::CoreError;
use crate::ledger::Ledger;
use crate::provider::config::ProvidersConfig;
use crate::provider::registry::{self, Adapters};
use crate::provider::{Adapter, ProviderError, SweepSettings};
pub use crate::provider::{WebhookAnswer, WebhookOutcome};
use crate::types::{AccountName, IntentId, Provider};

/// Engine tuning. Every number here is ours; see `docs/decisions.md`.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// How long an intent may sit in `created` before recovery resumes it.
    pub recover_after_ms: i64,
    /// How many intents (or parked signals) one sweep handles.
    pub sweep_batch: usize,
    /// The least time between two reconciliation calls to one provider account (Pientegra
    /// allows 60 requests a minute per key).
    pub reconcile_call_interval_ms: u64,
    /// How far back a reconciliation sweep looks, at most.
    pub reconcile_max_window_ms: i64,
    /// How old an open intent must be before a sweep asks about it: younger ones' webhooks
    /// are not late yet.
    pub reconcile_min_age_ms: i64,
    /// The most open intents one sweep derives its windows from (oldest first).
    pub reconcile_open_limit: usize,
    /// How long one account's sweep may take in one pass; a sweep cut short goes on from
    /// where it stopped in the next.
    pub reconcile_budget_ms: u64,
    /// The most signals one account may keep parked (a webhook that beat its create response,
    /// a claim awaiting confirmation). Past it, deliveries that would be parked are answered
    /// `503`, so a provider sends them again and a flood costs bounded disk.
    pub parked_cap_per_account: usize,
    /// How long a parked signal is kept before maintenance forgets it.
    pub parked_ttl_ms: i64,
    /// How long each maintenance job of one account may take in one pass (a job cut short
    /// goes on in the next pass).
    pub job_budget_ms: u64,
    /// How many provider look-ups one account's expiry job runs at once.
    pub lookup_concurrency: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            recover_after_ms: 30_000,
            sweep_batch: 200,
            reconcile_call_interval_ms: 1_000,
            reconcile_max_window_ms: crate::lifecycle::RECONCILE_HORIZON_MS,
            reconcile_min_age_ms: 5 * 60_000,
            reconcile_open_limit: 10_000,
            reconcile_budget_ms: 60_000,
            parked_cap_per_account: 1_000,
            parked_ttl_ms: 24 * 60 * 60 * 1_000,
            job_budget_ms: 30_000,
            lookup_concurrency: 4,
        }
    }
}

/// The `[engine]` table of a config file, as written: every setting optional.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    recover_after_ms: Option<u64>,
    sweep_batch: Option<usize>,
    reconcile_call_interval_ms: Option<u64>,
    reconcile_max_window_ms: Option<u64>,
    reconcile_min_age_ms: Option<u64>,
    reconcile_open_limit: Option<usize>,
    reconcile_budget_ms: Option<u64>,
    parked_cap_per_account: Option<usize>,
    parked_ttl_ms: Option<u64>,
    job_budget_ms: Option<u64>,
    lookup_concurrency: Option<usize>,
}

#[derive(serde::Deserialize)]
struct EngineFile {
    #[serde(default)]
    engine: RawEngine,
}

impl EngineSettings {
    /// The names of the `[engine]` table's settings, for documentation checks.
    pub const KEYS: &'static [&'static str] = &[
        "recover_after_ms",
        "sweep_batch",
        "reconcile_call_interval_ms",
        "reconcile_max_window_ms",
        "reconcile_min_age_ms",
        "reconcile_open_limit",
        "reconcile_budget_ms",
        "parked_cap_per_account",
        "parked_ttl_ms",
        "job_budget_ms",
        "lookup_concurrency",
    ];

    /// The settings of a config file's `[engine]` table (every one optional), the defaults
    /// for the rest. Other tables are left to their readers.
    pub fn from_toml(text: &str) -> Result<Self, crate::provider::config::ConfigError> {
        use crate::provider::config::{ConfigError, toml_error};
        let file: EngineFile = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let r = file.engine;
        let d = EngineSettings::default();
        let setting = |field, reason| ConfigError::Setting {
            table: "engine",
            field,
            reason,
        };
        let ms = |v: Option<u64>, field, dflt: i64| -> Result<i64, ConfigError> {
            v.map_or(Ok(dflt), |v| {
                i64::try_from(v).map_err(|_| setting(field, "is too large"))
            })
        };
        let at_least_one = |v: Option<usize>, field, dflt: usize| match v {
            Some(0) => Err(setting(field, "must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(dflt),
        };
        Ok(EngineSettings {
            recover_after_ms: ms(r.recover_after_ms, "recover_after_ms", d.recover_after_ms)?,
            sweep_batch: at_least_one(r.sweep_batch, "sweep_batch", d.sweep_batch)?,
            reconcile_call_interval_ms: r
                .reconcile_call_interval_ms
                .unwrap_or(d.reconcile_call_interval_ms),
            reconcile_max_window_ms: ms(
                r.reconcile_max_window_ms,
                "reconcile_max_window_ms",
                d.reconcile_max_window_ms,
            )?,
            reconcile_min_age_ms: ms(
                r.reconcile_min_age_ms,
                "reconcile_min_age_ms",
                d.reconcile_min_age_ms,
            )?,
            reconcile_open_limit: at_least_one(
                r.reconcile_open_limit,
                "reconcile_open_limit",
                d.reconcile_open_limit,
            )?,
            reconcile_budget_ms: r.reconcile_budget_ms.unwrap_or(d.reconcile_budget_ms),
            parked_cap_per_account: at_least_one(
                r.parked_cap_per_account,
                "parked_cap_per_account",
                d.parked_cap_per_account,
            )?,
            parked_ttl_ms: ms(r.parked_ttl_ms, "parked_ttl_ms", d.parked_ttl_ms)?,
            job_budget_ms: r.job_budget_ms.unwrap_or(d.job_budget_ms),
            lookup_concurrency: at_least_one(
                r.lookup_concurrency,
                "lookup_concurrency",
                d.lookup_concurrency,
            )?,
        })
    }
}

/// What can go wrong in an engine call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Core refused or failed (validation, idempotency conflict, not found, store).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The provider refused for good; if an intent was recorded it is now `failed`.
    #[error("{source}")]
    Provider {
        /// The provider's error, with its own code.
        source: ProviderError,
        /// The intent it concerns, if one was recorded.
        intent: Option<IntentId>,
    },
    /// The provider failed transiently. The intent stays `created` and recovery will resume
    /// it; calling again with the same idempotency key is safe.
    #[error("{source}; intent {intent} is recorded, retry with the same idempotency key")]
    RetryWithSameKey {
        /// The provider's error.
        source: ProviderError,
        /// The recorded intent.
        intent: IntentId,
    },
    /// No such provider account is configured.
    #[error("no {provider} account named {account} is configured")]
    UnknownAccount {
        /// The provider.
        provider: Provider,
        /// The account asked for.
        account: String,
    },
    /// A background task failed to run (a panic in a store call).
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// The stable machine code: core's, or the provider's own.
    pub fn code(&self) -> &str {
        match self {
            EngineError::Core(e) => e.code(),
            EngineError::Provider { source, .. } | EngineError::RetryWithSameKey { source, .. } => {
                source.code()
            }
            EngineError::UnknownAccount { .. } => "UNKNOWN_ACCOUNT",
            EngineError::Internal(_) => "INTERNAL",
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Core(e) => e.is_retryable(),
            EngineError::Provider { source, .. } => source.is_retryable(),
            EngineError::RetryWithSameKey { .. } => true,
            EngineError::UnknownAccount { .. } | EngineError::Internal(_) => false,
        }
    }

    fn provider(source: ProviderError, intent: Option<IntentId>) -> Self {
        EngineError::Provider { source, intent }
    }
}

/// A crash point for tests: with the `failpoints` feature and `INTENTKIT_FAILPOINT=<name>`,
/// the process announces `FAILPOINT <name>` on stdout and stops there, so that a test can
/// kill it at exactly this point. Compiled out otherwise.
#[cfg(feature = "failpoints")]
fn failpoint(name: &str) {
    if std::env::var("INTENTKIT_FAILPOINT").as_deref() == Ok(name) {
        use std::io::Write;
        println!("FAILPOINT {name}");
        let _ = std::io::stdout().flush();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
    }
}

#[cfg(not(feature = "failpoints"))]
fn failpoint(_name: &str) {}

/// The engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    adapters: Adapters,
    settings: EngineSettings,
    /// Bumped after every write this process makes, so that event streams wake at once.
    changed: tokio::sync::watch::Sender<()>,
    /// When each intent's provider was last asked to confirm a claim (see
    /// `claims::CLAIM_LOOKUP_GAP`).
    claim_lookups: std::sync::Mutex<std::collections::HashMap<IntentId, std::time::Instant>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut accounts: Vec<String> = self
            .inner
            .adapters
            .keys()
            .map(|(p, a)| format!("{p}/{a}"))
            .collect();
        accounts.sort();
        f.debug_struct("Engine")
            .field("accounts", &accounts)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `ledger` with an adapter per configured account.
    pub fn new(
        ledger: Ledger,
        clock: Arc<dyn Clock>,
        providers: &ProvidersConfig,
        settings: EngineSettings,
    ) -> Result<Self, ProviderError> {
        let sweep = SweepSettings {
            call_interval: std::time::Duration::from_millis(settings.reconcile_call_interval_ms),
            max_window_ms: settings.reconcile_max_window_ms,
        };
        let adapters = registry::build(providers, sweep)?;
        let (changed, _) = tokio::sync::watch::channel(());
        Ok(Engine {
            inner: Arc::new(Inner {
                ledger,
                clock,
                adapters,
                settings,
                changed,
                claim_lookups: Default::default(),
            }),
        })
    }

    /// An engine on the SQLite file at `path` (created if needed), on the system clock, with
    /// default settings: what a façade opens. Call it inside the tokio runtime that will run
    /// the engine.
    pub fn open_sqlite(
        path: &std::path::Path,
        providers: &ProvidersConfig,
    ) -> Result<Self, EngineError> {
        Self::open_sqlite_with(path, providers, EngineSettings::default())
    }

    /// As [`Engine::open_sqlite`], with these settings (a config file's `[engine]` table).
    pub fn open_sqlite_with(
        path: &std::path::Path,
        providers: &ProvidersConfig,
        settings: EngineSettings,
    ) -> Result<Self, EngineError> {
        let store = crate::store::sqlite::SqliteStore::open(path, Default::default())
            .map_err(|e| EngineError::Core(CoreError::Store(e)))?;
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let ledger = Ledger::new(Arc::new(store), clock.clone());
        Engine::new(ledger, clock, providers, settings)
            .map_err(|source| EngineError::provider(source, None))
    }

    /// Runs `f` on the ledger on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<T, CoreError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let ledger = self.inner.ledger.clone();
        tokio::task::spawn_blocking(move || f(&ledger))
            .await
            .map_err(|e| EngineError::Internal(format!("store task: {e}")))?
            .map_err(EngineError::from)
    }

    /// The adapter of one configured account.
    fn adapter(
        &self,
        provider: Provider,
        account: &AccountName,
    ) -> Result<&Arc<dyn Adapter>, EngineError> {
        self.inner
            .adapters
            .get(&(provider, account.clone()))
            .ok_or_else(|| EngineError::UnknownAccount {
                provider,
                account: account.to_string(),
            })
    }

    /// Every configured account's adapter, in a stable order.
    fn adapters(&self) -> Vec<Arc<dyn Adapter>> {
        let mut all: Vec<_> = self.inner.adapters.values().cloned().collect();
        all.sort_by(|a, b| {
            (a.provider().as_str(), a.account()).cmp(&(b.provider().as_str(), b.account()))
        });
        all
    }

    /// Tells event streams that this process wrote something.
    fn wrote(&self) {
        self.inner.changed.send_replace(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_table_sets_what_it_names_and_refuses_the_rest() {
        let s = EngineSettings::from_toml(
            "[engine]\nrecover_after_ms = 5000\nlookup_concurrency = 2\n[server]\nx = 1\n",
        )
        .unwrap();
        assert_eq!((s.recover_after_ms, s.lookup_concurrency), (5_000, 2));
        assert_eq!(s.sweep_batch, EngineSettings::default().sweep_batch);
        assert_eq!(
            EngineSettings::from_toml("").unwrap().recover_after_ms,
            EngineSettings::default().recover_after_ms
        );
        let typo = EngineSettings::from_toml("[engine]\nrecover_after = 1\n").unwrap_err();
        assert!(typo.to_string().contains("recover_after"), "{typo}");
        let zero = EngineSettings::from_toml("[engine]\nlookup_concurrency = 0\n").unwrap_err();
        assert!(zero.to_string().contains("lookup_concurrency"), "{zero}");
        let secret =
            EngineSettings::from_toml("[engine]\nsweep_batch = \"tok_99887766\"\n").unwrap_err();
        assert!(!secret.to_string().contains("99887766"), "{secret}");
    }

    #[test]
    fn engine_codes_are_documented() {
        let doc = include_str!("../../../docs/errors.md");
        let e = EngineError::UnknownAccount {
            provider: Provider::Pientegra,
            account: "x".into(),
        };
        assert!(!e.is_retryable());
        assert!(doc.contains(&format!("| `{}` |", e.code())));
        assert!(doc.contains("| `INTERNAL` |"));
        for code in [
            crate::provider::RETRY_LATER,
            crate::provider::NOT_CONFIRMED_YET,
        ] {
            assert!(
                doc.contains(&format!("| `{code}` |")),
                "{code} missing from docs/errors.md"
            );
        }
    }
}
