//! Reconciliation, recovery and expiry run by the maintenance loop: windowed sweeps, a lost
//! create found again, and one hung provider not holding up another.

use crate::common::*;
use crate::world::*;
use intentkit_core::IntentStatus;
use intentkit_sandbox::pientegra;
use serde_json::json;

#[tokio::test]
async fn reconciliation_replays_a_missed_webhook_through_the_receiver() {
    let w = world(4).await;
    let dead = json!({"url": "http://127.0.0.1:1/webhooks/pientegra/tr-main"});
    w.control_p("webhook-url", dead).await;
    let i = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap();
    w.control_p(&format!("intents/{}/approve", pientegra_id(&i)), json!({}))
        .await;
    assert!(
        eventually(|| w
            .pientegra
            .deliveries()
            .iter()
            .any(|d| d.2 == pientegra::DeliveryStatus::Failed))
        .await
    );
    w.control_p("deliveries/hold", json!({})).await;
    assert_eq!(
        w.engine.get(i.id).await.unwrap().status,
        IntentStatus::Pending
    );

    // Delivery works again; reconciliation finds the failed delivery and has it resent.
    let url = receiver_for(w.engine.clone()).await;
    w.control_p(
        "webhook-url",
        json!({"url": format!("{url}/webhooks/pientegra/tr-main")}),
    )
    .await;
    let report = w.engine.reconcile().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.replayed, 1);
    assert_eq!(
        w.engine.get(i.id).await.unwrap().status,
        IntentStatus::Approved
    );
    let history = w.engine.history(i.id).await.unwrap();
    assert_eq!(
        history.last().unwrap().cause,
        intentkit_core::Cause::Webhook
    );
}

#[tokio::test]
async fn one_windowed_sweep_settles_every_stuck_intent_in_a_few_calls() {
    // 250 deposits whose webhooks never arrive: 150 approved and 50 rejected at Pientegra,
    // 50 still open. A pass costs list pages, not one call per intent.
    let w = world(4).await;
    w.control_p("deliveries/hold", json!({})).await;
    let mut intents = Vec::new();
    for n in 0..250 {
        w.clock.advance_millis(1_000);
        intents.push(
            w.engine
                .create_deposit(deposit(100_000 + n), key(&format!("d-{n}")))
                .await
                .unwrap(),
        );
    }
    for (n, i) in intents[..200].iter().enumerate() {
        let action = if n % 4 == 3 { "reject" } else { "approve" };
        w.control_p(&format!("intents/{}/{action}", pientegra_id(i)), json!({}))
            .await;
    }
    // Webhooks are late once the intents are a few minutes old.
    w.clock.advance_millis(10 * 60_000);
    let report = w.engine.reconcile().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.settled, 200);
    // tr-main: one events page, two intents pages of 100; tr-other: one events page (it has
    // nothing open, so no window).
    assert_eq!(report.calls, 4, "{report:?}");
    let mut statuses = std::collections::BTreeMap::new();
    for i in &intents {
        *statuses
            .entry(w.engine.get(i.id).await.unwrap().status.as_str())
            .or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        [("approved", 150), ("pending", 50), ("rejected", 50)].into()
    );
    let h = w.engine.history(intents[0].id).await.unwrap();
    assert_eq!(h.last().unwrap().cause, intentkit_core::Cause::StatusPoll);

    // Nothing new at the provider: nothing settles, and the window starts at the oldest
    // intent still open here (the last 50), so one page covers it.
    let again = w.engine.reconcile().await;
    assert_eq!((again.settled, again.calls), (0, 3), "{again:?}");

    // Once nothing is open here, a pass only asks for missed deliveries.
    for i in &intents[200..] {
        w.control_p(&format!("intents/{}/approve", pientegra_id(i)), json!({}))
            .await;
    }
    assert_eq!(w.engine.reconcile().await.settled, 50);
    let idle = w.engine.reconcile().await;
    assert_eq!((idle.settled, idle.calls), (0, 2), "{idle:?}");
}

#[tokio::test]
async fn maintenance_recovers_on_start_and_settles_expiry_on_a_later_pass() {
    let w = world(0).await;
    w.control_p("faults", json!({"error_rate": 1.0})).await;
    let err = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "PROVIDER_UNAVAILABLE");
    w.control_p("faults", json!({})).await;
    w.clock.advance_millis(60_000);

    let mut maintenance = w.run_maintenance(std::time::Duration::from_millis(50));
    // Each account runs its own pass; tr-main's first one recovers the intent.
    let first = maintenance
        .next("of tr-main", |r| {
            r.jobs
                .iter()
                .any(|j| j.account.as_str() == "tr-main")
                .then_some(r)
        })
        .await;
    assert_eq!(first.recovered, 1, "{first:?}");
    let recovery = first
        .jobs
        .iter()
        .find(|j| j.job == intentkit_core::Job::Recovery)
        .unwrap();
    assert_eq!((recovery.done, recovery.backlog), (1, 0), "{recovery:?}");
    let (page, _) = w.engine.list(Default::default(), None, 10).await.unwrap();
    assert_eq!(page[0].status, IntentStatus::Pending);

    // Only our timer may expire it: the simulator's own auto-cancel webhook is held back.
    w.control_p("deliveries/hold", json!({})).await;
    w.clock.advance_millis(30 * 60_000);
    // Our timer, or reconciliation seeing Pientegra's AUTO_CANCELLED, whichever the pass
    // reaches first after the clock moved.
    let expired = maintenance
        .next("expired the intent", |r| {
            (r.expired + r.reconcile.settled > 0).then_some(r)
        })
        .await;
    assert_eq!(
        expired.expired + expired.reconcile.settled,
        1,
        "{expired:?}"
    );
    assert!(expired.errors.is_empty(), "{expired:?}");
    assert_eq!(
        w.engine.get(page[0].id).await.unwrap().status,
        IntentStatus::Expired
    );
    maintenance.stop().await;
}

