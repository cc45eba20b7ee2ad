//! The hosted deposit page in a real browser: Debian's headless Chromium, driven through
//! chromedriver (WebDriver). `scripts/test.sh` installs both. Without them this test fails,
//! unless `INTENTKIT_SKIP_BROWSER_TESTS=1` says to skip it on purpose.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use intentkit_core::provider::pientegra::client::PientegraClient;
use intentkit_core::{
    AccountName, ApplyOutcome, Currency, DepositRequest, IdempotencyKey, IntentRequest,
    IntentStatus, Ledger, Metadata, MinorUnits, PartnerReference, PayerHandoff, ProviderRef,
    Signal, SqliteConfig, SqliteStore, UserId,
};
use intentkit_sandbox::pientegra::{Config, Simulator};
use serde_json::json;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<String> {
    std::env::var("CHROMEDRIVER").ok().or_else(|| {
        ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .map(str::to_string)
    })
}

async fn browser() -> Option<(Client, Driver, tempfile::TempDir)> {
    let Some(driver_bin) = chromedriver() else {
        if std::env::var("INTENTKIT_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
            eprintln!("skipping: no chromedriver and INTENTKIT_SKIP_BROWSER_TESTS=1");
            return None;
        }
        panic!(
            "chromedriver not found: run `bash scripts/test.sh` (it installs Debian's chromium \
             and chromium-driver), set CHROMEDRIVER, or set INTENTKIT_SKIP_BROWSER_TESTS=1"
        );
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let mut last_err = None;
    for _ in 0..50 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return Some((c, driver, profile)),
            Err(e) => last_err = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("could not start a Chromium session: {last_err:?}");
}

fn deposit(amount: i64) -> IntentRequest {
    IntentRequest::Deposit(DepositRequest {
        account: AccountName::new("tr-main").unwrap(),
        amount: MinorUnits::new(amount).unwrap(),
        currency: Currency::TRY,
        reference: PartnerReference::new("order-7").unwrap(),
        user_id: UserId::new("user-7").unwrap(),
        user_label: None,
        metadata: Metadata::default(),
    })
}

fn page_url(ev: &intentkit_core::IntentEvent) -> String {
    match &ev.signal {
        Signal::HandoffIssued {
            handoff: PayerHandoff::HostedPage { url },
            ..
        } => url.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_payer_confirms_on_the_hosted_page_and_an_expired_link_shows_its_state() {
    let Some((browser, _driver, _profile)) = browser().await else {
        return;
    };
    let clock = clock();
    let sim = Simulator::start(Config::default(), Arc::new(clock.clone()), loopback())
        .await
        .unwrap();
    let client = PientegraClient::new(pientegra_account(sim.base_url(), None)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("b.db"), SqliteConfig::default()).unwrap();
    let ledger = Ledger::new(Arc::new(store), Arc::new(clock.clone()));

    // Our intent, created at the simulator, its hand-off recorded.
    let intent = ledger
        .create(deposit(250_075), IdempotencyKey::new("browser-1").unwrap())
        .unwrap()
        .intent;
    let handoff = client.create_deposit(&intent).await.unwrap();
    let url = page_url(&handoff);
    let Some(ProviderRef::Pientegra { intent_id, .. }) = handoff.provider_ref.clone() else {
        panic!()
    };
    ledger.apply(intent.id, handoff).unwrap();

    browser.goto(&url).await.unwrap();
    let text = |id: &'static str| {
        let browser = browser.clone();
        async move {
            browser
                .find(Locator::Id(id))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(text("amount").await, "2.500,75 TRY");
    assert_eq!(text("iban").await, "TR33 0006 1005 1978 6457 8413 26");
    assert!(text("reference").await.starts_with("D-2026-"));
    let countdown = text("countdown").await;
    let (m, s) = countdown.split_once(':').expect("mm:ss");
    let left = m.parse::<u32>().unwrap() * 60 + s.parse::<u32>().unwrap();
    assert!((29 * 60..=30 * 60).contains(&left), "countdown {countdown}");

    browser
        .find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The click submits a form; wait for the page it leads to.
    let state = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("state"))
        .await
        .unwrap();
    assert_eq!(
        state.attr("data-status").await.unwrap().as_deref(),
        Some("PENDING_REVIEW")
    );

    // The provider now reports the payer's confirmation; read for support, it moves our
    // intent to payer_confirmed.
    let seen = client
        .get_intent(&intent_id)
        .await
        .unwrap()
        .event()
        .unwrap()
        .unwrap();
    let outcome = ledger.apply(intent.id, seen).unwrap();
    assert!(
        matches!(outcome, ApplyOutcome::Applied { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        ledger.get(intent.id).unwrap().status,
        IntentStatus::PayerConfirmed
    );

    // A second deposit whose link runs out.
    let other = ledger
        .create(deposit(100_000), IdempotencyKey::new("browser-2").unwrap())
        .unwrap()
        .intent;
    let expired_url = page_url(&client.create_deposit(&other).await.unwrap());
    clock.advance_millis(30 * 60_000);
    browser.goto(&expired_url).await.unwrap();
    let state = browser.find(Locator::Id("state")).await.unwrap();
    assert_eq!(
        state.attr("data-status").await.unwrap().as_deref(),
        Some("AUTO_CANCELLED")
    );
    assert!(state.text().await.unwrap().contains("expired"));
    assert!(
        browser.find(Locator::Id("confirm")).await.is_err(),
        "no payment button on an expired link"
    );
    browser.close().await.unwrap();
}
