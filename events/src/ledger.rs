//! The events of `qingling-ledger`, on item streams (`item-<id>`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::closure::Outcome;
use crate::event_family;
use crate::intake::Urgency;

/// The stream of an item.
pub fn stream(item_id: Uuid) -> String {
    format!("item-{item_id}")
}

/// How long after a write-off a new problem at the same point counts as a rebound (防止反弹).
pub const REBOUND_WINDOW_DAYS: i64 = 90;

/// The events of an item stream, with the data of CONTRACT §7 and a little more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "data", rename_all = "snake_case")]
pub enum ItemEvent {
    /// 上账: a problem at a point is on the ledger.
    ItemRegistered(Registered),
    /// A repeat call about the open problem at the point joins its item.
    ComplaintLinked { item_id: Uuid, complaint_id: Uuid },
    /// A returned complaint leaves an item that stays open (other calls, or another street's item).
    ComplaintUnlinked {
        item_id: Uuid,
        complaint_id: Uuid,
        street: String,
    },
    /// A return (退单) that reached the item after it was acknowledged: the ledger, which owns the
    /// item, refuses it; the complaint stays on the item, with the street.
    ComplaintReturnRefused {
        item_id: Uuid,
        complaint_id: Uuid,
        street: String,
        reason: String,
        /// When the item was acknowledged, and the limits it had missed: what the complaint's
        /// metrics missed while it counted as returned.
        acknowledged_at: Option<DateTime<Utc>>,
        overdue: Vec<OverdueKind>,
    },
    /// 签收: the street took it on.
    ItemAcknowledged { item_id: Uuid, street: String },
    /// The closure service accepted a write-off request for the item.
    ItemClosurePending {
        item_id: Uuid,
        street: String,
        closure_id: Uuid,
        outcome: Outcome,
        /// What the request says was cleared (absent in events before points kept them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rooms_cleared: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition_area_m2: Option<f64>,
    },
    /// The reviewer rejected it: the item is back to acknowledged.
    ItemClosureRejected {
        item_id: Uuid,
        street: String,
        closure_id: Uuid,
        reason: String,
    },
    /// 销账: off the ledger.
    ItemWrittenOff(WrittenOff),
    /// 督查督办: a time limit passed. At most once per kind.
    ItemOverdue {
        item_id: Uuid,
        street: String,
        kind: OverdueKind,
    },
    /// 延期申请.
    ExtensionRequested {
        item_id: Uuid,
        street: String,
        until: DateTime<Utc>,
        reason: String,
    },
    ExtensionApproved {
        item_id: Uuid,
        street: String,
        until: DateTime<Utc>,
        reason: String,
    },
    ExtensionRejected {
        item_id: Uuid,
        street: String,
        until: DateTime<Utc>,
        reason: String,
    },
    /// A write-off withdrew the pending extension request.
    ExtensionWithdrawn {
        item_id: Uuid,
        street: String,
        until: DateTime<Utc>,
        reason: String,
    },
}

/// The wire names of the family's event types.
pub mod types {
    pub const ITEM_REGISTERED: &str = "item_registered";
    pub const COMPLAINT_LINKED: &str = "complaint_linked";
    pub const COMPLAINT_UNLINKED: &str = "complaint_unlinked";
    pub const COMPLAINT_RETURN_REFUSED: &str = "complaint_return_refused";
    pub const ITEM_ACKNOWLEDGED: &str = "item_acknowledged";
    pub const ITEM_CLOSURE_PENDING: &str = "item_closure_pending";
    pub const ITEM_CLOSURE_REJECTED: &str = "item_closure_rejected";
    pub const ITEM_WRITTEN_OFF: &str = "item_written_off";
    pub const ITEM_OVERDUE: &str = "item_overdue";
    pub const EXTENSION_REQUESTED: &str = "extension_requested";
    pub const EXTENSION_APPROVED: &str = "extension_approved";
    pub const EXTENSION_REJECTED: &str = "extension_rejected";
    pub const EXTENSION_WITHDRAWN: &str = "extension_withdrawn";
}

event_family!(ItemEvent {
    ItemRegistered => types::ITEM_REGISTERED,
    ComplaintLinked => types::COMPLAINT_LINKED,
    ComplaintUnlinked => types::COMPLAINT_UNLINKED,
    ComplaintReturnRefused => types::COMPLAINT_RETURN_REFUSED,
    ItemAcknowledged => types::ITEM_ACKNOWLEDGED,
    ItemClosurePending => types::ITEM_CLOSURE_PENDING,
    ItemClosureRejected => types::ITEM_CLOSURE_REJECTED,
    ItemWrittenOff => types::ITEM_WRITTEN_OFF,
    ItemOverdue => types::ITEM_OVERDUE,
    ExtensionRequested => types::EXTENSION_REQUESTED,
    ExtensionApproved => types::EXTENSION_APPROVED,
    ExtensionRejected => types::EXTENSION_REJECTED,
    ExtensionWithdrawn => types::EXTENSION_WITHDRAWN,
});

impl ItemEvent {
    pub fn item_id(&self) -> Uuid {
        match self {
            ItemEvent::ItemRegistered(r) => r.item_id,
            ItemEvent::ItemWrittenOff(w) => w.item_id,
            ItemEvent::ComplaintLinked { item_id, .. }
            | ItemEvent::ComplaintUnlinked { item_id, .. }
            | ItemEvent::ComplaintReturnRefused { item_id, .. }
            | ItemEvent::ItemAcknowledged { item_id, .. }
            | ItemEvent::ItemClosurePending { item_id, .. }
            | ItemEvent::ItemClosureRejected { item_id, .. }
            | ItemEvent::ItemOverdue { item_id, .. }
            | ItemEvent::ExtensionRequested { item_id, .. }
            | ItemEvent::ExtensionApproved { item_id, .. }
            | ItemEvent::ExtensionRejected { item_id, .. }
            | ItemEvent::ExtensionWithdrawn { item_id, .. } => *item_id,
        }
    }
}

