//! The one mapping between `intentkit.v1` messages and core's types. Requests are validated
//! here by core's own constructors, so a value refused over gRPC is refused with the same code
//! and words through the C ABI.

use std::collections::{BTreeMap, HashMap};

use intentkit_core::lifecycle::{Anomaly, Transition};
use intentkit_core::store::{ListCursor, ListFilter};
use intentkit_core::{
    AccountName, AccountVerificationRequest, Cause, ConsumerName, CoreError, Currency,
    DepositRequest, EventType, IdempotencyKey, Intent, IntentId, IntentKind, IntentStatus,
    Metadata, MinorUnits, OutboxEvent, PartnerReference, PayerHandoff, Provider, ProviderRef,
    Timestamp, UserId, VerifiedPayer, WebhookAnswer,
};

use crate::v1;

/// The default and largest page of `ListIntents`.
pub const LIST_PAGE_DEFAULT: usize = 50;
/// The largest page of `ListIntents`.
pub const LIST_PAGE_MAX: usize = 500;
/// The default page of `ListEvents`.
pub const EVENTS_PAGE_DEFAULT: usize = 100;
/// The largest page of `ListEvents`.
pub const EVENTS_PAGE_MAX: usize = 500;

/// A core timestamp as a protobuf one.
pub fn timestamp(t: Timestamp) -> pbjson_types::Timestamp {
    let ms = t.unix_millis();
    pbjson_types::Timestamp {
        seconds: ms.div_euclid(1_000),
        // In 0..1_000_000_000 by construction.
        nanos: (ms.rem_euclid(1_000) * 1_000_000) as i32,
    }
}

/// A protobuf timestamp as a core one (millisecond precision; finer digits are dropped).
pub fn from_timestamp(t: &pbjson_types::Timestamp) -> Result<Timestamp, CoreError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(CoreError::invalid("timestamp", "nanos out of range"));
    }
    t.seconds
        .checked_mul(1_000)
        .and_then(|ms| ms.checked_add(i64::from(t.nanos / 1_000_000)))
        .map(Timestamp::from_unix_millis)
        .ok_or_else(|| CoreError::invalid("timestamp", "out of range"))
}

/// Core's status as the schema's.
pub fn status(s: IntentStatus) -> v1::IntentStatus {
    use v1::IntentStatus as P;
    match s {
        IntentStatus::Created => P::Created,
        IntentStatus::Pending => P::Pending,
        IntentStatus::PayerConfirmed => P::PayerConfirmed,
        IntentStatus::Approved => P::Approved,
        IntentStatus::Rejected => P::Rejected,
        IntentStatus::Expired => P::Expired,
        IntentStatus::LateArrival => P::LateArrival,
        IntentStatus::Failed => P::Failed,
        IntentStatus::Canceled => P::Canceled,
    }
}

/// The schema's status as core's; UNSPECIFIED and unknown numbers are refused.
pub fn from_status(value: i32) -> Result<IntentStatus, CoreError> {
    IntentStatus::ALL
        .into_iter()
        .find(|s| status(*s) as i32 == value)
        .ok_or_else(|| CoreError::invalid("status", format!("unknown status {value}")))
}

/// Core's provider as the schema's.
pub fn provider(p: Provider) -> v1::Provider {
    match p {
        Provider::Pientegra => v1::Provider::Pientegra,
        Provider::Decentro => v1::Provider::Decentro,
    }
}

/// The schema's provider as core's; UNSPECIFIED and unknown numbers are refused.
pub fn from_provider(value: i32) -> Result<Provider, CoreError> {
    Provider::ALL
        .into_iter()
        .find(|p| provider(*p) as i32 == value)
        .ok_or_else(|| CoreError::invalid("provider", format!("unknown provider {value}")))
}

fn kind(k: IntentKind) -> v1::IntentKind {
    match k {
        IntentKind::Deposit => v1::IntentKind::Deposit,
        IntentKind::AccountVerification => v1::IntentKind::AccountVerification,
    }
}

fn cause(c: Cause) -> v1::Cause {
    match c {
        Cause::Api => v1::Cause::Api,
        Cause::Webhook => v1::Cause::Webhook,
        Cause::Callback => v1::Cause::Callback,
        Cause::StatusPoll => v1::Cause::StatusPoll,
        Cause::Timer => v1::Cause::Timer,
    }
}

