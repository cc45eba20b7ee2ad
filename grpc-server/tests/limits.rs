//! The listeners' limits, against the real server on ephemeral ports with both provider
//! simulators: slow clients (slowloris) are closed within the read timeouts while a signed
//! webhook is still applied at once; past the connection limit a client waits for a slot;
//! shutdown finishes a request in flight but not one still sending its headers; gRPC messages
//! over the size limit are refused; calls past the timeout are cancelled; and every gRPC call
//! is counted by method and code.

mod common;

use std::time::{Duration, Instant};

use common::*;
use intentkit_grpc_server::{ServerConfig, sandbox};
use intentkit_proto::v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Channel;

/// What every slow-client test allows on top of the configured timeout: a busy 2-core machine.
const SLACK: Duration = Duration::from_secs(2);

/// The server with `tune` applied, and a shutdown grace past every in-flight request here.
async fn start(tune: impl FnOnce(&mut ServerConfig)) -> Harness {
    common::start(|c| {
        c.shutdown_grace_ms = 10_000;
        tune(c);
    })
    .await
}

impl Harness {
    /// A pending deposit: (our id, Pientegra's id, its reference number).
    async fn deposit(&self, key: &str) -> (String, String, String) {
        let i = self
            .client()
            .await
            .create_deposit(deposit(key, 10_000))
            .await
            .unwrap()
            .into_inner();
        match i.provider_ref.and_then(|r| r.r#ref) {
            Some(v1::provider_ref::Ref::Pientegra(p)) => (i.id, p.intent_id, p.reference_no),
            other => panic!("no pientegra ref: {other:?}"),
        }
    }
}

/// A signed `intent.approved` for Pientegra's intent `pid`: (signature header, body).
fn approval(pid: &str, reference_no: &str) -> (String, String) {
    let body = format!(
        r#"{{"eventId":"evt-{pid}","eventType":"intent.approved","occurredAt":"2026-11-22T10:15:02.481Z","intent":{{"id":"{pid}","referenceNo":"{reference_no}","externalUserId":"user-1","requestedAmount":"10000","amount":"10000","currency":"TRY","status":"APPROVED"}}}}"#
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let secret = intentkit_sandbox::pientegra::Config::default().webhook_secret;
    let header =
        intentkit_core::provider::pientegra::signature_header(&secret, now, body.as_bytes());
    (header, body)
}

/// The head of a webhook delivery to the sandbox account, with `length` announced.
fn delivery_head(signature: &str, length: usize) -> String {
    format!(
        "POST /webhooks/pientegra/{} HTTP/1.1\r\nHost: intentkit\r\nContent-Type: application/json\r\n{}: {signature}\r\nContent-Length: {length}\r\n\r\n",
        sandbox::PIENTEGRA_ACCOUNT,
        intentkit_core::provider::pientegra::SIGNATURE_HEADER,
    )
}

/// A connection that sends the start of a request's headers and never the rest.
async fn half_open(addr: std::net::SocketAddr) -> (TcpStream, Instant) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let opened = Instant::now();
    s.write_all(b"POST /webhooks/pientegra/tr-sandbox HTTP/1.1\r\nHost: intentkit\r\nContent-Le")
        .await
        .unwrap();
    (s, opened)
}

/// Reads until the server closes the connection (end of stream, or reset), and returns what
/// it sent and when it closed; panics if it is still open after `within`.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Instant) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    let at = tokio::time::timeout(within, read_all)
        .await
        .expect("the server closes the connection");
    (seen, at)
}

