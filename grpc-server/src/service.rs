//! `intentkit.v1.IntentService` over the engine. Each method converts its request with
//! `intentkit_proto::convert`, calls the engine, and converts the answer back; errors go
//! through `intentkit_proto::status`. No business rule lives here.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::Stream;
use intentkit_core::{AccountName, ConsumerName, Engine, EngineError};
use intentkit_proto::convert;
use intentkit_proto::v1;
use intentkit_proto::v1::intent_service_server::IntentService;
use intentkit_proto::{ApiError, Code};
use tokio::sync::{Notify, mpsc, watch};
use tonic::{Request, Response, Status};

use crate::metrics::Metrics;

/// How many events a stream reads from the store at once, and holds ahead of the client.
const STREAM_BATCH: usize = 100;
/// How often an idle stream looks for events written by other processes.
const STREAM_IDLE_POLL: Duration = Duration::from_millis(200);

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

fn engine_status(e: EngineError) -> Status {
    status_of(&ApiError::from(&e))
}

fn core_status(e: intentkit_core::CoreError) -> Status {
    status_of(&ApiError::from(e))
}

/// The service. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    engine: Engine,
    metrics: Metrics,
    /// Woken when this process writes to the outbox, so that streams need not wait for a poll.
    changed: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

impl Service {
    /// A service over `engine`; streams end when `shutdown` turns true.
    pub fn new(
        engine: Engine,
        metrics: Metrics,
        changed: Arc<Notify>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Service {
            engine,
            metrics,
            changed,
            shutdown,
        }
    }

