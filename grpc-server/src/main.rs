//! `intentkitd`: the gRPC sidecar. See `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, CommandFactory, FromArgMatches, Parser};
use intentkit_grpc_server::config::LogFormat;
use intentkit_grpc_server::options::ServerArgs;
use intentkit_grpc_server::{Config, Listeners, Server, ServerConfig, open_engine, termination};

/// intentkit's gRPC service (intentkit.v1.IntentService) and provider webhook receiver.
///
/// Stop with SIGTERM or Ctrl-C: no new requests, in-flight ones finish, event streams end with
/// UNAVAILABLE (SHUTTING_DOWN), maintenance passes in progress are cut (each write is its own
/// transaction; the next start goes on).
#[derive(Parser)]
#[command(name = "intentkitd", version, about, long_about)]
#[command(group(ArgGroup::new("mode").required(true).args(["config", "check_config", "sandbox"])))]
#[command(after_long_help = "\
The configuration file's tables: [server] (the options above), [engine], and one table per
provider account, [pientegra.<account>] and [decentro.<account>]. Every table and key is in
docs/config.md, with a complete example in docs/intentkit.example.toml. Account secrets may
come from INTENTKIT_<PROVIDER>_<ACCOUNT>_<KEY> instead of the file (the environment wins).")]
struct Cli {
    /// Serve with the configuration in FILE
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Load FILE (and the environment), report the first problem, and exit: 0 if it is
    /// usable, 2 if not
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// The whole product on this machine: the server on SQLite in --data-dir, both provider
    /// simulators, and a demo deposit; prints what to do next
    #[arg(long)]
    sandbox: bool,
    /// Sandbox: where its database lives
    #[arg(long, value_name = "DIR", default_value = "intentkit-sandbox")]
    data_dir: PathBuf,
    /// Sandbox: the Pientegra simulator's address
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "INTENTKIT_SANDBOX_PIENTEGRA_ADDR",
        default_value = "127.0.0.1:8701"
    )]
    pientegra_addr: SocketAddr,
    /// Sandbox: the Decentro simulator's address
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "INTENTKIT_SANDBOX_DECENTRO_ADDR",
        default_value = "127.0.0.1:8702"
    )]
    decentro_addr: SocketAddr,
    #[command(flatten)]
    server: ServerArgs,
}

fn init_logs(server: &ServerConfig) {
    let level = match server.log_level.as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match server.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[tokio::main]
async fn main() -> ExitCode {
    // --help and --version go to stdout with 0; a usage error to stderr with 2.
    let cmd = ServerArgs::with_defaults(Cli::command(), &ServerConfig::default().as_values());
    let matches = cmd.get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // The [server] options the command line (or their variables) set.
    let over = ServerArgs::values_from(&matches);
    // reqwest and tonic both use rustls on ring; one process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Some(path) = cli.check_config {
        return match Config::load(&path, &over) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                ExitCode::from(2)
            }
        };
    }
    if let Some(path) = cli.config {
        let config = match Config::load(&path, &over) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        init_logs(&config.server);
        return serve(config).await;
    }
    sandbox(cli.data_dir, &over, cli.pientegra_addr, cli.decentro_addr).await
}

