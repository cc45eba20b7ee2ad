//! `intentkit.v1.IntentService` over the engine. Each method converts its request with
//! `intentkit_proto::convert`, calls the engine, and converts the answer back; errors go
//! through `intentkit_proto::status`. No business rule lives here, and no timing: every call
//! is counted and timed by [`crate::layers::GrpcMetricsLayer`], whatever answers it.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use intentkit_core::Engine;
use intentkit_proto::v1;
use intentkit_proto::v1::intent_service_server::IntentService;
use intentkit_proto::{ApiError, Code};
use intentkit_proto::{convert, ops};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use crate::auth::Caller;
use crate::metrics::Metrics;
use crate::streams::StreamSlots;

/// How many events a stream reads from the store at once, and holds ahead of the client.
const STREAM_BATCH: usize = 100;

/// An [`ApiError`] as a gRPC status with a `google.rpc.ErrorInfo` detail.
pub fn status_of(e: &ApiError) -> Status {
    use tonic_types::{ErrorDetails, StatusExt};
    let metadata: HashMap<String, String> = e
        .metadata()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Status::with_error_details(
        tonic::Code::from_i32(e.code as i32),
        e.message.clone(),
        ErrorDetails::with_error_info(
            e.reason.clone(),
            intentkit_proto::status::ERROR_DOMAIN,
            metadata,
        ),
    )
}

/// The answer to `method`, with a failure logged: at `error` when it is ours to fix, at
/// `debug` when the request was refused.
fn answer<T>(method: &'static str, result: Result<T, ApiError>) -> Result<Response<T>, Status> {
    let result = result.map_err(|e| status_of(&e));
    if let Err(s) = &result {
        let code = Code::ALL
            .get(s.code() as usize)
            .map_or("UNKNOWN", |c| c.name());
        if matches!(
            s.code(),
            tonic::Code::Internal | tonic::Code::DataLoss | tonic::Code::Unknown
        ) {
            tracing::error!(method, code, message = s.message(), "request failed");
        } else {
            tracing::debug!(method, code, message = s.message(), "request refused");
        }
    }
    result.map(Response::new)
}

fn core_status(e: intentkit_core::CoreError) -> Status {
    status_of(&ApiError::from(e))
}

/// The service. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    engine: Engine,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
    streams: StreamSlots,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

impl Service {
    /// A service over `engine`; streams end when `shutdown` turns true, and each token may
    /// hold `max_streams_per_token` open at once.
    pub fn new(
        engine: Engine,
        metrics: Metrics,
        shutdown: watch::Receiver<bool>,
        max_streams_per_token: usize,
    ) -> Self {
        Service {
            engine,
            metrics,
            shutdown,
            streams: StreamSlots::new(max_streams_per_token),
        }
    }

