//! intake's whole-log replay for a rebuild: its own events and the ledger's it applied, folded in
//! memory in apply order, the rows written with `COPY`. It must leave exactly what
//! [`crate::projector::project`] and [`crate::consumer::LedgerEvents`] leave event by event (the
//! rebuild test compares the two after a live run). The community directory is reference data and
//! is left alone.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use qingling_events::intake::{ComplaintEvent, ReturnReason, RoutedBy};
use qingling_events::ledger::{ItemEvent, WriteOffKind};
use qingling_events::Event;
use qingling_shared::rebuild;
use qingling_shared::replay::{copy_rows, fold_log, Csv, Logged};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::consumer::HANDLED;
use crate::domain::{month_of, Counters, MetricFlags, Status};

/// An event of the replay, parsed.
pub enum Parsed {
    Own {
        event_id: Uuid,
        complaint_id: Uuid,
        actor: String,
        at: DateTime<Utc>,
        event: ComplaintEvent,
    },
    Ledger {
        event_id: Uuid,
        at: DateTime<Utc>,
        event: ItemEvent,
    },
    /// Changes no projection (a type of a newer release, or a ledger event intake ignores).
    Nothing,
}

pub fn parse(l: Logged) -> anyhow::Result<Parsed> {
    if l.own {
        let complaint_id = l
            .stream
            .split_once('-')
            .and_then(|(_, id)| id.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("{} is not a complaint stream", l.stream))?;
        return Ok(
            match ComplaintEvent::from_stored(l.event_id, &l.event_type, &l.data)? {
                Some(event) => Parsed::Own {
                    event_id: l.event_id,
                    complaint_id,
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
                event_id: l.event_id,
                at: l.occurred_at,
                event,
            },
            None => Parsed::Nothing,
        },
    )
}

/// A complaint as its row in `complaints` will be.
#[derive(Debug, Clone, PartialEq)]
pub struct Complaint {
    pub complaint_id: Uuid,
    pub district: Arc<str>,
    pub street: Arc<str>,
    pub category: Arc<str>,
    pub urgency: &'static str,
    pub point_id: Uuid,
    /// JSON text.
    pub point: Box<str>,
    pub description: Box<str>,
    pub received_at: DateTime<Utc>,
    pub dispatched_at: DateTime<Utc>,
    pub respond_by: DateTime<Utc>,
    pub resolve_by: DateTime<Utc>,
    /// `received` until dispatched, then a [`Status`].
    pub status: &'static str,
    pub item_id: Option<Uuid>,
    pub created_by: Arc<str>,
    pub updated_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub month: Arc<str>,
    pub flags: MetricFlags,
    pub return_pending: bool,
}

/// A dispatch (派单) as its row in `dispatches` will be.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchRow {
    pub event_id: Uuid,
    pub complaint_id: Uuid,
    pub district: Arc<str>,
    pub month: Arc<str>,
    pub received_at: DateTime<Utc>,
    pub dispatched_at: DateTime<Utc>,
    pub street: Arc<str>,
    pub routed_by: &'static str,
    pub redispatch: bool,
    pub returned: bool,
    pub reason_code: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reveal {
    pub event_id: Uuid,
    pub complaint_id: Uuid,
    pub district: Arc<str>,
    pub street: Arc<str>,
    pub revealed_by: Arc<str>,
    pub at: DateTime<Utc>,
    pub month: Arc<str>,
}

/// (district, month, street).
type MetricKey = (Arc<str>, Arc<str>, Arc<str>);

/// A point's street: (district, street, when its latest item was registered).
type PointSeen = (Arc<str>, Arc<str>, DateTime<Utc>);

/// What the log folds into. Pure: events in, rows out.
#[derive(Debug, Default)]
pub struct Fold {
    pub complaints: HashMap<Uuid, Complaint>,
    /// The ledger's events in complaints' histories: (complaint, event, when).
    pub history: Vec<(Uuid, Uuid, DateTime<Utc>)>,
    pub metrics: HashMap<MetricKey, Counters>,
    pub reveals: Vec<Reveal>,
    /// (point, category) → the open item there.
    pub open_items: HashMap<(Uuid, Arc<str>), Uuid>,
    /// point → (district, street, registered at).
    pub point_streets: HashMap<Uuid, PointSeen>,
    pub dispatches: Vec<DispatchRow>,
    /// Each complaint's dispatches (indexes into `dispatches`).
    dispatches_of: HashMap<Uuid, Vec<usize>>,
    /// The complaints each item was ever set on (some may have left it since).
    on_item: HashMap<Uuid, Vec<Uuid>>,
    /// item → (point, category) it opened.
    item_point: HashMap<Uuid, (Uuid, Arc<str>)>,
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
            Parsed::Nothing => Ok(()),
            Parsed::Own {
                event_id,
                complaint_id,
                actor,
                at,
                event,
            } => self.own(event_id, complaint_id, &actor, at, event),
            Parsed::Ledger {
                event_id,
                at,
                event,
            } => self.ledger(event_id, at, event),
        }
    }

    fn complaint(&mut self, id: Uuid) -> anyhow::Result<&mut Complaint> {
        self.complaints
            .get_mut(&id)
            .ok_or_else(|| anyhow::anyhow!("complaint {id} is not known"))
    }

    /// As `store::update_metrics`: the complaint's flags (and street) change, and its part moves
    /// between the street counters.
    fn update_metrics(
        &mut self,
        id: Uuid,
        new_street: Option<Arc<str>>,
        change: impl FnOnce(&mut MetricFlags),
    ) -> anyhow::Result<()> {
        let c = self
            .complaints
            .get_mut(&id)
            .ok_or_else(|| anyhow::anyhow!("complaint {id} is not known"))?;
        let old = c.flags.clone();
        let mut new = old.clone();
        change(&mut new);
        let to = new_street.unwrap_or_else(|| c.street.clone());
        if old == new && to == c.street {
            return Ok(());
        }
        let from = (c.district.clone(), c.month.clone(), c.street.clone());
        let into = (c.district.clone(), c.month.clone(), to.clone());
        c.street = to;
        let (old_counters, new_counters) = (old.counters(), new.counters());
        c.flags = new;
        for (key, delta) in [
            (from, Counters::default().minus(&old_counters)),
            (into, new_counters),
        ] {
            if delta != Counters::default() {
                let m = self.metrics.entry(key).or_default();
                *m = m.plus(&delta);
            }
        }
        Ok(())
    }

    /// As `store::set_status`: the item is kept unless a new one is given.
    fn set_status(&mut self, id: Uuid, status: Status, item: Option<Uuid>, at: DateTime<Utc>) {
        let Some(c) = self.complaints.get_mut(&id) else {
            return;
        };
        c.status = status.as_str();
        c.updated_at = at;
        if let Some(item) = item {
            if c.item_id != Some(item) {
                c.item_id = Some(item);
                self.on_item.entry(item).or_default().push(id);
            }
        }
    }

    /// As `store::set_acknowledged`.
    fn set_acknowledged(&mut self, id: Uuid, at: DateTime<Utc>) -> anyhow::Result<()> {
        let c = self.complaint(id)?;
        c.acknowledged_at = Some(at);
        let on_time = at <= c.respond_by;
        self.update_metrics(id, None, |f| f.responded_on_time = on_time)
    }

    /// The complaints on an item now.
    fn complaints_on(&self, item: Uuid) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .on_item
            .get(&item)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| self.complaints.get(id).and_then(|c| c.item_id) == Some(item))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// As `store::complaints_for_update`: the named complaints and those on the item, with their
    /// status, in id order.
    fn for_update(&self, ids: &[Uuid], item: Option<Uuid>) -> Vec<(Uuid, Status)> {
        let mut all: Vec<Uuid> = ids.to_vec();
        if let Some(item) = item {
            all.extend(self.complaints_on(item));
        }
        all.sort_unstable();
        all.dedup();
        all.into_iter()
            .filter_map(|id| Some((id, Status::parse(self.complaints.get(&id)?.status)?)))
            .collect()
    }

    fn own(
        &mut self,
        event_id: Uuid,
        id: Uuid,
        actor: &str,
        at: DateTime<Utc>,
        event: ComplaintEvent,
    ) -> anyhow::Result<()> {
        match event {
            ComplaintEvent::ComplaintReceived(r) => {
                anyhow::ensure!(
                    !self.complaints.contains_key(&r.complaint_id),
                    "complaint {} received twice",
                    r.complaint_id
                );
                let c = Complaint {
                    complaint_id: r.complaint_id,
                    district: self.name(&r.district),
                    street: self.name(&r.street),
                    category: self.name(&r.category),
                    urgency: r.urgency.as_str(),
                    point_id: r.point_id,
                    point: r.point.to_string().into(),
                    description: r.description.into(),
                    received_at: r.received_at,
                    dispatched_at: r.received_at,
                    respond_by: r.received_at,
                    resolve_by: r.received_at,
                    status: "received",
                    item_id: None,
                    created_by: self.name(actor),
                    updated_at: at,
                    acknowledged_at: None,
                    month: self.name(&month_of(r.received_at)),
                    flags: MetricFlags::default(),
                    return_pending: false,
                };
                self.complaints.insert(r.complaint_id, c);
            }
            ComplaintEvent::ComplaintDispatched(d) => {
                let street = self.name(&d.street);
                self.update_metrics(id, Some(street.clone()), |f| {
                    *f = MetricFlags {
                        counted: true,
                        ..Default::default()
                    }
                })?;
                let c = self.complaint(id)?;
                c.status = Status::Dispatched.as_str();
                c.item_id = None;
                c.acknowledged_at = None;
                c.dispatched_at = d.dispatched_at;
                c.respond_by = d.respond_by;
                c.resolve_by = d.resolve_by;
                c.updated_at = d.dispatched_at;
                let row = DispatchRow {
                    event_id,
                    complaint_id: d.complaint_id,
                    district: self.name(&d.district),
                    month: self.name(&month_of(d.dispatched_at)),
                    received_at: d.received_at,
                    dispatched_at: d.dispatched_at,
                    street,
                    routed_by: d.routed_by.unwrap_or(RoutedBy::Operator).as_str(),
                    redispatch: d.redispatch,
                    returned: false,
                    reason_code: None,
                };
                self.dispatches_of
                    .entry(d.complaint_id)
                    .or_default()
                    .push(self.dispatches.len());
                self.dispatches.push(row);
            }
            ComplaintEvent::ComplaintReturned {
                street,
                reason_code,
                ..
            } => {
                let reason = reason_code.unwrap_or(ReturnReason::Other);
                self.record_return(id, &street, reason);
                self.set_status(id, Status::Returned, None, at);
                if let Some(c) = self.complaints.get_mut(&id) {
                    c.return_pending = true;
                }
                self.update_metrics(id, None, |f| f.counted = false)?;
            }
            ComplaintEvent::CallerRevealed { street, .. } => {
                if let Some(district) = self.complaints.get(&id).map(|c| c.district.clone()) {
                    let reveal = Reveal {
                        event_id,
                        complaint_id: id,
                        district,
                        street: self.name(&street),
                        revealed_by: self.name(actor),
                        at,
                        month: self.name(&month_of(at)),
                    };
                    self.reveals.push(reveal);
                }
            }
            ComplaintEvent::FollowUpRecorded { satisfaction, .. } => {
                self.set_status(id, Status::FollowedUp, None, at);
                self.update_metrics(id, None, |m| m.satisfaction = Some(satisfaction))?;
            }
        }
        Ok(())
    }

    /// As `store::routing::record_return`: the latest dispatch came back; a call routed wrong
    /// leaves its point's street.
    fn record_return(&mut self, id: Uuid, street: &str, reason: ReturnReason) {
        let Some(latest) = self.dispatches_of.get(&id).and_then(|ds| {
            ds.iter()
                .copied()
                .max_by_key(|n| self.dispatches[*n].dispatched_at)
        }) else {
            return;
        };
        let Some(point) = self.complaints.get(&id).map(|c| c.point_id) else {
            return;
        };
        let d = &mut self.dispatches[latest];
        d.returned = true;
        d.reason_code = Some(reason.as_str());
        if reason != ReturnReason::NotOurArea || d.routed_by == RoutedBy::Operator.as_str() {
            return;
        }
        if self
            .point_streets
            .get(&point)
            .is_some_and(|(_, s, _)| &**s == street)
        {
            self.point_streets.remove(&point);
        }
    }

    fn ledger(&mut self, event_id: Uuid, at: DateTime<Utc>, item: ItemEvent) -> anyhow::Result<()> {
        let item_id = item.item_id();
        match &item {
            ItemEvent::ItemRegistered(r) => {
                let key = (r.point_id, self.name(&r.category));
                self.open_items.insert(key.clone(), r.item_id);
                self.item_point.insert(r.item_id, key);
                let newer = self
                    .point_streets
                    .get(&r.point_id)
                    .is_none_or(|(_, _, seen)| *seen <= at);
                if newer {
                    let seen = (self.name(&r.district), self.name(&r.street), at);
                    self.point_streets.insert(r.point_id, seen);
                }
            }
            ItemEvent::ItemWrittenOff(_) => {
                if let Some(key) = self.item_point.remove(&item_id) {
                    if self.open_items.get(&key) == Some(&item_id) {
                        self.open_items.remove(&key);
                    }
                }
            }
            _ => {}
        }
        match &item {
            ItemEvent::ComplaintUnlinked { complaint_id, .. } => {
                for (id, _) in self.for_update(&[*complaint_id], None) {
                    self.history.push((id, event_id, at));
                    self.complaint(id)?.return_pending = false;
                }
                return Ok(());
            }
            ItemEvent::ComplaintReturnRefused {
                complaint_id,
                acknowledged_at,
                overdue,
                ..
            } => {
                for (id, status) in self.for_update(&[*complaint_id], None) {
                    self.history.push((id, event_id, at));
                    self.complaint(id)?.return_pending = false;
                    if status != Status::Returned {
                        continue;
                    }
                    self.set_status(id, Status::Registered, Some(item_id), at);
                    self.update_metrics(id, None, |f| f.counted = true)?;
                    if let Some(ack) = acknowledged_at {
                        self.set_acknowledged(id, *ack)?;
                    }
                    if !overdue.is_empty() {
                        self.update_metrics(id, None, |f| f.overdue = true)?;
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        let targets = match &item {
            ItemEvent::ItemRegistered(r) => match r.complaint_id {
                Some(c) => self.for_update(&[c], None),
                None => return Ok(()),
            },
            ItemEvent::ComplaintLinked { complaint_id, .. } => {
                self.for_update(&[*complaint_id], None)
            }
            ItemEvent::ItemWrittenOff(_)
            | ItemEvent::ItemAcknowledged { .. }
            | ItemEvent::ItemOverdue { .. } => self.for_update(&[], Some(item_id)),
            _ => return Ok(()),
        };
        for (id, status) in targets {
            self.history.push((id, event_id, at));
            if status == Status::Returned {
                if matches!(&item, ItemEvent::ItemWrittenOff(w) if w.kind == WriteOffKind::Returned)
                {
                    self.complaint(id)?.return_pending = false;
                }
                continue;
            }
            if let Some(next) = status.after_ledger_event(&item) {
                self.set_status(id, next, Some(item_id), at);
            }
            match &item {
                ItemEvent::ComplaintLinked { .. } => {
                    let earliest = self
                        .complaints_on(item_id)
                        .iter()
                        .filter_map(|c| self.complaints.get(c)?.acknowledged_at)
                        .min();
                    if let Some(ack) = earliest {
                        self.set_acknowledged(id, ack)?;
                    }
                }
                ItemEvent::ItemAcknowledged { .. } => self.set_acknowledged(id, at)?,
                ItemEvent::ItemOverdue { .. } => {
                    self.update_metrics(id, None, |f| f.overdue = true)?
                }
                ItemEvent::ItemWrittenOff(w) if w.kind == WriteOffKind::Returned => {
                    self.update_metrics(id, None, |f| f.counted = false)?
                }
                ItemEvent::ItemWrittenOff(_) => {
                    self.update_metrics(id, None, |f| f.resolved = true)?
                }
                _ => {}
            }
        }
        Ok(())
    }
}

const COMPLAINTS_COPY: &str = "copy complaints (complaint_id, district, street, category, urgency, point_id, point, description,
    received_at, dispatched_at, respond_by, resolve_by, status, item_id, created_by, updated_at, acknowledged_at, month,
    counted, responded_on_time, resolved, overdue, satisfaction, return_pending) from stdin (format csv, freeze)";
const HISTORY_COPY: &str =
    "copy complaint_history (complaint_id, event_id, at) from stdin (format csv, freeze)";
const METRICS_COPY: &str = "copy street_metrics (district, month, street, received, responded_on_time, resolved, followed_up,
    satisfied, basically_satisfied, dissatisfied, unknown, overdue) from stdin (format csv, freeze)";
const REVEALS_COPY: &str =
    "copy caller_reveals (event_id, complaint_id, district, street, revealed_by, at, month)
    from stdin (format csv, freeze)";
const OPEN_ITEMS_COPY: &str =
    "copy open_items (point_id, category, item_id) from stdin (format csv, freeze)";
const POINT_STREETS_COPY: &str =
    "copy point_streets (point_id, district, street, registered_at) from stdin (format csv, freeze)";
const DISPATCHES_COPY: &str =
    "copy dispatches (event_id, complaint_id, district, month, received_at, dispatched_at, street,
    routed_by, redispatch, returned, reason_code) from stdin (format csv, freeze)";