    async fn observe<T>(
        &self,
        method: &'static str,
        f: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let start = Instant::now();
        let result = f.await;
        let code = match &result {
            Ok(_) => "OK",
            Err(s) => Code::ALL
                .get(s.code() as usize)
                .map_or("UNKNOWN", |c| c.name()),
        };
        self.metrics
            .request(method, code, start.elapsed().as_secs_f64());
        if let Err(s) = &result {
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

    fn wrote(&self) {
        self.changed.notify_waiters();
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;

#[tonic::async_trait]
impl IntentService for Service {
    async fn create_deposit(
        &self,
        request: Request<v1::CreateDepositRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        self.observe("CreateDeposit", async {
            let (req, key) = convert::deposit_request(request.into_inner()).map_err(core_status)?;
            let result = self.engine.create_deposit(req, key).await;
            self.wrote();
            result.map(|i| convert::intent(&i)).map_err(engine_status)
        })
        .await
    }

    async fn create_account_verification(
        &self,
        request: Request<v1::CreateAccountVerificationRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        self.observe("CreateAccountVerification", async {
            let (req, key) =
                convert::account_verification_request(request.into_inner()).map_err(core_status)?;
            let result = self.engine.create_account_verification(req, key).await;
            self.wrote();
            result.map(|i| convert::intent(&i)).map_err(engine_status)
        })
        .await
    }

    async fn get_intent(
        &self,
        request: Request<v1::GetIntentRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        self.observe("GetIntent", async {
            let id = convert::intent_id(&request.get_ref().id).map_err(core_status)?;
            self.engine
                .get(id)
                .await
                .map(|i| convert::intent(&i))
                .map_err(engine_status)
        })
        .await
    }

    async fn list_intents(
        &self,
        request: Request<v1::ListIntentsRequest>,
    ) -> Result<Response<v1::ListIntentsResponse>, Status> {
        self.observe("ListIntents", async {
            let (filter, cursor, size) =
                convert::list_request(request.get_ref()).map_err(core_status)?;
            let (intents, next) = self
                .engine
                .list(filter, cursor, size)
                .await
                .map_err(engine_status)?;
            Ok(v1::ListIntentsResponse {
                intents: intents.iter().map(convert::intent).collect(),
                next_page_token: next.as_ref().map(convert::page_token).unwrap_or_default(),
            })
        })
        .await
    }

    async fn cancel_intent(
        &self,
        request: Request<v1::CancelIntentRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        self.observe("CancelIntent", async {
            let r = request.into_inner();
            let id = convert::intent_id(&r.id).map_err(core_status)?;
            let reason = (!r.reason.is_empty()).then_some(r.reason);
            let result = self.engine.cancel(id, reason).await;
            self.wrote();
            result.map(|i| convert::intent(&i)).map_err(engine_status)
        })
        .await
    }

    async fn refresh_intent(
        &self,
        request: Request<v1::RefreshIntentRequest>,
    ) -> Result<Response<v1::Intent>, Status> {
        self.observe("RefreshIntent", async {
            let id = convert::intent_id(&request.get_ref().id).map_err(core_status)?;
            let result = self.engine.refresh(id).await;
            self.wrote();
            result.map(|i| convert::intent(&i)).map_err(engine_status)
        })
        .await
    }

    async fn handle_webhook(
        &self,
        request: Request<v1::HandleWebhookRequest>,
    ) -> Result<Response<v1::HandleWebhookResponse>, Status> {
        self.observe("HandleWebhook", async {
            let r = request.into_inner();
            let provider = convert::from_provider(r.provider).map_err(core_status)?;
            let account = AccountName::new(r.account).map_err(core_status)?;
            let headers: HashMap<String, String> = r
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            let d = self
                .engine
                .handle_webhook(
                    provider,
                    &account,
                    |name| headers.get(&name.to_ascii_lowercase()).cloned(),
                    &r.body,
                )
                .await;
            self.wrote();
            let answer = convert::webhook_response(&d, provider);
            self.metrics.webhook(provider.as_str(), &answer.outcome);
            Ok(answer)
        })
        .await
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<v1::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let r = request.into_inner();
        let consumer = convert::consumer(&r.consumer).map_err(core_status)?;
        self.metrics.consumer(&consumer);
        let ledger = self.engine.ledger().clone();
        let start = match r.after_seq {
            Some(seq) => seq,
            None => {
                let (l, c) = (ledger.clone(), consumer.clone());
                tokio::task::spawn_blocking(move || l.position(&c))
                    .await
                    .map_err(|e| Status::internal(format!("store task: {e}")))?
                    .map_err(core_status)?
            }
        };
        // The channel holds one batch: the reader waits for the client to take events before
        // it reads more, so a slow client costs one batch of memory, not the outbox.
        let (tx, rx) = mpsc::channel::<Result<v1::Event, Status>>(STREAM_BATCH);
        let changed = self.changed.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut cursor = start;
            loop {
                let notified = changed.notified();
                let l = ledger.clone();
                let batch =
                    tokio::task::spawn_blocking(move || l.events_after(cursor, STREAM_BATCH)).await;
                let events = match batch {
                    Ok(Ok(events)) => events,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(core_status(e))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::internal(format!("store task: {e}"))))
                            .await;
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
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(STREAM_IDLE_POLL) => {}
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
        self.observe("ListEvents", async {
            let r = request.into_inner();
            let consumer = convert::consumer(&r.consumer).map_err(core_status)?;
            self.metrics.consumer(&consumer);
            let limit = convert::events_limit(r.limit);
            let ledger = self.engine.ledger().clone();
            let (events, acked) = tokio::task::spawn_blocking(move || {
                let acked = ledger.position(&consumer)?;
                let events = ledger.events_after(r.after_seq.unwrap_or(acked), limit)?;
                Ok::<_, intentkit_core::CoreError>((events, acked))
            })
            .await
            .map_err(|e| Status::internal(format!("store task: {e}")))?
            .map_err(core_status)?;
            Ok(v1::ListEventsResponse {
                events: events.iter().map(convert::event).collect(),
                acked_seq: acked,
            })
        })
        .await
    }

    async fn ack_events(
        &self,
        request: Request<v1::AckEventsRequest>,
    ) -> Result<Response<v1::AckEventsResponse>, Status> {
        self.observe("AckEvents", async {
            let r = request.into_inner();
            let consumer: ConsumerName = convert::consumer(&r.consumer).map_err(core_status)?;
            self.metrics.consumer(&consumer);
            let ledger = self.engine.ledger().clone();
            let acked = tokio::task::spawn_blocking(move || ledger.ack(&consumer, r.seq))
                .await
                .map_err(|e| Status::internal(format!("store task: {e}")))?
                .map_err(core_status)?;
            Ok(v1::AckEventsResponse { acked_seq: acked })
        })
        .await
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
