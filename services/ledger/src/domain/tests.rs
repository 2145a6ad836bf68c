//! The item's rules, given events and a command, then events or an error.
use super::*;

/// The registration time in these tests.
fn t0() -> DateTime<Utc> {
    "2026-11-28T08:00:00Z".parse().unwrap()
}

fn hours(h: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::hours(h)
}

fn registered(id: Uuid) -> ItemEvent {
    ItemEvent::ItemRegistered(Registered {
        item_id: id,
        district: "tongzhou".into(),
        street: "jiukeshu".into(),
        category: "basement_illegal_residence".into(),
        point_id: Uuid::nil(),
        point: serde_json::json!({}),
        source: Source::Complaint,
        complaint_id: Some(Uuid::from_u128(1)),
        urgency: qingling_events::intake::Urgency::Normal,
        description: String::new(),
        respond_by: Some(t0() + chrono::Duration::hours(24)),
        resolve_by: Some(t0() + chrono::Duration::days(7)),
        rebound_of: None,
    })
}

/// Given these events, when `cmd`, then the new events (or the error).
fn given(history: Vec<ItemEvent>) -> Item {
    Item::from_events(&history).expect("a registered item")
}

fn acked(id: Uuid) -> Vec<ItemEvent> {
    vec![
        registered(id),
        ItemEvent::ItemAcknowledged {
            item_id: id,
            street: "jiukeshu".into(),
        },
    ]
}

fn pending(id: Uuid, closure: Uuid) -> Vec<ItemEvent> {
    let mut h = acked(id);
    h.push(ItemEvent::ItemClosurePending {
        item_id: id,
        street: "jiukeshu".into(),
        closure_id: closure,
        outcome: Outcome::Rectified,
        rooms_cleared: None,
        partition_area_m2: None,
    });
    h
}

#[test]
fn a_registered_item_can_be_acknowledged_once() {
    let id = Uuid::now_v7();
    let item = given(vec![registered(id)]);
    assert_eq!(item.version, 1);
    assert_eq!(
        item.acknowledge(t0()).unwrap(),
        vec![ItemEvent::ItemAcknowledged {
            item_id: id,
            street: "jiukeshu".into()
        }]
    );
    let item = given(acked(id));
    assert_eq!(item.status, ItemStatus::Acknowledged);
    assert!(
        matches!(item.acknowledge(t0()), Err(DomainError::Conflict(m)) if m.contains("acknowledged"))
    );
}

#[test]
fn repeat_complaints_link_once_and_never_to_a_written_off_item() {
    let id = Uuid::now_v7();
    let item = given(vec![registered(id)]);
    let c2 = Uuid::from_u128(2);
    assert_eq!(
        item.link(c2).unwrap(),
        vec![ItemEvent::ComplaintLinked {
            item_id: id,
            complaint_id: c2
        }]
    );
    assert!(
        item.link(Uuid::from_u128(1)).unwrap().is_empty(),
        "already linked"
    );
    let mut h = pending(id, Uuid::from_u128(9));
    let approved = given(h.clone())
        .closure_approved(Uuid::from_u128(9), t0())
        .unwrap();
    h.extend(approved);
    assert!(given(h).link(c2).is_err());
}

#[test]
fn a_write_off_request_needs_an_acknowledged_item() {
    let id = Uuid::now_v7();
    let c = Uuid::from_u128(7);
    assert!(given(vec![registered(id)])
        .closure_requested(c, Outcome::Rectified, Cleared::default())
        .is_err());
    let events = given(acked(id))
        .closure_requested(c, Outcome::Rectified, Cleared::default())
        .unwrap();
    assert!(
        matches!(&events[..], [ItemEvent::ItemClosurePending { closure_id, .. }] if *closure_id == c)
    );
    let item = given(pending(id, c));
    assert_eq!(item.status, ItemStatus::ClosurePending);
    assert!(
        item.closure_requested(c, Outcome::Rectified, Cleared::default())
            .unwrap()
            .is_empty(),
        "same request again is a no-op"
    );
    assert!(
        item.closure_requested(Uuid::from_u128(8), Outcome::Rectified, Cleared::default())
            .is_err(),
        "a second request while one is pending"
    );
}

