//! Write-off requests (销账申请) and their review, as pure rules. No I/O.

use qingling_shared::{FieldError, NewEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

/// The body of `POST /v1/closures`, as sent.
#[derive(Debug, Deserialize, Clone, utoipa::ToSchema)]
pub struct RequestInput {
    pub item_id: Option<Uuid>,
    pub outcome: Option<String>,
    pub checklist: Option<ChecklistInput>,
    pub rooms_cleared: Option<i64>,
    pub partition_area_m2: Option<f64>,
    pub evidence: Option<Vec<EvidenceInput>>,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Default, utoipa::ToSchema)]
pub struct ChecklistInput {
    pub no_illegal_residents: Option<bool>,
    pub no_garbage_or_unsafe_partitions: Option<bool>,
    pub no_illegal_use: Option<bool>,
    pub layout_restored: Option<bool>,
}

#[derive(Debug, Deserialize, Clone, utoipa::ToSchema)]
pub struct EvidenceInput {
    pub kind: Option<String>,
    pub uri: Option<String>,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
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

impl Checklist {
    fn items(&self) -> [(&'static str, bool); 4] {
        [
            ("no_illegal_residents", self.no_illegal_residents),
            (
                "no_garbage_or_unsafe_partitions",
                self.no_garbage_or_unsafe_partitions,
            ),
            ("no_illegal_use", self.no_illegal_use),
            ("layout_restored", self.layout_restored),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub kind: String,
    pub uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A write-off request that passed every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOffRequest {
    pub item_id: Uuid,
    pub outcome: Outcome,
    pub checklist: Checklist,
    pub rooms_cleared: Option<i32>,
    pub partition_area_m2: Option<f64>,
    pub evidence: Vec<Evidence>,
    pub note: String,
}

pub const EVIDENCE_KINDS: [&str; 3] = ["photo", "document", "video"];
/// Where evidence may be kept: object stores and web addresses, not scripts or local paths.
pub const EVIDENCE_SCHEMES: [&str; 6] = ["s3", "oss", "cos", "obs", "https", "http"];

impl RequestInput {
    /// The write-off rules: a rectified request needs all four 三无一恢复 items, an unfounded one
    /// a note; both at least one piece of evidence.
    pub fn parse(self) -> Result<WriteOffRequest, Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.item_id.is_none() {
            errors.push(FieldError::new("item_id", "is required"));
        }
        let outcome = match self.outcome.as_deref() {
            Some("rectified") => Some(Outcome::Rectified),
            Some("unfounded") => Some(Outcome::Unfounded),
            None => {
                errors.push(FieldError::new(
                    "outcome",
                    "is required (rectified or unfounded)",
                ));
                None
            }
            Some(other) => {
                errors.push(FieldError::new(
                    "outcome",
                    format!("must be rectified or unfounded, not {other:?}"),
                ));
                None
            }
        };
        let c = self.checklist.unwrap_or_default();
        let checklist = Checklist {
            no_illegal_residents: c.no_illegal_residents.unwrap_or(false),
            no_garbage_or_unsafe_partitions: c.no_garbage_or_unsafe_partitions.unwrap_or(false),
            no_illegal_use: c.no_illegal_use.unwrap_or(false),
            layout_restored: c.layout_restored.unwrap_or(false),
        };
        let note = self.note.map(|n| n.trim().to_string()).unwrap_or_default();
        if note.chars().count() > 2000 {
            errors.push(FieldError::new("note", "is longer than 2000 characters"));
        }
        match outcome {
            Some(Outcome::Rectified) => {
                for (name, ok) in checklist.items() {
                    if !ok {
                        errors.push(FieldError::new(
                            format!("checklist.{name}"),
                            "must be true for a rectified write-off (三无一恢复)",
                        ));
                    }
                }
            }
            Some(Outcome::Unfounded) if note.is_empty() => {
                errors.push(FieldError::new(
                    "note",
                    "is required when the complaint was unfounded (核查不属实)",
                ));
            }
            _ => {}
        }
        let rooms_cleared = match self.rooms_cleared {
            Some(n) if !(0..=100_000).contains(&n) => {
                errors.push(FieldError::new(
                    "rooms_cleared",
                    "must be between 0 and 100000",
                ));
                None
            }
            n => n.map(|n| n as i32),
        };
        if let Some(a) = self.partition_area_m2 {
            if !a.is_finite() || !(0.0..=1_000_000.0).contains(&a) {
                errors.push(FieldError::new(
                    "partition_area_m2",
                    "must be between 0 and 1000000",
                ));
            }
        }
        let mut evidence = Vec::new();
        match self.evidence {
            None => errors.push(FieldError::new(
                "evidence",
                "at least one piece of evidence is required",
            )),
            Some(list) if list.is_empty() => errors.push(FieldError::new(
                "evidence",
                "at least one piece of evidence is required",
            )),
            Some(list) if list.len() > 50 => {
                errors.push(FieldError::new("evidence", "at most 50 pieces of evidence"))
            }
            Some(list) => {
                for (i, e) in list.into_iter().enumerate() {
                    let kind = e.kind.unwrap_or_default();
                    if !EVIDENCE_KINDS.contains(&kind.as_str()) {
                        errors.push(FieldError::new(
                            format!("evidence[{i}].kind"),
                            "must be photo, document or video",
                        ));
                    }
                    let uri = e.uri.map(|u| u.trim().to_string()).unwrap_or_default();
                    let scheme = uri.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
                    let stored = scheme
                        .as_deref()
                        .is_some_and(|s| EVIDENCE_SCHEMES.contains(&s));
                    if uri.len() > 2000 || !stored {
                        errors.push(FieldError::new(
                            format!("evidence[{i}].uri"),
                            "must be a storage URI (s3, oss, cos, obs, https or http), such as s3://bucket/photo.jpg",
                        ));
                    }
                    let sha256 = e
                        .sha256
                        .map(|h| h.trim().to_ascii_lowercase())
                        .filter(|h| !h.is_empty());
                    if let Some(h) = &sha256 {
                        if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                            errors.push(FieldError::new(
                                format!("evidence[{i}].sha256"),
                                "must be 64 hexadecimal digits",
                            ));
                        }
                    }
                    evidence.push(Evidence { kind, uri, sha256 });
                }
            }
        }
        match (errors.is_empty(), self.item_id, outcome) {
            (true, Some(item_id), Some(outcome)) => Ok(WriteOffRequest {
                item_id,
                outcome,
                checklist,
                rooms_cleared,
                partition_area_m2: self.partition_area_m2,
                evidence,
                note,
            }),
            _ => Err(errors),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosureStatus {
    Pending,
    Approved,
    Rejected,
}

impl ClosureStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClosureStatus::Pending => "pending",
            ClosureStatus::Approved => "approved",
            ClosureStatus::Rejected => "rejected",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DomainError {
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// A write-off request, folded from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Closure {
    pub id: Uuid,
    pub item_id: Uuid,
    pub status: ClosureStatus,
    pub version: i64,
}

impl Closure {
    pub fn from_event_types<'a>(
        id: Uuid,
        item_id: Uuid,
        types: impl IntoIterator<Item = &'a str>,
    ) -> Option<Closure> {
        let mut c: Option<Closure> = None;
        for t in types {
            match (&mut c, t) {
                (None, "closure_requested") => {
                    c = Some(Closure {
                        id,
                        item_id,
                        status: ClosureStatus::Pending,
                        version: 1,
                    })
                }
                (Some(c), t) => {
                    c.version += 1;
                    match t {
                        "closure_approved" => c.status = ClosureStatus::Approved,
                        "closure_rejected" => c.status = ClosureStatus::Rejected,
                        _ => {}
                    }
                }
                (None, _) => return None,
            }
        }
        c
    }

    fn must_be_pending(&self) -> Result<(), DomainError> {
        if self.status != ClosureStatus::Pending {
            return Err(DomainError::Conflict(format!(
                "write-off request {} is {}, not pending",
                self.id,
                self.status.as_str()
            )));
        }
        Ok(())
    }

    /// 销账: the reviewer approves.
    pub fn approve(
        &self,
        reviewer: &str,
        outcome: &str,
        note: Option<&str>,
    ) -> Result<Vec<NewEvent>, DomainError> {
        self.must_be_pending()?;
        Ok(vec![NewEvent::new(
            "closure_approved",
            json!({"closure_id": self.id, "item_id": self.item_id, "reviewer": reviewer, "outcome": outcome, "note": note}),
        )])
    }

    /// The reviewer sends it back with a reason.
    pub fn reject(&self, reviewer: &str, reason: &str) -> Result<Vec<NewEvent>, DomainError> {
        if reason.trim().is_empty() {
            return Err(DomainError::Invalid {
                field: "reason",
                message: "a reason is required".into(),
            });
        }
        self.must_be_pending()?;
        Ok(vec![NewEvent::new(
            "closure_rejected",
            json!({"closure_id": self.id, "item_id": self.item_id, "reviewer": reviewer, "reason": reason.trim()}),
        )])
    }
}

/// The data of `closure_requested`, as the projection reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Requested {
    pub closure_id: Uuid,
    pub item_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub outcome: String,
    pub checklist: serde_json::Value,
    pub rooms_cleared: Option<i32>,
    pub partition_area_m2: Option<f64>,
    pub evidence: serde_json::Value,
    #[serde(default)]
    pub note: String,
}

/// The request event.
pub fn requested(
    closure_id: Uuid,
    district: &str,
    street: &str,
    category: &str,
    r: &WriteOffRequest,
) -> NewEvent {
    NewEvent::new(
        "closure_requested",
        json!({
            "closure_id": closure_id, "item_id": r.item_id, "district": district, "street": street,
            "category": category, "outcome": r.outcome,
            "checklist": r.checklist, "rooms_cleared": r.rooms_cleared, "partition_area_m2": r.partition_area_m2,
            "evidence": r.evidence, "note": r.note,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: serde_json::Value) -> RequestInput {
        serde_json::from_value(v).unwrap()
    }

    fn full() -> serde_json::Value {
        json!({"item_id": Uuid::nil(), "outcome": "rectified",
               "checklist": {"no_illegal_residents": true, "no_garbage_or_unsafe_partitions": true, "no_illegal_use": true, "layout_restored": true},
               "rooms_cleared": 7, "partition_area_m2": 120.5,
               "evidence": [{"kind": "photo", "uri": "s3://bucket/after.jpg", "sha256": "a".repeat(64)}], "note": "已清理"})
    }

    fn fields(r: Result<WriteOffRequest, Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_complete_rectified_request_is_accepted() {
        let r = input(full()).parse().unwrap();
        assert_eq!(r.outcome, Outcome::Rectified);
        assert_eq!(r.rooms_cleared, Some(7));
        assert_eq!(r.evidence.len(), 1);
    }

    #[test]
    fn rectified_needs_all_four_checklist_items_and_names_each_missing_one() {
        let mut v = full();
        v["checklist"]["layout_restored"] = json!(false);
        v["checklist"]
            .as_object_mut()
            .unwrap()
            .remove("no_illegal_use");
        assert_eq!(
            fields(input(v).parse()),
            vec!["checklist.no_illegal_use", "checklist.layout_restored"]
        );
    }

    #[test]
    fn unfounded_may_have_a_partial_checklist_but_needs_a_note() {
        let mut v = full();
        v["outcome"] = json!("unfounded");
        v["checklist"] = json!({"no_illegal_residents": true});
        v["note"] = json!("核查无人居住");
        assert_eq!(
            input(v.clone()).parse().unwrap().outcome,
            Outcome::Unfounded
        );
        v["note"] = json!("  ");
        assert_eq!(fields(input(v).parse()), vec!["note"]);
    }

    #[test]
    fn evidence_is_required_and_checked() {
        let mut v = full();
        v["evidence"] = json!([]);
        assert_eq!(fields(input(v.clone()).parse()), vec!["evidence"]);
        v.as_object_mut().unwrap().remove("evidence");
        assert_eq!(fields(input(v.clone()).parse()), vec!["evidence"]);
        v["evidence"] = json!([{"kind": "selfie", "uri": "", "sha256": "xyz"}]);
        assert_eq!(
            fields(input(v).parse()),
            vec!["evidence[0].kind", "evidence[0].uri", "evidence[0].sha256"]
        );
    }

    #[test]
    fn outcome_item_and_numbers_are_checked() {
        let mut v = full();
        v["outcome"] = json!("closed");
        v.as_object_mut().unwrap().remove("item_id");
        v["rooms_cleared"] = json!(-1);
        v["partition_area_m2"] = json!(-3.0);
        assert_eq!(
            fields(input(v).parse()),
            vec!["item_id", "outcome", "rooms_cleared", "partition_area_m2"]
        );
    }

    #[test]
    fn a_pending_request_is_approved_or_rejected_once() {
        let (id, item) = (Uuid::now_v7(), Uuid::now_v7());
        let pending = Closure::from_event_types(id, item, ["closure_requested"]).unwrap();
        assert_eq!(pending.version, 1);
        assert_eq!(
            pending.approve("r1", "rectified", None).unwrap()[0].event_type,
            "closure_approved"
        );
        assert_eq!(
            pending.reject("r1", "照片不清").unwrap()[0].data["reason"],
            "照片不清"
        );
        assert!(matches!(
            pending.reject("r1", " "),
            Err(DomainError::Invalid {
                field: "reason",
                ..
            })
        ));
        let approved =
            Closure::from_event_types(id, item, ["closure_requested", "closure_approved"]).unwrap();
        assert_eq!(approved.status, ClosureStatus::Approved);
        assert!(
            matches!(approved.approve("r1", "rectified", None), Err(DomainError::Conflict(m)) if m.contains("approved"))
        );
        assert!(approved.reject("r1", "x").is_err());
        let rejected =
            Closure::from_event_types(id, item, ["closure_requested", "closure_rejected"]).unwrap();
        assert!(rejected.approve("r1", "rectified", None).is_err());
        assert!(Closure::from_event_types(id, item, ["closure_approved"]).is_none());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any interleaving of approvals and rejections yields at most one outcome.
        #[test]
        fn a_request_has_at_most_one_outcome(cmds in proptest::collection::vec(any::<(bool, bool)>(), 0..20)) {
            let (id, item) = (Uuid::from_u128(1), Uuid::from_u128(2));
            let mut types = vec!["closure_requested".to_string()];
            for (approve, empty_reason) in cmds {
                let c = Closure::from_event_types(id, item, types.iter().map(String::as_str)).unwrap();
                let r = if approve { c.approve("r", "rectified", None) } else { c.reject("r", if empty_reason { "" } else { "补充" }) };
                if let Ok(events) = r {
                    types.extend(events.into_iter().map(|e| e.event_type));
                }
                prop_assert!(types.len() <= 2, "{types:?}");
            }
            let c = Closure::from_event_types(id, item, types.iter().map(String::as_str)).unwrap();
            prop_assert_eq!(c.status == ClosureStatus::Pending, types.len() == 1);
        }

        /// Parsing never panics, and an accepted rectified request has the whole checklist.
        #[test]
        fn parsing_holds_the_rules(outcome in "rectified|unfounded|other", flags in any::<[Option<bool>; 4]>(), note in ".{0,5}", n_evidence in 0usize..3) {
            let input = RequestInput {
                item_id: Some(Uuid::nil()),
                outcome: Some(outcome.clone()),
                checklist: Some(ChecklistInput { no_illegal_residents: flags[0], no_garbage_or_unsafe_partitions: flags[1], no_illegal_use: flags[2], layout_restored: flags[3] }),
                rooms_cleared: Some(1),
                partition_area_m2: None,
                evidence: Some((0..n_evidence).map(|_| EvidenceInput { kind: Some("photo".into()), uri: Some("s3://b/p.jpg".into()), sha256: None }).collect()),
                note: Some(note.clone()),
            };
            match input.parse() {
                Ok(r) => {
                    prop_assert!(n_evidence > 0);
                    match r.outcome {
                        Outcome::Rectified => prop_assert!(flags.iter().all(|f| *f == Some(true))),
                        Outcome::Unfounded => prop_assert!(!note.trim().is_empty()),
                    }
                }
                Err(errors) => prop_assert!(!errors.is_empty()),
            }
        }
    }
}