/// Core's event type as the schema's.
pub fn event_type(t: EventType) -> v1::EventType {
    use v1::EventType as P;
    match t {
        EventType::Created => P::Created,
        EventType::Pending => P::Pending,
        EventType::PayerConfirmed => P::PayerConfirmed,
        EventType::Approved => P::Approved,
        EventType::Rejected => P::Rejected,
        EventType::Expired => P::Expired,
        EventType::LateArrival => P::LateArrival,
        EventType::Failed => P::Failed,
        EventType::Canceled => P::Canceled,
        EventType::Anomaly => P::Anomaly,
    }
}

fn metadata_in(map: HashMap<String, String>) -> Result<Metadata, CoreError> {
    Metadata::new(map.into_iter().collect::<BTreeMap<_, _>>())
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// An intent as the schema's message.
pub fn intent(i: &Intent) -> v1::Intent {
    v1::Intent {
        id: i.id.to_string(),
        provider: provider(i.provider) as i32,
        kind: kind(i.kind) as i32,
        account: i.account.to_string(),
        amount_minor: i.amount.get(),
        currency: i.currency.to_string(),
        reference: i.reference.to_string(),
        user_id: i.user_id.to_string(),
        provider_ref: i.provider_ref.as_ref().map(|r| v1::ProviderRef {
            r#ref: Some(match r {
                ProviderRef::Pientegra {
                    intent_id,
                    reference_no,
                } => v1::provider_ref::Ref::Pientegra(v1::PientegraRef {
                    intent_id: intent_id.clone(),
                    reference_no: reference_no.clone().unwrap_or_default(),
                }),
                ProviderRef::Decentro { txn_id } => {
                    v1::provider_ref::Ref::Decentro(v1::DecentroRef {
                        txn_id: txn_id.clone(),
                    })
                }
            }),
        }),
        handoff: i.handoff.as_ref().map(|h| v1::PayerHandoff {
            handoff: Some(match h {
                PayerHandoff::HostedPage { url } => {
                    v1::payer_handoff::Handoff::HostedPage(v1::HostedPage { url: url.clone() })
                }
                PayerHandoff::Upi {
                    short_link,
                    qr_code,
                    gpay_uri,
                    phonepe_uri,
                    paytm_uri,
                } => v1::payer_handoff::Handoff::Upi(v1::UpiHandoff {
                    short_link: short_link.clone(),
                    qr_code: qr_code.clone().unwrap_or_default(),
                    gpay_uri: gpay_uri.clone().unwrap_or_default(),
                    phonepe_uri: phonepe_uri.clone().unwrap_or_default(),
                    paytm_uri: paytm_uri.clone().unwrap_or_default(),
                }),
            }),
        }),
        expires_at: i.expires_at.map(timestamp),
        status: status(i.status) as i32,
        reason: i.reason.clone().unwrap_or_default(),
        approved_amount_minor: i.approved_amount.map(MinorUnits::get),
        verified_payer: i.verified_payer.as_ref().map(verified_payer),
        metadata: i
            .metadata
            .entries()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        last_error: i.last_error.clone().unwrap_or_default(),
        idempotency_key: i.idempotency_key.to_string(),
        created_at: Some(timestamp(i.created_at)),
        updated_at: Some(timestamp(i.updated_at)),
        version: i.version,
        provider_key: i.provider_key.clone(),
    }
}

fn verified_payer(p: &VerifiedPayer) -> v1::VerifiedPayer {
    v1::VerifiedPayer {
        name: p.name.clone().unwrap_or_default(),
        masked_account_number: p.masked_account_number.clone().unwrap_or_default(),
        ifsc: p.ifsc.clone().unwrap_or_default(),
        vpa: p.vpa.clone().unwrap_or_default(),
        bank_reference: p.bank_reference.clone().unwrap_or_default(),
    }
}

fn transition(t: &Transition) -> v1::Transition {
    v1::Transition {
        from: t.from.map_or(0, |s| status(s) as i32),
        to: status(t.to) as i32,
        cause: cause(t.cause) as i32,
        at: Some(timestamp(t.at)),
        provider_event_id: t.provider_event_id.clone().unwrap_or_default(),
    }
}

fn anomaly(a: &Anomaly) -> v1::Anomaly {
    v1::Anomaly {
        status: status(a.status) as i32,
        signal: a.signal.kind().to_string(),
        cause: cause(a.cause) as i32,
        provider_event_id: a.provider_event_id.clone().unwrap_or_default(),
        detail: a.detail.clone(),
        at: Some(timestamp(a.at)),
    }
}

