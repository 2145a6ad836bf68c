//! closure's whole-log replay for a rebuild: its own events and the ledger's it applied, folded in
//! memory in apply order, the rows written with `COPY`. It must leave exactly what
//! [`crate::projector::project`] and [`crate::consumer::LedgerEvents`] leave event by event (the
//! rebuild test compares the two after a live run).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use qingling_events::closure::{ClosureEvent, Requested, Uploaded};
use qingling_events::ledger::ItemEvent;
use qingling_events::Event;
use qingling_shared::rebuild;
use qingling_shared::replay::{copy_rows, fold_log, Csv, Logged};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::consumer::HANDLED;
use crate::projector::AlreadyPending;

/// An event of the replay, parsed.
pub enum Parsed {
    Own {
        stream_id: Option<Uuid>,
        actor: String,
        at: DateTime<Utc>,
        event: ClosureEvent,
    },
    Ledger {
        at: DateTime<Utc>,
        event: ItemEvent,
    },
    /// Changes nothing here (a type of a newer release, or a ledger event closure ignores).
    Nothing,
}

pub fn parse(l: Logged) -> anyhow::Result<Parsed> {
    if l.own {
        let stream_id = l.stream.split_once('-').and_then(|(_, id)| id.parse().ok());
        return Ok(
            match ClosureEvent::from_stored(l.event_id, &l.event_type, &l.data)? {
                Some(event) => Parsed::Own {
                    stream_id,
                    actor: l.actor,
                    at: l.occurred_at,
                    event,
                },
                None => Parsed::Nothing,
            },
        );
    }
    if !HANDLED.contains(&l.event_type.as_str()) {
        return Ok(Parsed::Nothing);
    }
    Ok(
        match ItemEvent::from_stored(l.event_id, &l.event_type, &l.data)? {
            Some(event) => Parsed::Ledger {
                at: l.occurred_at,
                event,
            },
            None => Parsed::Nothing,
        },
    )
}

/// An item as closure knows it: its row in `items`.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub item_id: Uuid,
    pub district: Arc<str>,
    pub street: Arc<str>,
    pub category: Arc<str>,
    pub status: &'static str,
    pub updated_at: DateTime<Utc>,
}

/// A write-off request: its row in `closures`.
#[derive(Debug, Clone, PartialEq)]
pub struct Closure {
    pub request: Requested,
    pub status: &'static str,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub review_note: Option<String>,
    pub reject_reason: Option<String>,
}

/// A photo's record: its row in `evidence`.
#[derive(Debug, Clone, PartialEq)]
pub struct Photo {
    pub uploaded: Uploaded,
    pub uploaded_by: String,
    pub received_at: DateTime<Utc>,
}

/// What the log folds into. Pure: events in, rows out.
#[derive(Debug, Default)]
pub struct Fold {
    pub items: HashMap<Uuid, Item>,
    pub closures: HashMap<Uuid, Closure>,
    pub evidence: HashMap<String, Photo>,
    /// The pending request of each item (at most one, as the unique index keeps it).
    pending: HashMap<Uuid, Uuid>,
    names: HashMap<String, Arc<str>>,
}

impl Fold {
    fn name(&mut self, s: &str) -> Arc<str> {
        if let Some(n) = self.names.get(s) {
            return n.clone();
        }
        let n: Arc<str> = s.into();
        self.names.insert(s.to_string(), n.clone());
        n
    }

    pub fn apply(&mut self, p: Parsed) -> anyhow::Result<()> {
        match p {
            Parsed::Nothing => {}
            Parsed::Ledger { at, event } => self.ledger(at, event),
            Parsed::Own {
                stream_id,
                actor,
                at,
                event,
            } => self.own(stream_id, actor, at, event)?,
        }
        Ok(())
    }

    fn ledger(&mut self, at: DateTime<Utc>, event: ItemEvent) {
        let status = match &event {
            ItemEvent::ItemRegistered(r) => {
                if !self.items.contains_key(&r.item_id) {
                    let item = Item {
                        item_id: r.item_id,
                        district: self.name(&r.district),
                        street: self.name(&r.street),
                        category: self.name(&r.category),
                        status: "registered",
                        updated_at: at,
                    };
                    self.items.insert(r.item_id, item);
                }
                return;
            }
            ItemEvent::ItemAcknowledged { .. } | ItemEvent::ItemClosureRejected { .. } => {
                "acknowledged"
            }
            ItemEvent::ItemClosurePending { .. } => "closure_pending",
            ItemEvent::ItemWrittenOff(_) => "written_off",
            _ => return,
        };
        if let Some(i) = self.items.get_mut(&event.item_id()) {
            i.status = status;
            i.updated_at = at;
        }
    }

