//! The gRPC façade end to end: a tonic client against the server on ephemeral ports, with
//! both provider simulators delivering signed webhooks and callbacks over real HTTP.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use intentkit_grpc_server::sandbox;
use intentkit_proto::v1;
use intentkit_proto::v1::intent_service_client::IntentServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The server as these tests want it: maintenance often enough to see within a test, and a
/// shutdown grace long enough for a 2-core machine.
async fn start() -> Harness {
    common::start(|c| {
        c.maintenance_interval_ms = 500;
        c.shutdown_grace_ms = 5_000;
    })
    .await
}

fn pientegra_id(i: &v1::Intent) -> String {
    match i.provider_ref.as_ref().and_then(|r| r.r#ref.as_ref()) {
        Some(v1::provider_ref::Ref::Pientegra(p)) => p.intent_id.clone(),
        other => panic!("no pientegra ref: {other:?}"),
    }
}

async fn control(root: &str, path: &str, body: serde_json::Value) {
    let status = reqwest::Client::new()
        .post(format!("{root}/_control/{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "control {path}: {status}");
}

async fn wait_for_status(client: &mut Client, id: &str, status: v1::IntentStatus) -> v1::Intent {
    for _ in 0..250 {
        let i = client
            .get_intent(v1::GetIntentRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        if i.status == status as i32 {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("intent {id} never reached {status:?}");
}

fn reason(s: &Status) -> String {
    let info = s.get_error_details();
    let info = info.error_info().expect("an ErrorInfo detail");
    assert_eq!(info.domain, "intentkit");
    info.reason.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_flows_through_every_rpc_with_the_webhook_over_http() {
    let h = start().await;
    let mut c = h.client().await;

    // Create: pending with a hosted page; the same key replays the same intent.
    let created = c
        .create_deposit(deposit("k-1", 150_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.status, v1::IntentStatus::Pending as i32);
    assert_eq!(created.amount_minor, 150_000);
    // The Idempotency-Key Pientegra got is on the intent, for support.
    assert!(
        uuid_like(&created.provider_key),
        "{:?}",
        created.provider_key
    );
    assert!(matches!(
        created.handoff.as_ref().and_then(|h| h.handoff.as_ref()),
        Some(v1::payer_handoff::Handoff::HostedPage(p)) if p.url.contains("/d/")
    ));
    let again = c
        .create_deposit(deposit("k-1", 150_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, created.id);
    assert_eq!(h.sims.pientegra.intent_count(), 1);

    // Pientegra approves a different amount; its signed webhook reaches the receiver.
    let pid = pientegra_id(&created);
    control(
        &h.sims.pientegra.root_url(),
        &format!("intents/{pid}/approve"),
        serde_json::json!({"amount": 149000}),
    )
    .await;
    let approved = wait_for_status(&mut c, &created.id, v1::IntentStatus::Approved).await;
    assert_eq!(approved.approved_amount_minor, Some(149_000));

    // Refresh asks Pientegra once and changes nothing.
    let refreshed = c
        .refresh_intent(v1::RefreshIntentRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refreshed.status, v1::IntentStatus::Approved as i32);

    // Cancel another before payment.
    let other = c
        .create_deposit(deposit("k-2", 20_000))
        .await
        .unwrap()
        .into_inner();
    let canceled = c
        .cancel_intent(v1::CancelIntentRequest {
            id: other.id.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(canceled.status, v1::IntentStatus::Canceled as i32);
    assert_eq!(canceled.reason, "changed my mind");

    // List: filters and pages.
    let _third = c
        .create_deposit(deposit("k-3", 30_000))
        .await
        .unwrap()
        .into_inner();
    let page1 = c
        .list_intents(v1::ListIntentsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page1.intents.len(), 2);
    assert!(!page1.next_page_token.is_empty());
    let page2 = c
        .list_intents(v1::ListIntentsRequest {
            page_size: 2,
            page_token: page1.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page2.intents.len(), 1);
    assert!(page2.next_page_token.is_empty());
    assert_eq!(page2.intents[0].id, created.id, "newest first");
    let approved_only = c
        .list_intents(v1::ListIntentsRequest {
            statuses: vec![v1::IntentStatus::Approved as i32],
            provider: v1::Provider::Pientegra as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved_only.intents.len(), 1);

    // Events: poll, ack, and the approval carries the approved amount.
    let events = c
        .list_events(v1::ListEventsRequest {
            consumer: "ledger".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let types: Vec<_> = events
        .events
        .iter()
        .filter(|e| e.intent_id == created.id)
        .map(|e| e.type_name.as_str())
        .collect();
    assert_eq!(
        types,
        ["intent.created", "intent.pending", "intent.approved"]
    );
    let credit = events
        .events
        .iter()
        .find(|e| e.r#type == v1::EventType::Approved as i32)
        .unwrap();
    assert_eq!(
        credit.business_key,
        format!("intent.approved:{}", created.id)
    );
    assert_eq!(
        credit.intent.as_ref().unwrap().approved_amount_minor,
        Some(149_000)
    );
    let last = events.events.last().unwrap().seq;
    let acked = c
        .ack_events(v1::AckEventsRequest {
            consumer: "ledger".into(),
            seq: last,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acked.acked_seq, last);
    let rest = c
        .list_events(v1::ListEventsRequest {
            consumer: "ledger".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rest.events.is_empty());
    assert_eq!(rest.acked_seq, last);

    // Metrics saw the requests, the webhook, and (tailing the outbox each second) the events.
    let mut m = String::new();
    for _ in 0..40 {
        m = h.metrics().await;
        if m.contains(r#"intentkit_outbox_events_total{type="intent.approved"} 1"#)
            && m.contains(r#"intentkit_outbox_lag_events{consumer="ledger"} 0"#)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        m.contains(r#"intentkit_outbox_events_total{type="intent.approved"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"intentkit_outbox_lag_events{consumer="ledger"} 0"#),
        "{m}"
    );
    assert!(
        m.contains(r#"intentkit_grpc_requests_total{method="CreateDeposit",code="OK"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"intentkit_webhooks_total{provider="pientegra",outcome="applied"}"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_verification_settles_from_the_decentro_callback() {
    let h = start().await;
    let mut c = h.client().await;
    let created = c
        .create_account_verification(v1::CreateAccountVerificationRequest {
            idempotency_key: "v-1".into(),
            account: sandbox::DECENTRO_ACCOUNT.into(),
            reference: "verify-user-1".into(),
            user_id: "user-1".into(),
            purpose_message: "Verify account".into(),
            generate_qr: true,
            generate_uri: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.status, v1::IntentStatus::Pending as i32);
    let Some(v1::payer_handoff::Handoff::Upi(upi)) =
        created.handoff.as_ref().and_then(|h| h.handoff.clone())
    else {
        panic!("no UPI hand-off: {created:?}");
    };
    assert!(!upi.short_link.is_empty() && !upi.qr_code.is_empty() && !upi.gpay_uri.is_empty());
    let txn = match created.provider_ref.as_ref().and_then(|r| r.r#ref.clone()) {
        Some(v1::provider_ref::Ref::Decentro(d)) => d.txn_id,
        other => panic!("{other:?}"),
    };
    control(
        h.sims.decentro.base_url(),
        &format!("transactions/{txn}/pay"),
        serde_json::json!({}),
    )
    .await;
    let done = wait_for_status(&mut c, &created.id, v1::IntentStatus::Approved).await;
    let payer = done.verified_payer.unwrap();
    assert!(!payer.masked_account_number.is_empty() && !payer.ifsc.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_their_code_and_stable_reason() {
    let h = start().await;
    let mut c = h.client().await;

    let s = c
        .get_intent(v1::GetIntentRequest {
            id: "01a20000-0000-7000-8000-000000000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::NotFound, "INTENT_NOT_FOUND")
    );

    let s = c
        .get_intent(v1::GetIntentRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::InvalidArgument, "INVALID_ARGUMENT")
    );

    let s = c.create_deposit(deposit("", 10_000)).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("idempotency_key"), "{}", s.message());

    c.create_deposit(deposit("same", 10_000)).await.unwrap();
    let s = c.create_deposit(deposit("same", 10_001)).await.unwrap_err();
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::AlreadyExists, "IDEMPOTENCY_CONFLICT")
    );

    let s = c.create_deposit(deposit("tiny", 10)).await.unwrap_err();
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::InvalidArgument, "amount_below_min")
    );

    let mut r = deposit("elsewhere", 10_000);
    r.account = "no-such-account".into();
    let s = c.create_deposit(r).await.unwrap_err();
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::NotFound, "UNKNOWN_ACCOUNT")
    );

    let s = c
        .create_account_verification(v1::CreateAccountVerificationRequest {
            idempotency_key: "v-bad".into(),
            account: sandbox::DECENTRO_ACCOUNT.into(),
            reference: "v-bad".into(),
            user_id: "u".into(),
            purpose_message: "Verify #1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(reason(&s), "error_unsanitized_values");

    // Cancel after approval: the state machine refuses.
    let i = c
        .create_deposit(deposit("paid", 10_000))
        .await
        .unwrap()
        .into_inner();
    control(
        &h.sims.pientegra.root_url(),
        &format!("intents/{}/approve", pientegra_id(&i)),
        serde_json::json!({}),
    )
    .await;
    wait_for_status(&mut c, &i.id, v1::IntentStatus::Approved).await;
    let s = c
        .cancel_intent(v1::CancelIntentRequest {
            id: i.id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::FailedPrecondition, "INVALID_TRANSITION")
    );

    let s = c
        .ack_events(v1::AckEventsRequest {
            consumer: "ledger".into(),
            seq: 1_000_000,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_token_are_refused_but_health_is_open() {
    let h = start().await;
    for token in [None, Some("wrong-token")] {
        let mut c = h.client_with(token).await;
        let s = c
            .get_intent(v1::GetIntentRequest { id: "x".into() })
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::Unauthenticated, "{token:?}");
        assert!(reason(&s).starts_with("AUTH_"));
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(h.channel().await);
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "intentkit.v1.IntentService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handle_webhook_rpc_verifies_what_the_host_passes_on() {
    let h = start().await;
    let mut c = h.client().await;
    let i = c
        .create_deposit(deposit("wh", 10_000))
        .await
        .unwrap()
        .into_inner();
    let body = format!(
        r#"{{"eventId":"evt-rpc-1","eventType":"intent.rejected","occurredAt":"2026-11-22T10:00:00.000Z","intent":{{"id":"{}","referenceNo":null,"externalUserId":"user-1","requestedAmount":"10000","amount":"10000","currency":"TRY","status":"REJECTED","rejectedReason":"Name mismatch"}}}}"#,
        pientegra_id(&i)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let secret = intentkit_sandbox::pientegra::Config::default().webhook_secret;
    let signed =
        intentkit_core::provider::pientegra::signature_header(&secret, now, body.as_bytes());
    let call = |sig: String| v1::HandleWebhookRequest {
        provider: v1::Provider::Pientegra as i32,
        account: sandbox::PIENTEGRA_ACCOUNT.into(),
        headers: [(
            intentkit_core::provider::pientegra::SIGNATURE_HEADER.to_string(),
            sig,
        )]
        .into(),
        body: body.clone().into_bytes(),
    };
    let forged = c
        .handle_webhook(call(flip_last(&signed)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (forged.http_status, forged.outcome.as_str()),
        (400, "refused")
    );
    assert_eq!(forged.reason, "WEBHOOK_SIGNATURE_MISMATCH");

    let ok = c
        .handle_webhook(call(signed.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ok.http_status, ok.outcome.as_str()), (200, "applied"));
    let dup = c.handle_webhook(call(signed)).await.unwrap().into_inner();
    assert_eq!((dup.http_status, dup.outcome.as_str()), (200, "duplicate"));
    let r = wait_for_status(&mut c, &i.id, v1::IntentStatus::Rejected).await;
    assert_eq!(r.reason, "Name mismatch");

    // An unknown account, and a name that cannot be one, get one answer everywhere: the
    // receiver's and the RPC's are the same status, body and reason.
    let http = reqwest::Client::new();
    let base = format!("http://{}", h.server().http_addr());
    for account in ["nobody", "not%20an%20account", "x.."] {
        let r = http
            .post(format!("{base}/webhooks/pientegra/{account}"))
            .body("{}")
            .send()
            .await
            .unwrap();
        let (status, body) = (r.status().as_u16(), r.text().await.unwrap());
        let rpc = c
            .handle_webhook(v1::HandleWebhookRequest {
                provider: v1::Provider::Pientegra as i32,
                account: account.replace("%20", " "),
                headers: Default::default(),
                body: b"{}".to_vec(),
            })
            .await
            .unwrap_or_else(|e| panic!("{account}: the RPC refused the call: {e}"))
            .into_inner();
        assert_eq!(status, 404, "{account}");
        assert_eq!(
            (rpc.http_status, rpc.http_body.as_str(), rpc.reason.as_str()),
            (404, body.as_str(), "UNKNOWN_ACCOUNT"),
            "{account}"
        );
        assert_eq!(rpc.outcome, "unknown_account");
    }
    // A provider intentkit does not know is as unknown as an account.
    let r = http
        .post(format!("{base}/webhooks/paypal/tr-main"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = http
        .post(format!(
            "{base}/webhooks/pientegra/{}",
            sandbox::PIENTEGRA_ACCOUNT
        ))
        .body(vec![b'x'; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
}

/// A hyphenated UUID's shape.
fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

/// The same header with its last hex digit changed: well-formed, but wrong.
fn flip_last(header: &str) -> String {
    let mut s = header.to_string();
    let last = s.pop().unwrap();
    s.push(if last == '0' { '1' } else { '0' });
    s
}

async fn read_events(stream: &mut tonic::Streaming<v1::Event>, n: usize) -> Vec<v1::Event> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream to stay open");
        out.push(e);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_after_a_disconnect_with_nothing_lost_or_repeated() {
    let h = start().await;
    let mut c = h.client().await;
    for k in 0..3 {
        c.create_deposit(deposit(&format!("s-{k}"), 10_000))
            .await
            .unwrap();
    }
    // 3 intents × (created, pending) = 6 events.
    let mut stream = c
        .stream_events(v1::StreamEventsRequest {
            consumer: "ledger".into(),
            after_seq: None,
        })
        .await
        .unwrap()
        .into_inner();
    let first = read_events(&mut stream, 4).await;
    c.ack_events(v1::AckEventsRequest {
        consumer: "ledger".into(),
        seq: first[3].seq,
    })
    .await
    .unwrap();
    drop(stream);

    // Written while nobody listens.
    for k in 3..5 {
        c.create_deposit(deposit(&format!("s-{k}"), 10_000))
            .await
            .unwrap();
    }
    let mut stream = c
        .stream_events(v1::StreamEventsRequest {
            consumer: "ledger".into(),
            after_seq: None,
        })
        .await
        .unwrap()
        .into_inner();
    let rest = read_events(&mut stream, 6).await;
    let seqs: Vec<u64> = first.iter().chain(&rest).map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=10).collect();
    assert_eq!(seqs, expected, "every event once, in order");

    // A live event arrives on the open stream.
    c.create_deposit(deposit("s-live", 10_000)).await.unwrap();
    let live = read_events(&mut stream, 2).await;
    assert_eq!(live[0].seq, 11);
    assert_eq!(live[0].type_name, "intent.created");
}

/// An intent written to the server's SQLite file by another process (a ledger of its own, which
/// cannot tell this server's engine anything).
fn write_from_another_process(database: &std::path::Path, key: &str) {
    use intentkit_core::*;
    let store = SqliteStore::open(database, SqliteConfig::default()).unwrap();
    let ledger = Ledger::new(Arc::new(store), Arc::new(SystemClock));
    let request = IntentRequest::Deposit(DepositRequest {
        account: AccountName::new(sandbox::PIENTEGRA_ACCOUNT).unwrap(),
        amount: MinorUnits::new(10_000).unwrap(),
        currency: Currency::TRY,
        reference: PartnerReference::new(format!("order-{key}")).unwrap(),
        user_id: UserId::new("user-1").unwrap(),
        user_label: None,
        metadata: Metadata::default(),
    });
    ledger
        .create(request, IdempotencyKey::new(key).unwrap())
        .unwrap();
}

async fn open_stream(c: &mut Client) -> Result<tonic::Streaming<v1::Event>, Status> {
    c.stream_events(v1::StreamEventsRequest {
        consumer: "idle".into(),
        after_seq: Some(0),
    })
    .await
    .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_cost_the_store_nothing_and_every_write_still_reaches_them() {
    const STREAMS: usize = 40;
    let (h, counting) = start_counting(|c| {
        // Maintenance would query the store on its own schedule; not what is measured.
        c.maintenance_interval_ms = 3_600_000;
        c.max_streams_per_token = STREAMS;
    })
    .await;
    let mut c = h.client().await;
    c.create_deposit(deposit("idle-0", 10_000)).await.unwrap();
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let mut s = open_stream(&mut c).await.unwrap();
        // created, pending
        assert_eq!(read_events(&mut s, 2).await[1].seq, 2);
        streams.push(s);
    }

    // Idle for a second: the streams make no store call of their own. What is left is the
    // engine's one feed watcher (about 5 head look-ups a second, however many streams) and
    // the metrics tail (a head, a read and a consumer's position, once a second).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = counting.calls();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = counting.calls();
    let delta = |m: &str| after.get(m).unwrap_or(&0) - before.get(m).unwrap_or(&0);
    let total = after.values().sum::<u64>() - before.values().sum::<u64>();
    assert!(
        delta("read_events") <= 2,
        "idle streams read the outbox: {before:?} -> {after:?}"
    );
    assert!(
        total <= 16,
        "{total} store calls in an idle second with {STREAMS} streams: {before:?} -> {after:?}"
    );

    // A write through this server reaches every stream.
    c.create_deposit(deposit("idle-1", 10_000)).await.unwrap();
    for s in &mut streams {
        assert_eq!(read_events(s, 2).await[1].seq, 4);
    }
    // So does one by another process on the same database, within a few of the watcher's
    // polls.
    let started = std::time::Instant::now();
    write_from_another_process(&h.database, "idle-other");
    for s in &mut streams {
        assert_eq!(read_events(s, 1).await[0].seq, 5);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "another process's event took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_per_token_cap_are_refused_and_a_closed_one_frees_its_slot() {
    const OTHER: &str = "another-token";
    let h = common::start(|c| {
        c.max_streams_per_token = 3;
        c.auth_tokens
            .push(intentkit_core::provider::Secret::new(OTHER));
    })
    .await;
    // Over two connections: the cap is per token, not per connection.
    let (mut a1, mut a2) = (h.client().await, h.client().await);
    let mut held = vec![
        open_stream(&mut a1).await.unwrap(),
        open_stream(&mut a2).await.unwrap(),
        open_stream(&mut a1).await.unwrap(),
    ];
    let refused = open_stream(&mut a2).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused), "TOO_MANY_STREAMS");
    assert!(!refused.message().contains(sandbox::SANDBOX_TOKEN));

    // Another token has its own slots.
    let mut b = h.client_with(Some(OTHER)).await;
    let _other = open_stream(&mut b).await.unwrap();

    // A stream the client closes gives its slot back (once the server sees it go).
    held.pop();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let reopened = loop {
        match open_stream(&mut a1).await {
            Ok(s) => break s,
            Err(s)
                if s.code() == Code::ResourceExhausted && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("the closed stream's slot was not freed: {s:?}"),
        }
    };
    held.push(reopened);
    assert_eq!(
        open_stream(&mut a1).await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    // Counted (at least the two refusals above; the retries while the slot was freed too).
    let metrics = h.metrics().await;
    assert!(
        metrics
            .contains(r#"intentkit_limit_hits_total{listener="grpc",limit="streams_per_token"} "#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_finishes_in_flight_work_and_ends_streams_with_a_status() {
    let mut h = start().await;
    let mut c = h.client().await;
    let mut stream = c
        .stream_events(v1::StreamEventsRequest {
            consumer: "watcher".into(),
            after_seq: None,
        })
        .await
        .unwrap()
        .into_inner();

    // Eight clients creating deposits as fast as they can.
    let ok = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let refused_keys = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for w in 0..8 {
        let mut c = h.client().await;
        let ok = ok.clone();
        let refused_keys = refused_keys.clone();
        workers.push(tokio::spawn(async move {
            let mut refused = 0;
            for n in 0..1_000 {
                let key = format!("load-{w}-{n}");
                match c.create_deposit(deposit(&key, 10_000)).await {
                    Ok(r) => ok.lock().unwrap().push(r.into_inner().id),
                    Err(s) => {
                        // After shutdown: refused by the server as unavailable, or cut by the
                        // transport (a GOAWAY racing the request surfaces as CANCELLED, UNKNOWN
                        // or an INTERNAL with no ErrorInfo, i.e. not an answer of ours). What
                        // the database holds for these keys is checked below.
                        let ours = s.get_error_details().error_info().is_some();
                        assert!(
                            matches!(
                                s.code(),
                                Code::Unavailable | Code::Cancelled | Code::Unknown
                            ) || (s.code() == Code::Internal && !ours),
                            "{s:?}"
                        );
                        refused_keys.lock().unwrap().push(key);
                        refused += 1;
                        if refused > 3 {
                            break;
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let server = h.server.take().unwrap();
    server.shutdown();
    let aborted = server.wait().await;
    assert!(aborted.is_empty(), "aborted: {aborted:?}");
    for w in workers {
        w.await.unwrap();
    }

    // The stream ended with a status saying why.
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream ends")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(s) => break s,
        }
    };
    assert_eq!(end.code(), Code::Unavailable);
    assert_eq!(reason(&end), "SHUTTING_DOWN");

    // Every create a client saw succeed is in the database, pending, with its hand-off.
    let ok = ok.lock().unwrap().clone();
    assert!(ok.len() > 10, "the load ran: {} creates", ok.len());
    let store = intentkit_core::SqliteStore::open(&h.database, Default::default()).unwrap();
    let ledger =
        intentkit_core::Ledger::new(Arc::new(store), Arc::new(intentkit_core::SystemClock));
    for id in &ok {
        let i = ledger.get(id.parse().unwrap()).unwrap();
        assert_eq!(i.status, intentkit_core::IntentStatus::Pending, "{id}");
    }
    // A create cut short is either absent or recorded in a state recovery finishes (never
    // half-written: no intent without its events).
    for key in refused_keys.lock().unwrap().iter() {
        let key = intentkit_core::IdempotencyKey::new(key.clone()).unwrap();
        if let Some(i) = ledger.store().get_by_idempotency_key(&key).unwrap() {
            assert!(
                matches!(
                    i.status,
                    intentkit_core::IntentStatus::Pending | intentkit_core::IntentStatus::Created
                ),
                "{key:?}: {:?}",
                i.status
            );
            assert!(
                !ledger.history(i.id).unwrap().is_empty(),
                "{key:?} has history"
            );
        }
    }
    h.sims.shutdown();
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let ok = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (Debian's openssl package) must be installed")
        .success();
    assert!(ok, "openssl {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_from_config_serves_only_tls_clients() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A CA and a server certificate for localhost signed by it.
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        d,
        &[
            &["req", "-x509"][..],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=intentkit test CA",
            ][..],
        ]
        .concat(),
    );
    openssl(
        d,
        &[
            &["req"][..],
            &ec[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ][..],
        ]
        .concat(),
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );

    let mut h = common::start(|c| {
        c.metrics_addr = None;
        c.tls_cert = Some(d.join("server.pem"));
        c.tls_key = Some(d.join("server.key"));
    })
    .await;
    let addr = h.server().grpc_addr();

    let ca = tonic::transport::Certificate::from_pem(std::fs::read(d.join("ca.pem")).unwrap());
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(ca)
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = client_on(channel, Some(sandbox::SANDBOX_TOKEN));
    let created = client
        .create_deposit(deposit("tls-1", 10_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.status, v1::IntentStatus::Pending as i32);

    // A plaintext client gets nowhere.
    let plain = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(ch) = plain {
        let mut c = IntentServiceClient::new(ch);
        assert!(
            c.get_intent(v1::GetIntentRequest { id: created.id })
                .await
                .is_err()
        );
    }
    let server = h.server.take().unwrap();
    server.shutdown();
    assert!(server.wait().await.is_empty());
    h.sims.shutdown();
}
