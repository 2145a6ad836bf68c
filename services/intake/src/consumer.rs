//! intake follows the ledger: a complaint becomes `registered` when its item is on the ledger,
//! `written_off` (or `returned`) when the item is written off; acknowledgements, overdue flags and
//! write-offs also set the complaint's part in its street's monthly metrics.

use std::collections::{HashMap, HashSet};

use qingling_events::ledger::{types, ItemEvent, WriteOffKind};
use qingling_events::Event;
use qingling_shared::consumer::{applied, apply_logged, apply_span, runs, Apply, Run};
use qingling_shared::Envelope;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::Status;
use crate::store;

pub struct LedgerEvents;

/// The ledger's event types intake acts on (its rebuild's replay reads the others as nothing).
pub(crate) const HANDLED: [&str; 7] = [
    types::ITEM_REGISTERED,
    types::COMPLAINT_LINKED,
    types::COMPLAINT_UNLINKED,
    types::COMPLAINT_RETURN_REFUSED,
    types::ITEM_WRITTEN_OFF,
    types::ITEM_ACKNOWLEDGED,
    types::ITEM_OVERDUE,
];

/// The complaint a ledger event names, if it names one.
fn complaint_of(e: &ItemEvent) -> Option<Uuid> {
    match e {
        ItemEvent::ItemRegistered(r) => r.complaint_id,
        ItemEvent::ComplaintLinked { complaint_id, .. } => Some(*complaint_id),
        _ => None,
    }
}