    fn own(
        &mut self,
        stream_id: Option<Uuid>,
        actor: String,
        at: DateTime<Utc>,
        event: ClosureEvent,
    ) -> anyhow::Result<()> {
        if let ClosureEvent::EvidenceUploaded(u) = event {
            self.evidence.entry(u.sha256.clone()).or_insert(Photo {
                uploaded: u,
                uploaded_by: actor,
                received_at: at,
            });
            return Ok(());
        }
        let id = stream_id.ok_or_else(|| anyhow::anyhow!("an event not on a closure stream"))?;
        let (status, note, reason) = match event {
            ClosureEvent::EvidenceUploaded(_) => unreachable!(),
            ClosureEvent::ClosureRequested(r) => {
                if self.pending.contains_key(&r.item_id) {
                    return Err(AlreadyPending(r.item_id).into());
                }
                anyhow::ensure!(
                    !self.closures.contains_key(&r.closure_id),
                    "closure {} requested twice",
                    r.closure_id
                );
                self.pending.insert(r.item_id, r.closure_id);
                self.closures.insert(
                    r.closure_id,
                    Closure {
                        request: r,
                        status: "pending",
                        requested_by: actor,
                        requested_at: at,
                        reviewed_by: None,
                        reviewed_at: None,
                        review_note: None,
                        reject_reason: None,
                    },
                );
                return Ok(());
            }
            ClosureEvent::ClosureApproved { note, .. } => ("approved", note, None),
            ClosureEvent::ClosureRejected { reason, .. } => ("rejected", None, Some(reason)),
        };
        if let Some(c) = self.closures.get_mut(&id) {
            if self.pending.get(&c.request.item_id) == Some(&id) {
                self.pending.remove(&c.request.item_id);
            }
            c.status = status;
            c.reviewed_by = Some(actor);
            c.reviewed_at = Some(at);
            c.review_note = note;
            c.reject_reason = reason;
        }
        Ok(())
    }
}

const ITEMS_COPY: &str =
    "copy items (item_id, district, street, category, status, updated_at) from stdin (format csv, freeze)";
const CLOSURES_COPY: &str = "copy closures (closure_id, item_id, district, street, category, outcome, checklist, rooms_cleared,
    partition_area_m2, evidence, note, status, requested_by, requested_at, reviewed_by, reviewed_at, review_note, reject_reason)
    from stdin (format csv, freeze)";
const EVIDENCE_COPY: &str = "copy evidence (sha256, bytes, content_type, district, street, item_id, uploaded_by, received_at,
    taken_at, lat, long) from stdin (format csv, freeze)";

fn item_csv(out: &mut Csv, i: &Item) {
    out.uuid(i.item_id);
    out.text(&i.district);
    out.text(&i.street);
    out.text(&i.category);
    out.text(i.status);
    out.time(i.updated_at);
    out.end();
}

fn closure_csv(out: &mut Csv, c: &Closure) {
    let r = &c.request;
    out.uuid(r.closure_id);
    out.uuid(r.item_id);
    out.text(&r.district);
    out.text(&r.street);
    out.text(&r.category);
    out.text(r.outcome.as_str());
    out.text(&serde_json::to_string(&r.checklist).unwrap_or_default());
    out.opt_num(r.rooms_cleared);
    out.opt_num(r.partition_area_m2);
    out.text(&serde_json::to_string(&r.evidence).unwrap_or_default());
    out.text(&r.note);
    out.text(c.status);
    out.text(&c.requested_by);
    out.time(c.requested_at);
    out.opt_text(c.reviewed_by.as_deref());
    out.opt_time(c.reviewed_at);
    out.opt_text(c.review_note.as_deref());
    out.opt_text(c.reject_reason.as_deref());
    out.end();
}

fn photo_csv(out: &mut Csv, p: &Photo) {
    let u = &p.uploaded;
    out.text(&u.sha256);
    out.num(u.bytes);
    out.text(&u.content_type);
    out.text(&u.district);
    out.text(&u.street);
    out.opt_uuid(u.item_id);
    out.text(&p.uploaded_by);
    out.time(p.received_at);
    out.opt_time(u.taken_at);
    out.opt_num(u.lat);
    out.opt_num(u.long);
    out.end();
}

