//! The events of `qingling-closure`, on write-off request streams (`closure-<id>`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event_family;

/// The stream of a write-off request.
pub fn stream(closure_id: Uuid) -> String {
    format!("closure-{closure_id}")
}

/// A write-off request's (销账申请) events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "data", rename_all = "snake_case")]
pub enum ClosureEvent {
    /// The street asks for the item to be written off.
    ClosureRequested(Requested),
    /// 销账: the reviewer approves.
    ClosureApproved {
        closure_id: Uuid,
        item_id: Uuid,
        reviewer: String,
        outcome: Outcome,
        note: Option<String>,
    },
    /// A street uploaded a photo (CONTRACT §9), kept by the system, content-addressed.
    EvidenceUploaded(Uploaded),
    /// The reviewer sends it back with a reason.
    ClosureRejected {
        closure_id: Uuid,
        item_id: Uuid,
        reviewer: String,
        reason: String,
    },
}

/// The wire names of the family's event types.
pub mod types {
    pub const CLOSURE_REQUESTED: &str = "closure_requested";
    pub const CLOSURE_APPROVED: &str = "closure_approved";
    pub const CLOSURE_REJECTED: &str = "closure_rejected";
    pub const EVIDENCE_UPLOADED: &str = "evidence_uploaded";
}

event_family!(ClosureEvent {
    ClosureRequested => types::CLOSURE_REQUESTED,
    ClosureApproved => types::CLOSURE_APPROVED,
    ClosureRejected => types::CLOSURE_REJECTED,
    EvidenceUploaded => types::EVIDENCE_UPLOADED,
});

impl ClosureEvent {
    /// The write-off request the event is about (none for an uploaded photo).
    pub fn closure_id(&self) -> Option<Uuid> {
        match self {
            ClosureEvent::ClosureRequested(r) => Some(r.closure_id),
            ClosureEvent::ClosureApproved { closure_id, .. }
            | ClosureEvent::ClosureRejected { closure_id, .. } => Some(*closure_id),
            ClosureEvent::EvidenceUploaded(_) => None,
        }
    }

    pub fn item_id(&self) -> Option<Uuid> {
        match self {
            ClosureEvent::ClosureRequested(r) => Some(r.item_id),
            ClosureEvent::ClosureApproved { item_id, .. }
            | ClosureEvent::ClosureRejected { item_id, .. } => Some(*item_id),
            ClosureEvent::EvidenceUploaded(u) => u.item_id,
        }
    }
}

/// What the street found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 整治完毕: cleared and restored.
    Rectified,
    /// 核查不属实: on inspection, not true.
    Unfounded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Rectified => "rectified",
            Outcome::Unfounded => "unfounded",
        }
    }
}

/// 三无一恢复.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Checklist {
    /// 无违规住人
    pub no_illegal_residents: bool,
    /// 无垃圾和不满足消防要求的隔断
    pub no_garbage_or_unsafe_partitions: bool,
    /// 无违规使用
    pub no_illegal_use: bool,
    /// 恢复原平面布局
    pub layout_restored: bool,
}

/// A piece of evidence a write-off request cites: a link, or a photo the system keeps (then with
/// its size and sniffed type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evidence {
    pub kind: String,
    pub uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// The stream of an uploaded photo, named by its content.
pub fn evidence_stream(sha256: &str) -> String {
    format!("evidence-{sha256}")
}

/// The data of `evidence_uploaded`: what the system knows of a photo it keeps, never its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Uploaded {
    pub sha256: String,
    pub bytes: i64,
    pub content_type: String,
    pub district: String,
    pub street: String,
    pub item_id: Option<Uuid>,
    /// The page's own clock and position when the photo was taken, if it sent them.
    pub taken_at: Option<chrono::DateTime<chrono::Utc>>,
    pub lat: Option<f64>,
    pub long: Option<f64>,
}

/// The data of `closure_requested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requested {
    pub closure_id: Uuid,
    pub item_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub outcome: Outcome,
    pub checklist: Checklist,
    pub rooms_cleared: Option<i32>,
    pub partition_area_m2: Option<f64>,
    pub evidence: Vec<Evidence>,
    #[serde(default)]
    pub note: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{assert_tag_matches, Event};
    use serde_json::json;

    #[test]
    fn earlier_shapes_parse_and_serialise_unchanged() {
        let (c, i) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let cases = [
            (
                "closure_requested",
                json!({
                "closure_id": c, "item_id": i, "district": "tongzhou", "street": "jiukeshu",
                "category": "basement_illegal_residence", "outcome": "rectified",
                "checklist": {"no_illegal_residents": true, "no_garbage_or_unsafe_partitions": true, "no_illegal_use": true, "layout_restored": false},
                "rooms_cleared": 7, "partition_area_m2": 120.5,
                "evidence": [{"kind": "photo", "uri": "s3://bucket/after.jpg", "sha256": "a".repeat(64)}, {"kind": "document", "uri": "https://x/y.pdf"}],
                "note": "已清理"}),
            ),
            (
                "closure_requested",
                json!({
                "closure_id": c, "item_id": i, "district": "tongzhou", "street": "jiukeshu",
                "category": "basement_illegal_residence", "outcome": "unfounded",
                "checklist": {"no_illegal_residents": false, "no_garbage_or_unsafe_partitions": false, "no_illegal_use": false, "layout_restored": false},
                "rooms_cleared": null, "partition_area_m2": null, "evidence": [], "note": ""}),
            ),
            (
                "closure_approved",
                json!({"closure_id": c, "item_id": i, "reviewer": "r1", "outcome": "rectified", "note": null}),
            ),
            (
                "closure_approved",
                json!({"closure_id": c, "item_id": i, "reviewer": "r1", "outcome": "unfounded", "note": "好"}),
            ),
            (
                "closure_rejected",
                json!({"closure_id": c, "item_id": i, "reviewer": "r1", "reason": "照片不清"}),
            ),
            (
                "closure_requested",
                json!({
                "closure_id": c, "item_id": i, "district": "tongzhou", "street": "jiukeshu",
                "category": "basement_illegal_residence", "outcome": "rectified",
                "checklist": {"no_illegal_residents": true, "no_garbage_or_unsafe_partitions": true, "no_illegal_use": true, "layout_restored": true},
                "rooms_cleared": 1, "partition_area_m2": null,
                "evidence": [{"kind": "photo", "uri": "/v1/evidence/ab", "sha256": "ab", "bytes": 1234, "content_type": "image/jpeg"}],
                "note": ""}),
            ),
        ];
        let uploaded = json!({"sha256": "ab", "bytes": 1234, "content_type": "image/png",
            "district": "tongzhou", "street": "jiukeshu", "item_id": null,
            "taken_at": "2026-11-28T08:00:00Z", "lat": 39.9, "long": 116.6});
        let e = ClosureEvent::parse(Uuid::nil(), "evidence_uploaded", &uploaded)
            .unwrap()
            .unwrap();
        assert_tag_matches(&e);
        assert_eq!(e.to_new_event().data, uploaded);
        for (t, data) in cases {
            let e = ClosureEvent::parse(Uuid::nil(), t, &data)
                .unwrap()
                .unwrap_or_else(|| panic!("{t} is known"));
            assert_tag_matches(&e);
            assert_eq!((e.closure_id(), e.item_id()), (Some(c), Some(i)));
            let back = e.to_new_event();
            assert_eq!(back.event_type, t);
            assert_eq!(back.data, data, "{t} comes back as it was written");
        }
    }
}
