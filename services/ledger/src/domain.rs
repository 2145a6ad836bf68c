//! The ledger's domain: an item (one problem at one point) as a pure state machine. Events in,
//! decisions out; no I/O.

use chrono::{DateTime, Utc};
use qingling_shared::{Envelope, NewEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

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

/// The events of an item stream (`item-<id>`), with the data of CONTRACT §7 and a little more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "data", rename_all = "snake_case")]
pub enum ItemEvent {
    ItemRegistered(Registered),
    ComplaintLinked {
        item_id: Uuid,
        complaint_id: Uuid,
    },
    /// A returned complaint leaves an item that stays open (other calls, or another street's item).
    ComplaintUnlinked {
        item_id: Uuid,
        complaint_id: Uuid,
        street: String,
    },
    ItemAcknowledged {
        item_id: Uuid,
        street: String,
    },
    /// The closure service accepted a write-off request for the item.
    ItemClosurePending {
        item_id: Uuid,
        street: String,
        closure_id: Uuid,
        outcome: String,
    },
    /// The reviewer rejected it: the item is back to acknowledged.
    ItemClosureRejected {
        item_id: Uuid,
        street: String,
        closure_id: Uuid,
        reason: String,
    },
    ItemWrittenOff(WrittenOff),
    /// 督查督办: a time limit passed (kind `respond` or `resolve`). At most once per kind.
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionStatus {
    Pending,
    Approved,
    Rejected,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Extension {
    pub status: ExtensionStatus,
    pub until: DateTime<Utc>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub item_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub point_id: Uuid,
    pub point: Value,
    /// `complaint` or `inspection` (主动发现).
    pub source: String,
    pub complaint_id: Option<Uuid>,
    pub urgency: String,
    pub description: String,
    pub respond_by: Option<DateTime<Utc>>,
    pub resolve_by: Option<DateTime<Utc>>,
    /// 防止反弹: the previous item at this point, if written off within 90 days.
    pub rebound_of: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WrittenOff {
    pub item_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub point_id: Uuid,
    /// `rectified` (整治完毕), `unfounded` (核查不属实) or `returned` (退单).
    pub kind: String,
    pub closure_id: Option<Uuid>,
}

impl ItemEvent {
    pub fn to_new_event(&self) -> NewEvent {
        let v = serde_json::to_value(self).expect("item events serialise");
        NewEvent::new(
            v["event_type"].as_str().unwrap_or_default(),
            v["data"].clone(),
        )
    }

    pub fn from_envelope(e: &Envelope) -> anyhow::Result<Self> {
        serde_json::from_value(serde_json::json!({"event_type": e.event_type, "data": e.data}))
            .map_err(|err| unparsable(e.event_id, &e.event_type, err))
    }

    /// From an event's type and its data as JSON text, as the log stores them (no `Value` in
    /// between: a rebuild parses millions).
    pub fn from_stored(event_id: Uuid, event_type: &str, data: &str) -> anyhow::Result<Self> {
        let doc = format!(
            "{{\"event_type\":{},\"data\":{data}}}",
            Value::String(event_type.to_string())
        );
        serde_json::from_str(&doc).map_err(|err| unparsable(event_id, event_type, err))
    }
}

fn unparsable(event_id: Uuid, event_type: &str, err: serde_json::Error) -> anyhow::Error {
    anyhow::anyhow!("event {event_id} ({event_type}) does not parse: {err}")
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
    pub pending_closure: Option<(Uuid, String)>,
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
                self.pending_closure = Some((*closure_id, outcome.clone()));
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
        let mut out = vec![];
        let due = |by: Option<DateTime<Utc>>, kind| {
            by.is_some_and(|by| now > by) && !self.overdue.contains(&kind)
        };
        if self.status == ItemStatus::Registered && due(self.respond_by, OverdueKind::Respond) {
            out.push(self.overdue_event(OverdueKind::Respond));
        }
        if self.is_open() && due(self.resolve_by, OverdueKind::Resolve) {
            out.push(self.overdue_event(OverdueKind::Resolve));
        }
        out
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

    /// A write-off request was filed. Repeating the same request changes nothing.
    pub fn closure_requested(
        &self,
        closure_id: Uuid,
        outcome: &str,
    ) -> Result<Vec<ItemEvent>, DomainError> {
        match (&self.status, &self.pending_closure) {
            (ItemStatus::ClosurePending, Some((id, _))) if *id == closure_id => Ok(vec![]),
            (ItemStatus::Acknowledged, _) => Ok(vec![ItemEvent::ItemClosurePending {
                item_id: self.id,
                street: self.street.clone(),
                closure_id,
                outcome: outcome.to_string(),
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
                out.push(self.write_off(outcome, Some(closure_id)));
                Ok(out)
            }
            _ => Err(DomainError::Conflict(format!(
                "item {} has no pending write-off request {closure_id}",
                self.id
            ))),
        }
    }

    fn write_off(&self, kind: &str, closure_id: Option<Uuid>) -> ItemEvent {
        ItemEvent::ItemWrittenOff(WrittenOff {
            item_id: self.id,
            district: self.district.clone(),
            street: self.street.clone(),
            category: self.category.clone(),
            point_id: self.point_id,
            kind: kind.to_string(),
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
        if self.complaint_ids.len() > 1 || by_street != self.street {
            return Ok(vec![ItemEvent::ComplaintUnlinked {
                item_id: self.id,
                complaint_id,
                street: by_street.to_string(),
            }]);
        }
        Ok(vec![self.write_off("returned", None)])
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
                ExtensionStatus::Rejected => {}
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
mod tests {
    use super::*;

    /// The registration time in these tests.
    fn t0() -> DateTime<Utc> {
        "2026-11-28T08:00:00Z".parse().unwrap()
    }

    fn hours(h: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::hours(h)
    }

    fn registered(id: Uuid) -> ItemEvent {
        ItemEvent::ItemRegistered(Registered {
            item_id: id,
            district: "tongzhou".into(),
            street: "jiukeshu".into(),
            category: "basement_illegal_residence".into(),
            point_id: Uuid::nil(),
            point: serde_json::json!({}),
            source: "complaint".into(),
            complaint_id: Some(Uuid::from_u128(1)),
            urgency: "normal".into(),
            description: String::new(),
            respond_by: Some(t0() + chrono::Duration::hours(24)),
            resolve_by: Some(t0() + chrono::Duration::days(7)),
            rebound_of: None,
        })
    }

    /// Given these events, when `cmd`, then the new events (or the error).
    fn given(history: Vec<ItemEvent>) -> Item {
        Item::from_events(&history).expect("a registered item")
    }

    fn acked(id: Uuid) -> Vec<ItemEvent> {
        vec![
            registered(id),
            ItemEvent::ItemAcknowledged {
                item_id: id,
                street: "jiukeshu".into(),
            },
        ]
    }

    fn pending(id: Uuid, closure: Uuid) -> Vec<ItemEvent> {
        let mut h = acked(id);
        h.push(ItemEvent::ItemClosurePending {
            item_id: id,
            street: "jiukeshu".into(),
            closure_id: closure,
            outcome: "rectified".into(),
        });
        h
    }

    #[test]
    fn a_registered_item_can_be_acknowledged_once() {
        let id = Uuid::now_v7();
        let item = given(vec![registered(id)]);
        assert_eq!(item.version, 1);
        assert_eq!(
            item.acknowledge(t0()).unwrap(),
            vec![ItemEvent::ItemAcknowledged {
                item_id: id,
                street: "jiukeshu".into()
            }]
        );
        let item = given(acked(id));
        assert_eq!(item.status, ItemStatus::Acknowledged);
        assert!(
            matches!(item.acknowledge(t0()), Err(DomainError::Conflict(m)) if m.contains("acknowledged"))
        );
    }

    #[test]
    fn repeat_complaints_link_once_and_never_to_a_written_off_item() {
        let id = Uuid::now_v7();
        let item = given(vec![registered(id)]);
        let c2 = Uuid::from_u128(2);
        assert_eq!(
            item.link(c2).unwrap(),
            vec![ItemEvent::ComplaintLinked {
                item_id: id,
                complaint_id: c2
            }]
        );
        assert!(
            item.link(Uuid::from_u128(1)).unwrap().is_empty(),
            "already linked"
        );
        let mut h = pending(id, Uuid::from_u128(9));
        let approved = given(h.clone())
            .closure_approved(Uuid::from_u128(9), t0())
            .unwrap();
        h.extend(approved);
        assert!(given(h).link(c2).is_err());
    }

    #[test]
    fn a_write_off_request_needs_an_acknowledged_item() {
        let id = Uuid::now_v7();
        let c = Uuid::from_u128(7);
        assert!(given(vec![registered(id)])
            .closure_requested(c, "rectified")
            .is_err());
        let events = given(acked(id)).closure_requested(c, "rectified").unwrap();
        assert!(
            matches!(&events[..], [ItemEvent::ItemClosurePending { closure_id, .. }] if *closure_id == c)
        );
        let item = given(pending(id, c));
        assert_eq!(item.status, ItemStatus::ClosurePending);
        assert!(
            item.closure_requested(c, "rectified").unwrap().is_empty(),
            "same request again is a no-op"
        );
        assert!(
            item.closure_requested(Uuid::from_u128(8), "rectified")
                .is_err(),
            "a second request while one is pending"
        );
    }

    #[test]
    fn rejection_returns_the_item_to_acknowledged_and_it_may_be_requested_again() {
        let id = Uuid::now_v7();
        let c = Uuid::from_u128(7);
        let mut h = pending(id, c);
        h.extend(given(h.clone()).closure_rejected(c, "照片不清").unwrap());
        let item = given(h.clone());
        assert_eq!(item.status, ItemStatus::Acknowledged);
        assert!(item.closure_rejected(c, "again").is_err());
        assert!(
            item.closure_approved(c, t0()).is_err(),
            "a rejected request cannot be approved"
        );
        assert_eq!(
            item.closure_requested(Uuid::from_u128(8), "unfounded")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn approval_writes_the_item_off_with_the_requested_outcome() {
        let id = Uuid::now_v7();
        let c = Uuid::from_u128(7);
        let item = given(pending(id, c));
        assert!(
            item.closure_approved(Uuid::from_u128(8), t0()).is_err(),
            "not the pending request"
        );
        let events = item.closure_approved(c, t0()).unwrap();
        match &events[..] {
            [ItemEvent::ItemWrittenOff(w)] => {
                assert_eq!(w.kind, "rectified");
                assert_eq!(w.closure_id, Some(c));
            }
            other => panic!("{other:?}"),
        }
        let mut h = pending(id, c);
        h.extend(events);
        let done = given(h);
        assert_eq!(done.status, ItemStatus::WrittenOff);
        assert!(done.acknowledge(t0()).is_err());
        assert!(done
            .closure_requested(Uuid::from_u128(9), "rectified")
            .is_err());
        assert!(
            done.closure_approved(c, t0()).is_err(),
            "approved once only"
        );
    }

    #[test]
    fn events_round_trip_through_the_envelope_shape() {
        let id = Uuid::now_v7();
        for e in pending(id, Uuid::from_u128(3)) {
            let n = e.to_new_event();
            let env = Envelope {
                event_id: Uuid::now_v7(),
                event_type: n.event_type.clone(),
                stream: format!("item-{id}"),
                version: 1,
                occurred_at: Utc::now(),
                actor: "t".into(),
                correlation_id: Uuid::nil(),
                causation_id: Uuid::nil(),
                data: n.data,
                position: 1,
            };
            assert_eq!(ItemEvent::from_envelope(&env).unwrap(), e);
        }
        assert_eq!(registered(id).to_new_event().event_type, "item_registered");
    }

    #[test]
    fn a_stream_that_does_not_start_with_registration_is_no_item() {
        let id = Uuid::now_v7();
        assert!(Item::from_events(&[ItemEvent::ItemAcknowledged {
            item_id: id,
            street: "x".into()
        }])
        .is_none());
        assert!(Item::from_events(&[]).is_none());
    }

    fn kinds(events: &[ItemEvent]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                ItemEvent::ItemOverdue { kind, .. } => kind.as_str(),
                ItemEvent::ItemAcknowledged { .. } => "acknowledged",
                ItemEvent::ItemWrittenOff(_) => "written_off",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn deadlines_are_flagged_once_each_when_they_pass() {
        let id = Uuid::now_v7();
        let mut h = vec![registered(id)];
        assert!(given(h.clone()).check_deadlines(hours(23)).is_empty());
        let due = given(h.clone()).check_deadlines(hours(25));
        assert_eq!(kinds(&due), ["respond"]);
        h.extend(due);
        assert!(
            given(h.clone()).check_deadlines(hours(26)).is_empty(),
            "respond is flagged once"
        );
        let due = given(h.clone()).check_deadlines(hours(24 * 8));
        assert_eq!(kinds(&due), ["resolve"]);
        h.extend(due);
        let item = given(h);
        assert_eq!(item.overdue, [OverdueKind::Respond, OverdueKind::Resolve]);
        assert!(item.check_deadlines(hours(24 * 30)).is_empty());
    }

    #[test]
    fn an_acknowledged_item_is_not_respond_overdue_and_a_late_one_is_flagged_on_acknowledgement() {
        let id = Uuid::now_v7();
        let item = given(acked(id));
        assert!(item.check_deadlines(hours(25)).is_empty());
        let late = given(vec![registered(id)]).acknowledge(hours(30)).unwrap();
        assert_eq!(kinds(&late), ["respond", "acknowledged"]);
        let both_missed = given(vec![registered(id)]).check_deadlines(hours(24 * 8));
        assert_eq!(kinds(&both_missed), ["respond", "resolve"]);
    }

    #[test]
    fn a_late_write_off_is_flagged_resolve_overdue_first_and_a_written_off_item_never_again() {
        let id = Uuid::now_v7();
        let c = Uuid::from_u128(7);
        let mut h = pending(id, c);
        let events = given(h.clone()).closure_approved(c, hours(24 * 8)).unwrap();
        assert_eq!(kinds(&events), ["resolve", "written_off"]);
        h.extend(events);
        assert!(given(h).check_deadlines(hours(24 * 100)).is_empty());
    }

    #[test]
    fn an_extension_is_asked_once_before_resolve_by_and_moves_the_deadline_when_approved() {
        let id = Uuid::now_v7();
        let mut h = acked(id);
        let item = given(h.clone());
        let until = hours(24 * 14);
        assert!(matches!(
            item.request_extension(until, " ", hours(1)),
            Err(DomainError::Invalid {
                field: "reason",
                ..
            })
        ));
        assert!(matches!(
            item.request_extension(hours(24 * 6), "太复杂", hours(1)),
            Err(DomainError::Invalid { field: "until", .. })
        ));
        assert!(
            matches!(
                item.request_extension(until, "需协调产权单位", hours(24 * 8)),
                Err(DomainError::Conflict(_))
            ),
            "too late"
        );
        h.extend(
            item.request_extension(until, "需协调产权单位", hours(1))
                .unwrap(),
        );
        let item = given(h.clone());
        assert_eq!(
            item.extension.as_ref().unwrap().status,
            ExtensionStatus::Pending
        );
        assert!(
            item.request_extension(until, "again", hours(2)).is_err(),
            "one pending at a time"
        );
        assert!(item.reject_extension("").is_err());
        h.extend(item.approve_extension().unwrap());
        let item = given(h.clone());
        assert_eq!(item.resolve_by, Some(until));
        assert!(
            item.check_deadlines(hours(24 * 8)).is_empty(),
            "not overdue until the new date"
        );
        assert_eq!(kinds(&item.check_deadlines(hours(24 * 15))), ["resolve"]);
        assert!(
            matches!(item.request_extension(hours(24 * 20), "再延", hours(2)), Err(DomainError::Conflict(m)) if m.contains("already"))
        );
        assert!(item.approve_extension().is_err(), "nothing pending");
    }

    #[test]
    fn a_rejected_extension_may_be_asked_again() {
        let id = Uuid::now_v7();
        let mut h = acked(id);
        h.extend(
            given(h.clone())
                .request_extension(hours(24 * 10), "原因", hours(1))
                .unwrap(),
        );
        h.extend(given(h.clone()).reject_extension("理由不足").unwrap());
        let item = given(h);
        assert_eq!(
            item.extension.as_ref().unwrap().status,
            ExtensionStatus::Rejected
        );
        assert_eq!(
            item.resolve_by,
            Some(hours(24 * 7)),
            "a rejection leaves the deadline"
        );
        assert!(item
            .request_extension(hours(24 * 10), "补充原因", hours(2))
            .is_ok());
    }

    #[test]
    fn a_return_writes_the_item_off_as_returned() {
        let id = Uuid::now_v7();
        let item = given(vec![registered(id)]);
        assert!(
            item.returned(Uuid::from_u128(99), "jiukeshu").is_err(),
            "not this item's complaint"
        );
        let unlinked = item.returned(Uuid::from_u128(1), "yongshun").unwrap();
        assert!(
            matches!(&unlinked[..], [ItemEvent::ComplaintUnlinked { .. }]),
            "another street's return leaves the item open"
        );
        let mut shared = vec![registered(id)];
        shared.extend(item.link(Uuid::from_u128(2)).unwrap());
        let leaves = given(shared)
            .returned(Uuid::from_u128(2), "jiukeshu")
            .unwrap();
        assert!(
            matches!(&leaves[..], [ItemEvent::ComplaintUnlinked { .. }]),
            "a repeat call's return leaves the problem on the ledger"
        );
        let events = item.returned(Uuid::from_u128(1), "jiukeshu").unwrap();
        assert!(
            matches!(&events[..], [ItemEvent::ItemWrittenOff(w)] if w.kind == "returned" && w.closure_id.is_none())
        );
        let mut h = vec![registered(id)];
        h.extend(events);
        assert!(
            given(h).returned(Uuid::from_u128(1), "jiukeshu").is_err(),
            "returned once"
        );
    }
}

/// Random sequences of commands never break the item's invariants.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Cmd {
        Acknowledge(i64),
        Link(u128),
        Request(u128),
        Reject(u128),
        Approve(u128, i64),
        Deadlines(i64),
        Return(u128),
        Extend(i64, i64),
        ApproveExtension,
        RejectExtension,
    }

    fn cmd() -> impl Strategy<Value = Cmd> {
        let hours = 0i64..400;
        prop_oneof![
            hours.clone().prop_map(Cmd::Acknowledge),
            (1u128..4).prop_map(Cmd::Link),
            (10u128..13).prop_map(Cmd::Request),
            (10u128..13).prop_map(Cmd::Reject),
            ((10u128..13), hours.clone()).prop_map(|(c, h)| Cmd::Approve(c, h)),
            hours.clone().prop_map(Cmd::Deadlines),
            (1u128..4).prop_map(Cmd::Return),
            (hours.clone(), 0i64..600).prop_map(|(now, until)| Cmd::Extend(now, until)),
            Just(Cmd::ApproveExtension),
            Just(Cmd::RejectExtension),
        ]
    }

    fn at(h: i64) -> DateTime<Utc> {
        "2026-11-28T08:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::hours(h)
    }

    proptest! {
        #[test]
        fn commands_never_break_the_item(cmds in proptest::collection::vec(cmd(), 0..40)) {
            let id = Uuid::from_u128(99);
            let mut history = vec![ItemEvent::ItemRegistered(Registered {
                item_id: id, district: "tongzhou".into(), street: "jiukeshu".into(), category: "basement_illegal_residence".into(),
                point_id: Uuid::nil(), point: serde_json::json!({}), source: "complaint".into(), complaint_id: Some(Uuid::from_u128(1)),
                urgency: "normal".into(), description: String::new(), respond_by: Some(at(24)), resolve_by: Some(at(168)), rebound_of: None,
            })];
            for c in cmds {
                let item = Item::from_events(&history).unwrap();
                let result = match c {
                    Cmd::Acknowledge(h) => item.acknowledge(at(h)),
                    Cmd::Link(n) => item.link(Uuid::from_u128(n)),
                    Cmd::Request(n) => item.closure_requested(Uuid::from_u128(n), "rectified"),
                    Cmd::Reject(n) => item.closure_rejected(Uuid::from_u128(n), "r"),
                    Cmd::Approve(n, h) => item.closure_approved(Uuid::from_u128(n), at(h)),
                    Cmd::Deadlines(h) => Ok(item.check_deadlines(at(h))),
                    Cmd::Return(n) => item.returned(Uuid::from_u128(n), "jiukeshu"),
                    Cmd::Extend(now, until) => item.request_extension(at(until), "原因", at(now)),
                    Cmd::ApproveExtension => item.approve_extension(),
                    Cmd::RejectExtension => item.reject_extension("理由"),
                };
                if let Ok(events) = result {
                    // Nothing happens to a written-off item, except nothing.
                    if item.status == ItemStatus::WrittenOff {
                        prop_assert!(events.is_empty(), "{events:?}");
                    }
                    history.extend(events);
                }
                let now = Item::from_events(&history).unwrap();
                prop_assert_eq!(now.version as usize, history.len());
                prop_assert_eq!(now.pending_closure.is_some(), now.status == ItemStatus::ClosurePending);
                let count = |f: fn(&ItemEvent) -> bool| history.iter().filter(|e| f(e)).count();
                let acks = count(|e| matches!(e, ItemEvent::ItemAcknowledged { .. }));
                let offs = count(|e| matches!(e, ItemEvent::ItemWrittenOff(_)));
                let respond = count(|e| matches!(e, ItemEvent::ItemOverdue { kind: OverdueKind::Respond, .. }));
                let resolve = count(|e| matches!(e, ItemEvent::ItemOverdue { kind: OverdueKind::Resolve, .. }));
                let extended = count(|e| matches!(e, ItemEvent::ExtensionApproved { .. }));
                prop_assert!(acks <= 1 && offs <= 1 && respond <= 1 && resolve <= 1 && extended <= 1, "{:?}", history);
                // A written-off item is the last word: nothing after it.
                if let Some(pos) = history.iter().position(|e| matches!(e, ItemEvent::ItemWrittenOff(_))) {
                    prop_assert_eq!(pos, history.len() - 1);
                }
                // An approved extension moved resolve-by to its date, later than the original.
                if let Some(Extension { status: ExtensionStatus::Approved, until, .. }) = &now.extension {
                    prop_assert_eq!(now.resolve_by, Some(*until));
                    prop_assert!(*until > at(168));
                }
            }
        }
    }
}