fn complaint_csv(o: &mut Csv, c: &Complaint) {
    o.uuid(c.complaint_id);
    o.text(&c.district);
    o.text(&c.street);
    o.text(&c.category);
    o.text(c.urgency);
    o.uuid(c.point_id);
    o.text(&c.point);
    o.text(&c.description);
    o.time(c.received_at);
    o.time(c.dispatched_at);
    o.time(c.respond_by);
    o.time(c.resolve_by);
    o.text(c.status);
    o.opt_uuid(c.item_id);
    o.text(&c.created_by);
    o.time(c.updated_at);
    o.opt_time(c.acknowledged_at);
    o.text(&c.month);
    o.bool(c.flags.counted);
    o.bool(c.flags.responded_on_time);
    o.bool(c.flags.resolved);
    o.bool(c.flags.overdue);
    o.opt_text(c.flags.satisfaction.map(|s| s.as_str()));
    o.bool(c.return_pending);
    o.end();
}

fn history_csv(o: &mut Csv, h: &(Uuid, Uuid, DateTime<Utc>)) {
    o.uuid(h.0);
    o.uuid(h.1);
    o.time(h.2);
    o.end();
}

fn metrics_csv(o: &mut Csv, (k, m): &(MetricKey, Counters)) {
    o.text(&k.0);
    o.text(&k.1);
    o.text(&k.2);
    for n in [
        m.received,
        m.responded_on_time,
        m.resolved,
        m.followed_up,
        m.satisfied,
        m.basically_satisfied,
        m.dissatisfied,
        m.unknown,
        m.overdue,
    ] {
        o.num(n);
    }
    o.end();
}

