use proptest::prelude::*;

use super::*;
use crate::intent::fixtures::deposit_request;
use crate::types::IdempotencyKey;

const NOW: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

fn intent_in(status: IntentStatus) -> Intent {
    let mut i = Intent::new(
        deposit_request(100_000),
        IdempotencyKey::new("key-1").unwrap(),
        Timestamp::from_unix_millis(1_794_999_000_000),
    )
    .unwrap();
    i.status = status;
    if status == IntentStatus::Approved {
        i.approved_amount = Some(MinorUnits::new(100_000).unwrap());
    }
    i
}

fn signal(kind: SignalKind) -> Signal {
    match kind {
        SignalKind::HandoffIssued => Signal::HandoffIssued {
            handoff: PayerHandoff::HostedPage {
                url: "https://pay.example/d/tok".into(),
            },
            expires_at: Some(NOW.plus_millis(900_000)),
        },
        SignalKind::CreateFailed => Signal::CreateFailed {
            code: "amount_below_min".into(),
            message: "amount is below the minimum".into(),
        },
        SignalKind::PayerConfirmed => Signal::PayerConfirmed,
        SignalKind::Approved => Signal::Approved {
            amount: MinorUnits::new(100_000).unwrap(),
            payer: None,
        },
        SignalKind::Rejected => Signal::Rejected {
            reason: Some("no funds received".into()),
        },
        SignalKind::Expired => Signal::Expired,
        SignalKind::LateArrival => Signal::LateArrival,
        SignalKind::Cancel => Signal::Cancel { reason: None },
    }
}

fn event(kind: SignalKind) -> IntentEvent {
    let cause = if kind == SignalKind::Cancel {
        Cause::Api
    } else {
        Cause::Webhook
    };
    IntentEvent::new(signal(kind), cause)
}

