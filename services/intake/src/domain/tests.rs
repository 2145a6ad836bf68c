//! Intake's rules without services: parsing, deadlines, status, metrics.
use super::*;
use serde_json::json;

fn input() -> ComplaintInput {
    serde_json::from_value(json!({
        "district": "tongzhou", "street": "jiukeshu", "category": "basement_illegal_residence",
        "point": {"community": "园景阁西区", "building": "3", "basement": "B1"},
        "caller": {"name": "张先生", "phone": "13800000000"}, "description": "地下室有人居住"
    }))
    .unwrap()
}

fn parse(i: ComplaintInput) -> Result<Complaint, Vec<FieldError>> {
    i.parse(
        &Orgs::load().unwrap(),
        &Catalog::load().unwrap(),
        Utc::now(),
    )
}

#[test]
fn a_valid_complaint_parses_with_defaults() {
    let c = parse(input()).unwrap();
    assert_eq!(c.urgency, Urgency::Normal);
    assert_eq!(c.street, "jiukeshu");
    assert_eq!(c.point_id, point_id("tongzhou", &c.point));
}

#[test]
fn every_invalid_field_is_reported_at_once() {
    let mut i = input();
    i.street = Some("chaoyangmen".into());
    i.category = Some("noise".into());
    i.urgency = Some("asap".into());
    i.point.as_mut().unwrap().basement = Some("  ".into());
    i.caller.as_mut().unwrap().phone = Some("call me".into());
    let errs = parse(i).unwrap_err();
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "street",
            "category",
            "urgency",
            "point.basement",
            "caller.phone"
        ]
    );
}

#[test]
fn unknown_district_and_missing_point_are_refused() {
    let mut i = input();
    i.district = Some("gotham".into());
    i.point = None;
    let fields: Vec<_> = parse(i).unwrap_err().into_iter().map(|e| e.field).collect();
    assert_eq!(fields, vec!["district", "point"]);
}

#[test]
fn deadlines_follow_urgency() {
    let now = Utc::now();
    let limits = Limits::default();
    assert_eq!(
        deadlines(&limits, Urgency::Normal, now),
        (
            now + chrono::Duration::hours(24),
            now + chrono::Duration::days(7)
        )
    );
    assert_eq!(
        deadlines(&limits, Urgency::Urgent, now),
        (
            now + chrono::Duration::hours(2),
            now + chrono::Duration::hours(24)
        )
    );
}

