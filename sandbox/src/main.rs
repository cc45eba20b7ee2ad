//! `intentkit-sandbox`: both provider simulators on loopback, on the system clock.
//!
//! Usage: `intentkit-sandbox [--pientegra ADDR] [--decentro ADDR] [--webhook-url URL]
//! [--callback-url URL]` (defaults 127.0.0.1:8701 and 127.0.0.1:8702). Stop with Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use intentkit_core::SystemClock;
use intentkit_sandbox::{decentro, pientegra};

const USAGE: &str = "usage: intentkit-sandbox [--pientegra ADDR] [--decentro ADDR] \
                     [--webhook-url URL] [--callback-url URL]";

struct Args {
    pientegra: SocketAddr,
    decentro: SocketAddr,
    webhook_url: Option<String>,
    callback_url: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        pientegra: SocketAddr::from(([127, 0, 0, 1], 8701)),
        decentro: SocketAddr::from(([127, 0, 0, 1], 8702)),
        webhook_url: None,
        callback_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--pientegra" => {
                args.pientegra = value()?.parse().map_err(|e| format!("--pientegra: {e}"))?
            }
            "--decentro" => {
                args.decentro = value()?.parse().map_err(|e| format!("--decentro: {e}"))?
            }
            "--webhook-url" => args.webhook_url = Some(value()?),
            "--callback-url" => args.callback_url = Some(value()?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let clock = Arc::new(SystemClock);
    let p = match pientegra::Simulator::start(
        pientegra::Config {
            webhook_url: args.webhook_url,
            ..Default::default()
        },
        clock.clone(),
        args.pientegra,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pientegra simulator on {}: {e}", args.pientegra);
            return ExitCode::FAILURE;
        }
    };
    let d = match decentro::Simulator::start(
        decentro::Config {
            callback_url: args.callback_url,
            ..Default::default()
        },
        clock,
        args.decentro,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("decentro simulator on {}: {e}", args.decentro);
            return ExitCode::FAILURE;
        }
    };
    println!(
        "pientegra simulator: base_url {} (api key pk_sandbox)",
        p.base_url()
    );
    println!("decentro simulator:  base_url {}", d.base_url());
    println!("control endpoints under /_control on each; Ctrl-C to stop");
    let _ = tokio::signal::ctrl_c().await;
    p.shutdown();
    d.shutdown();
    ExitCode::SUCCESS
}