/// Parses the markdown table in `docs/lifecycle.md` into (status, signal, cell) triples.
fn documented_table() -> Vec<(IntentStatus, SignalKind, String)> {
    let doc = include_str!("../../docs/lifecycle.md");
    let mut lines = doc.lines().filter(|l| l.starts_with('|'));
    let header: Vec<&str> = lines
        .next()
        .expect("table header")
        .split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .skip(1)
        .collect();
    let columns: Vec<SignalKind> = header
        .iter()
        .map(|h| {
            *SignalKind::ALL
                .iter()
                .find(|k| k.as_str() == *h)
                .unwrap_or_else(|| panic!("unknown column {h}"))
        })
        .collect();
    lines
        .skip(1) // the |---| separator
        .flat_map(|row| {
            let cells: Vec<String> = row
                .split('|')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect();
            let status: IntentStatus = cells[0].parse().expect("status");
            cells[1..]
                .iter()
                .zip(&columns)
                .map(|(cell, k)| (status, *k, cell.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn render(rule: Rule) -> String {
    match rule {
        Rule::To(s) => format!("→ {s}"),
        Rule::Duplicate => "dup".into(),
        Rule::Stale => "stale".into(),
        Rule::Anomaly => "ANOMALY".into(),
        Rule::Refuse => "refused".into(),
    }
}

#[test]
fn documented_table_matches_the_code_cell_for_cell() {
    let table = documented_table();
    assert_eq!(
        table.len(),
        IntentStatus::ALL.len() * SignalKind::ALL.len(),
        "the doc table must cover every (status, signal) pair"
    );
    for (status, kind, cell) in table {
        assert_eq!(
            render(rule(status, kind)),
            cell,
            "({status}, {kind}) differs between docs/lifecycle.md and lifecycle::rule"
        );
    }
}

#[test]
fn every_status_signal_pair_plans_as_its_rule_says() {
    for status in IntentStatus::ALL {
        for kind in SignalKind::ALL {
            let intent = intent_in(status);
            let result = plan(&intent, &event(kind), NOW);
            // The in-memory path must agree with the planner on every cell.
            let mut in_memory = intent.clone();
            match (apply(&mut in_memory, &event(kind), NOW), &result) {
                (Ok(Step::Applied(t)), Ok(Plan::Apply { next, transition })) => {
                    assert_eq!((&in_memory, &t), (&**next, transition));
                }
                (Ok(Step::Duplicate), Ok(Plan::Duplicate))
                | (Ok(Step::Stale), Ok(Plan::Stale))
                | (Err(_), Err(_)) => assert_eq!(in_memory, intent),
                (Ok(Step::Anomaly(a)), Ok(Plan::Anomaly(b))) => {
                    assert_eq!(a, *b);
                    assert_eq!(in_memory, intent);
                }
                (a, b) => panic!("({status}, {kind}): apply gave {a:?}, plan gave {b:?}"),
            }
            match (rule(status, kind), result) {
                (Rule::To(to), Ok(Plan::Apply { next, transition })) => {
                    assert_eq!(next.status, to);
                    assert_eq!(next.version, intent.version + 1);
                    assert_eq!(next.updated_at, NOW);
                    assert_eq!(transition.from, Some(status));
                    assert_eq!(transition.to, to);
                }
                (Rule::Duplicate, Ok(Plan::Duplicate)) | (Rule::Stale, Ok(Plan::Stale)) => {}
                (Rule::Anomaly, Ok(Plan::Anomaly(a))) => {
                    assert_eq!(a.status, status);
                    assert_eq!(a.signal.kind(), kind);
                }
                (Rule::Refuse, Err(CoreError::InvalidTransition { from, signal, .. })) => {
                    assert_eq!((from, signal), (status, kind));
                }
                (r, other) => panic!("({status}, {kind}): rule {r:?} but plan gave {other:?}"),
            }
        }
    }
}

#[test]
fn final_statuses_are_never_left() {
    for status in IntentStatus::ALL.into_iter().filter(|s| s.is_final()) {
        for kind in SignalKind::ALL {
            assert!(
                !matches!(rule(status, kind), Rule::To(_)),
                "{status} left by {kind}"
            );
        }
    }
}

#[test]
fn only_commands_are_ever_refused() {
    for status in IntentStatus::ALL {
        for kind in SignalKind::ALL {
            if rule(status, kind) == Rule::Refuse {
                assert_eq!(
                    kind,
                    SignalKind::Cancel,
                    "{status} refuses provider fact {kind}"
                );
            }
        }
    }
}

#[test]
fn created_jumps_straight_to_the_providers_outcome_when_the_create_response_was_lost() {
    for (kind, to) in [
        (SignalKind::Approved, IntentStatus::Approved),
        (SignalKind::Rejected, IntentStatus::Rejected),
        (SignalKind::PayerConfirmed, IntentStatus::PayerConfirmed),
        (SignalKind::LateArrival, IntentStatus::LateArrival),
    ] {
        assert_eq!(rule(IntentStatus::Created, kind), Rule::To(to));
    }
    // The late create response then finds the intent already settled.
    assert_eq!(
        rule(IntentStatus::Approved, SignalKind::HandoffIssued),
        Rule::Stale
    );
}

#[test]
fn expired_and_late_arrival_still_settle_to_an_outcome() {
    for from in [IntentStatus::Expired, IntentStatus::LateArrival] {
        assert_eq!(
            rule(from, SignalKind::Approved),
            Rule::To(IntentStatus::Approved)
        );
        assert_eq!(
            rule(from, SignalKind::Rejected),
            Rule::To(IntentStatus::Rejected)
        );
    }
    assert_eq!(
        rule(IntentStatus::Expired, SignalKind::LateArrival),
        Rule::To(IntentStatus::LateArrival)
    );
}

#[test]
fn contrary_outcome_after_a_final_one_is_an_anomaly_and_changes_nothing() {
    let approved = intent_in(IntentStatus::Approved);
    let Ok(Plan::Anomaly(a)) = plan(
        &approved,
        &event(SignalKind::Rejected).with_event_id("evt-9"),
        NOW,
    ) else {
        panic!("expected an anomaly");
    };
    assert_eq!(a.status, IntentStatus::Approved);
    assert_eq!(a.provider_event_id.as_deref(), Some("evt-9"));
    assert_eq!(a.discriminator(), "event:evt-9");
    assert_eq!(
        rule(IntentStatus::Rejected, SignalKind::Approved),
        Rule::Anomaly
    );
    assert_eq!(
        rule(IntentStatus::Failed, SignalKind::Approved),
        Rule::Anomaly
    );
}

#[test]
fn repeat_of_the_same_outcome_is_a_duplicate() {
    for status in IntentStatus::ALL {
        let same = SignalKind::ALL.into_iter().find(|k| {
            matches!(
                (status, k),
                (IntentStatus::Approved, SignalKind::Approved)
                    | (IntentStatus::Rejected, SignalKind::Rejected)
                    | (IntentStatus::Expired, SignalKind::Expired)
                    | (IntentStatus::LateArrival, SignalKind::LateArrival)
                    | (IntentStatus::Failed, SignalKind::CreateFailed)
                    | (IntentStatus::Canceled, SignalKind::Cancel)
                    | (IntentStatus::PayerConfirmed, SignalKind::PayerConfirmed)
                    | (IntentStatus::Pending, SignalKind::HandoffIssued)
            )
        });
        if let Some(k) = same {
            assert_eq!(
                plan(&intent_in(status), &event(k), NOW).unwrap(),
                Plan::Duplicate,
                "{status} + {k}"
            );
        }
    }
}

#[test]
fn approval_repeated_with_another_amount_is_an_anomaly() {
    let approved = intent_in(IntentStatus::Approved);
    let ev = IntentEvent::new(
        Signal::Approved {
            amount: MinorUnits::new(99_999).unwrap(),
            payer: None,
        },
        Cause::Webhook,
    );
    assert!(matches!(
        plan(&approved, &ev, NOW).unwrap(),
        Plan::Anomaly(_)
    ));
}

#[test]
fn approval_records_the_approved_amount_not_the_requested_one() {
    let pending = intent_in(IntentStatus::Pending);
    let ev = IntentEvent::new(
        Signal::Approved {
            amount: MinorUnits::new(95_000).unwrap(),
            payer: None,
        },
        Cause::Webhook,
    );
    let Plan::Apply { next, .. } = plan(&pending, &ev, NOW).unwrap() else {
        panic!("expected a transition");
    };
    assert_eq!(next.amount.get(), 100_000);
    assert_eq!(next.approved_amount.map(MinorUnits::get), Some(95_000));
}

#[test]
fn verification_success_records_the_verified_payer() {
    let payer = VerifiedPayer {
        name: Some("A Kumar".into()),
        masked_account_number: Some("XXXXXX1234".into()),
        ifsc: Some("HDFC0000001".into()),
        vpa: Some("akumar@okhdfc".into()),
        bank_reference: Some("412345678901".into()),
    };
    let ev = IntentEvent::new(
        Signal::Approved {
            amount: MinorUnits::new(100).unwrap(),
            payer: Some(payer.clone()),
        },
        Cause::StatusPoll,
    );
    let Plan::Apply { next, transition } =
        plan(&intent_in(IntentStatus::Pending), &ev, NOW).unwrap()
    else {
        panic!("expected a transition");
    };
    assert_eq!(next.verified_payer, Some(payer));
    assert_eq!(transition.cause, Cause::StatusPoll);
}

#[test]
fn cancel_is_refused_once_the_payer_acted() {
    for status in [
        IntentStatus::PayerConfirmed,
        IntentStatus::LateArrival,
        IntentStatus::Approved,
    ] {
        let err = plan(&intent_in(status), &event(SignalKind::Cancel), NOW).unwrap_err();
        assert_eq!(err.code(), "INVALID_TRANSITION");
        assert!(err.to_string().contains(status.as_str()), "{err}");
    }
}

#[test]
fn handoff_and_provider_reference_are_recorded_when_applied() {
    let ev = event(SignalKind::HandoffIssued).with_provider_ref(ProviderRef::Pientegra {
        intent_id: "0b6a-provider".into(),
        reference_no: Some("D-2026-0000123".into()),
    });
    let Plan::Apply { next, .. } = plan(&intent_in(IntentStatus::Created), &ev, NOW).unwrap()
    else {
        panic!("expected a transition");
    };
    assert!(matches!(
        next.handoff,
        Some(PayerHandoff::HostedPage { .. })
    ));
    assert_eq!(next.expires_at, Some(NOW.plus_millis(900_000)));
    assert_eq!(
        next.provider_ref.as_ref().map(ProviderRef::lookup_key),
        Some("0b6a-provider")
    );
}

#[test]
fn a_signal_for_another_provider_intent_is_an_anomaly() {
    let mut pending = intent_in(IntentStatus::Pending);
    pending.provider_ref = Some(ProviderRef::Pientegra {
        intent_id: "ours".into(),
        reference_no: None,
    });
    let ev = event(SignalKind::Approved).with_provider_ref(ProviderRef::Pientegra {
        intent_id: "someone-elses".into(),
        reference_no: None,
    });
    assert!(matches!(
        plan(&pending, &ev, NOW).unwrap(),
        Plan::Anomaly(_)
    ));
}

#[test]
fn replay_accepts_a_legal_history_and_rejects_a_forged_one() {
    let row = |from, to| Transition {
        from,
        to,
        cause: Cause::Webhook,
        at: NOW,
        provider_event_id: None,
    };
    use IntentStatus::*;
    let good = [
        row(None, Created),
        row(Some(Created), Pending),
        row(Some(Pending), Expired),
        row(Some(Expired), LateArrival),
        row(Some(LateArrival), Approved),
    ];
    assert_eq!(replay(&good), Some(Approved));
    let leaves_final = [
        row(None, Created),
        row(Some(Created), Approved),
        row(Some(Approved), Rejected),
    ];
    assert_eq!(replay(&leaves_final), None);
    let broken_chain = [row(None, Created), row(Some(Pending), Approved)];
    assert_eq!(replay(&broken_chain), None);
    assert_eq!(replay(&[]), None);
}

#[test]
fn status_and_signal_names_round_trip() {
    for s in IntentStatus::ALL {
        assert_eq!(s.as_str().parse::<IntentStatus>().unwrap(), s);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.as_str())
        );
    }
}

fn any_event() -> impl Strategy<Value = IntentEvent> {
    (
        prop::sample::select(SignalKind::ALL.to_vec()),
        prop::sample::select(vec![95_000_i64, 100_000]),
        prop::option::of(0u8..6),
    )
        .prop_map(|(kind, amount, event_no)| {
            let mut ev = event(kind);
            if let Signal::Approved { amount: a, .. } = &mut ev.signal {
                *a = MinorUnits::new(amount).unwrap();
            }
            if let Some(n) = event_no {
                // A small pool of provider event ids, so that redeliveries happen often.
                ev = ev.with_event_id(format!("evt-{n}"));
            }
            ev
        })
}

proptest! {
    /// Random deliveries (duplicates, reorderings, contradictions) against the pure table:
    /// a final status is never left, at most one approval is ever emitted, and the history
    /// replays to the current status.
    #[test]
    fn random_deliveries_keep_the_lifecycle_invariants(
        events in prop::collection::vec(any_event(), 0..40)
    ) {
        let mut intent = intent_in(IntentStatus::Created);
        let mut history = vec![Transition {
            from: None,
            to: IntentStatus::Created,
            cause: Cause::Api,
            at: NOW,
            provider_event_id: None,
        }];
        let mut approvals = 0;
        let mut final_seen: Option<IntentStatus> = None;
        for ev in &events {
            match plan(&intent, ev, NOW) {
                Ok(Plan::Apply { next, transition }) => {
                    prop_assert!(final_seen.is_none(), "left final {:?}", final_seen);
                    prop_assert_eq!(next.version, intent.version + 1);
                    if next.status == IntentStatus::Approved {
                        approvals += 1;
                    }
                    history.push(transition);
                    intent = *next;
                }
                Ok(Plan::Duplicate | Plan::Stale | Plan::Anomaly(_)) => {}
                Err(e) => prop_assert_eq!(e.code(), "INVALID_TRANSITION"),
            }
            if intent.status.is_final() {
                final_seen.get_or_insert(intent.status);
                prop_assert_eq!(Some(intent.status), final_seen);
            }
        }
        prop_assert!(approvals <= 1);
        prop_assert_eq!(replay(&history), Some(intent.status));
        prop_assert_eq!(history.len() as u64, intent.version);
    }
}

#[test]
fn late_money_after_a_rejection_reaches_the_host_as_an_anomaly() {
    let rejected = intent_in(IntentStatus::Rejected);
    let Ok(Plan::Anomaly(a)) = plan(
        &rejected,
        &event(SignalKind::LateArrival).with_event_id("evt-late"),
        NOW,
    ) else {
        panic!("late funds on a rejected intent must not be silent");
    };
    assert_eq!(a.signal, Signal::LateArrival);
    assert!(a.detail.contains("rejected"), "{}", a.detail);
    // After an approval, the late-arrival notice is only out of order.
    assert_eq!(
        rule(IntentStatus::Approved, SignalKind::LateArrival),
        Rule::Stale
    );
}