#[tokio::test]
async fn a_create_cut_off_while_pientegra_holds_it_is_recovered_as_the_same_deposit() {
    let w = world_with(0, |_, acc| acc.http.request_timeout_ms = 500).await;
    w.control_p("faults", json!({"create_hold_ms": 2_000}))
        .await;
    let err = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        "PROVIDER_UNAVAILABLE",
        "our client gave up mid-hold"
    );
    w.control_p("faults", json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    w.clock.advance_millis(60_000);
    assert_eq!(w.engine.recover_created().await.unwrap(), 1);
    let (page, _) = w.engine.list(Default::default(), None, 10).await.unwrap();
    assert_eq!(page[0].status, IntentStatus::Pending);
    assert_eq!(
        w.pientegra.intent_ids(),
        vec![pientegra_id(&page[0])],
        "the deposit Pientegra already held, not a second one"
    );
}

#[tokio::test]
async fn past_the_idempotency_window_recovery_finds_the_deposit_by_our_key_instead_of_creating() {
    let w = world(0).await;
    // The create reaches Pientegra, which commits it; its answer is lost.
    w.control_p("faults", json!({"drop_after_commit": 1})).await;
    w.engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap_err();
    assert_eq!(w.pientegra.intent_ids().len(), 1);
    // Nothing reaches Pientegra again for a day (a longer outage than recovery can bridge);
    // then the caller retries with the same key, as it was told it may.
    w.clock.advance_millis(24 * 60 * 60 * 1_000);
    let retried = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap();
    let (page, _) = w.engine.list(Default::default(), None, 10).await.unwrap();
    let found = &page[0];
    assert_eq!(found.id, retried.id);
    assert_eq!(found.status, IntentStatus::Expired, "{found:?}");
    assert_eq!(
        w.pientegra.intent_ids(),
        vec![pientegra_id(found)],
        "found by our key; not created a second time"
    );

    // A create that never reached Pientegra fails with the reason, and is not sent again.
    w.control_p("faults", json!({"error_rate": 1.0})).await;
    w.engine
        .create_deposit(deposit(100_001), key("d-2"))
        .await
        .unwrap_err();
    w.control_p("faults", json!({})).await;
    w.clock.advance_millis(24 * 60 * 60 * 1_000);
    assert_eq!(w.engine.recover_created().await.unwrap(), 1);
    let (page, _) = w.engine.list(Default::default(), None, 10).await.unwrap();
    let failed = page
        .iter()
        .find(|i| i.reference.as_str() == "order-9" && i.amount.get() == 100_001)
        .unwrap();
    assert_eq!(failed.status, IntentStatus::Failed);
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap()
            .starts_with(intentkit_core::PROVIDER_WINDOW_PASSED),
        "{failed:?}"
    );
    assert_eq!(w.pientegra.intent_ids().len(), 1);
}

#[tokio::test]
async fn a_hung_provider_delays_only_its_own_accounts_maintenance() {
    let w = world_with(0, |s, _| {
        s.job_budget_ms = 1_500;
        s.recover_after_ms = 1_000;
    })
    .await;
    // Decentro: two verifications that will be due, whose status look-ups will hang.
    for n in 0..2 {
        w.engine
            .create_account_verification(verification(), key(&format!("v-{n}")))
            .await
            .unwrap();
    }
    // Pientegra: a deposit that will be due, and one left in `created` by a failed create.
    let due = w
        .engine
        .create_deposit(deposit(100_000), key("d-due"))
        .await
        .unwrap();
    w.control_p("faults", json!({"error_rate": 1.0})).await;
    w.engine
        .create_deposit(deposit(100_001), key("d-stuck"))
        .await
        .unwrap_err();
    w.control_p("faults", json!({})).await;
    w.control_p("deliveries/hold", json!({})).await;
    w.control_d("faults", json!({"latency_ms": 120_000})).await;
    w.clock.advance_millis(30 * 60_000);

    let mut maintenance = w.run_maintenance(std::time::Duration::from_millis(100));
    let started = std::time::Instant::now();
    assert!(w.settles(due.id, IntentStatus::Expired).await);
    let (page, _) = w.engine.list(Default::default(), None, 10).await.unwrap();
    let stuck = page
        .iter()
        .find(|i| i.idempotency_key.as_str() == "d-stuck")
        .unwrap();
    assert!(w.settles(stuck.id, IntentStatus::Pending).await);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1_000),
        "Pientegra's work waited {:?} for Decentro's",
        started.elapsed()
    );
    // Decentro's own pass runs into its budget: its expiry job is cut short or its look-ups
    // give up, and the verifications expire with a re-check parked.
    let decentro = maintenance
        .next("ended Decentro's expiry job", |r| {
            r.jobs
                .into_iter()
                .find(|j| j.account.as_str() == "in-main" && j.job == intentkit_core::Job::Expiry)
        })
        .await;
    assert!(
        decentro.elapsed >= std::time::Duration::from_millis(1_400),
        "{decentro:?}"
    );
    assert_eq!(decentro.done, 2, "{decentro:?}");
    maintenance.stop().await;
}