fn reveal_csv(o: &mut Csv, r: &Reveal) {
    o.uuid(r.event_id);
    o.uuid(r.complaint_id);
    o.text(&r.district);
    o.text(&r.street);
    o.text(&r.revealed_by);
    o.time(r.at);
    o.text(&r.month);
    o.end();
}

fn open_item_csv(o: &mut Csv, ((point, category), item): &((Uuid, Arc<str>), Uuid)) {
    o.uuid(*point);
    o.text(category);
    o.uuid(*item);
    o.end();
}

fn point_street_csv(o: &mut Csv, (point, (district, street, at)): &PointStreet) {
    o.uuid(*point);
    o.text(district);
    o.text(street);
    o.time(*at);
    o.end();
}

type PointStreet = (Uuid, PointSeen);

fn dispatch_csv(o: &mut Csv, d: &DispatchRow) {
    o.uuid(d.event_id);
    o.uuid(d.complaint_id);
    o.text(&d.district);
    o.text(&d.month);
    o.time(d.received_at);
    o.time(d.dispatched_at);
    o.text(&d.street);
    o.text(d.routed_by);
    o.bool(d.redispatch);
    o.bool(d.returned);
    o.opt_text(d.reason_code);
    o.end();
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
    let mut indexes = vec![];
    for table in [
        "complaints",
        "complaint_history",
        "caller_reveals",
        "open_items",
        "dispatches",
    ] {
        indexes.extend(rebuild::drop_secondary_indexes(c, table).await?);
    }
    let Fold {
        complaints,
        mut history,
        metrics,
        mut reveals,
        open_items,
        point_streets,
        mut dispatches,
        ..
    } = fold;
    let n_complaints = complaints.len();
    let mut complaints: Vec<Complaint> = complaints.into_values().collect();
    complaints.sort_unstable_by_key(|c| c.complaint_id);
    copy_rows(c, COMPLAINTS_COPY, complaints, complaint_csv).await?;
    // The history's key built once after the load, like the other indexes (in this transaction:
    // a failure drops nothing).
    sqlx::query("alter table complaint_history drop constraint complaint_history_pkey")
        .execute(&mut *c)
        .await?;
    indexes.push("alter table complaint_history add primary key (complaint_id, event_id)".into());
    history.sort_unstable_by_key(|h| (h.0, h.1));
    copy_rows(c, HISTORY_COPY, history, history_csv).await?;
    copy_rows(c, METRICS_COPY, metrics.into_iter().collect(), metrics_csv).await?;
    reveals.sort_unstable_by_key(|r| r.event_id);
    copy_rows(c, REVEALS_COPY, reveals, reveal_csv).await?;
    let mut open: Vec<_> = open_items.into_iter().collect();
    open.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    copy_rows(c, OPEN_ITEMS_COPY, open, open_item_csv).await?;
    let mut points: Vec<PointStreet> = point_streets.into_iter().collect();
    points.sort_unstable_by_key(|p| p.0);
    copy_rows(c, POINT_STREETS_COPY, points, point_street_csv).await?;
    dispatches.sort_unstable_by_key(|d| d.event_id);
    copy_rows(c, DISPATCHES_COPY, dispatches, dispatch_csv).await?;
    let rows_s = started.elapsed().as_secs_f64() - log_s;
    rebuild::build_indexes(c, indexes).await?;
    tracing::info!(
        own,
        foreign,
        complaints = n_complaints,
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
    use qingling_events::intake::{Received, Satisfaction, Urgency};
    use qingling_events::testing::{dispatched, item_registered};

    use super::*;

    fn own(id: Uuid, event: ComplaintEvent) -> Parsed {
        Parsed::Own {
            event_id: Uuid::now_v7(),
            complaint_id: id,
            actor: "operator-tongzhou".into(),
            at: Utc::now(),
            event,
        }
    }

    fn received(id: Uuid, point: Uuid) -> Parsed {
        own(
            id,
            ComplaintEvent::ComplaintReceived(Received {
                complaint_id: id,
                district: "tongzhou".into(),
                street: "jiukeshu".into(),
                category: "basement_illegal_residence".into(),
                urgency: Urgency::Normal,
                point_id: point,
                point: serde_json::json!({}),
                description: String::new(),
                received_at: Utc::now(),
            }),
        )
    }

    fn ledger(event: ItemEvent) -> Parsed {
        Parsed::Ledger {
            event_id: Uuid::now_v7(),
            at: Utc::now(),
            event,
        }
    }

    fn counters(fold: &Fold, street: &str) -> Counters {
        fold.metrics
            .iter()
            .filter(|(k, _)| &*k.2 == street)
            .fold(Counters::default(), |a, (_, c)| a.plus(c))
    }

    /// A complaint's part in the street counters moves with it: counted on dispatch, resolved on
    /// write-off, its satisfaction on follow-up; returned, it leaves its street's count, and a
    /// re-dispatch counts it for the new street.
    #[test]
    fn the_street_counters_follow_a_complaint() {
        let mut fold = Fold::default();
        let (id, point, item) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        fold.apply(received(id, point)).unwrap();
        let d = dispatched(id, "jiukeshu", point, Utc::now());
        fold.apply(own(id, ComplaintEvent::ComplaintDispatched(d)))
            .unwrap();
        assert_eq!(counters(&fold, "jiukeshu").received, 1);
        fold.apply(ledger(item_registered(item, "jiukeshu", Some(id))))
            .unwrap();
        assert_eq!(fold.complaints[&id].status, "registered");
        assert_eq!(fold.complaints[&id].item_id, Some(item));
        assert_eq!(fold.open_items.len(), 1);
        fold.apply(ledger(ItemEvent::ItemAcknowledged {
            item_id: item,
            street: "jiukeshu".into(),
        }))
        .unwrap();
        assert_eq!(counters(&fold, "jiukeshu").responded_on_time, 1);

        // Returned: no longer the street's; re-dispatched elsewhere, counted there afresh.
        fold.apply(own(
            id,
            ComplaintEvent::ComplaintReturned {
                complaint_id: id,
                street: "jiukeshu".into(),
                reason: "不属于本辖区".into(),
                reason_code: None,
            },
        ))
        .unwrap();
        assert_eq!(counters(&fold, "jiukeshu"), Counters::default());
        assert!(fold.complaints[&id].return_pending);
        assert!(fold.dispatches[0].returned);
        let mut again = dispatched(id, "yongshun", point, Utc::now());
        again.redispatch = true;
        fold.apply(own(id, ComplaintEvent::ComplaintDispatched(again)))
            .unwrap();
        assert_eq!(counters(&fold, "yongshun").received, 1);
        assert_eq!(fold.complaints[&id].item_id, None);
        let second = Uuid::now_v7();
        fold.apply(ledger(item_registered(second, "yongshun", Some(id))))
            .unwrap();
        fold.apply(ledger(ItemEvent::ItemWrittenOff(
            qingling_events::ledger::WrittenOff {
                item_id: second,
                district: "tongzhou".into(),
                street: "yongshun".into(),
                category: "basement_illegal_residence".into(),
                point_id: point,
                kind: WriteOffKind::Rectified,
                closure_id: None,
            },
        )))
        .unwrap();
        fold.apply(own(
            id,
            ComplaintEvent::FollowUpRecorded {
                complaint_id: id,
                satisfaction: Satisfaction::Satisfied,
                note: String::new(),
            },
        ))
        .unwrap();
        let c = counters(&fold, "yongshun");
        assert_eq!((c.received, c.resolved, c.satisfied), (1, 1, 1));
        assert_eq!(fold.complaints[&id].status, "followed_up");
        // The ledger's events are in the history: two registrations, an acknowledgement, the
        // write-off.
        assert_eq!(fold.history.len(), 4);
        assert_eq!(fold.dispatches.len(), 2);
    }
}
