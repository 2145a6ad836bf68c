//! Write-off requests (销账申请) and their review, as pure rules. No I/O.

pub use qingling_events::closure::{Checklist, ClosureEvent, Evidence, Outcome, Requested};
use qingling_shared::FieldError;
use serde::Deserialize;
use uuid::Uuid;

pub mod evidence;

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
    /// An uploaded photo (`POST /v1/evidence`), instead of `kind`, `uri` and `sha256`.
    pub evidence_id: Option<String>,
    /// Filled in by the service for an uploaded photo, not taken from the client.
    #[serde(skip)]
    #[schema(ignore)]
    pub bytes: Option<i64>,
    #[serde(skip)]
    #[schema(ignore)]
    pub content_type: Option<String>,
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
/// Where the photos this service keeps are served (`GET /v1/evidence/{sha256}`).
pub const KEPT_EVIDENCE_PATH: &str = "/v1/evidence/";

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
                    // A storage URI elsewhere, or a photo this service keeps (resolved from
                    // its `evidence_id` before parsing).
                    let stored = scheme
                        .as_deref()
                        .is_some_and(|s| EVIDENCE_SCHEMES.contains(&s))
                        || uri.starts_with(KEPT_EVIDENCE_PATH);
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
                    evidence.push(Evidence {
                        kind,
                        uri,
                        sha256,
                        bytes: e.bytes,
                        content_type: e.content_type,
                    });
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
                        ClosureEvent::ClosureRequested(_) | ClosureEvent::EvidenceUploaded(_) => {}
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
mod tests;
