//! Sandbox mode: the whole product on a laptop. Both provider simulators run in-process on
//! loopback, wired to this server's receiver (webhooks and callbacks really travel over HTTP
//! and are really signed), and the engine runs on SQLite in a local data folder.

use std::path::Path;

use intentkit_core::provider::Secret;
use intentkit_core::provider::config::{
    DecentroAccount, HttpSettings, PientegraAccount, ProvidersConfig,
};
use intentkit_core::provider::pientegra::WebhookSecrets;
use intentkit_core::{AccountName, SystemClock};
use intentkit_sandbox::{decentro, pientegra};

use crate::{Config, Listeners, ServerConfig, StartError};

/// The bearer token sandbox mode accepts.
pub const SANDBOX_TOKEN: &str = "sandbox-token";
/// The Pientegra account sandbox mode configures.
pub const PIENTEGRA_ACCOUNT: &str = "tr-sandbox";
/// The Decentro account sandbox mode configures.
pub const DECENTRO_ACCOUNT: &str = "in-sandbox";

/// The running simulators.
pub struct Simulators {
    /// Pientegra's.
    pub pientegra: pientegra::Simulator,
    /// Decentro's.
    pub decentro: decentro::Simulator,
}

impl std::fmt::Debug for Simulators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulators")
            .field("pientegra", &self.pientegra.base_url())
            .field("decentro", &self.decentro.base_url())
            .finish()
    }
}

impl Simulators {
    /// Stops both.
    pub fn shutdown(&self) {
        self.pientegra.shutdown();
        self.decentro.shutdown();
    }
}

/// The sandbox's server settings: the defaults, the database in `data_dir`, the sandbox token.
pub fn server_config(data_dir: &Path) -> ServerConfig {
    ServerConfig {
        database: intentkit_core::store::Database::Sqlite(data_dir.join("intentkit.db")),
        auth_tokens: vec![Secret::new(SANDBOX_TOKEN)],
        maintenance_interval_ms: 2_000,
        ..ServerConfig::default()
    }
}

/// Where the sandbox's simulators listen: fixed ports by default, so that a sandbox restarted
/// keeps its URLs (and the hosted pages it printed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimulatorAddrs {
    /// Pientegra's simulator.
    pub pientegra: std::net::SocketAddr,
    /// Decentro's simulator.
    pub decentro: std::net::SocketAddr,
}

impl SimulatorAddrs {
    /// Ports the OS picks, for tests and benchmarks that run side by side.
    pub fn ephemeral() -> Self {
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        SimulatorAddrs {
            pientegra: any,
            decentro: any,
        }
    }
}

impl Default for SimulatorAddrs {
    fn default() -> Self {
        SimulatorAddrs {
            pientegra: std::net::SocketAddr::from(([127, 0, 0, 1], 8701)),
            decentro: std::net::SocketAddr::from(([127, 0, 0, 1], 8702)),
        }
    }
}

/// Starts both simulators on `addrs`, delivering to the receiver bound in `listeners`, and
/// returns them with the provider accounts that reach them.
pub async fn start_simulators(
    server: ServerConfig,
    listeners: &Listeners,
    addrs: SimulatorAddrs,
) -> Result<(Simulators, Config), StartError> {
    let receiver = listeners.http_addr()?;
    let clock = std::sync::Arc::new(SystemClock);
    let p_config = pientegra::Config {
        webhook_url: Some(format!(
            "http://{receiver}/webhooks/pientegra/{PIENTEGRA_ACCOUNT}"
        )),
        ..Default::default()
    };
    let (api_key, webhook_secret) = (p_config.api_key.clone(), p_config.webhook_secret.clone());
    let p = pientegra::Simulator::start(p_config, clock.clone(), addrs.pientegra)
        .await
        .map_err(|source| StartError::Bind {
            what: "pientegra simulator",
            addr: addrs.pientegra,
            source,
        })?;
    let d_config = decentro::Config {
        callback_url: Some(format!(
            "http://{receiver}/callbacks/decentro/{DECENTRO_ACCOUNT}"
        )),
        ..Default::default()
    };
    let creds = d_config.clone();
    let d = decentro::Simulator::start(d_config, clock, addrs.decentro)
        .await
        .map_err(|source| StartError::Bind {
            what: "decentro simulator",
            addr: addrs.decentro,
            source,
        })?;
    let account = |n: &str| AccountName::new(n).map_err(|e| StartError::Config(e.to_string()));
    let mut providers = ProvidersConfig::default();
    let name = account(PIENTEGRA_ACCOUNT)?;
    providers.pientegra.insert(
        name.clone(),
        PientegraAccount {
            name,
            base_url: p.base_url().to_string(),
            api_key,
            webhook: WebhookSecrets {
                current: webhook_secret,
                previous: None,
            },
            http: HttpSettings::default(),
        },
    );
    let name = account(DECENTRO_ACCOUNT)?;
    providers.decentro.insert(
        name.clone(),
        DecentroAccount {
            name,
            base_url: d.base_url().to_string(),
            client_id: Secret::new(creds.client_id),
            client_secret: Secret::new(creds.client_secret),
            module_secret: Secret::new(creds.module_secret),
            provider_secret: Secret::new(creds.provider_secret),
            http: HttpSettings::default(),
        },
    );
    Ok((
        Simulators {
            pientegra: p,
            decentro: d,
        },
        Config {
            server,
            engine: intentkit_core::EngineSettings::default(),
            providers,
        },
    ))
}
