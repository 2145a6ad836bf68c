//! The write-off request's rules without services.
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

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any interleaving of approvals and rejections yields at most one outcome.
        #[test]
        fn a_request_has_at_most_one_outcome(cmds in proptest::collection::vec(any::<(bool, bool)>(), 0..20)) {
            let (id, item) = (Uuid::from_u128(1), Uuid::from_u128(2));
            let mut history = vec![super::request(id, item)];
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
                evidence: Some((0..n_evidence).map(|_| EvidenceInput { kind: Some("photo".into()), uri: Some("s3://b/p.jpg".into()), sha256: None, evidence_id: None, bytes: None, content_type: None }).collect()),
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
