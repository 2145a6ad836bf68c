//! The events of `qingling-intake`, on complaint streams (`complaint-<id>`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::event_family;

/// The stream of a complaint.
pub fn stream(complaint_id: Uuid) -> String {
    format!("complaint-{complaint_id}")
}

/// A complaint's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "data", rename_all = "snake_case")]
pub enum ComplaintEvent {
    /// 接诉: the hotline took the call.
    ComplaintReceived(Received),
    /// 派单: sent to the street that owns the point (again after a return: 改派).
    ComplaintDispatched(Dispatched),
    /// 退单: the street sent it back as not its own.
    ComplaintReturned {
        complaint_id: Uuid,
        street: String,
        reason: String,
        /// Why, as a code the dispatch metrics count (absent in events before it existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason_code: Option<ReturnReason>,
    },
    /// 先行联系: the street holding the complaint saw the caller's number, to call back. Who did
    /// is the event's actor; the number itself never enters the log.
    CallerRevealed { complaint_id: Uuid, street: String },
    /// 回访: the caller's satisfaction, asked after the write-off.
    FollowUpRecorded {
        complaint_id: Uuid,
        satisfaction: Satisfaction,
        #[serde(default)]
        note: String,
    },
}

/// The wire names of the family's event types.
pub mod types {
    pub const COMPLAINT_RECEIVED: &str = "complaint_received";
    pub const COMPLAINT_DISPATCHED: &str = "complaint_dispatched";
    pub const COMPLAINT_RETURNED: &str = "complaint_returned";
    pub const FOLLOW_UP_RECORDED: &str = "follow_up_recorded";
    pub const CALLER_REVEALED: &str = "caller_revealed";
}

event_family!(ComplaintEvent {
    ComplaintReceived => types::COMPLAINT_RECEIVED,
    ComplaintDispatched => types::COMPLAINT_DISPATCHED,
    ComplaintReturned => types::COMPLAINT_RETURNED,
    FollowUpRecorded => types::FOLLOW_UP_RECORDED,
    CallerRevealed => types::CALLER_REVEALED,
});

impl ComplaintEvent {
    pub fn complaint_id(&self) -> Uuid {
        match self {
            ComplaintEvent::ComplaintReceived(r) => r.complaint_id,
            ComplaintEvent::ComplaintDispatched(d) => d.complaint_id,
            ComplaintEvent::ComplaintReturned { complaint_id, .. }
            | ComplaintEvent::FollowUpRecorded { complaint_id, .. }
            | ComplaintEvent::CallerRevealed { complaint_id, .. } => *complaint_id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    #[default]
    Normal,
    /// 紧急: shorter time limits.
    Urgent,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Normal => "normal",
            Urgency::Urgent => "urgent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.into())).ok()
    }
}

/// 回访 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Satisfaction {
    /// 满意
    Satisfied,
    /// 基本满意
    BasicallySatisfied,
    /// 不满意
    Dissatisfied,
    /// 不了解
    Unknown,
}

impl Satisfaction {
    pub fn as_str(self) -> &'static str {
        match self {
            Satisfaction::Satisfied => "satisfied",
            Satisfaction::BasicallySatisfied => "basically_satisfied",
            Satisfaction::Dissatisfied => "dissatisfied",
            Satisfaction::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.into())).ok()
    }
}

/// The data of `complaint_received`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Received {
    pub complaint_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub urgency: Urgency,
    pub point_id: Uuid,
    /// 点位: community, building, basement and perhaps an address.
    pub point: Value,
    #[serde(default)]
    pub description: String,
    pub received_at: DateTime<Utc>,
}

/// The data of `complaint_dispatched`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispatched {
    pub complaint_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    #[serde(default)]
    pub urgency: Urgency,
    pub point_id: Uuid,
    #[serde(default)]
    pub point: Value,
    #[serde(default)]
    pub description: String,
    pub received_at: DateTime<Utc>,
    pub dispatched_at: DateTime<Utc>,
    pub respond_by: DateTime<Utc>,
    pub resolve_by: DateTime<Utc>,
    /// 改派: sent again, to another street, after a return.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redispatch: bool,
    /// How the street was chosen (absent in events before calls routed themselves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_by: Option<RoutedBy>,
}

/// How a call found its street (CONTRACT §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutedBy {
    /// The operator chose it.
    Operator,
    /// The street of the point's latest item.
    Point,
    /// The community directory.
    Community,
}

impl RoutedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            RoutedBy::Operator => "operator",
            RoutedBy::Point => "point",
            RoutedBy::Community => "community",
        }
    }
}

/// Why a street returned a call (退单).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnReason {
    /// Not this street's area: the call was routed wrong.
    NotOurArea,
    Duplicate,
    NotABasement,
    Other,
}

impl ReturnReason {
    pub const ALL: [ReturnReason; 4] = [
        ReturnReason::NotOurArea,
        ReturnReason::Duplicate,
        ReturnReason::NotABasement,
        ReturnReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReturnReason::NotOurArea => "not_our_area",
            ReturnReason::Duplicate => "duplicate",
            ReturnReason::NotABasement => "not_a_basement",
            ReturnReason::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{assert_tag_matches, Event};
    use serde_json::json;

    /// The shapes intake wrote before this crate existed.
    fn received() -> Value {
        json!({
            "complaint_id": Uuid::from_u128(1), "district": "tongzhou", "street": "jiukeshu",
            "category": "basement_illegal_residence", "urgency": "urgent", "point_id": Uuid::from_u128(2),
            "point": {"community": "某小区", "building": "3", "basement": "B1"}, "description": "有人住",
            "received_at": "2026-11-28T08:00:00Z",
        })
    }

    fn dispatched(redispatch: bool) -> Value {
        let mut v = received();
        let o = v.as_object_mut().unwrap();
        o.insert("dispatched_at".into(), json!("2026-11-28T08:00:01.123456Z"));
        o.insert("respond_by".into(), json!("2026-11-29T08:00:01.123456Z"));
        o.insert("resolve_by".into(), json!("2026-12-05T08:00:01.123456Z"));
        if redispatch {
            o.insert("redispatch".into(), json!(true));
        }
        v
    }

    #[test]
    fn earlier_shapes_parse_and_serialise_unchanged() {
        let cases = [
            ("complaint_received", received()),
            ("complaint_dispatched", dispatched(false)),
            ("complaint_dispatched", dispatched(true)),
            (
                "complaint_returned",
                json!({"complaint_id": Uuid::from_u128(1), "street": "jiukeshu", "reason": "不是本街道"}),
            ),
            (
                "follow_up_recorded",
                json!({"complaint_id": Uuid::from_u128(1), "satisfaction": "basically_satisfied", "note": ""}),
            ),
            (
                "caller_revealed",
                json!({"complaint_id": Uuid::from_u128(1), "street": "jiukeshu"}),
            ),
        ];
        for (t, data) in cases {
            let e = ComplaintEvent::parse(Uuid::nil(), t, &data)
                .unwrap()
                .unwrap_or_else(|| panic!("{t} is known"));
            assert_tag_matches(&e);
            let back = e.to_new_event();
            assert_eq!(back.event_type, t);
            assert_eq!(back.data, data, "{t} comes back as it was written");
        }
    }

    #[test]
    fn other_families_types_are_not_ours() {
        assert!(
            ComplaintEvent::parse(Uuid::nil(), "item_registered", &json!({}))
                .unwrap()
                .is_none()
        );
        assert!(ComplaintEvent::parse(Uuid::nil(), "complaint_dispatched", &json!({})).is_err());
    }
}