fn status_line(response: &[u8]) -> String {
    String::from_utf8_lossy(response)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_closed_within_the_read_timeouts_while_a_signed_webhook_is_applied() {
    let read_timeout = Duration::from_secs(1);
    let h = start(|c| {
        c.http_header_read_timeout_ms = 1_000;
        c.http_body_read_timeout_ms = 1_000;
        c.http_request_timeout_ms = 5_000;
    })
    .await;
    let (id, pid, reference_no) = h.deposit("slow-1").await;
    let addr = h.server().http_addr();

    // Fifty connections that never finish their headers.
    let mut slow = Vec::new();
    for _ in 0..50 {
        slow.push(half_open(addr).await);
    }
    // One that sends its headers, announces 1000 bytes, and trickles one every 300 ms.
    let mut trickler = TcpStream::connect(addr).await.unwrap();
    trickler
        .write_all(delivery_head("t=1,v1=00", 1_000).as_bytes())
        .await
        .unwrap();
    let headers_sent = Instant::now();
    let (mut trickle_read, mut trickle_write) = trickler.into_split();
    let dripping = tokio::spawn(async move {
        while trickle_write.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });

    // Meanwhile a provider delivers a signed webhook: applied at once.
    let (signature, body) = approval(&pid, &reference_no);
    let sent = Instant::now();
    let r = reqwest::Client::new()
        .post(format!(
            "http://{addr}/webhooks/pientegra/{}",
            sandbox::PIENTEGRA_ACCOUNT
        ))
        .header(
            intentkit_core::provider::pientegra::SIGNATURE_HEADER,
            signature,
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let took = sent.elapsed();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"received":true}"#);
    assert!(took < Duration::from_secs(1), "the webhook took {took:?}");
    let i = h
        .client()
        .await
        .get_intent(v1::GetIntentRequest { id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(i.status, v1::IntentStatus::Approved as i32);

    // Every slow connection is closed by the server, at its timeout and not before.
    let closing = slow.into_iter().map(|(mut s, opened)| {
        tokio::spawn(async move {
            let (_, at) =
                closed_by_server(&mut s, read_timeout + SLACK + Duration::from_secs(1)).await;
            at - opened
        })
    });
    for (n, c) in closing.enumerate() {
        let lived = c.await.unwrap();
        assert!(
            lived >= read_timeout - Duration::from_millis(50) && lived <= read_timeout + SLACK,
            "half-open connection {n} lived {lived:?}"
        );
    }
    let mut rest = Vec::new();
    let closed_at = tokio::time::timeout(read_timeout + SLACK, async {
        let mut buf = [0u8; 1024];
        loop {
            match trickle_read.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the trickling connection is closed");
    let lived = closed_at - headers_sent;
    assert!(
        lived >= read_timeout - Duration::from_millis(50) && lived <= read_timeout + SLACK,
        "the trickler lived {lived:?} after its headers"
    );
    assert_eq!(status_line(&rest), "HTTP/1.1 408 Request Timeout");
    dripping.abort();

    let m = h.metrics().await;
    assert_eq!(
        counter(
            &m,
            r#"intentkit_limit_hits_total{listener="receiver",limit="header_read_timeout"}"#
        ),
        50,
        "{m}"
    );
    assert_eq!(
        counter(
            &m,
            r#"intentkit_limit_hits_total{listener="receiver",limit="body_read_timeout"}"#
        ),
        1,
        "{m}"
    );
    assert_eq!(
        counter(
            &m,
            r#"intentkit_webhooks_total{provider="pientegra",outcome="applied"}"#
        ),
        1,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_limit_a_client_waits_for_a_free_slot() {
    let h = start(|c| {
        c.http_header_read_timeout_ms = 1_000;
        c.http_max_connections = 60;
    })
    .await;
    let addr = h.server().http_addr();
    let mut slow = Vec::new();
    for _ in 0..60 {
        slow.push(half_open(addr).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The 61st connects (the kernel queues it) and sends a whole request: no answer while the
    // sixty hold every slot...
    let mut late = TcpStream::connect(addr).await.unwrap();
    late.write_all(b"GET /healthz HTTP/1.1\r\nHost: intentkit\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let sent = Instant::now();
    let mut buf = [0u8; 256];
    assert!(
        tokio::time::timeout(Duration::from_millis(400), late.read(&mut buf))
            .await
            .is_err(),
        "the 61st connection was served while 60 were open"
    );

    // ...and it is served once they are closed at their header timeout.
    let (answer, _) = closed_by_server(&mut late, Duration::from_secs(1) + SLACK).await;
    let waited = sent.elapsed();
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    assert!(
        answer.ends_with(b"ok"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(waited <= Duration::from_secs(1) + SLACK, "{waited:?}");
    for (mut s, _) in slow {
        closed_by_server(&mut s, SLACK).await;
    }
    let m = h.metrics().await;
    assert!(
        counter(
            &m,
            r#"intentkit_limit_hits_total{listener="receiver",limit="connection_limit"}"#
        ) >= 1,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_a_request_in_flight_and_drops_connections_still_sending_headers() {
    // Read timeouts far longer than the test: shutdown must not wait for them.
    let mut h = start(|c| {
        c.http_header_read_timeout_ms = 8_000;
        c.http_body_read_timeout_ms = 8_000;
    })
    .await;
    let (id, pid, reference_no) = h.deposit("shutdown-1").await;
    let addr = h.server().http_addr();
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(half_open(addr).await);
    }
    // A delivery whose headers and half its body are in when shutdown starts.
    let (signature, body) = approval(&pid, &reference_no);
    let (first, second) = body.as_bytes().split_at(body.len() / 2);
    let mut delivery = TcpStream::connect(addr).await.unwrap();
    delivery
        .write_all(delivery_head(&signature, body.len()).as_bytes())
        .await
        .unwrap();
    delivery.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let server = h.server.take().unwrap();
    server.shutdown();
    let stopping = Instant::now();
    let waiting = tokio::spawn(server.wait());

    // Connections without a request in the service are closed at once.
    for (mut s, _) in slow {
        let (sent, at) = closed_by_server(&mut s, SLACK).await;
        assert!(sent.is_empty());
        assert!(
            at - stopping < Duration::from_secs(1),
            "{:?}",
            at - stopping
        );
    }
    // The delivery in flight is finished, answered and applied.
    tokio::time::sleep(Duration::from_millis(300)).await;
    delivery.write_all(second).await.unwrap();
    let (answer, _) = closed_by_server(&mut delivery, SLACK).await;
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    assert!(answer.ends_with(br#"{"received":true}"#));

    let aborted = tokio::time::timeout(SLACK, waiting)
        .await
        .expect("the server stops well before its read timeouts")
        .unwrap();
    assert!(aborted.is_empty(), "aborted: {aborted:?}");
    let store = intentkit_core::SqliteStore::open(&h.database, Default::default()).unwrap();
    let ledger = intentkit_core::Ledger::new(
        std::sync::Arc::new(store),
        std::sync::Arc::new(intentkit_core::SystemClock),
    );
    let i = ledger.get(id.parse().unwrap()).unwrap();
    assert_eq!(i.status, intentkit_core::IntentStatus::Approved);
    h.sims.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_limits_refuse_large_messages_and_slow_calls_and_every_call_is_counted() {
    let h = start(|c| {
        c.grpc_max_message_bytes = 64 * 1024;
        c.grpc_request_timeout_ms = 500;
    })
    .await;
    let (id, _, _) = h.deposit("grpc-1").await;
    let mut c = h.client().await;

    // A message over the limit: tonic refuses it before decoding it, with OUT_OF_RANGE.
    let s = c
        .handle_webhook(v1::HandleWebhookRequest {
            provider: v1::Provider::Pientegra as i32,
            account: sandbox::PIENTEGRA_ACCOUNT.into(),
            headers: Default::default(),
            body: vec![b'x'; 100 * 1024],
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::OutOfRange, "{s:?}");

    // Status in the headers (an immediate error) and in the trailers (a success).
    let s = c
        .get_intent(v1::GetIntentRequest {
            id: "01a20000-0000-7000-8000-000000000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    c.get_intent(v1::GetIntentRequest { id: id.clone() })
        .await
        .unwrap();

    // A call past the timeout: the provider answers in 3 s, tonic gives up at 500 ms.
    let faults = reqwest::Client::new()
        .post(format!("{}/_control/faults", h.sims.pientegra.root_url()))
        .header("content-type", "application/json")
        .body(r#"{"latency_ms":3000}"#)
        .send()
        .await
        .unwrap();
    assert!(faults.status().is_success());
    let started = Instant::now();
    let s = c
        .refresh_intent(v1::RefreshIntentRequest { id })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Cancelled, "{s:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let m = h.metrics().await;
    for (series, n) in [
        (
            r#"intentkit_grpc_requests_total{method="GetIntent",code="NOT_FOUND"}"#,
            1,
        ),
        (
            r#"intentkit_grpc_requests_total{method="GetIntent",code="OK"}"#,
            1,
        ),
        (
            r#"intentkit_grpc_requests_total{method="CreateDeposit",code="OK"}"#,
            1,
        ),
        (
            r#"intentkit_grpc_requests_total{method="HandleWebhook",code="OUT_OF_RANGE"}"#,
            1,
        ),
        (
            r#"intentkit_grpc_requests_total{method="RefreshIntent",code="CANCELLED"}"#,
            1,
        ),
        (
            r#"intentkit_grpc_request_duration_seconds_count{method="GetIntent"}"#,
            2,
        ),
    ] {
        assert_eq!(counter(&m, series), n, "{series}\n{m}");
    }
    // Health checks and reflection are not the service's calls.
    assert!(!m.contains("grpc.health"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_connections_past_the_cap_wait_and_silent_sockets_are_closed_at_the_preface_deadline()
{
    let preface = intentkit_grpc_server::grpc::HANDSHAKE_TIMEOUT;
    let h = start(|c| c.grpc_max_connections = 2).await;
    let addr = h.server().grpc_addr();
    // Two sockets that never start HTTP/2 hold both slots...
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push((TcpStream::connect(addr).await.unwrap(), Instant::now()));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so a real client waits in the accept queue until they are closed.
    let call = tokio::spawn(async move {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let mut c = client_on(channel, Some(sandbox::SANDBOX_TOKEN));
        let started = Instant::now();
        let r = c
            .get_intent(v1::GetIntentRequest {
                id: "01a20000-0000-7000-8000-000000000000".into(),
            })
            .await;
        (r.map(|_| ()).unwrap_err().code(), started.elapsed())
    });
    for (mut s, opened) in silent {
        let (sent, at) = closed_by_server(&mut s, preface + SLACK).await;
        let lived = at - opened;
        assert!(
            lived >= preface - Duration::from_millis(50) && lived <= preface + SLACK,
            "a silent socket lived {lived:?}"
        );
        assert!(
            sent.is_empty() || sent.starts_with(b"\0"),
            "HTTP/2 frames only"
        );
    }
    let (code, waited) = tokio::time::timeout(SLACK, call).await.unwrap().unwrap();
    assert_eq!(code, Code::NotFound, "answered once a slot was free");
    assert!(
        waited >= preface - Duration::from_millis(500),
        "the client was served while both slots were held ({waited:?})"
    );
    let m = h.metrics().await;
    assert_eq!(
        counter(
            &m,
            r#"intentkit_limit_hits_total{listener="grpc",limit="preface_timeout"}"#
        ),
        2,
        "{m}"
    );
    assert!(
        counter(
            &m,
            r#"intentkit_limit_hits_total{listener="grpc",limit="connection_limit"}"#
        ) >= 1,
        "{m}"
    );
}
