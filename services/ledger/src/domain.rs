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
            .map_err(|err| {
                anyhow::anyhow!(
                    "event {} ({}) does not parse: {err}",
                    e.event_id,
                    e.event_type
                )
            })
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DomainError {
    /// The command does not fit the item's state; the text names the state.
    #[error("{0}")]
    Conflict(String),
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
        }
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

    /// 签收.
    pub fn acknowledge(&self) -> Result<Vec<ItemEvent>, DomainError> {
        if self.status != ItemStatus::Registered {
            return Err(self.state_conflict("acknowledge (only a registered item can be)"));
        }
        Ok(vec![ItemEvent::ItemAcknowledged {
            item_id: self.id,
            street: self.street.clone(),
        }])
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
    pub fn closure_approved(&self, closure_id: Uuid) -> Result<Vec<ItemEvent>, DomainError> {
        match &self.pending_closure {
            Some((id, outcome)) if *id == closure_id => {
                Ok(vec![ItemEvent::ItemWrittenOff(WrittenOff {
                    item_id: self.id,
                    district: self.district.clone(),
                    street: self.street.clone(),
                    category: self.category.clone(),
                    point_id: self.point_id,
                    kind: outcome.clone(),
                    closure_id: Some(closure_id),
                })])
            }
            _ => Err(DomainError::Conflict(format!(
                "item {} has no pending write-off request {closure_id}",
                self.id
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            respond_by: None,
            resolve_by: None,
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
            item.acknowledge().unwrap(),
            vec![ItemEvent::ItemAcknowledged {
                item_id: id,
                street: "jiukeshu".into()
            }]
        );
        let item = given(acked(id));
        assert_eq!(item.status, ItemStatus::Acknowledged);
        assert!(
            matches!(item.acknowledge(), Err(DomainError::Conflict(m)) if m.contains("acknowledged"))
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
            .closure_approved(Uuid::from_u128(9))
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
            item.closure_approved(c).is_err(),
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
            item.closure_approved(Uuid::from_u128(8)).is_err(),
            "not the pending request"
        );
        let events = item.closure_approved(c).unwrap();
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
        assert!(done.acknowledge().is_err());
        assert!(done
            .closure_requested(Uuid::from_u128(9), "rectified")
            .is_err());
        assert!(done.closure_approved(c).is_err(), "approved once only");
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
}
