//! The ledger's domain: an item (one problem at one point) as a pure state machine. Events in,
//! decisions out; no I/O.

use chrono::{DateTime, Utc};
pub use qingling_events::closure::Outcome;
pub use qingling_events::ledger::{
    ItemEvent, OverdueKind, Registered, Source, WriteOffKind, WrittenOff, REBOUND_WINDOW_DAYS,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod deadline;
mod point;

pub use deadline::{due_overdue, is_past};
pub use point::{at_point, AtPoint, PointState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// 上账: on the ledger, not yet taken on.
    Registered,
    /// 签收: the street has taken it on.
    Acknowledged,
    /// A 销账申请 (write-off request) awaits review.
    ClosurePending,
    /// 销账: off the ledger.
    WrittenOff,
}

impl ItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Registered => "registered",
            ItemStatus::Acknowledged => "acknowledged",
            ItemStatus::ClosurePending => "closure_pending",
            ItemStatus::WrittenOff => "written_off",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionStatus {
    Pending,
    Approved,
    Rejected,
    /// A write-off took the item off the ledger before the request was decided.
    Withdrawn,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Extension {
    pub status: ExtensionStatus,
    pub until: DateTime<Utc>,
    pub reason: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DomainError {
    /// The command does not fit the item's state; the text names the state.
    #[error("{0}")]
    Conflict(String),
    /// A well-formed command with an invalid value.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// What a write-off request says was cleared: rooms (间) and partition area removed (m²).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cleared {
    pub rooms: Option<i32>,
    pub partition_area_m2: Option<f64>,
}

/// An item, folded from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub point_id: Uuid,
    pub status: ItemStatus,
    pub complaint_ids: Vec<Uuid>,
    /// The pending write-off request and its outcome.
    pub pending_closure: Option<(Uuid, Outcome)>,
    pub respond_by: Option<DateTime<Utc>>,
    pub resolve_by: Option<DateTime<Utc>>,
    pub overdue: Vec<OverdueKind>,
    pub extension: Option<Extension>,
    pub version: i64,
}

impl Item {
    /// Folds an item's history; `None` for an empty or malformed stream.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a ItemEvent>) -> Option<Item> {
        let mut item: Option<Item> = None;
        for e in events {
            match (&mut item, e) {
                (None, ItemEvent::ItemRegistered(r)) => {
                    item = Some(Item {
                        id: r.item_id,
                        district: r.district.clone(),
                        street: r.street.clone(),
                        category: r.category.clone(),
                        point_id: r.point_id,
                        status: ItemStatus::Registered,
                        complaint_ids: r.complaint_id.into_iter().collect(),
                        pending_closure: None,
                        respond_by: r.respond_by,
                        resolve_by: r.resolve_by,
                        overdue: vec![],
                        extension: None,
                        version: 1,
                    })
                }
                (Some(i), e) => {
                    i.apply(e);
                    i.version += 1;
                }
                (None, _) => return None,
            }
        }
        item
    }

    fn apply(&mut self, e: &ItemEvent) {
        match e {
            ItemEvent::ItemRegistered(_) => {}
            ItemEvent::ComplaintLinked { complaint_id, .. } => {
                self.complaint_ids.push(*complaint_id)
            }
            ItemEvent::ComplaintUnlinked { complaint_id, .. } => {
                self.complaint_ids.retain(|c| c != complaint_id)
            }
            ItemEvent::ItemAcknowledged { .. } => self.status = ItemStatus::Acknowledged,
            ItemEvent::ItemClosurePending {
                closure_id,
                outcome,
                ..
            } => {
                self.status = ItemStatus::ClosurePending;
                self.pending_closure = Some((*closure_id, *outcome));
            }
            ItemEvent::ItemClosureRejected { .. } => {
                self.status = ItemStatus::Acknowledged;
                self.pending_closure = None;
            }
            ItemEvent::ItemWrittenOff(_) => {
                self.status = ItemStatus::WrittenOff;
                self.pending_closure = None;
            }
            ItemEvent::ItemOverdue { kind, .. } => self.overdue.push(*kind),
            ItemEvent::ExtensionRequested { until, reason, .. } => {
                self.extension = Some(Extension {
                    status: ExtensionStatus::Pending,
                    until: *until,
                    reason: reason.clone(),
                })
            }
            ItemEvent::ExtensionApproved { until, reason, .. } => {
                self.resolve_by = Some(*until);
                self.extension = Some(Extension {
                    status: ExtensionStatus::Approved,
                    until: *until,
                    reason: reason.clone(),
                })
            }
            ItemEvent::ExtensionRejected { until, reason, .. } => {
                self.extension = Some(Extension {
                    status: ExtensionStatus::Rejected,
                    until: *until,
                    reason: reason.clone(),
                })
            }
            ItemEvent::ExtensionWithdrawn { until, reason, .. } => {
                self.extension = Some(Extension {
                    status: ExtensionStatus::Withdrawn,
                    until: *until,
                    reason: reason.clone(),
                })
            }
            // The complaint stays on the item; nothing about the item changes.
            ItemEvent::ComplaintReturnRefused { .. } => {}
        }
    }

    fn overdue_event(&self, kind: OverdueKind) -> ItemEvent {
        ItemEvent::ItemOverdue {
            item_id: self.id,
            street: self.street.clone(),
            kind,
        }
    }

    fn is_open(&self) -> bool {
        self.status != ItemStatus::WrittenOff
    }

    /// The overdue flags due at `now` that are not yet recorded: respond-by passed without
    /// acknowledgement, resolve-by passed without write-off. Each kind is flagged once.
    pub fn check_deadlines(&self, now: DateTime<Utc>) -> Vec<ItemEvent> {
        due_overdue(
            self.status,
            self.respond_by,
            self.resolve_by,
            &self.overdue,
            now,
        )
        .into_iter()
        .map(|kind| self.overdue_event(kind))
        .collect()
    }

    fn state_conflict(&self, what: &str) -> DomainError {
        DomainError::Conflict(format!(
            "item {} is {}: cannot {what}",
            self.id,
            self.status.as_str()
        ))
    }

    /// A repeat complaint about the same open problem joins the item; nothing new is registered.
    pub fn link(&self, complaint_id: Uuid) -> Result<Vec<ItemEvent>, DomainError> {
        if self.complaint_ids.contains(&complaint_id) {
            return Ok(vec![]);
        }
        if self.status == ItemStatus::WrittenOff {
            return Err(self.state_conflict("link a complaint"));
        }
        Ok(vec![ItemEvent::ComplaintLinked {
            item_id: self.id,
            complaint_id,
        }])
    }

    /// 签收. A late acknowledgement first records that the respond limit was missed.
    pub fn acknowledge(&self, now: DateTime<Utc>) -> Result<Vec<ItemEvent>, DomainError> {
        if self.status != ItemStatus::Registered {
            return Err(self.state_conflict("acknowledge (only a registered item can be)"));
        }
        let mut out = self.check_deadlines(now);
        out.retain(|e| {
            matches!(
                e,
                ItemEvent::ItemOverdue {
                    kind: OverdueKind::Respond,
                    ..
                }
            )
        });
        out.push(ItemEvent::ItemAcknowledged {
            item_id: self.id,
            street: self.street.clone(),
        });
        Ok(out)
    }

    /// A write-off request was filed (with what it says was cleared). Repeating the same request
    /// changes nothing.
    pub fn closure_requested(
        &self,
        closure_id: Uuid,
        outcome: Outcome,
        cleared: Cleared,
    ) -> Result<Vec<ItemEvent>, DomainError> {
        match (&self.status, &self.pending_closure) {
            (ItemStatus::ClosurePending, Some((id, _))) if *id == closure_id => Ok(vec![]),
            (ItemStatus::Acknowledged, _) => Ok(vec![ItemEvent::ItemClosurePending {
                item_id: self.id,
                street: self.street.clone(),
                closure_id,
                outcome,
                rooms_cleared: cleared.rooms,
                partition_area_m2: cleared.partition_area_m2,
            }]),
            _ => Err(self.state_conflict("take a write-off request")),
        }
    }

    /// The reviewer rejected the pending request: back to acknowledged.
    pub fn closure_rejected(
        &self,
        closure_id: Uuid,
        reason: &str,
    ) -> Result<Vec<ItemEvent>, DomainError> {
        match &self.pending_closure {
            Some((id, _)) if *id == closure_id => Ok(vec![ItemEvent::ItemClosureRejected {
                item_id: self.id,
                street: self.street.clone(),
                closure_id,
                reason: reason.to_string(),
            }]),
            _ => Err(DomainError::Conflict(format!(
                "item {} has no pending write-off request {closure_id}",
                self.id
            ))),
        }
    }

    /// 销账: the reviewer approved the pending request.
    /// 销账: the reviewer approved the pending request. A write-off after resolve-by first records
    /// that the resolve limit was missed.
    pub fn closure_approved(
        &self,
        closure_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<ItemEvent>, DomainError> {
        match &self.pending_closure {
            Some((id, outcome)) if *id == closure_id => {
                let mut out = self.check_deadlines(now);
                out.extend(self.withdraw_extension());
                out.push(self.write_off((*outcome).into(), Some(closure_id)));
                Ok(out)
            }
            _ => Err(DomainError::Conflict(format!(
                "item {} has no pending write-off request {closure_id}",
                self.id
            ))),
        }
    }

    fn write_off(&self, kind: WriteOffKind, closure_id: Option<Uuid>) -> ItemEvent {
        ItemEvent::ItemWrittenOff(WrittenOff {
            item_id: self.id,
            district: self.district.clone(),
            street: self.street.clone(),
            category: self.category.clone(),
            point_id: self.point_id,
            kind,
            closure_id,
        })
    }

    /// 退单: the street sent the complaint back as not its own. When it is the item's only complaint
    /// and the item is that street's, the registration is cancelled by a write-off of kind
    /// `returned`, so the count stays true. Otherwise the problem is still there (other callers, or
    /// another street's item at the same point): only the complaint leaves the item. intake allows a
    /// return only before acknowledgement; should an acknowledgement race it, the return still
    /// wins, since the complaint has already gone back to the operator.
    pub fn returned(
        &self,
        complaint_id: Uuid,
        by_street: &str,
        acknowledged_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<ItemEvent>, DomainError> {
        if !self.is_open() {
            return Err(self.state_conflict("be returned"));
        }
        if !self.complaint_ids.contains(&complaint_id) {
            return Err(DomainError::Conflict(format!(
                "complaint {complaint_id} is not on item {}",
                self.id
            )));
        }
        // The owner's last word: once the street took the item on, a return that reaches it
        // (intake decided on its own, older view) is refused, and recorded so intake learns it.
        if self.status != ItemStatus::Registered {
            return Ok(vec![ItemEvent::ComplaintReturnRefused {
                item_id: self.id,
                complaint_id,
                street: by_street.to_string(),
                reason: format!(
                    "item {} was already acknowledged (签收); it can no longer be returned",
                    self.id
                ),
                acknowledged_at,
                overdue: self.overdue.clone(),
            }]);
        }
        if self.complaint_ids.len() > 1 || by_street != self.street {
            return Ok(vec![ItemEvent::ComplaintUnlinked {
                item_id: self.id,
                complaint_id,
                street: by_street.to_string(),
            }]);
        }
        let mut out = self.withdraw_extension();
        out.push(self.write_off(WriteOffKind::Returned, None));
        Ok(out)
    }

    /// A write-off withdraws a pending extension request: nobody is left to decide it.
    fn withdraw_extension(&self) -> Vec<ItemEvent> {
        match &self.extension {
            Some(e) if e.status == ExtensionStatus::Pending => {
                vec![ItemEvent::ExtensionWithdrawn {
                    item_id: self.id,
                    street: self.street.clone(),
                    until: e.until,
                    reason: e.reason.clone(),
                }]
            }
            _ => vec![],
        }
    }

    /// 延期申请: once, before resolve-by, to a later date, with a reason.
    pub fn request_extension(
        &self,
        until: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<ItemEvent>, DomainError> {
        if !self.is_open() {
            return Err(self.state_conflict("be extended"));
        }
        if let Some(e) = &self.extension {
            match e.status {
                ExtensionStatus::Pending => {
                    return Err(DomainError::Conflict(format!(
                        "item {} already has a pending extension request",
                        self.id
                    )))
                }
                ExtensionStatus::Approved => {
                    return Err(DomainError::Conflict(format!(
                        "item {} was already granted an extension",
                        self.id
                    )))
                }
                ExtensionStatus::Rejected | ExtensionStatus::Withdrawn => {}
            }
        }
        let resolve_by = self.resolve_by.ok_or_else(|| {
            DomainError::Conflict(format!("item {} has no resolve-by date", self.id))
        })?;
        if now >= resolve_by {
            return Err(DomainError::Conflict(format!("item {} is past its resolve-by date {resolve_by}; an extension must be asked before it", self.id)));
        }
        if reason.trim().is_empty() {
            return Err(DomainError::Invalid {
                field: "reason",
                message: "a reason is required".into(),
            });
        }
        if until <= resolve_by {
            return Err(DomainError::Invalid {
                field: "until",
                message: format!("must be later than the current resolve-by {resolve_by}"),
            });
        }
        Ok(vec![ItemEvent::ExtensionRequested {
            item_id: self.id,
            street: self.street.clone(),
            until,
            reason: reason.trim().to_string(),
        }])
    }

    fn pending_extension(&self) -> Result<&Extension, DomainError> {
        if !self.is_open() {
            return Err(self.state_conflict("decide an extension"));
        }
        match &self.extension {
            Some(e) if e.status == ExtensionStatus::Pending => Ok(e),
            _ => Err(DomainError::Conflict(format!(
                "item {} has no pending extension request",
                self.id
            ))),
        }
    }

    /// The reviewer grants the extension: resolve-by moves to `until`.
    pub fn approve_extension(&self) -> Result<Vec<ItemEvent>, DomainError> {
        let e = self.pending_extension()?;
        Ok(vec![ItemEvent::ExtensionApproved {
            item_id: self.id,
            street: self.street.clone(),
            until: e.until,
            reason: e.reason.clone(),
        }])
    }

    pub fn reject_extension(&self, reason: &str) -> Result<Vec<ItemEvent>, DomainError> {
        let e = self.pending_extension()?;
        if reason.trim().is_empty() {
            return Err(DomainError::Invalid {
                field: "reason",
                message: "a reason is required".into(),
            });
        }
        Ok(vec![ItemEvent::ExtensionRejected {
            item_id: self.id,
            street: self.street.clone(),
            until: e.until,
            reason: reason.trim().to_string(),
        }])
    }
}

#[cfg(test)]
mod tests;