impl Apply for LedgerEvents {
    async fn apply(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        // Only the types intake acts on are parsed; any other cannot hold the consumer up.
        if !HANDLED.contains(&ev.event_type.as_str()) {
            return Ok(());
        }
        let Some(item) = ItemEvent::from_envelope(ev)? else {
            return Ok(());
        };
        let item_id = item.item_id();
        // Which points have an open item, whether or not a complaint of intake's is on it.
        match &item {
            ItemEvent::ItemRegistered(r) => {
                store::items_opened(c, &[(r.item_id, r.point_id, r.category.as_str())]).await?;
                store::routing::points_registered(c, &[point_of(r, ev)]).await?;
            }
            ItemEvent::ItemWrittenOff(_) => store::item_closed(c, item_id).await?,
            _ => {}
        }
        // The ledger's word on a return: taken (the complaint left the item) or refused.
        match &item {
            ItemEvent::ComplaintUnlinked { complaint_id, .. } => {
                for (id, _) in store::complaints_for_update(c, &[*complaint_id], None).await? {
                    store::insert_history(c, id, ev).await?;
                    store::set_return_pending(c, id, false).await?;
                }
                return Ok(());
            }
            ItemEvent::ComplaintReturnRefused {
                complaint_id,
                acknowledged_at,
                overdue,
                ..
            } => {
                for (id, status) in store::complaints_for_update(c, &[*complaint_id], None).await? {
                    store::insert_history(c, id, ev).await?;
                    store::set_return_pending(c, id, false).await?;
                    if status != Status::Returned {
                        continue;
                    }
                    // Back with the street, on its item, counted as before the return, with what
                    // the item went through meanwhile.
                    store::set_status(c, id, Status::Registered, Some(item_id), ev.occurred_at)
                        .await?;
                    store::update_metrics(c, id, None, |f| f.counted = true).await?;
                    if let Some(at) = acknowledged_at {
                        store::set_acknowledged(c, id, *at).await?;
                    }
                    if !overdue.is_empty() {
                        store::update_metrics(c, id, None, |f| f.overdue = true).await?;
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        // The complaints concerned: named by the event, or all those on the item.
        let (ids, by_item) = match &item {
            ItemEvent::ItemRegistered(_) | ItemEvent::ComplaintLinked { .. } => {
                (complaint_of(&item).into_iter().collect::<Vec<_>>(), None)
            }
            ItemEvent::ItemWrittenOff(_)
            | ItemEvent::ItemAcknowledged { .. }
            | ItemEvent::ItemOverdue { .. } => (vec![], Some(item_id)),
            _ => return Ok(()),
        };
        if ids.is_empty() && by_item.is_none() {
            return Ok(());
        }
        for (id, status) in store::complaints_for_update(c, &ids, by_item).await? {
            store::insert_history(c, id, ev).await?;
            if status == Status::Returned {
                // Back with the operator: the old item's news no longer concerns it, except
                // that a write-off as returned is the ledger taking the return.
                if matches!(&item, ItemEvent::ItemWrittenOff(w) if w.kind == WriteOffKind::Returned)
                {
                    store::set_return_pending(c, id, false).await?;
                }
                continue;
            }
            if let Some(next) = status.after_ledger_event(&item) {
                store::set_status(c, id, next, Some(item_id), ev.occurred_at).await?;
            }
            match &item {
                ItemEvent::ComplaintLinked { .. } => {
                    // A repeat call joining an item already taken on was responded to in time.
                    if let Some(at) = store::item_acknowledged_at(c, item_id).await? {
                        store::set_acknowledged(c, id, at).await?;
                    }
                }
                ItemEvent::ItemAcknowledged { .. } => {
                    store::set_acknowledged(c, id, ev.occurred_at).await?
                }
                ItemEvent::ItemOverdue { .. } => {
                    store::update_metrics(c, id, None, |f| f.overdue = true).await?
                }
                ItemEvent::ItemWrittenOff(w) if w.kind == WriteOffKind::Returned => {
                    store::update_metrics(c, id, None, |f| f.counted = false).await?
                }
                ItemEvent::ItemWrittenOff(_) => {
                    store::update_metrics(c, id, None, |f| f.resolved = true).await?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs of `item_registered` (a burst of registrations) take three statements for the lot.
    async fn apply_all(&self, c: &mut PgConnection, events: &[&Envelope]) -> anyhow::Result<()> {
        for run in runs(events, |e| e.event_type == types::ITEM_REGISTERED) {
            match run {
                Run::Together(evs) if registered_run(c, evs).await? => {}
                Run::Together(evs) => {
                    for ev in evs {
                        apply_logged(self, c, ev).await?;
                    }
                }
                Run::Alone(ev) => apply_logged(self, c, ev).await?,
            }
        }
        Ok(())
    }
}

/// A registered item's point, for routing: (point, district, street, community, when).
fn point_of<'a>(
    r: &'a qingling_events::ledger::Registered,
    ev: &Envelope,
) -> (
    Uuid,
    &'a str,
    &'a str,
    &'a str,
    chrono::DateTime<chrono::Utc>,
) {
    (
        r.point_id,
        r.district.as_str(),
        r.street.as_str(),
        r.point
            .get("community")
            .and_then(|v| v.as_str())
            .unwrap_or(""),
        ev.occurred_at,
    )
}

/// `item_registered` for several complaints, as [`LedgerEvents::apply`] does each; false (and
/// nothing done) when a complaint appears twice, which one by one must then decide.
async fn registered_run(c: &mut PgConnection, run: &[&Envelope]) -> anyhow::Result<bool> {
    let items = run
        .iter()
        .map(|ev| ItemEvent::from_own(ev))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ids: Vec<Uuid> = items.iter().filter_map(complaint_of).collect();
    if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
        return Ok(false);
    }
    let opened: Vec<(Uuid, Uuid, &str)> = items
        .iter()
        .filter_map(|i| match i {
            ItemEvent::ItemRegistered(r) => Some((r.item_id, r.point_id, r.category.as_str())),
            _ => None,
        })
        .collect();
    // Two items at one point in one statement would conflict with themselves: one by one then.
    let points: HashSet<_> = opened.iter().map(|o| (o.1, o.2)).collect();
    if points.len() != opened.len() {
        return Ok(false);
    }
    store::items_opened(c, &opened).await?;
    let points: Vec<_> = items
        .iter()
        .zip(run)
        .filter_map(|(i, ev)| match i {
            ItemEvent::ItemRegistered(r) => Some(point_of(r, ev)),
            _ => None,
        })
        .collect();
    store::routing::points_registered(c, &points).await?;
    let locked: HashMap<Uuid, Status> = store::complaints_for_update(c, &ids, None)
        .await?
        .into_iter()
        .collect();
    let mut history = Vec::with_capacity(run.len());
    let mut changes = Vec::with_capacity(run.len());
    for (ev, item) in run.iter().zip(&items) {
        let Some((id, status)) = complaint_of(item).and_then(|id| Some((id, *locked.get(&id)?)))
        else {
            continue;
        };
        history.push((id, *ev));
        if status == Status::Returned {
            continue;
        }
        if let Some(next) = status.after_ledger_event(item) {
            changes.push((id, next, Some(item.item_id()), ev.occurred_at));
        }
    }
    if !history.is_empty() {
        store::insert_histories(c, &history).await?;
    }
    if !changes.is_empty() {
        store::set_statuses(c, &changes).await?;
    }
    for ev in run {
        applied(&apply_span(ev));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use qingling_events::intake::{self, ComplaintEvent, Received, Urgency};
    use qingling_events::ledger;
    use qingling_shared::store::prepare;
    use qingling_shared::EventMeta;

    use super::*;

    async fn fresh_pool() -> qingling_shared::db::TestDb {
        qingling_shared::db::test_pool("intake", crate::SPEC.migrations)
            .await
            .unwrap()
    }

    /// A dispatched complaint's two events, as intake writes them.
    fn registration(id: Uuid) -> Vec<Envelope> {
        let now = Utc::now();
        let received = Received {
            complaint_id: id,
            district: "tongzhou".into(),
            street: "songzhuang".into(),
            category: "basement_illegal_residence".into(),
            urgency: Urgency::Normal,
            point_id: Uuid::now_v7(),
            point: serde_json::json!({}),
            description: String::new(),
            received_at: now,
        };
        let mut dispatched =
            qingling_events::testing::dispatched(id, "songzhuang", received.point_id, now);
        dispatched.point = serde_json::json!({});
        prepare(
            &intake::stream(id),
            0,
            &[
                ComplaintEvent::ComplaintReceived(received).to_new_event(),
                ComplaintEvent::ComplaintDispatched(dispatched).to_new_event(),
            ],
            &EventMeta::from_request("operator-tongzhou", Uuid::now_v7()),
        )
    }

    fn item_registered(complaint_id: Uuid, item_id: Uuid) -> Envelope {
        let event =
            qingling_events::testing::item_registered(item_id, "songzhuang", Some(complaint_id));
        let meta = EventMeta::from_request("operator-tongzhou", complaint_id);
        prepare(&ledger::stream(item_id), 0, &[event.to_new_event()], &meta).remove(0)
    }

    /// A run of registrations on the ledger, decided together: each complaint is registered
    /// with its item, a returned one stays returned, and every one keeps the event in its history.
    #[tokio::test]
    async fn a_run_of_items_registered_is_applied_as_one_by_one() {
        let pool = fresh_pool().await;
        let ids = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        let regs: Vec<Vec<Envelope>> = ids.iter().map(|id| registration(*id)).collect();
        let mut tx = pool.begin().await.unwrap();
        crate::projector::project_registrations(
            &mut tx,
            &regs.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        store::set_status(&mut tx, ids[1], Status::Returned, None, Utc::now())
            .await
            .unwrap();
        let items = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        let run: Vec<Envelope> = ids
            .iter()
            .zip(&items)
            .map(|(c, i)| item_registered(*c, *i))
            .collect();
        LedgerEvents
            .apply_all(&mut tx, &run.iter().collect::<Vec<_>>())
            .await
            .unwrap();
        for (n, id) in ids.iter().enumerate() {
            let (status, item): (String, Option<Uuid>) =
                sqlx::query_as("select status, item_id from complaints where complaint_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();

            let expected = match n {
                1 => ("returned".to_string(), None),
                _ => ("registered".to_string(), Some(items[n])),
            };
            assert_eq!((status, item), expected, "complaint {n}");
            let ledger_events: i64 = sqlx::query_scalar(
                "select count(*) from complaint_history where complaint_id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
            // item_registered; the complaint's own events are read from the log.
            assert_eq!(ledger_events, 1, "complaint {n}");
        }
    }
}