    /// Remembers a consumer so that its outbox lag is reported; an invalid name is left to the
    /// operation to refuse.
    fn track(&self, consumer: &str) {
        if let Ok(c) = convert::consumer(consumer) {
            self.metrics.consumer(&c);
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;

#[tonic::async_trait]
impl IntentService for Service {
    async fn create_deposit(
        &self,
        request: Request<v1::CreateDepositRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        let r = ops::create_deposit(&self.engine, request.into_inner()).await;
        answer("CreateDeposit", r)
    }

    async fn create_account_verification(
        &self,
        request: Request<v1::CreateAccountVerificationRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        let r = ops::create_account_verification(&self.engine, request.into_inner()).await;
        answer("CreateAccountVerification", r)
    }

    async fn get_intent(
        &self,
        request: Request<v1::GetIntentRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        let r = ops::get_intent(&self.engine, request.into_inner()).await;
        answer("GetIntent", r)
    }

    async fn list_intents(
        &self,
        request: Request<v1::ListIntentsRequest>,
    ) -> Result<Response<v1::ListIntentsResponse>, Status> {
        let r = ops::list_intents(&self.engine, request.into_inner()).await;
        answer("ListIntents", r)
    }

    async fn cancel_intent(
        &self,
        request: Request<v1::CancelIntentRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        let r = ops::cancel_intent(&self.engine, request.into_inner()).await;
        answer("CancelIntent", r)
    }

    async fn refresh_intent(
        &self,
        request: Request<v1::RefreshIntentRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        let r = ops::refresh_intent(&self.engine, request.into_inner()).await;
        answer("RefreshIntent", r)
    }

    async fn handle_webhook(
        &self,
        request: Request<v1::HandleWebhookRequest>,
    ) -> Result<Response<v1::HandleWebhookResponse>, Status> {
        let request = request.into_inner();
        let provider = convert::from_provider(request.provider).ok();
        let r = ops::handle_webhook(&self.engine, request).await;
        if let (Ok(answer), Some(p)) = (&r, provider) {
            self.metrics.webhook(p.as_str(), &answer.outcome);
        }
        answer("HandleWebhook", r)
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<v1::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        // The interceptor names every caller it lets through; a call that reached us another
        // way counts as anonymous.
        let caller = request
            .extensions()
            .get::<Caller>()
            .copied()
            .unwrap_or(Caller::Anonymous);
        let r = request.into_inner();
        let consumer = convert::consumer(&r.consumer).map_err(core_status)?;
        let slot = match self.streams.take(caller) {
            Ok(slot) => slot,
            Err(refused) => {
                self.metrics.limit_hit("grpc", "streams_per_token");
                tracing::debug!(
                    ?caller,
                    "event stream refused: max_streams_per_token reached"
                );
                return Err(refused);
            }
        };
        self.metrics.consumer(&consumer);
        let start = match r.after_seq {
            Some(seq) => seq,
            None => self
                .engine
                .position(consumer)
                .await
                .map_err(|e| status_of(&ApiError::from(e)))?,
        };
        // The channel holds one batch: the reader waits for the client to take events before
        // it reads more, so a slow client costs one batch of memory, not the outbox.
        let (tx, rx) = mpsc::channel::<Result<v1::Event, Status>>(STREAM_BATCH);
        let mut feed = self.engine.subscribe();
        let engine = self.engine.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            // Held while the stream is open; dropped however it ends.
            let _slot = slot;
            let mut cursor = start;
            loop {
                let events = match engine.events_after(cursor, STREAM_BATCH).await {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = tx.send(Err(status_of(&ApiError::from(e)))).await;
                        return;
                    }
                };
                let full = events.len() == STREAM_BATCH;
                for e in events {
                    cursor = e.seq;
                    tokio::select! {
                        sent = tx.send(Ok(convert::event(&e))) => if sent.is_err() { return },
                        () = stopped(&mut shutdown) => {
                            // The client may not read on; give it a moment to take the status.
                            let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Err(shutting_down()))).await;
                            return;
                        }
                    }
                }
                if full {
                    continue;
                }
                // Idle: no store call until the engine's feed watcher sees the outbox's head
                // pass this cursor (a write here wakes it at once, another instance's within
                // its poll).
                tokio::select! {
                    _ = feed.past(cursor) => {}
                    () = tx.closed() => return,
                    () = stopped(&mut shutdown) => {
                        let _ = tx.send(Err(shutting_down())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_events(
        &self,
        request: Request<v1::ListEventsRequest>,
    ) -> Result<Response<v1::ListEventsResponse>, Status> {
        let r = request.into_inner();
        self.track(&r.consumer);
        let r = ops::list_events(&self.engine, r).await;
        answer("ListEvents", r)
    }

    async fn ack_events(
        &self,
        request: Request<v1::AckEventsRequest>,
    ) -> Result<Response<v1::AckEventsResponse>, Status> {
        let r = request.into_inner();
        self.track(&r.consumer);
        let r = ops::ack_events(&self.engine, r).await;
        answer("AckEvents", r)
    }
}

/// Resolves once `rx` turns true (the guard `wait_for` returns is not `Send`; it is dropped here).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn shutting_down() -> Status {
    status_of(&ApiError::new(
        Code::Unavailable,
        "SHUTTING_DOWN",
        "the server is shutting down; resume the stream from your last seq",
    ))
}