#[test]
fn rejection_returns_the_item_to_acknowledged_and_it_may_be_requested_again() {
    let id = Uuid::now_v7();
    let c = Uuid::from_u128(7);
    let mut h = pending(id, c);
    h.extend(given(h.clone()).closure_rejected(c, "照片不清").unwrap());
    let item = given(h.clone());
    assert_eq!(item.status, ItemStatus::Acknowledged);
    assert!(item.closure_rejected(c, "again").is_err());
    assert!(
        item.closure_approved(c, t0()).is_err(),
        "a rejected request cannot be approved"
    );
    assert_eq!(
        item.closure_requested(Uuid::from_u128(8), Outcome::Unfounded, Cleared::default())
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn approval_writes_the_item_off_with_the_requested_outcome() {
    let id = Uuid::now_v7();
    let c = Uuid::from_u128(7);
    let item = given(pending(id, c));
    assert!(
        item.closure_approved(Uuid::from_u128(8), t0()).is_err(),
        "not the pending request"
    );
    let events = item.closure_approved(c, t0()).unwrap();
    match &events[..] {
        [ItemEvent::ItemWrittenOff(w)] => {
            assert_eq!(w.kind, WriteOffKind::Rectified);
            assert_eq!(w.closure_id, Some(c));
        }
        other => panic!("{other:?}"),
    }
    let mut h = pending(id, c);
    h.extend(events);
    let done = given(h);
    assert_eq!(done.status, ItemStatus::WrittenOff);
    assert!(done.acknowledge(t0()).is_err());
    assert!(done
        .closure_requested(Uuid::from_u128(9), Outcome::Rectified, Cleared::default())
        .is_err());
    assert!(
        done.closure_approved(c, t0()).is_err(),
        "approved once only"
    );
}

#[test]
fn a_stream_that_does_not_start_with_registration_is_no_item() {
    let id = Uuid::now_v7();
    assert!(Item::from_events(&[ItemEvent::ItemAcknowledged {
        item_id: id,
        street: "x".into()
    }])
    .is_none());
    assert!(Item::from_events(&[]).is_none());
}

fn kinds(events: &[ItemEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e {
            ItemEvent::ItemOverdue { kind, .. } => kind.as_str(),
            ItemEvent::ItemAcknowledged { .. } => "acknowledged",
            ItemEvent::ItemWrittenOff(_) => "written_off",
            _ => "other",
        })
        .collect()
}

#[test]
fn deadlines_are_flagged_once_each_when_they_pass() {
    let id = Uuid::now_v7();
    let mut h = vec![registered(id)];
    assert!(given(h.clone()).check_deadlines(hours(23)).is_empty());
    let due = given(h.clone()).check_deadlines(hours(25));
    assert_eq!(kinds(&due), ["respond"]);
    h.extend(due);
    assert!(
        given(h.clone()).check_deadlines(hours(26)).is_empty(),
        "respond is flagged once"
    );
    let due = given(h.clone()).check_deadlines(hours(24 * 8));
    assert_eq!(kinds(&due), ["resolve"]);
    h.extend(due);
    let item = given(h);
    assert_eq!(item.overdue, [OverdueKind::Respond, OverdueKind::Resolve]);
    assert!(item.check_deadlines(hours(24 * 30)).is_empty());
}

#[test]
fn an_acknowledged_item_is_not_respond_overdue_and_a_late_one_is_flagged_on_acknowledgement() {
    let id = Uuid::now_v7();
    let item = given(acked(id));
    assert!(item.check_deadlines(hours(25)).is_empty());
    let late = given(vec![registered(id)]).acknowledge(hours(30)).unwrap();
    assert_eq!(kinds(&late), ["respond", "acknowledged"]);
    let both_missed = given(vec![registered(id)]).check_deadlines(hours(24 * 8));
    assert_eq!(kinds(&both_missed), ["respond", "resolve"]);
}

#[test]
fn a_late_write_off_is_flagged_resolve_overdue_first_and_a_written_off_item_never_again() {
    let id = Uuid::now_v7();
    let c = Uuid::from_u128(7);
    let mut h = pending(id, c);
    let events = given(h.clone()).closure_approved(c, hours(24 * 8)).unwrap();
    assert_eq!(kinds(&events), ["resolve", "written_off"]);
    h.extend(events);
    assert!(given(h).check_deadlines(hours(24 * 100)).is_empty());
}

#[test]
fn an_extension_is_asked_once_before_resolve_by_and_moves_the_deadline_when_approved() {
    let id = Uuid::now_v7();
    let mut h = acked(id);
    let item = given(h.clone());
    let until = hours(24 * 14);
    assert!(matches!(
        item.request_extension(until, " ", hours(1)),
        Err(DomainError::Invalid {
            field: "reason",
            ..
        })
    ));
    assert!(matches!(
        item.request_extension(hours(24 * 6), "太复杂", hours(1)),
        Err(DomainError::Invalid { field: "until", .. })
    ));
    assert!(
        matches!(
            item.request_extension(until, "需协调产权单位", hours(24 * 8)),
            Err(DomainError::Conflict(_))
        ),
        "too late"
    );
    h.extend(
        item.request_extension(until, "需协调产权单位", hours(1))
            .unwrap(),
    );
    let item = given(h.clone());
    assert_eq!(
        item.extension.as_ref().unwrap().status,
        ExtensionStatus::Pending
    );
    assert!(
        item.request_extension(until, "again", hours(2)).is_err(),
        "one pending at a time"
    );
    assert!(item.reject_extension("").is_err());
    h.extend(item.approve_extension().unwrap());
    let item = given(h.clone());
    assert_eq!(item.resolve_by, Some(until));
    assert!(
        item.check_deadlines(hours(24 * 8)).is_empty(),
        "not overdue until the new date"
    );
    assert_eq!(kinds(&item.check_deadlines(hours(24 * 15))), ["resolve"]);
    assert!(
        matches!(item.request_extension(hours(24 * 20), "再延", hours(2)), Err(DomainError::Conflict(m)) if m.contains("already"))
    );
    assert!(item.approve_extension().is_err(), "nothing pending");
}

#[test]
fn a_rejected_extension_may_be_asked_again() {
    let id = Uuid::now_v7();
    let mut h = acked(id);
    h.extend(
        given(h.clone())
            .request_extension(hours(24 * 10), "原因", hours(1))
            .unwrap(),
    );
    h.extend(given(h.clone()).reject_extension("理由不足").unwrap());
    let item = given(h);
    assert_eq!(
        item.extension.as_ref().unwrap().status,
        ExtensionStatus::Rejected
    );
    assert_eq!(
        item.resolve_by,
        Some(hours(24 * 7)),
        "a rejection leaves the deadline"
    );
    assert!(item
        .request_extension(hours(24 * 10), "补充原因", hours(2))
        .is_ok());
}

#[test]
fn a_return_writes_the_item_off_as_returned() {
    let id = Uuid::now_v7();
    let item = given(vec![registered(id)]);
    assert!(
        item.returned(Uuid::from_u128(99), "jiukeshu", None)
            .is_err(),
        "not this item's complaint"
    );
    let unlinked = item.returned(Uuid::from_u128(1), "yongshun", None).unwrap();
    assert!(
        matches!(&unlinked[..], [ItemEvent::ComplaintUnlinked { .. }]),
        "another street's return leaves the item open"
    );
    let mut shared = vec![registered(id)];
    shared.extend(item.link(Uuid::from_u128(2)).unwrap());
    let leaves = given(shared)
        .returned(Uuid::from_u128(2), "jiukeshu", None)
        .unwrap();
    assert!(
        matches!(&leaves[..], [ItemEvent::ComplaintUnlinked { .. }]),
        "a repeat call's return leaves the problem on the ledger"
    );
    let events = item.returned(Uuid::from_u128(1), "jiukeshu", None).unwrap();
    assert!(
        matches!(&events[..], [ItemEvent::ItemWrittenOff(w)] if w.kind == WriteOffKind::Returned && w.closure_id.is_none())
    );
    let mut h = vec![registered(id)];
    h.extend(events);
    assert!(
        given(h)
            .returned(Uuid::from_u128(1), "jiukeshu", None)
            .is_err(),
        "returned once"
    );
}

#[test]
fn a_return_after_acknowledgement_is_refused_and_recorded() {
    let id = Uuid::now_v7();
    let at = hours(2);
    let mut h = vec![registered(id)];
    h.extend(given(h.clone()).check_deadlines(hours(25)));
    h.push(ItemEvent::ItemAcknowledged {
        item_id: id,
        street: "jiukeshu".into(),
    });
    let item = given(h.clone());
    let refused = item
        .returned(Uuid::from_u128(1), "jiukeshu", Some(at))
        .unwrap();
    match &refused[..] {
        [ItemEvent::ComplaintReturnRefused {
            complaint_id,
            acknowledged_at,
            overdue,
            ..
        }] => {
            assert_eq!(*complaint_id, Uuid::from_u128(1));
            assert_eq!(*acknowledged_at, Some(at));
            assert_eq!(overdue, &[OverdueKind::Respond]);
        }
        other => panic!("{other:?}"),
    }
    h.extend(refused);
    let after = given(h);
    assert_eq!(
        after.status,
        ItemStatus::Acknowledged,
        "the item stays taken on"
    );
    assert_eq!(
        after.complaint_ids,
        [Uuid::from_u128(1)],
        "and keeps its complaint"
    );
    // The same for a repeat call's return, and while a write-off request is pending.
    let mut h = pending(id, Uuid::from_u128(9));
    h.extend(given(h.clone()).link(Uuid::from_u128(2)).unwrap());
    assert!(matches!(
        &given(h)
            .returned(Uuid::from_u128(2), "jiukeshu", None)
            .unwrap()[..],
        [ItemEvent::ComplaintReturnRefused { .. }]
    ));
}

#[test]
fn a_write_off_withdraws_a_pending_extension_request() {
    let id = Uuid::now_v7();
    let closure = Uuid::from_u128(9);
    let mut h = pending(id, closure);
    h.extend(
        given(h.clone())
            .request_extension(hours(24 * 10), "住户多", hours(1))
            .unwrap(),
    );
    let events = given(h.clone())
        .closure_approved(closure, hours(2))
        .unwrap();
    assert!(matches!(
        &events[..],
        [
            ItemEvent::ExtensionWithdrawn { .. },
            ItemEvent::ItemWrittenOff(_)
        ]
    ));
    h.extend(events);
    let done = given(h);
    assert_eq!(
        done.extension.as_ref().unwrap().status,
        ExtensionStatus::Withdrawn
    );
    assert!(done.approve_extension().is_err(), "nothing left to decide");
    // A return's write-off too; with nothing pending, nothing is withdrawn.
    let mut h = vec![registered(id)];
    h.extend(
        given(h.clone())
            .request_extension(hours(24 * 10), "住户多", hours(1))
            .unwrap(),
    );
    assert!(matches!(
        &given(h)
            .returned(Uuid::from_u128(1), "jiukeshu", None)
            .unwrap()[..],
        [
            ItemEvent::ExtensionWithdrawn { .. },
            ItemEvent::ItemWrittenOff(_)
        ]
    ));
    let events = given(pending(id, closure))
        .closure_approved(closure, hours(2))
        .unwrap();
    assert!(matches!(&events[..], [ItemEvent::ItemWrittenOff(_)]));
}

/// Random sequences of commands never break the item's invariants.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Cmd {
        Acknowledge(i64),
        Link(u128),
        Request(u128),
        Reject(u128),
        Approve(u128, i64),
        Deadlines(i64),
        Return(u128),
        Extend(i64, i64),
        ApproveExtension,
        RejectExtension,
    }

    fn cmd() -> impl Strategy<Value = Cmd> {
        let hours = 0i64..400;
        prop_oneof![
            hours.clone().prop_map(Cmd::Acknowledge),
            (1u128..4).prop_map(Cmd::Link),
            (10u128..13).prop_map(Cmd::Request),
            (10u128..13).prop_map(Cmd::Reject),
            ((10u128..13), hours.clone()).prop_map(|(c, h)| Cmd::Approve(c, h)),
            hours.clone().prop_map(Cmd::Deadlines),
            (1u128..4).prop_map(Cmd::Return),
            (hours.clone(), 0i64..600).prop_map(|(now, until)| Cmd::Extend(now, until)),
            Just(Cmd::ApproveExtension),
            Just(Cmd::RejectExtension),
        ]
    }

    fn at(h: i64) -> DateTime<Utc> {
        "2026-11-28T08:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::hours(h)
    }

    proptest! {
        #[test]
        fn commands_never_break_the_item(cmds in proptest::collection::vec(cmd(), 0..40)) {
            let id = Uuid::from_u128(99);
            let mut history = vec![ItemEvent::ItemRegistered(Registered {
                item_id: id, district: "tongzhou".into(), street: "jiukeshu".into(), category: "basement_illegal_residence".into(),
                point_id: Uuid::nil(), point: serde_json::json!({}), source: Source::Complaint, complaint_id: Some(Uuid::from_u128(1)),
                urgency: qingling_events::intake::Urgency::Normal, description: String::new(), respond_by: Some(at(24)), resolve_by: Some(at(168)), rebound_of: None,
            })];
            for c in cmds {
                let item = Item::from_events(&history).unwrap();
                let result = match c {
                    Cmd::Acknowledge(h) => item.acknowledge(at(h)),
                    Cmd::Link(n) => item.link(Uuid::from_u128(n)),
                    Cmd::Request(n) => item.closure_requested(Uuid::from_u128(n), Outcome::Rectified, Cleared::default()),
                    Cmd::Reject(n) => item.closure_rejected(Uuid::from_u128(n), "r"),
                    Cmd::Approve(n, h) => item.closure_approved(Uuid::from_u128(n), at(h)),
                    Cmd::Deadlines(h) => Ok(item.check_deadlines(at(h))),
                    Cmd::Return(n) => item.returned(Uuid::from_u128(n), "jiukeshu", None),
                    Cmd::Extend(now, until) => item.request_extension(at(until), "原因", at(now)),
                    Cmd::ApproveExtension => item.approve_extension(),
                    Cmd::RejectExtension => item.reject_extension("理由"),
                };
                if let Ok(events) = result {
                    // Nothing happens to a written-off item, except nothing.
                    if item.status == ItemStatus::WrittenOff {
                        prop_assert!(events.is_empty(), "{events:?}");
                    }
                    history.extend(events);
                }
                let now = Item::from_events(&history).unwrap();
                prop_assert_eq!(now.version as usize, history.len());
                prop_assert_eq!(now.pending_closure.is_some(), now.status == ItemStatus::ClosurePending);
                let count = |f: fn(&ItemEvent) -> bool| history.iter().filter(|e| f(e)).count();
                let acks = count(|e| matches!(e, ItemEvent::ItemAcknowledged { .. }));
                let offs = count(|e| matches!(e, ItemEvent::ItemWrittenOff(_)));
                let respond = count(|e| matches!(e, ItemEvent::ItemOverdue { kind: OverdueKind::Respond, .. }));
                let resolve = count(|e| matches!(e, ItemEvent::ItemOverdue { kind: OverdueKind::Resolve, .. }));
                let extended = count(|e| matches!(e, ItemEvent::ExtensionApproved { .. }));
                prop_assert!(acks <= 1 && offs <= 1 && respond <= 1 && resolve <= 1 && extended <= 1, "{:?}", history);
                // A written-off item is the last word: nothing after it.
                if let Some(pos) = history.iter().position(|e| matches!(e, ItemEvent::ItemWrittenOff(_))) {
                    prop_assert_eq!(pos, history.len() - 1);
                }
                // A write-off leaves no extension request pending.
                if now.status == ItemStatus::WrittenOff {
                    let pending = matches!(&now.extension, Some(Extension { status: ExtensionStatus::Pending, .. }));
                    prop_assert!(!pending, "{:?}", history);
                }
                // A return never takes off an item the street had taken on.
                if acks == 1 {
                    let returned = history.iter().any(|e| matches!(e, ItemEvent::ItemWrittenOff(w) if w.kind == WriteOffKind::Returned));
                    prop_assert!(!returned, "{:?}", history);
                }
                // An approved extension moved resolve-by to its date, later than the original.
                if let Some(Extension { status: ExtensionStatus::Approved, until, .. }) = &now.extension {
                    prop_assert_eq!(now.resolve_by, Some(*until));
                    prop_assert!(*until > at(168));
                }
            }
        }
    }
}

