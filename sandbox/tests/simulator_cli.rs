//! The standalone `intentkit-sandbox` binary: its help, and the config it prints, which must be
//! what intentkitd reads and what the simulators it started accept and sign with.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use intentkit_core::provider::Secret;
use intentkit_core::provider::config::ProvidersConfig;
use intentkit_core::provider::pientegra::signature_header;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_intentkit-sandbox");

/// Kills the simulator however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn help_prints_usage_on_stdout_and_exits_zero() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("usage: intentkit-sandbox"), "{stdout}");
    for flag in [
        "--webhook-secret",
        "--api-key",
        "--webhook-url",
        "--pientegra",
    ] {
        assert!(stdout.contains(flag), "{flag} missing from {stdout}");
    }
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unknown_flag_is_refused_on_stderr_with_exit_two() {
    let out = Command::new(BIN).arg("--webhook-secrte").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown argument --webhook-secrte"),
        "{stderr}"
    );
}

/// A webhook endpoint that hands over each delivery's signature header and raw body.
async fn webhook_receiver() -> (String, mpsc::UnboundedReceiver<(String, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route(
            "/webhooks/pientegra/tr-main",
            axum::routing::post(
                |State(tx): State<mpsc::UnboundedSender<(String, Bytes)>>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let sig = headers
                        .get("Pientegra-Signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send((sig, body));
                },
            ),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/webhooks/pientegra/tr-main",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// Starts the binary with `args` on ephemeral ports and returns it with everything it printed
/// up to the config snippet's last line.
async fn start(args: &[&str]) -> (Running, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["--pientegra", "127.0.0.1:0", "--decentro", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let (tx, mut lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut printed = Vec::new();
    while !printed
        .last()
        .is_some_and(|l: &String| l.starts_with("provider_secret = "))
    {
        match tokio::time::timeout(Duration::from_secs(30), lines.recv()).await {
            Ok(Some(line)) => printed.push(line),
            _ => panic!("no config snippet; printed:\n{}", printed.join("\n")),
        }
    }
    (running, printed)
}

/// The printed lines from `[pientegra.tr-main]` on.
fn snippet(printed: &[String]) -> String {
    let start = printed
        .iter()
        .position(|l| l == "[pientegra.tr-main]")
        .unwrap_or_else(|| panic!("no [pientegra.tr-main]:\n{}", printed.join("\n")));
    printed[start..].join("\n")
}

#[tokio::test]
async fn the_printed_config_reaches_the_simulators_and_names_the_secret_they_sign_with() {
    let (webhook_url, mut deliveries) = webhook_receiver().await;
    let (_running, printed) = start(&[
        "--webhook-secret",
        "whsec_test",
        "--webhook-url",
        &webhook_url,
    ])
    .await;
    let all = printed.join("\n");
    assert!(all.contains("signs webhooks with whsec_test"), "{all}");

    // intentkitd reads it as it is, with nothing from the environment.
    let config = ProvidersConfig::from_toml(&snippet(&printed), |_| None).unwrap();
    let (_, p) = config.pientegra.iter().next().unwrap();
    let (_, d) = config.decentro.iter().next().unwrap();
    assert_eq!(p.name.as_str(), "tr-main");
    assert_eq!(d.name.as_str(), "in-main");
    assert_eq!(p.webhook.current.expose(), "whsec_test");
    assert_eq!(p.api_key.expose(), "pk_sandbox");

    // The Pientegra simulator accepts its key, and signs with the printed secret.
    intentkit_core::provider::http::install_crypto_provider();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/external/deposits", p.base_url))
        .header("Authorization", format!("Bearer {}", p.api_key.expose()))
        .header("Idempotency-Key", "0198c0de-0000-7000-8000-00000000c11")
        .header("content-type", "application/json")
        .body(json!({"externalUserId": "user-1", "amount": "125000"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let root = p.base_url.trim_end_matches("/api/v1");
    let id = created["intentId"].as_str().unwrap();
    let r = http
        .post(format!("{root}/_control/intents/{id}/approve"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let (sig, body) = tokio::time::timeout(Duration::from_secs(10), deliveries.recv())
        .await
        .expect("no webhook within 10 s")
        .unwrap();
    let t: i64 = sig
        .strip_prefix("t=")
        .and_then(|s| s.split(',').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("bad signature header {sig:?}"));
    assert_eq!(
        sig,
        signature_header(&Secret::new("whsec_test"), t, &body),
        "not signed with the secret given and printed"
    );

    // The Decentro simulator accepts the four credentials.
    let r = http
        .post(format!("{}/v2/payments/penny_pull", d.base_url))
        .header("client_id", d.client_id.expose())
        .header("client_secret", d.client_secret.expose())
        .header("module_secret", d.module_secret.expose())
        .header("provider_secret", d.provider_secret.expose())
        .header("content-type", "application/json")
        .body(
            json!({
                "reference_id": "cli-check-1",
                "purpose_message": "Verify account",
                "generate_qr": 0,
                "generate_uri": 0,
                "customized_qr_with_logo": 0,
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let reply: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        reply["responseKey"], "successful_payment_link_created",
        "{status} {reply}"
    );
}

#[tokio::test]
async fn the_readme_shows_the_config_the_binary_prints_on_its_default_ports() {
    let (_running, printed) = start(&[]).await;
    let config = ProvidersConfig::from_toml(&snippet(&printed), |_| None).unwrap();
    let (_, p) = config.pientegra.iter().next().unwrap();
    let (_, d) = config.decentro.iter().next().unwrap();
    let expected = snippet(&printed)
        .replace(
            &format!("\"{}\"", p.base_url),
            "\"http://127.0.0.1:8701/api/v1\"",
        )
        .replace(&format!("\"{}\"", d.base_url), "\"http://127.0.0.1:8702\"");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert!(
        readme.contains(&format!("```toml\n{expected}\n```")),
        "README.md's standalone simulators section should show:\n{expected}"
    );
}