async fn serve(config: Config) -> ExitCode {
    let engine = match open_engine(&config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("intentkitd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::start(&config.server, engine).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("intentkitd: {e}");
            return ExitCode::FAILURE;
        }
    };
    termination().await;
    tracing::info!("shutting down");
    server.shutdown();
    let aborted = server.wait().await;
    if aborted.is_empty() {
        tracing::info!("stopped");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(feature = "sandbox")]
async fn sandbox(
    dir: PathBuf,
    over: &intentkit_grpc_server::options::Values,
    pientegra: SocketAddr,
    decentro: SocketAddr,
) -> ExitCode {
    use intentkit_grpc_server::sandbox;
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("intentkitd: creating {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    // No file in sandbox mode; the options (flags or INTENTKIT_SERVER_*) still apply.
    let server_config = match sandbox::server_config(&dir).with_values(over) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("intentkitd: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs(&server_config);
    let listeners = match Listeners::bind(&server_config).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "intentkitd: {e}\n(is another intentkitd running? stop it, or free the port)"
            );
            return ExitCode::FAILURE;
        }
    };
    let (sims, config) = match sandbox::start_simulators(
        server_config,
        &listeners,
        sandbox::SimulatorAddrs {
            pientegra,
            decentro,
        },
    )
    .await
    {
        Ok(x) => x,
        Err(e) => {
            eprintln!("intentkitd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let engine = match open_engine(&config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("intentkitd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::start_on(&config.server, engine.clone(), listeners).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("intentkitd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let demo = demo_deposit(&engine).await;
    let grpc = server.grpc_addr();
    println!("intentkit sandbox is running (Ctrl-C to stop)");
    println!("  gRPC         {grpc}  token: {}", sandbox::SANDBOX_TOKEN);
    println!(
        "  webhooks     http://{}/webhooks/pientegra/{}",
        server.http_addr(),
        sandbox::PIENTEGRA_ACCOUNT
    );
    if let Some(m) = server.metrics_addr() {
        println!("  metrics      http://{m}/metrics");
    }
    println!("  database     {}", config.server.database.describe());
    println!(
        "  simulators   pientegra {}  decentro {}",
        sims.pientegra.base_url(),
        sims.decentro.base_url()
    );
    println!();
    match demo {
        Ok((id, pientegra_id, url)) => {
            println!(
                "A demo deposit of 1,500.00 TRY is waiting. Open its hosted page and press the button:"
            );
            println!("  {url}");
            println!(
                "Then approve it as Pientegra would (the signed webhook comes to the receiver):"
            );
            println!(
                "  curl -X POST {}/_control/intents/{pientegra_id}/approve",
                sims.pientegra.root_url()
            );
            println!("Look at it over gRPC (server reflection is on):");
            println!(
                "  grpcurl -plaintext -H 'authorization: Bearer {}' -d '{{\"id\":\"{id}\"}}' {grpc} intentkit.v1.IntentService/GetIntent",
                sandbox::SANDBOX_TOKEN
            );
            println!("Follow the outbox:");
            println!(
                "  grpcurl -plaintext -H 'authorization: Bearer {}' -d '{{\"consumer\":\"demo\"}}' {grpc} intentkit.v1.IntentService/StreamEvents",
                sandbox::SANDBOX_TOKEN
            );
        }
        Err(e) => println!("the demo deposit failed: {e}"),
    }
    termination().await;
    tracing::info!("shutting down");
    server.shutdown();
    let aborted = server.wait().await;
    sims.shutdown();
    println!("stopped");
    if aborted.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(feature = "sandbox")]
async fn demo_deposit(engine: &intentkit_core::Engine) -> Result<(String, String, String), String> {
    use intentkit_core::{
        AccountName, Currency, DepositRequest, IdempotencyKey, Metadata, MinorUnits,
        PartnerReference, PayerHandoff, ProviderRef, UserId,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let e = |e: intentkit_core::InvalidValue| e.to_string();
    let request = DepositRequest {
        account: AccountName::new(intentkit_grpc_server::sandbox::PIENTEGRA_ACCOUNT).map_err(e)?,
        amount: MinorUnits::new(150_000).map_err(e)?,
        currency: Currency::TRY,
        reference: PartnerReference::new(format!("demo-{now}")).map_err(e)?,
        user_id: UserId::new("demo-user").map_err(e)?,
        user_label: Some("Demo User".into()),
        metadata: Metadata::default(),
    };
    let key = IdempotencyKey::new(format!("demo-{now}")).map_err(e)?;
    let intent = engine
        .create_deposit(request, key)
        .await
        .map_err(|e| e.to_string())?;
    match (intent.handoff, intent.provider_ref) {
        (
            Some(PayerHandoff::HostedPage { url }),
            Some(ProviderRef::Pientegra { intent_id, .. }),
        ) => Ok((intent.id.to_string(), intent_id, url)),
        _ => Err(format!("intent {} has no hosted page", intent.id)),
    }
}

#[cfg(not(feature = "sandbox"))]
async fn sandbox(
    _dir: PathBuf,
    _over: &intentkit_grpc_server::options::Values,
    _pientegra: SocketAddr,
    _decentro: SocketAddr,
) -> ExitCode {
    eprintln!("intentkitd: this build has no sandbox (built without the `sandbox` feature)");
    ExitCode::from(2)
}