/// The data of `item_registered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub item_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub point_id: Uuid,
    pub point: Value,
    pub source: Source,
    pub complaint_id: Option<Uuid>,
    pub urgency: Urgency,
    pub description: String,
    pub respond_by: Option<DateTime<Utc>>,
    pub resolve_by: Option<DateTime<Utc>>,
    /// 防止反弹: the previous item at this point, if written off within [`REBOUND_WINDOW_DAYS`].
    pub rebound_of: Option<Uuid>,
}

/// The data of `item_written_off`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WrittenOff {
    pub item_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub point_id: Uuid,
    pub kind: WriteOffKind,
    pub closure_id: Option<Uuid>,
}

/// How an item came onto the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A hotline complaint (12345).
    Complaint,
    /// 主动发现: the street found it itself.
    Inspection,
    /// 台账导入: from a ledger kept before Qingling.
    Import,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Complaint => "complaint",
            Source::Inspection => "inspection",
            Source::Import => "import",
        }
    }
}

/// How an item left the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOffKind {
    /// 整治完毕: cleared and restored.
    Rectified,
    /// 核查不属实: on inspection, not true.
    Unfounded,
    /// 退单: its only complaint went back; the registration is cancelled.
    Returned,
}

impl WriteOffKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOffKind::Rectified => "rectified",
            WriteOffKind::Unfounded => "unfounded",
            WriteOffKind::Returned => "returned",
        }
    }
}

impl From<Outcome> for WriteOffKind {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Rectified => WriteOffKind::Rectified,
            Outcome::Unfounded => WriteOffKind::Unfounded,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverdueKind {
    /// Not acknowledged (签收) by respond-by.
    Respond,
    /// Not written off (办结) by resolve-by.
    Resolve,
}

impl OverdueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OverdueKind::Respond => "respond",
            OverdueKind::Resolve => "resolve",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{assert_tag_matches, Event};
    use serde_json::json;

    #[test]
    fn earlier_shapes_parse_and_serialise_unchanged() {
        let (i, c, k) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let registered = |source: &str, complaint: Value, rebound: Value| {
            json!({"item_id": i, "district": "tongzhou", "street": "jiukeshu",
                "category": "basement_illegal_residence", "point_id": Uuid::from_u128(4),
                "point": {"community": "某小区", "building": "3", "basement": "B1"},
                "source": source, "complaint_id": complaint, "urgency": "normal", "description": "",
                "respond_by": "2026-11-29T08:00:00Z", "resolve_by": null, "rebound_of": rebound})
        };
        let cases = [
            (
                "item_registered",
                registered("complaint", json!(c), json!(null)),
            ),
            (
                "item_registered",
                registered("inspection", json!(null), json!(k)),
            ),
            (
                "item_registered",
                registered("import", json!(null), json!(null)),
            ),
            ("complaint_linked", json!({"item_id": i, "complaint_id": c})),
            (
                "complaint_unlinked",
                json!({"item_id": i, "complaint_id": c, "street": "songzhuang"}),
            ),
            (
                "item_acknowledged",
                json!({"item_id": i, "street": "jiukeshu"}),
            ),
            (
                "item_closure_pending",
                json!({"item_id": i, "street": "jiukeshu", "closure_id": k, "outcome": "unfounded"}),
            ),
            (
                "item_closure_rejected",
                json!({"item_id": i, "street": "jiukeshu", "closure_id": k, "reason": "照片不清"}),
            ),
            (
                "item_written_off",
                json!({"item_id": i, "district": "tongzhou", "street": "jiukeshu",
                "category": "basement_illegal_residence", "point_id": Uuid::from_u128(4), "kind": "returned", "closure_id": null}),
            ),
            (
                "item_overdue",
                json!({"item_id": i, "street": "jiukeshu", "kind": "resolve"}),
            ),
            (
                "extension_requested",
                json!({"item_id": i, "street": "jiukeshu", "until": "2026-12-20T00:00:00Z", "reason": "住户多"}),
            ),
            (
                "extension_approved",
                json!({"item_id": i, "street": "jiukeshu", "until": "2026-12-20T00:00:00Z", "reason": "住户多"}),
            ),
            (
                "extension_rejected",
                json!({"item_id": i, "street": "jiukeshu", "until": "2026-12-20T00:00:00Z", "reason": "no"}),
            ),
            (
                "extension_withdrawn",
                json!({"item_id": i, "street": "jiukeshu", "until": "2026-12-20T00:00:00Z", "reason": "住户多"}),
            ),
            (
                "complaint_return_refused",
                json!({"item_id": i, "complaint_id": c, "street": "jiukeshu", "reason": "已签收",
                    "acknowledged_at": "2026-11-28T09:00:00Z", "overdue": ["respond"]}),
            ),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (t, data) in cases {
            let e = ItemEvent::parse(Uuid::nil(), t, &data)
                .unwrap()
                .unwrap_or_else(|| panic!("{t} is known"));
            assert_tag_matches(&e);
            assert_eq!(e.item_id(), i);
            let back = e.to_new_event();
            assert_eq!(back.event_type, t);
            assert_eq!(back.data, data, "{t} comes back as it was written");
            let stored = ItemEvent::from_stored(Uuid::nil(), t, &data.to_string()).unwrap();
            assert_eq!(stored, Some(e));
            seen.insert(t);
        }
        assert_eq!(seen.len(), ItemEvent::TYPES.len(), "every type is covered");
    }
}