/// A log as the previous release wrote it (event types and data as text, field for field)
/// replays into the same item: the typed events read what was stored before they existed.
#[test]
fn a_log_in_the_previous_releases_shapes_replays() {
    use qingling_events::Event;
    let (i, c1, c2, k) = (
        "018f0000-0000-7000-8000-000000000001",
        "018f0000-0000-7000-8000-000000000002",
        "018f0000-0000-7000-8000-000000000003",
        "018f0000-0000-7000-8000-000000000004",
    );
    let log = [
        (
            "item_registered",
            format!(
                r#"{{"category":"basement_illegal_residence","complaint_id":"{c1}","description":"有人住","district":"tongzhou","item_id":"{i}","point":{{"basement":"B1","building":"3","community":"某小区"}},"point_id":"018f0000-0000-7000-8000-0000000000aa","rebound_of":null,"resolve_by":"2026-12-05T08:00:00.123456Z","respond_by":"2026-11-29T08:00:00.123456Z","source":"complaint","street":"jiukeshu","urgency":"urgent"}}"#
            ),
        ),
        (
            "complaint_linked",
            format!(r#"{{"complaint_id":"{c2}","item_id":"{i}"}}"#),
        ),
        (
            "item_overdue",
            format!(r#"{{"item_id":"{i}","kind":"respond","street":"jiukeshu"}}"#),
        ),
        (
            "item_acknowledged",
            format!(r#"{{"item_id":"{i}","street":"jiukeshu"}}"#),
        ),
        (
            "item_closure_pending",
            format!(
                r#"{{"closure_id":"{k}","item_id":"{i}","outcome":"unfounded","street":"jiukeshu"}}"#
            ),
        ),
        (
            "item_written_off",
            format!(
                r#"{{"category":"basement_illegal_residence","closure_id":"{k}","district":"tongzhou","item_id":"{i}","kind":"unfounded","point_id":"018f0000-0000-7000-8000-0000000000aa","street":"jiukeshu"}}"#
            ),
        ),
    ];
    let events: Vec<ItemEvent> = log
        .iter()
        .map(|(t, data)| {
            ItemEvent::from_stored(Uuid::nil(), t, data)
                .unwrap()
                .unwrap()
        })
        .collect();
    let item = Item::from_events(&events).unwrap();
    assert_eq!(item.version, 6);
    assert_eq!(item.status, ItemStatus::WrittenOff);
    assert_eq!(
        item.complaint_ids,
        [c1.parse::<Uuid>().unwrap(), c2.parse().unwrap()]
    );
    assert_eq!(item.overdue, [OverdueKind::Respond]);
    match &events[5] {
        ItemEvent::ItemWrittenOff(w) => assert_eq!(w.kind, WriteOffKind::Unfounded),
        other => panic!("{other:?}"),
    }
    // Written back, each event is the text it was read from.
    for ((t, data), e) in log.iter().zip(&events) {
        let back = e.to_new_event();
        assert_eq!(&back.event_type, t);
        assert_eq!(
            back.data,
            serde_json::from_str::<serde_json::Value>(data).unwrap()
        );
    }
}
