//! Write-off requests (销账申请) and their review, as pure rules. No I/O.

pub use qingling_events::closure::{Checklist, ClosureEvent, Evidence, Outcome, Requested};
use qingling_shared::FieldError;
use serde::Deserialize;
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

/// The checklist's four points, by their field names.
fn checklist_items(c: &Checklist) -> [(&'static str, bool); 4] {
    [
        ("no_illegal_residents", c.no_illegal_residents),
        (
            "no_garbage_or_unsafe_partitions",
            c.no_garbage_or_unsafe_partitions,
        ),
        ("no_illegal_use", c.no_illegal_use),
        ("layout_restored", c.layout_restored),
    ]
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
                for (name, ok) in checklist_items(&checklist) {
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
    pub outcome: Outcome,
    pub status: ClosureStatus,
    pub version: i64,
}

impl Closure {
    /// Folds a request's history; `None` for a stream that does not start with the request.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a ClosureEvent>) -> Option<Closure> {
        let mut c: Option<Closure> = None;
        for e in events {
            match (&mut c, e) {
                (None, ClosureEvent::ClosureRequested(r)) => {
                    c = Some(Closure {
                        id: r.closure_id,
                        item_id: r.item_id,
                        outcome: r.outcome,
                        status: ClosureStatus::Pending,
                        version: 1,
                    })
                }
                (Some(c), e) => {
                    c.version += 1;
                    match e {
                        ClosureEvent::ClosureApproved { .. } => c.status = ClosureStatus::Approved,
                        ClosureEvent::ClosureRejected { .. } => c.status = ClosureStatus::Rejected,
                        ClosureEvent::ClosureRequested(_) => {}
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
        note: Option<&str>,
    ) -> Result<Vec<ClosureEvent>, DomainError> {
        self.must_be_pending()?;
        Ok(vec![ClosureEvent::ClosureApproved {
            closure_id: self.id,
            item_id: self.item_id,
            reviewer: reviewer.to_string(),
            outcome: self.outcome,
            note: note.map(str::to_string),
        }])
    }

    /// The reviewer sends it back with a reason.
    pub fn reject(&self, reviewer: &str, reason: &str) -> Result<Vec<ClosureEvent>, DomainError> {
        if reason.trim().is_empty() {
            return Err(DomainError::Invalid {
                field: "reason",
                message: "a reason is required".into(),
            });
        }
        self.must_be_pending()?;
        Ok(vec![ClosureEvent::ClosureRejected {
            closure_id: self.id,
            item_id: self.item_id,
            reviewer: reviewer.to_string(),
            reason: reason.trim().to_string(),
        }])
    }
}

/// The request event.
pub fn requested(
    closure_id: Uuid,
    district: &str,
    street: &str,
    category: &str,
    r: &WriteOffRequest,
) -> ClosureEvent {
    ClosureEvent::ClosureRequested(Requested {
        closure_id,
        item_id: r.item_id,
        district: district.to_string(),
        street: street.to_string(),
        category: category.to_string(),
        outcome: r.outcome,
        checklist: r.checklist,
        rooms_cleared: r.rooms_cleared,
        partition_area_m2: r.partition_area_m2,
        evidence: r.evidence.clone(),
        note: r.note.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    /// The request event of a fresh request, for folding.
    pub(super) fn request(id: Uuid, item: Uuid) -> ClosureEvent {
        let req = input(full()).parse().unwrap();
        let mut e = requested(
            id,
            "tongzhou",
            "jiukeshu",
            "basement_illegal_residence",
            &req,
        );
        if let ClosureEvent::ClosureRequested(r) = &mut e {
            r.item_id = item;
        }
        e
    }

    #[test]
    fn a_pending_request_is_approved_or_rejected_once() {
        let (id, item) = (Uuid::now_v7(), Uuid::now_v7());
        let requested = request(id, item);
        let pending = Closure::from_events([&requested]).unwrap();
        assert_eq!((pending.version, pending.item_id), (1, item));
        let approval = pending.approve("r1", None).unwrap();
        assert!(matches!(
            &approval[..],
            [ClosureEvent::ClosureApproved { outcome: Outcome::Rectified, closure_id, .. }] if *closure_id == id
        ));
        let rejection = pending.reject("r1", " 照片不清").unwrap();
        assert!(matches!(
            &rejection[..],
            [ClosureEvent::ClosureRejected { reason, .. }] if reason == "照片不清"
        ));
        assert!(matches!(
            pending.reject("r1", " "),
            Err(DomainError::Invalid {
                field: "reason",
                ..
            })
        ));
        let approved = Closure::from_events([&requested, &approval[0]]).unwrap();
        assert_eq!(approved.status, ClosureStatus::Approved);
        assert!(
            matches!(approved.approve("r1", None), Err(DomainError::Conflict(m)) if m.contains("approved"))
        );
        assert!(approved.reject("r1", "x").is_err());
        let rejected = Closure::from_events([&requested, &rejection[0]]).unwrap();
        assert!(rejected.approve("r1", None).is_err());
        assert!(Closure::from_events([&approval[0]]).is_none());
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
            let mut history = vec![tests::request(id, item)];
            for (approve, empty_reason) in cmds {
                let c = Closure::from_events(&history).unwrap();
                let r = if approve { c.approve("r", None) } else { c.reject("r", if empty_reason { "" } else { "补充" }) };
                if let Ok(events) = r {
                    history.extend(events);
                }
                prop_assert!(history.len() <= 2, "{history:?}");
            }
            let c = Closure::from_events(&history).unwrap();
            prop_assert_eq!(c.status == ClosureStatus::Pending, history.len() == 1);
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