/// An outbox event as the schema's message.
pub fn event(e: &OutboxEvent) -> v1::Event {
    v1::Event {
        seq: e.seq,
        event_id: e.event_id.to_string(),
        r#type: event_type(e.event_type) as i32,
        type_name: e.event_type.as_str().to_string(),
        intent_id: e.intent_id.to_string(),
        business_key: e.business_key.clone(),
        created_at: Some(timestamp(e.created_at)),
        intent: Some(intent(&e.payload.intent)),
        transition: e.payload.transition.as_ref().map(transition),
        anomaly: e.payload.anomaly.as_ref().map(anomaly),
    }
}

/// An intent id from a request field.
pub fn intent_id(s: &str) -> Result<IntentId, CoreError> {
    s.parse()
        .map_err(|_| CoreError::invalid("id", "is not an intent id (a UUID)"))
}

/// A consumer name from a request field.
pub fn consumer(s: &str) -> Result<ConsumerName, CoreError> {
    Ok(ConsumerName::new(s)?)
}

/// A create-deposit request as core's request and key.
pub fn deposit_request(
    r: v1::CreateDepositRequest,
) -> Result<(DepositRequest, IdempotencyKey), CoreError> {
    let key = IdempotencyKey::new(r.idempotency_key)?;
    Ok((
        DepositRequest {
            account: AccountName::new(r.account)?,
            amount: MinorUnits::new(r.amount_minor)?,
            currency: r.currency.parse::<Currency>()?,
            reference: PartnerReference::new(r.reference)?,
            user_id: UserId::new(r.user_id)?,
            user_label: non_empty(r.user_label),
            metadata: metadata_in(r.metadata)?,
        },
        key,
    ))
}

/// A create-account-verification request as core's request and key.
pub fn account_verification_request(
    r: v1::CreateAccountVerificationRequest,
) -> Result<(AccountVerificationRequest, IdempotencyKey), CoreError> {
    let key = IdempotencyKey::new(r.idempotency_key)?;
    Ok((
        AccountVerificationRequest {
            account: AccountName::new(r.account)?,
            reference: PartnerReference::new(r.reference)?,
            user_id: UserId::new(r.user_id)?,
            purpose_message: non_empty(r.purpose_message),
            generate_qr: r.generate_qr,
            generate_uri: r.generate_uri,
            qr_with_logo: r.qr_with_logo,
            metadata: metadata_in(r.metadata)?,
        },
        key,
    ))
}

/// What a `ListIntents` request asks for: filter, cursor, page size.
pub fn list_request(
    r: &v1::ListIntentsRequest,
) -> Result<(ListFilter, Option<ListCursor>, usize), CoreError> {
    let filter = ListFilter {
        statuses: r
            .statuses
            .iter()
            .map(|s| from_status(*s))
            .collect::<Result<_, _>>()?,
        provider: match r.provider {
            0 => None,
            p => Some(from_provider(p)?),
        },
        account: non_empty(r.account.clone())
            .map(AccountName::new)
            .transpose()?,
        created_from: r.created_from.as_ref().map(from_timestamp).transpose()?,
        created_to: r.created_to.as_ref().map(from_timestamp).transpose()?,
    };
    let cursor = if r.page_token.is_empty() {
        None
    } else {
        Some(parse_page_token(&r.page_token)?)
    };
    let size = match r.page_size as usize {
        0 => LIST_PAGE_DEFAULT,
        n => n.min(LIST_PAGE_MAX),
    };
    Ok((filter, cursor, size))
}

/// The opaque token for the page after `cursor`.
pub fn page_token(cursor: &ListCursor) -> String {
    format!("{}.{}", cursor.created_at.unix_millis(), cursor.id)
}

fn parse_page_token(token: &str) -> Result<ListCursor, CoreError> {
    let bad = || CoreError::invalid("page_token", "is not a token this server issued");
    let (ms, id) = token.split_once('.').ok_or_else(bad)?;
    Ok(ListCursor {
        created_at: Timestamp::from_unix_millis(ms.parse().map_err(|_| bad())?),
        id: id.parse().map_err(|_| bad())?,
    })
}

/// The size of a `ListEvents` page.
pub fn events_limit(limit: u32) -> usize {
    match limit as usize {
        0 => EVENTS_PAGE_DEFAULT,
        n => n.min(EVENTS_PAGE_MAX),
    }
}