/// Replays the log and the inbox into the (emptied) projections: (own, foreign) events.
pub async fn replay(
    pool: &PgPool,
    c: &mut PgConnection,
    progress: &mut (dyn FnMut(u64) + Send),
) -> anyhow::Result<(u64, u64)> {
    let started = std::time::Instant::now();
    let mut fold = Fold::default();
    let (own, foreign) = fold_log(pool, parse, |p| fold.apply(p), progress).await?;
    let log_s = started.elapsed().as_secs_f64();
    let indexes = rebuild::drop_secondary_indexes(c, "closures").await?;
    let mut items: Vec<Item> = fold.items.into_values().collect();
    items.sort_unstable_by_key(|i| i.item_id);
    copy_rows(c, ITEMS_COPY, items, item_csv).await?;
    let mut closures: Vec<Closure> = fold.closures.into_values().collect();
    closures.sort_unstable_by_key(|c| c.request.closure_id);
    copy_rows(c, CLOSURES_COPY, closures, closure_csv).await?;
    let mut photos: Vec<Photo> = fold.evidence.into_values().collect();
    photos.sort_unstable_by(|a, b| a.uploaded.sha256.cmp(&b.uploaded.sha256));
    copy_rows(c, EVIDENCE_COPY, photos, photo_csv).await?;
    let rows_s = started.elapsed().as_secs_f64() - log_s;
    rebuild::build_indexes(c, indexes).await?;
    tracing::info!(
        own,
        foreign,
        log_s,
        rows_s,
        indexes_s = started.elapsed().as_secs_f64() - log_s - rows_s,
        "replayed the log"
    );
    Ok((own, foreign))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use qingling_events::closure::{Checklist, Outcome};
    use qingling_events::testing::item_registered;

    use super::*;

    fn requested(closure_id: Uuid, item_id: Uuid) -> Parsed {
        Parsed::Own {
            stream_id: Some(closure_id),
            actor: "street-jiukeshu".into(),
            at: Utc::now(),
            event: ClosureEvent::ClosureRequested(Requested {
                closure_id,
                item_id,
                district: "tongzhou".into(),
                street: "jiukeshu".into(),
                category: "basement_illegal_residence".into(),
                outcome: Outcome::Rectified,
                checklist: Checklist::default(),
                rooms_cleared: None,
                partition_area_m2: None,
                evidence: vec![],
                note: String::new(),
            }),
        }
    }

    fn rejected(closure_id: Uuid, item_id: Uuid) -> Parsed {
        Parsed::Own {
            stream_id: Some(closure_id),
            actor: "reviewer-tongzhou".into(),
            at: Utc::now(),
            event: ClosureEvent::ClosureRejected {
                closure_id,
                item_id,
                reviewer: "reviewer-tongzhou".into(),
                reason: "照片不清".into(),
            },
        }
    }

    /// One pending request per item, as the unique index keeps it live: a second is refused until
    /// the first is decided; the item follows the ledger's events.
    #[test]
    fn one_pending_request_per_item_and_items_follow_the_ledger() {
        let mut fold = Fold::default();
        let item = Uuid::now_v7();
        fold.apply(Parsed::Ledger {
            at: Utc::now(),
            event: item_registered(item, "jiukeshu", None),
        })
        .unwrap();
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        fold.apply(requested(first, item)).unwrap();
        let again = fold.apply(requested(second, item)).unwrap_err();
        assert!(again.downcast_ref::<AlreadyPending>().is_some(), "{again}");
        fold.apply(rejected(first, item)).unwrap();
        fold.apply(requested(second, item)).unwrap();
        assert_eq!(fold.closures[&first].status, "rejected");
        assert_eq!(
            fold.closures[&first].reject_reason.as_deref(),
            Some("照片不清")
        );
        assert_eq!(fold.closures[&second].status, "pending");
        fold.apply(Parsed::Ledger {
            at: Utc::now(),
            event: ItemEvent::ItemAcknowledged {
                item_id: item,
                street: "jiukeshu".into(),
            },
        })
        .unwrap();
        assert_eq!(fold.items[&item].status, "acknowledged");
        // A ledger event about an item closure never learnt changes nothing.
        fold.apply(Parsed::Ledger {
            at: Utc::now(),
            event: ItemEvent::ItemAcknowledged {
                item_id: Uuid::now_v7(),
                street: "jiukeshu".into(),
            },
        })
        .unwrap();
        assert_eq!(fold.items.len(), 1);
    }
}
