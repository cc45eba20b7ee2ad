//! The server under test: `intentkitd`'s sandbox configuration on ephemeral ports with both
//! provider simulators, and a tonic client that carries a bearer token.
#![allow(dead_code, unreachable_pub)]

use intentkit_grpc_server::{Listeners, Server, ServerConfig, open_engine, sandbox};
use intentkit_proto::v1;
use intentkit_proto::v1::intent_service_client::IntentServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub type AddToken = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>;
pub type Client = IntentServiceClient<InterceptedService<Channel, AddToken>>;

pub struct Harness {
    /// `None` once a test has taken the server to shut it down itself.
    pub server: Option<Server>,
    pub sims: sandbox::Simulators,
    pub database: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

pub fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The server on loopback ports, after `tune` has changed what the test is about.
pub async fn start(tune: impl FnOnce(&mut ServerConfig)) -> Harness {
    start_with(tune, |config| open_engine(config).unwrap()).await
}

/// As [`start`], with every call the engine makes to its store counted.
pub async fn start_counting(
    tune: impl FnOnce(&mut ServerConfig),
) -> (
    Harness,
    std::sync::Arc<intentkit_core::store::counting::CountingStore>,
) {
    use std::sync::Arc;
    let mut counting = None;
    let h = start_with(tune, |config| {
        let store = config.server.database.open().unwrap();
        let store = Arc::new(intentkit_core::store::counting::CountingStore::new(store));
        counting = Some(store.clone());
        let clock: Arc<dyn intentkit_core::Clock> = Arc::new(intentkit_core::SystemClock);
        let ledger = intentkit_core::Ledger::new(store, clock.clone());
        intentkit_core::Engine::new(ledger, clock, &config.providers, config.engine.clone())
            .unwrap()
    })
    .await;
    (h, counting.unwrap())
}

/// As [`start`], on the engine `engine` opens for the final config.
pub async fn start_with(
    tune: impl FnOnce(&mut ServerConfig),
    engine: impl FnOnce(&intentkit_grpc_server::Config) -> intentkit_core::Engine,
) -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mut config = sandbox::server_config(dir.path());
    config.grpc_addr = loopback();
    config.http_addr = loopback();
    config.metrics_addr = Some(loopback());
    tune(&mut config);
    let listeners = Listeners::bind(&config).await.unwrap();
    let (sims, config) =
        sandbox::start_simulators(config, &listeners, sandbox::SimulatorAddrs::ephemeral())
            .await
            .unwrap();
    let engine = engine(&config);
    let server = Server::start_on(&config.server, engine, listeners)
        .await
        .unwrap();
    Harness {
        database: match &config.server.database {
            intentkit_core::store::Database::Sqlite(path) => path.clone(),
            other => panic!("the harness runs on SQLite, not {}", other.describe()),
        },
        server: Some(server),
        sims,
        _dir: dir,
    }
}

/// A client on `channel` that sends `token`, or no `authorization` at all.
pub fn client_on(channel: Channel, token: Option<&'static str>) -> Client {
    let auth: AddToken = Box::new(move |mut r: Request<()>| {
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(r)
    });
    IntentServiceClient::with_interceptor(channel, auth)
}

impl Harness {
    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.server().grpc_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn client_with(&self, token: Option<&'static str>) -> Client {
        client_on(self.channel().await, token)
    }

    pub async fn client(&self) -> Client {
        self.client_with(Some(sandbox::SANDBOX_TOKEN)).await
    }

    pub async fn metrics(&self) -> String {
        let addr = self.server().metrics_addr().unwrap();
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A deposit to the sandbox's Pientegra account under idempotency key `key`.
pub fn deposit(key: &str, amount: i64) -> v1::CreateDepositRequest {
    v1::CreateDepositRequest {
        idempotency_key: key.into(),
        account: sandbox::PIENTEGRA_ACCOUNT.into(),
        amount_minor: amount,
        currency: "TRY".into(),
        reference: format!("order-{key}"),
        user_id: "user-1".into(),
        ..Default::default()
    }
}