/// The engine's answer to a webhook, as the schema's: the same status, body, outcome and
/// reason the receiver gives the provider.
pub fn webhook_response(answer: &WebhookAnswer) -> v1::HandleWebhookResponse {
    v1::HandleWebhookResponse {
        http_status: u32::from(answer.status),
        http_body: answer.body.clone(),
        outcome: answer.outcome.as_str().to_string(),
        reason: answer.reason.unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_and_provider_round_trips() {
        for s in IntentStatus::ALL {
            assert_eq!(from_status(status(s) as i32).unwrap(), s);
        }
        for p in Provider::ALL {
            assert_eq!(from_provider(provider(p) as i32).unwrap(), p);
        }
        assert!(from_status(0).is_err());
        assert!(from_provider(0).is_err());
        assert!(from_status(99).is_err());
    }

    #[test]
    fn every_event_type_keeps_its_wire_name() {
        for t in EventType::ALL {
            let p = event_type(t);
            // The enum's proto name is EVENT_TYPE_<NAME>, the wire name intent.<name>.
            let proto = p.as_str_name().trim_start_matches("EVENT_TYPE_");
            assert_eq!(
                format!("intent.{}", proto.to_ascii_lowercase()),
                t.as_str(),
                "{t:?}"
            );
        }
    }

    #[test]
    fn timestamps_round_trip_including_before_the_epoch() {
        for ms in [0, 1, 999, 1_795_000_000_123, -1, -1_500] {
            let t = Timestamp::from_unix_millis(ms);
            let p = timestamp(t);
            assert!((0..1_000_000_000).contains(&p.nanos));
            assert_eq!(from_timestamp(&p).unwrap(), t);
        }
        let bad = pbjson_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert!(from_timestamp(&bad).is_err());
    }

    #[test]
    fn page_tokens_round_trip_and_forged_ones_are_refused() {
        let c = ListCursor {
            created_at: Timestamp::from_unix_millis(1_795_000_000_000),
            id: IntentId::generate(),
        };
        assert_eq!(parse_page_token(&page_token(&c)).unwrap(), c);
        for bad in ["", "x", "1.", ".abc", "12.not-a-uuid"] {
            let e = parse_page_token(bad).unwrap_err();
            assert_eq!(e.code(), "INVALID_ARGUMENT", "{bad}");
        }
    }

    #[test]
    fn a_deposit_request_is_validated_by_core() {
        let ok = v1::CreateDepositRequest {
            idempotency_key: "k-1".into(),
            account: "tr-main".into(),
            amount_minor: 150_000,
            currency: "TRY".into(),
            reference: "order-1".into(),
            user_id: "u-1".into(),
            ..Default::default()
        };
        let (req, key) = deposit_request(ok.clone()).unwrap();
        assert_eq!(req.amount.get(), 150_000);
        assert_eq!(key.as_str(), "k-1");
        assert_eq!(req.user_label, None);

        let e = deposit_request(v1::CreateDepositRequest {
            idempotency_key: String::new(),
            ..ok.clone()
        })
        .unwrap_err();
        assert!(e.to_string().contains("idempotency_key"), "{e}");
        let e = deposit_request(v1::CreateDepositRequest {
            amount_minor: -1,
            ..ok
        })
        .unwrap_err();
        assert_eq!(e.code(), "INVALID_ARGUMENT");
    }

    #[test]
    fn canonical_json_uses_camel_case_names_and_refuses_unknown_fields() {
        let json = r#"{"idempotencyKey":"k","account":"a","amountMinor":"150000",
            "currency":"TRY","reference":"r","userId":"u"}"#;
        let r: v1::CreateDepositRequest = crate::from_json(json).unwrap();
        assert_eq!(r.amount_minor, 150_000);
        let e = crate::from_json::<v1::CreateDepositRequest>(r#"{"amount_minr":"1"}"#).unwrap_err();
        assert_eq!(e.reason, "INVALID_JSON");
        let out = crate::to_json(&v1::Intent {
            status: v1::IntentStatus::Approved as i32,
            approved_amount_minor: Some(5),
            ..Default::default()
        });
        assert!(
            out.contains(r#""status":"INTENT_STATUS_APPROVED""#),
            "{out}"
        );
        assert!(out.contains(r#""approvedAmountMinor":"5""#), "{out}");
    }
}
