//! The one list of providers: every configured account becomes its adapter here. Registering
//! a new provider is one more loop below (and its `[<provider>.<account>]` table in
//! [`super::config`]); nothing else in core names a provider's module.

use std::collections::HashMap;
use std::sync::Arc;

use super::config::ProvidersConfig;
use super::decentro::adapter::DecentroAdapter;
use super::pace::CallBudget;
use super::pientegra::adapter::PientegraAdapter;
use super::{Adapter, ProviderError, SweepSettings};
use crate::types::{AccountName, Provider};

/// Adapters by provider and account.
pub type Adapters = HashMap<(Provider, AccountName), Arc<dyn Adapter>>;

/// One adapter per configured account; `budget` gives each account that has a provider rate
/// limit to keep its call budget (the engine's, shared through the store).
pub fn build(
    config: &ProvidersConfig,
    sweep: SweepSettings,
    budget: &dyn Fn(Provider, &AccountName) -> Arc<dyn CallBudget>,
) -> Result<Adapters, ProviderError> {
    let mut adapters: Adapters = HashMap::new();
    for (name, account) in &config.pientegra {
        let adapter = PientegraAdapter::new(account.clone(), sweep)?
            .with_budget(budget(Provider::Pientegra, name));
        adapters.insert((Provider::Pientegra, name.clone()), Arc::new(adapter));
    }
    for (name, account) in &config.decentro {
        let adapter = DecentroAdapter::new(account.clone())?;
        adapters.insert((Provider::Decentro, name.clone()), Arc::new(adapter));
    }
    Ok(adapters)
}
