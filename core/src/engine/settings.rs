//! The engine's tuning, and the `[engine]` table of a config file that sets it (for
//! intentkitd and the C ABI alike). Every number is ours; `docs/decisions.md` says why.

/// Engine tuning. Every number here is ours; see `docs/decisions.md`.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// How long an intent may sit in `created` before recovery resumes it.
    pub recover_after_ms: i64,
    /// How many intents (or parked signals) one sweep handles.
    pub sweep_batch: usize,
    /// How many calls one provider account may get per `provider_call_period_ms`, from every
    /// instance and handle on the store together (Pientegra allows 60 requests a minute per
    /// key). Creates come first; sweeps wait for what they leave.
    pub provider_call_budget: u32,
    /// The period `provider_call_budget` counts over.
    pub provider_call_period_ms: u64,
    /// The least time between two reconciliation calls of one process to one provider
    /// account, on top of the shared budget (0: the budget alone paces them).
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
            provider_call_budget: 50,
            provider_call_period_ms: 60_000,
            reconcile_call_interval_ms: 0,
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
    provider_call_budget: Option<u32>,
    provider_call_period_ms: Option<u64>,
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
        "provider_call_budget",
        "provider_call_period_ms",
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
            provider_call_budget: match r.provider_call_budget {
                Some(0) => return Err(setting("provider_call_budget", "must be at least 1")),
                Some(n) => n,
                None => d.provider_call_budget,
            },
            provider_call_period_ms: match r.provider_call_period_ms {
                Some(0) => return Err(setting("provider_call_period_ms", "must be at least 1")),
                Some(n) => n,
                None => d.provider_call_period_ms,
            },
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
}
