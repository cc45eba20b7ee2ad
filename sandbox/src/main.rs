//! `intentkit-sandbox`: both provider simulators on loopback, on the system clock, until
//! Ctrl-C. On start it prints the credentials the simulators accept and sign with, and the
//! intentkitd provider tables that reach them: they are sandbox values, printed on purpose.
//! `--help` lists the options.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use intentkit_core::SystemClock;
use intentkit_core::provider::Secret;
use intentkit_sandbox::{decentro, pientegra};

const USAGE: &str = "\
usage: intentkit-sandbox [OPTIONS]

Runs the Pientegra and Decentro simulators until Ctrl-C, and prints the intentkitd provider
config ([pientegra.tr-main], [decentro.in-main]) that reaches them.

Options:
  --pientegra ADDR         Pientegra simulator address (default 127.0.0.1:8701)
  --decentro ADDR          Decentro simulator address (default 127.0.0.1:8702)
  --webhook-url URL        where Pientegra webhooks go, e.g.
                           http://127.0.0.1:8080/webhooks/pientegra/tr-main (default: none sent)
  --callback-url URL       where Decentro callbacks go, e.g.
                           http://127.0.0.1:8080/callbacks/decentro/in-main (default: none sent)
  --api-key KEY            the Pientegra API key accepted (default pk_sandbox)
  --webhook-secret SECRET  the Pientegra webhook signing secret (default whsec_c2FuZGJveA)
  -h, --help               print this and exit";

/// The account names the printed config uses, as in the README.
const PIENTEGRA_ACCOUNT: &str = "tr-main";
const DECENTRO_ACCOUNT: &str = "in-main";

struct Args {
    pientegra_addr: SocketAddr,
    decentro_addr: SocketAddr,
    pientegra: pientegra::Config,
    decentro: decentro::Config,
}

enum Command {
    Run(Box<Args>),
    Help,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut args = Args {
        pientegra_addr: SocketAddr::from(([127, 0, 0, 1], 8701)),
        decentro_addr: SocketAddr::from(([127, 0, 0, 1], 8702)),
        pientegra: pientegra::Config::default(),
        decentro: decentro::Config::default(),
    };
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{flag} needs a non-empty value"))
        };
        match flag.as_str() {
            "--pientegra" => {
                args.pientegra_addr = value()?.parse().map_err(|e| format!("--pientegra: {e}"))?
            }
            "--decentro" => {
                args.decentro_addr = value()?.parse().map_err(|e| format!("--decentro: {e}"))?
            }
            "--webhook-url" => args.pientegra.webhook_url = Some(value()?),
            "--callback-url" => args.decentro.callback_url = Some(value()?),
            "--api-key" => args.pientegra.api_key = Secret::new(value()?),
            "--webhook-secret" => args.pientegra.webhook_secret = Secret::new(value()?),
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Command::Run(Box::new(args)))
}

/// A TOML basic string: quoted, with `"`, `\` and control characters escaped.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The intentkitd provider tables for these simulators: what `ProvidersConfig` reads.
fn config_snippet(
    pientegra_url: &str,
    p: &pientegra::Config,
    decentro_url: &str,
    d: &decentro::Config,
) -> String {
    format!(
        "[pientegra.{PIENTEGRA_ACCOUNT}]\n\
         base_url = {}\n\
         api_key = {}\n\
         webhook_secret = {}\n\
         \n\
         [decentro.{DECENTRO_ACCOUNT}]\n\
         base_url = {}\n\
         client_id = {}\n\
         client_secret = {}\n\
         module_secret = {}\n\
         provider_secret = {}",
        toml_str(pientegra_url),
        toml_str(p.api_key.expose()),
        toml_str(p.webhook_secret.expose()),
        toml_str(decentro_url),
        toml_str(&d.client_id),
        toml_str(&d.client_secret),
        toml_str(&d.module_secret),
        toml_str(&d.provider_secret),
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(a)) => *a,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("intentkit-sandbox: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let clock = Arc::new(SystemClock);
    let p = match pientegra::Simulator::start(
        args.pientegra.clone(),
        clock.clone(),
        args.pientegra_addr,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pientegra simulator on {}: {e}", args.pientegra_addr);
            return ExitCode::FAILURE;
        }
    };
    let d = match decentro::Simulator::start(args.decentro.clone(), clock, args.decentro_addr).await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("decentro simulator on {}: {e}", args.decentro_addr);
            return ExitCode::FAILURE;
        }
    };
    let (pc, dc) = (&args.pientegra, &args.decentro);
    println!("pientegra simulator on {}", p.base_url());
    println!(
        "  accepts api key {}; signs webhooks with {}",
        pc.api_key.expose(),
        pc.webhook_secret.expose()
    );
    match &pc.webhook_url {
        Some(url) => println!("  webhooks to {url}"),
        None => println!(
            "  webhooks: none sent (pass --webhook-url \
             http://127.0.0.1:8080/webhooks/pientegra/{PIENTEGRA_ACCOUNT})"
        ),
    }
    println!("decentro simulator on {}", d.base_url());
    println!(
        "  accepts client_id {}, client_secret {},",
        dc.client_id, dc.client_secret
    );
    println!(
        "  module_secret {}, provider_secret {}",
        dc.module_secret, dc.provider_secret
    );
    match &dc.callback_url {
        Some(url) => println!("  callbacks to {url}"),
        None => println!(
            "  callbacks: none sent (pass --callback-url \
             http://127.0.0.1:8080/callbacks/decentro/{DECENTRO_ACCOUNT})"
        ),
    }
    println!("control endpoints under /_control on each; Ctrl-C to stop");
    println!();
    println!("intentkitd provider config for these simulators (add to intentkit.toml):");
    println!();
    println!("{}", config_snippet(p.base_url(), pc, d.base_url(), dc));
    let _ = tokio::signal::ctrl_c().await;
    p.shutdown();
    d.shutdown();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_set_the_simulators_credentials_and_defaults_stay_fixed() {
        let Ok(Command::Run(a)) = parse(&["--webhook-secret", "whsec_x", "--api-key", "pk_x"])
        else {
            panic!("not a run");
        };
        assert_eq!(a.pientegra.webhook_secret.expose(), "whsec_x");
        assert_eq!(a.pientegra.api_key.expose(), "pk_x");
        assert_eq!(a.pientegra_addr.to_string(), "127.0.0.1:8701");
        assert_eq!(a.decentro_addr.to_string(), "127.0.0.1:8702");
        assert!(matches!(parse(&["--help"]), Ok(Command::Help)));
        assert!(parse(&["--webhook-secret"]).is_err());
        assert!(parse(&["--webhook-secret", ""]).is_err());
        assert!(parse(&["--nope"]).is_err());
    }

    #[test]
    fn the_snippet_escapes_what_toml_would_misread() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_str("a\nb"), r#""a\u000Ab""#);
    }
}
