//! `intentkitd`: the gRPC sidecar. See `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use intentkit_grpc_server::config::{LogFormat, OPTIONS_HELP};
use intentkit_grpc_server::{Config, Listeners, Server, ServerConfig, open_engine, termination};

const USAGE: &str = "\
intentkitd: intentkit's gRPC service (intentkit.v1.IntentService) and provider webhook receiver

USAGE:
  intentkitd --config FILE          serve with the given configuration
  intentkitd --sandbox [--data-dir DIR]
                                    the whole product on this machine: the server on SQLite in
                                    DIR (default ./intentkit-sandbox), both provider simulators,
                                    and a demo deposit; prints what to do next
  intentkitd --check-config FILE    load FILE, report the first problem, and exit
  intentkitd --help | --version

Stop with SIGTERM or Ctrl-C: no new requests, in-flight ones finish, event streams end with
UNAVAILABLE (SHUTTING_DOWN), the maintenance pass in progress completes.
";

enum Mode {
    Serve(PathBuf),
    Check(PathBuf),
    Sandbox(PathBuf),
}

fn parse_args() -> Result<Mode, String> {
    let mut args = std::env::args().skip(1);
    let mut mode = None;
    let mut data_dir = PathBuf::from("intentkit-sandbox");
    let mut sandbox = false;
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--config" => mode = Some(Mode::Serve(PathBuf::from(value()?))),
            "--check-config" => mode = Some(Mode::Check(PathBuf::from(value()?))),
            "--sandbox" => sandbox = true,
            "--data-dir" => data_dir = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!("{USAGE}\n{OPTIONS_HELP}");
                std::process::exit(0);
            }
            "-V" | "--version" => {
                println!("intentkitd {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match (sandbox, mode) {
        (true, None) => Ok(Mode::Sandbox(data_dir)),
        (false, Some(m)) => Ok(m),
        (true, Some(_)) => Err("--sandbox takes no --config".into()),
        (false, None) => Err("give --config FILE or --sandbox".into()),
    }
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
    let mode = match parse_args() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("intentkitd: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // reqwest and tonic both use rustls on ring; one process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match mode {
        Mode::Check(path) => match Config::load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                ExitCode::from(2)
            }
        },
        Mode::Serve(path) => {
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return ExitCode::from(2);
                }
            };
            init_logs(&config.server);
            serve(config, None).await
        }
        Mode::Sandbox(dir) => sandbox(dir).await,
    }
}

async fn serve(config: Config, listeners: Option<Listeners>) -> ExitCode {
    let engine = match open_engine(&config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("intentkitd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = match listeners {
        Some(l) => Server::start_on(&config.server, engine, l).await,
        None => Server::start(&config.server, engine).await,
    };
    let server = match started {
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
async fn sandbox(dir: PathBuf) -> ExitCode {
    use intentkit_grpc_server::sandbox;
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("intentkitd: creating {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    // No file in sandbox mode; the usual variables still apply (e.g. port 0 for tests).
    let server_config = match sandbox::server_config(&dir).with_env(|k| std::env::var(k).ok()) {
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
        sandbox::SimulatorAddrs::default(),
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
    println!("  database     {}", config.server.database.display());
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
async fn sandbox(_dir: PathBuf) -> ExitCode {
    eprintln!("intentkitd: this build has no sandbox (built without the `sandbox` feature)");
    ExitCode::from(2)
}
