//! Every `intentkit.v1` operation as one async function over the engine: request message in,
//! response message or [`ApiError`] out. The gRPC service and the C ABI both call these, so an
//! operation behaves the same through either façade.

use std::collections::HashMap;

use intentkit_core::{Engine, MaintenanceReport};

use crate::ApiError;
use crate::convert;
use crate::v1;

/// `CreateDeposit`.
pub async fn create_deposit(
    engine: &Engine,
    r: v1::CreateDepositRequest,
) -> Result<v1::Intent, ApiError> {
    let (req, key) = convert::deposit_request(r)?;
    Ok(convert::intent(&engine.create_deposit(req, key).await?))
}

/// `CreateAccountVerification`.
pub async fn create_account_verification(
    engine: &Engine,
    r: v1::CreateAccountVerificationRequest,
) -> Result<v1::Intent, ApiError> {
    let (req, key) = convert::account_verification_request(r)?;
    Ok(convert::intent(
        &engine.create_account_verification(req, key).await?,
    ))
}

/// `GetIntent`.
pub async fn get_intent(engine: &Engine, r: v1::GetIntentRequest) -> Result<v1::Intent, ApiError> {
    let id = convert::intent_id(&r.id)?;
    Ok(convert::intent(&engine.get(id).await?))
}

/// `ListIntents`.
pub async fn list_intents(
    engine: &Engine,
    r: v1::ListIntentsRequest,
) -> Result<v1::ListIntentsResponse, ApiError> {
    let (filter, cursor, size) = convert::list_request(&r)?;
    let (intents, next) = engine.list(filter, cursor, size).await?;
    Ok(v1::ListIntentsResponse {
        intents: intents.iter().map(convert::intent).collect(),
        next_page_token: next.as_ref().map(convert::page_token).unwrap_or_default(),
    })
}

/// `CancelIntent`.
pub async fn cancel_intent(
    engine: &Engine,
    r: v1::CancelIntentRequest,
) -> Result<v1::Intent, ApiError> {
    let id = convert::intent_id(&r.id)?;
    let reason = (!r.reason.is_empty()).then_some(r.reason);
    Ok(convert::intent(&engine.cancel(id, reason).await?))
}

/// `RefreshIntent`.
pub async fn refresh_intent(
    engine: &Engine,
    r: v1::RefreshIntentRequest,
) -> Result<v1::Intent, ApiError> {
    let id = convert::intent_id(&r.id)?;
    Ok(convert::intent(&engine.refresh(id).await?))
}

/// `HandleWebhook`: header names are matched case-insensitively. The answer is the one the
/// receiver gives: an unknown or invalid account is `404 unknown_account` here too, not an
/// error of the call.
pub async fn handle_webhook(
    engine: &Engine,
    r: v1::HandleWebhookRequest,
) -> Result<v1::HandleWebhookResponse, ApiError> {
    let provider = convert::from_provider(r.provider)?;
    let headers: HashMap<String, String> = r
        .headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let answer = engine
        .handle_webhook(
            provider,
            &r.account,
            |name| headers.get(&name.to_ascii_lowercase()).cloned(),
            &r.body,
        )
        .await;
    Ok(convert::webhook_response(&answer))
}

/// `ListEvents`.
pub async fn list_events(
    engine: &Engine,
    r: v1::ListEventsRequest,
) -> Result<v1::ListEventsResponse, ApiError> {
    let consumer = convert::consumer(&r.consumer)?;
    let limit = convert::events_limit(r.limit);
    let acked = engine.position(consumer).await?;
    let events = engine
        .events_after(r.after_seq.unwrap_or(acked), limit)
        .await?;
    Ok(v1::ListEventsResponse {
        events: events.iter().map(convert::event).collect(),
        acked_seq: acked,
    })
}

/// `AckEvents`.
pub async fn ack_events(
    engine: &Engine,
    r: v1::AckEventsRequest,
) -> Result<v1::AckEventsResponse, ApiError> {
    let consumer = convert::consumer(&r.consumer)?;
    let acked = engine.ack(consumer, r.seq).await?;
    Ok(v1::AckEventsResponse { acked_seq: acked })
}

/// One maintenance pass (recovery, expiry, parked signals, reconciliation), for hosts without
/// the server's background tasks. The report is plain JSON, not a schema message: it is for
/// logs.
pub async fn run_maintenance(engine: &Engine) -> serde_json::Value {
    let MaintenanceReport {
        recovered,
        expired,
        parked_settled,
        parked_pruned,
        reconcile,
        jobs,
        errors,
    } = engine.maintain().await;
    let jobs: Vec<_> = jobs
        .iter()
        .map(|j| {
            serde_json::json!({
                "provider": j.provider.as_str(),
                "account": j.account.as_str(),
                "job": j.job.as_str(),
                "done": j.done,
                "backlog": j.backlog,
                "cutShort": j.cut_short,
                "heldElsewhere": j.held_elsewhere,
                "elapsedMs": u64::try_from(j.elapsed.as_millis()).unwrap_or(u64::MAX),
            })
        })
        .collect();
    serde_json::json!({
        "recovered": recovered,
        "expired": expired,
        "parkedSettled": parked_settled,
        "parkedPruned": parked_pruned,
        "settled": reconcile.settled,
        "replayed": reconcile.replayed,
        "providerCalls": reconcile.calls,
        "jobs": jobs,
        "errors": errors.into_iter().chain(reconcile.errors).collect::<Vec<_>>(),
    })
}