#[tokio::test]
async fn a_sweep_costs_the_windows_holding_open_work_not_the_history() {
    // A week of history: 10,000 deposits settled at Pientegra (their webhooks came long ago),
    // and 100 still open, in 10 bursts of 10 a minute apart, one burst every 16 hours: their
    // payers pressed "I made the payment" and Pientegra is still reviewing.
    let w = world(4).await;
    w.control_p("deliveries/hold", json!({})).await;
    let week = 7 * 24 * 60 * 60 * 1_000;
    w.pientegra
        .seed_approved(10_000, T0.plus_millis(-60_000), T0.plus_millis(week));
    for burst in 0..10 {
        for n in 0..10 {
            let i = w
                .engine
                .create_deposit(deposit(100_000), key(&format!("open-{burst}-{n}")))
                .await
                .unwrap();
            w.control_p(
                &format!("intents/{}/payer-confirmed", pientegra_id(&i)),
                json!({}),
            )
            .await;
            w.clock.advance_millis(60_000);
        }
        w.clock.advance_millis(16 * 60 * 60 * 1_000 - 10 * 60_000);
    }
    w.clock.advance_millis(10 * 60_000);
    // The first pass learns of the reviews (no webhook announces them).
    let first = w.engine.reconcile().await;
    assert!(first.errors.is_empty(), "{first:?}");
    assert_eq!(first.settled, 100, "{first:?}");
    let report = w.engine.reconcile().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.settled, 0, "nothing new at Pientegra");
    assert_eq!(report.windows, 10, "one window per burst: {report:?}");
    // One events page per account, and one intents page per window (each holds about a
    // dozen of the 10,000): not the hundred pages of the week.
    assert_eq!(report.calls, 2 + report.windows, "{report:?}");

    // An open intent settles at Pientegra: the next pass finds it at the same cost.
    let (page, _) = w.engine.list(Default::default(), None, 1).await.unwrap();
    w.control_p(
        &format!("intents/{}/approve", pientegra_id(&page[0])),
        json!({}),
    )
    .await;
    let again = w.engine.reconcile().await;
    assert_eq!(again.settled, 1, "{again:?}");
    assert_eq!(again.calls, 2 + again.windows, "{again:?}");
}

#[tokio::test]
async fn a_job_another_instance_holds_is_left_to_it_until_it_gives_it_back() {
    use intentkit_core::store::Store;
    let w = world(0).await;
    let intent = w
        .engine
        .create_deposit(deposit(100_000), key("d-1"))
        .await
        .unwrap();
    // Only maintenance may settle it: the simulator's own auto-cancel webhook is held back.
    w.control_p("deliveries/hold", json!({})).await;
    w.clock.advance_millis(31 * 60_000);

    // Another instance on the same database holds every job of tr-main.
    let other = intentkit_core::SqliteStore::open(
        w._dir.path().join("e.db"),
        intentkit_core::SqliteConfig::default(),
    )
    .unwrap();
    let now = intentkit_core::Clock::now(&w.clock);
    let mut held = Vec::new();
    for job in intentkit_core::Job::ALL {
        let name = format!(
            "maintenance:{}:{}:tr-main",
            job.as_str(),
            intentkit_core::Provider::Pientegra
        );
        let fence = other
            .acquire_lease(&name, "other", now, now.plus_millis(3_600_000))
            .unwrap()
            .unwrap();
        held.push((name, fence));
    }
    let report = w.engine.maintain().await;
    let (mine, rest): (Vec<_>, Vec<_>) = report
        .jobs
        .iter()
        .partition(|j| j.account.as_str() == "tr-main");
    assert_eq!(mine.len(), 4, "{report:?}");
    assert!(
        mine.iter().all(|j| j.held_elsewhere && j.done == 0),
        "{mine:?}"
    );
    assert!(rest.iter().all(|j| !j.held_elsewhere), "{rest:?}");
    assert_eq!(
        w.engine.get(intent.id).await.unwrap().status,
        IntentStatus::Pending,
        "left to the instance that holds the job"
    );

    // Given back, the next pass here does it.
    for (name, fence) in held {
        other.release_lease(&name, "other", fence).unwrap();
    }
    let report = w.engine.maintain().await;
    assert_eq!(report.expired + report.reconcile.settled, 1, "{report:?}");
    assert_eq!(
        w.engine.get(intent.id).await.unwrap().status,
        IntentStatus::Expired
    );
}
