//! The README's main job as a separate process: `intentkitd --sandbox` starts, prints a demo
//! deposit that works, serves it over gRPC, settles it from a real webhook, and stops cleanly
//! on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use intentkit_proto::v1;
use intentkit_proto::v1::intent_service_client::IntentServiceClient;

fn field<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in {lines:#?}"))
        .trim()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_runs_a_deposit_end_to_end_and_stops_on_sigterm() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    // Every log line, down to trace, goes to a file that must hold no secret.
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_intentkitd"))
        .args(["--sandbox", "--data-dir"])
        .arg(dir.path())
        .env("INTENTKIT_SERVER_LOG_LEVEL", "trace")
        .env("INTENTKIT_SERVER_GRPC_ADDR", "127.0.0.1:0")
        .env("INTENTKIT_SERVER_HTTP_ADDR", "127.0.0.1:0")
        .env("INTENTKIT_SERVER_METRICS_ADDR", "")
        .env("INTENTKIT_SANDBOX_PIENTEGRA_ADDR", "127.0.0.1:0")
        .env("INTENTKIT_SANDBOX_DECENTRO_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("StreamEvents")) {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "intentkitd exited early: {lines:#?}"
        );
        lines.push(line);
    }
    let grpc = field(&lines, "gRPC")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let url = lines
        .iter()
        .map(|l| l.trim())
        .find(|l| l.contains("/d/"))
        .unwrap()
        .to_string();
    let approve = field(&lines, "curl -X POST").to_string();
    let id = lines
        .iter()
        .find_map(|l| l.split("\"id\":\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();

    // The hosted page the sandbox printed is live.
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status().as_u16(), 200);

    // The printed grpcurl call, made with a tonic client.
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = IntentServiceClient::with_interceptor(channel, |mut r: tonic::Request<()>| {
        r.metadata_mut()
            .insert("authorization", "Bearer sandbox-token".parse().unwrap());
        Ok(r)
    });
    let get = |client: &mut IntentServiceClient<_>| {
        let mut c = client.clone();
        let id = id.clone();
        async move {
            c.get_intent(v1::GetIntentRequest { id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    assert_eq!(
        get(&mut client).await.status,
        v1::IntentStatus::Pending as i32
    );

    // The printed approval: the simulator signs a webhook to the sandbox's receiver.
    let r = reqwest::Client::new().post(&approve).send().await.unwrap();
    assert!(r.status().is_success(), "{approve}: {}", r.status());
    let mut approved = false;
    for _ in 0..250 {
        if get(&mut client).await.status == v1::IntentStatus::Approved as i32 {
            approved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(approved, "the webhook settled the demo deposit");

    // SIGTERM: a clean stop.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("stopped"), "{rest}");

    // The whole run logged at trace (a create with the API key, a signed webhook, gRPC calls
    // with the bearer token): no credential in any line.
    let logs = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(logs.lines().count() > 20, "trace logging was on: {logs}");
    let p = intentkit_sandbox::pientegra::Config::default();
    let d = intentkit_sandbox::decentro::Config::default();
    for secret in [
        "sandbox-token",
        p.api_key.expose(),
        p.webhook_secret.expose(),
        &d.client_id,
        &d.client_secret,
        &d.module_secret,
        &d.provider_secret,
    ] {
        assert!(!logs.contains(secret), "a log line holds {secret:?}");
    }
}

#[test]
fn help_explains_every_option_and_the_example_config_is_accepted() {
    let out = Command::new(env!("CARGO_BIN_EXE_intentkitd"))
        .arg("--help")
        .env("INTENTKIT_SERVER_AUTH_TOKENS", "tok_help_secret_91")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for option in [
        "--config",
        "--sandbox",
        "--data-dir",
        "--check-config",
        "--pientegra-addr",
        "--decentro-addr",
        "docs/config.md",
    ]
    .into_iter()
    .map(String::from)
    .chain(
        intentkit_grpc_server::options::ServerArgs::keys()
            .into_iter()
            .flat_map(|k| {
                [
                    format!("--{}", k.replace('_', "-")),
                    format!("[file: {k}]"),
                    format!("INTENTKIT_SERVER_{}", k.to_ascii_uppercase()),
                ]
            }),
    ) {
        assert!(help.contains(&option), "--help does not mention {option}");
    }
    assert!(help.contains("[default: 127.0.0.1:50051]"), "{help}");
    assert!(
        !help.contains("tok_help_secret_91"),
        "--help showed a variable's value"
    );

    // The documented example is a config intentkitd accepts.
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/intentkit.example.toml"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_intentkitd"))
        .args(["--check-config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A bad config is refused with the field named and exit status 2; so is a bad flag, with
    // its value never repeated.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlog_format = \"xml\"\nauth_tokens = [\"t\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_intentkitd"))
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log_format"));
    let out = Command::new(env!("CARGO_BIN_EXE_intentkitd"))
        .arg("--check-config")
        .arg(example)
        .args(["--webhook-body-limit", "tok_flag_secret_55"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("webhook_body_limit"), "{err}");
    assert!(!err.contains("tok_flag_secret_55"), "{err}");
    // No mode at all is a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_intentkitd"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
