//! The fold and its rows, without a database.
use super::*;
use crate::domain::{Outcome, OverdueKind, Registered, Source, WriteOffKind, WrittenOff};
use qingling_events::intake::Urgency;
use serde_json::Value;

fn at(h: i64) -> DateTime<Utc> {
    "2026-11-28T08:00:00.123456789Z"
        .parse::<DateTime<Utc>>()
        .unwrap()
        + chrono::Duration::hours(h)
}

fn env(position: i64) -> Logged {
    Logged {
        position,
        at: at(position),
    }
}

fn registered(id: Uuid) -> ItemEvent {
    ItemEvent::ItemRegistered(Registered {
        item_id: id,
        district: "tongzhou".into(),
        street: "jiukeshu".into(),
        category: "basement_illegal_residence".into(),
        point_id: Uuid::nil(),
        point: serde_json::json!({"community": "园景阁\"西区\""}),
        source: Source::Complaint,
        complaint_id: Some(Uuid::from_u128(1)),
        urgency: Urgency::Normal,
        description: String::new(),
        respond_by: Some(at(24)),
        resolve_by: Some(at(168)),
        rebound_of: None,
    })
}

#[test]
fn a_life_folds_into_one_row_and_its_areas_back_to_zero() {
    let id = Uuid::from_u128(7);
    let mut f = Fold::default();
    let events = vec![
        registered(id),
        ItemEvent::ComplaintLinked {
            item_id: id,
            complaint_id: Uuid::from_u128(2),
        },
        ItemEvent::ComplaintUnlinked {
            item_id: id,
            complaint_id: Uuid::from_u128(1),
            street: "jiukeshu".into(),
        },
        ItemEvent::ItemOverdue {
            item_id: id,
            street: "jiukeshu".into(),
            kind: OverdueKind::Respond,
        },
        ItemEvent::ItemOverdue {
            item_id: id,
            street: "jiukeshu".into(),
            kind: OverdueKind::Respond,
        },
        ItemEvent::ItemAcknowledged {
            item_id: id,
            street: "jiukeshu".into(),
        },
        ItemEvent::ExtensionApproved {
            item_id: id,
            street: "jiukeshu".into(),
            until: at(400),
            reason: "产权".into(),
        },
        ItemEvent::ItemClosurePending {
            item_id: id,
            street: "jiukeshu".into(),
            closure_id: Uuid::from_u128(9),
            outcome: Outcome::Rectified,
            rooms_cleared: Some(4),
            partition_area_m2: Some(36.5),
        },
        ItemEvent::ItemClosureRejected {
            item_id: id,
            street: "jiukeshu".into(),
            closure_id: Uuid::from_u128(9),
            reason: "照片".into(),
        },
        ItemEvent::ItemWrittenOff(WrittenOff {
            item_id: id,
            district: "tongzhou".into(),
            street: "jiukeshu".into(),
            category: "basement_illegal_residence".into(),
            point_id: Uuid::nil(),
            kind: WriteOffKind::Rectified,
            closure_id: Some(Uuid::from_u128(10)),
        }),
        // An event of an item the log never registered changes nothing.
        ItemEvent::ItemAcknowledged {
            item_id: Uuid::from_u128(8),
            street: "x".into(),
        },
    ];
    for (n, ev) in events.into_iter().enumerate() {
        f.apply(&env(n as i64 + 1), ev).unwrap();
    }
    assert_eq!(f.items.len(), 1);
    let i = &f.items[&id];
    assert_eq!(i.complaint_ids, vec![Uuid::from_u128(2)]);
    assert_eq!(i.overdue, vec!["respond"]);
    assert_eq!(
        (i.status, i.closure_id),
        ("written_off", Some(Uuid::from_u128(10)))
    );
    assert_eq!(i.resolve_by, Some(at(400)));
    let ext: Value = serde_json::from_str(i.extension.as_deref().unwrap()).unwrap();
    assert_eq!(ext["status"], "approved");
    assert_eq!(
        (i.acknowledged_at, i.written_off_at),
        (Some(at(6)), Some(at(10)))
    );
    assert_eq!(i.updated_at, at(10));
    let area = |street: &str| {
        f.marks[&(
            "tongzhou".to_string(),
            street.to_string(),
            "basement_illegal_residence".to_string(),
        )]
    };
    for street in ["jiukeshu", ""] {
        assert_eq!(
            area(street),
            Mark {
                open: 0,
                zero_since: Some(at(10))
            }
        );
    }

    // The row as COPY reads it: quotes doubled, nulls as empty fields, microseconds.
    let mut csv = Csv(String::new());
    item_csv(&mut csv, i);
    assert!(
        csv.0.contains(r#""{""community"":""园景阁\""西区\""""}""#),
        "{}",
        csv.0
    );
    assert!(csv.0.contains("2026-11-28T09:00:00.123456Z"), "{}", csv.0);
    assert!(csv.0.contains(",\"{respond}\","), "{}", csv.0);
    assert!(csv.0.ends_with('\n') && !csv.0.contains(",,,,,"));
}

#[test]
fn a_second_registration_of_an_item_is_refused() {
    let id = Uuid::from_u128(7);
    let mut f = Fold::default();
    f.apply(&env(1), registered(id)).unwrap();
    assert!(f.apply(&env(2), registered(id)).is_err());
}