#[test]
fn registering_receives_then_dispatches() {
    let c = parse(input()).unwrap();
    let now = Utc::now();
    let (events, d) = register(Uuid::now_v7(), &c, &Limits::default(), now);
    match &events[..] {
        [ComplaintEvent::ComplaintReceived(r), ComplaintEvent::ComplaintDispatched(x)] => {
            assert_eq!(
                (r.street.as_str(), x.street.as_str()),
                ("jiukeshu", "jiukeshu")
            );
            assert_eq!((x.dispatched_at, x.respond_by), (now, d.respond_by));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.dispatched_at, now);
    assert!(
        events
            .iter()
            .all(|e| !serde_json::to_string(e).unwrap().contains("13800000000")),
        "no phone in the log"
    );
}

#[test]
fn status_follows_the_ledger() {
    use qingling_events::ledger::{Registered as ItemRegistered, Source, WrittenOff as W};
    let (item_id, complaint_id) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let registered = ItemEvent::ItemRegistered(ItemRegistered {
        item_id,
        district: "tongzhou".into(),
        street: "jiukeshu".into(),
        category: "basement_illegal_residence".into(),
        point_id: Uuid::nil(),
        point: serde_json::json!({}),
        source: Source::Complaint,
        complaint_id: Some(complaint_id),
        urgency: Urgency::Normal,
        description: String::new(),
        respond_by: None,
        resolve_by: None,
        rebound_of: None,
    });
    let linked = ItemEvent::ComplaintLinked {
        item_id,
        complaint_id,
    };
    let written_off = |kind| {
        ItemEvent::ItemWrittenOff(W {
            item_id,
            district: "tongzhou".into(),
            street: "jiukeshu".into(),
            category: "basement_illegal_residence".into(),
            point_id: Uuid::nil(),
            kind,
            closure_id: None,
        })
    };
    let acknowledged = ItemEvent::ItemAcknowledged {
        item_id,
        street: "jiukeshu".into(),
    };
    use Status::*;
    assert_eq!(Dispatched.after_ledger_event(&registered), Some(Registered));
    assert_eq!(Dispatched.after_ledger_event(&linked), Some(Registered));
    assert_eq!(
        Registered.after_ledger_event(&written_off(WriteOffKind::Rectified)),
        Some(WrittenOff)
    );
    assert_eq!(
        Dispatched.after_ledger_event(&written_off(WriteOffKind::Unfounded)),
        Some(WrittenOff)
    );
    assert_eq!(
        Registered.after_ledger_event(&written_off(WriteOffKind::Returned)),
        None
    );
    assert_eq!(Registered.after_ledger_event(&acknowledged), None);
    assert_eq!(WrittenOff.after_ledger_event(&registered), None);
}

#[test]
fn phones_are_masked() {
    assert_eq!(mask_phone("13800000000"), "*******0000");
    assert_eq!(mask_phone("+86 138-0000-1234"), "*******1234");
    assert_eq!(mask_phone("(010)6512-3456"), "*******3456");
    assert_eq!(
        mask_phone("6512-3456"),
        "****3456",
        "a landline shows 4 of 8 digits"
    );
    assert_eq!(mask_phone("12345"), "*2345");
    assert_eq!(mask_phone("110"), "***");
    assert_eq!(mask_phone("1234"), "****");
    assert_eq!(mask_name("张先生"), "张**");
    assert_eq!(mask_name("王"), "王*");
    assert_eq!(mask_name(" "), "");
}

fn counters(flags: &[MetricFlags]) -> Counters {
    flags
        .iter()
        .fold(Counters::default(), |acc, f| acc.plus(&f.counters()))
}

fn answered(s: Option<Satisfaction>) -> MetricFlags {
    MetricFlags {
        counted: true,
        responded_on_time: true,
        resolved: true,
        overdue: false,
        satisfaction: s,
    }
}

#[test]
fn street_rates_by_hand() {
    use Satisfaction::*;
    // Five complaints: 4 responded on time, 3 resolved, 1 overdue; answers 满意, 基本满意, 不满意, 不了解.
    let mut f = vec![
        answered(Some(Satisfied)),
        answered(Some(BasicallySatisfied)),
        answered(Some(Dissatisfied)),
    ];
    f.push(MetricFlags {
        counted: true,
        responded_on_time: true,
        resolved: false,
        overdue: false,
        satisfaction: Some(Unknown),
    });
    f.push(MetricFlags {
        counted: true,
        responded_on_time: false,
        resolved: false,
        overdue: true,
        satisfaction: None,
    });
    f.push(MetricFlags {
        counted: false,
        responded_on_time: true,
        resolved: true,
        overdue: true,
        satisfaction: None,
    }); // returned: not counted
    let c = counters(&f);
    assert_eq!(
        (
            c.received,
            c.responded_on_time,
            c.resolved,
            c.followed_up,
            c.overdue
        ),
        (5, 4, 3, 4, 1)
    );
    let r = c.rates();
    assert_eq!(r.response_rate, Some(0.8));
    assert_eq!(r.resolution_rate, Some(0.6));
    // Known answers 5, 3, 0 → mean 8/3; the unknown one counts as 8/3 too: (5+3+0+8/3)/4 = 8/3.
    assert!((r.satisfaction_score.unwrap() - 8.0 / 3.0).abs() < 1e-12);
    assert!((r.satisfaction_rate.unwrap() - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn empty_denominators_give_null_rates() {
    let r = Counters::default().rates();
    assert_eq!(
        (
            r.response_rate,
            r.resolution_rate,
            r.satisfaction_score,
            r.satisfaction_rate
        ),
        (None, None, None, None)
    );
    // Only unknown answers: no known answer to average.
    let c = counters(&[answered(Some(Satisfaction::Unknown))]);
    assert_eq!(c.rates().satisfaction_score, None);
    assert_eq!(c.rates().response_rate, Some(1.0));
}

#[test]
fn months_are_shanghai_months() {
    let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    assert_eq!(month_of(at("2026-11-30T15:59:59Z")), "2026-11");
    assert_eq!(
        month_of(at("2026-11-30T16:00:00Z")),
        "2026-12",
        "midnight in Beijing"
    );
    assert_eq!(month_of(at("2026-12-31T16:30:00Z")), "2027-01");
}

#[test]
fn returns_and_follow_ups_follow_the_status() {
    assert!(can_return(Status::Dispatched, false).is_ok());
    assert!(can_return(Status::Registered, false).is_ok());
    assert!(can_return(Status::Registered, true)
        .unwrap_err()
        .contains("acknowledged"));
    assert!(can_return(Status::WrittenOff, false).is_err());
    assert!(can_return(Status::Returned, false).is_err());
    assert!(can_follow_up(Status::WrittenOff).is_ok());
    assert!(can_follow_up(Status::FollowedUp)
        .unwrap_err()
        .contains("already"));
    assert!(can_follow_up(Status::Registered).is_err());
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn flags() -> impl Strategy<Value = MetricFlags> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(0u8..4),
        )
            .prop_map(|(c, r, s, o, a)| MetricFlags {
                counted: c,
                responded_on_time: r,
                resolved: s,
                overdue: o,
                satisfaction: a.map(|a| {
                    [
                        Satisfaction::Satisfied,
                        Satisfaction::BasicallySatisfied,
                        Satisfaction::Dissatisfied,
                        Satisfaction::Unknown,
                    ][a as usize]
                }),
            })
    }

    proptest! {
        /// Moving complaints' flags by deltas (as the store does) always leaves the counters equal
        /// to the sum of the current flags, never negative, and rates within [0, 1].
        #[test]
        fn counters_are_the_sum_of_the_flags(changes in proptest::collection::vec((0usize..5, flags()), 0..60)) {
            let mut complaints = vec![MetricFlags::default(); 5];
            let mut counters = Counters::default();
            for (i, new) in changes {
                counters = counters.plus(&new.counters().minus(&complaints[i].counters()));
                complaints[i] = new;
                let sum = complaints.iter().fold(Counters::default(), |a, f| a.plus(&f.counters()));
                prop_assert_eq!(counters, sum);
                let r = counters.rates();
                for rate in [r.response_rate, r.resolution_rate, r.satisfaction_rate].into_iter().flatten() {
                    prop_assert!((0.0..=1.0).contains(&rate));
                }
                if let Some(score) = r.satisfaction_score {
                    prop_assert!((0.0..=5.0).contains(&score));
                }
            }
        }
    }
}
