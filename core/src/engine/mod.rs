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
//! - [`feed`](self::feed): the outbox as the façades read it, and one watcher of its head
//!   that wakes every open stream.
//!
//! Store calls are blocking; they run on tokio's blocking pool.

mod budget;
mod claims;
mod create;
mod deliver;
mod feed;
mod maintain;
mod report;
mod settings;
mod sink;

use std::sync::Arc;

pub use self::create::PROVIDER_WINDOW_PASSED;
pub use self::feed::{EventFeed, FEED_POLL_INTERVAL};
pub use self::report::{Job, JobReport, MaintenanceReport, ReconcileReport};
pub use self::settings::EngineSettings;
use crate::clock::Clock;
use crate::error::CoreError;
use crate::ledger::Ledger;
use crate::provider::config::ProvidersConfig;
use crate::provider::registry::{self, Adapters};
use crate::provider::{Adapter, ProviderError, SweepSettings};
pub use crate::provider::{WebhookAnswer, WebhookOutcome};
use crate::types::{AccountName, IntentId, Provider};

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
    /// The outbox's head for every open feed, and its watcher (see `feed`).
    feed: feed::FeedState,
    /// This engine's name as a lease holder (maintenance jobs are claimed, not duplicated,
    /// when several instances share a store).
    instance: String,
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
        let store = ledger.store().clone();
        let (calls, period) = (
            settings.provider_call_budget,
            settings.provider_call_period_ms,
        );
        let adapters = registry::build(providers, sweep, &|provider,
                                                           account|
         -> Arc<
            dyn crate::provider::pace::CallBudget,
        > {
            Arc::new(budget::StoreBudget::new(
                store.clone(),
                provider,
                account,
                calls,
                period,
            ))
        })?;
        Ok(Engine {
            inner: Arc::new(Inner {
                ledger,
                clock,
                adapters,
                settings,
                feed: feed::FeedState::new(),
                instance: format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple()),
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
        Self::open(
            &crate::store::Database::Sqlite(path.to_path_buf()),
            providers,
            settings,
        )
    }

    /// An engine on `database` (a SQLite file, or PostgreSQL for several instances), on the
    /// system clock: what a façade opens. Call it inside the tokio runtime that will run it.
    pub fn open(
        database: &crate::store::Database,
        providers: &ProvidersConfig,
        settings: EngineSettings,
    ) -> Result<Self, EngineError> {
        let store = database
            .open()
            .map_err(|e| EngineError::Core(CoreError::Store(e)))?;
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let ledger = Ledger::new(store, clock.clone());
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

    /// Tells the feed watcher that this process wrote something, so that event streams wake
    /// at once rather than at its next poll.
    fn wrote(&self) {
        self.inner.feed.wrote();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
