//! The ledger reacts to intake (a dispatched complaint is registered, 上账, or linked to the open
//! item at its point) and to closure (a write-off request, its approval — 销账 — or rejection).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use qingling_shared::consumer::{applied, apply_logged, apply_span, runs, Apply, Run};
use qingling_shared::{Envelope, EventMeta};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::app::{self, CommandError};
use crate::domain::{ItemEvent, Registered};
use crate::store;

/// How long after a write-off a new problem at the point counts as a rebound (防止反弹).
pub const REBOUND_WINDOW_DAYS: i64 = 90;

pub struct Events {
    pub relay_wake: Arc<Notify>,
}

#[derive(Deserialize)]
struct Dispatched {
    complaint_id: Uuid,
    district: String,
    street: String,
    category: String,
    #[serde(default = "normal")]
    urgency: String,
    point_id: Uuid,
    #[serde(default)]
    point: Value,
    #[serde(default)]
    description: String,
    respond_by: Option<DateTime<Utc>>,
    resolve_by: Option<DateTime<Utc>>,
}

fn normal() -> String {
    "normal".into()
}

#[derive(Deserialize)]
struct Returned {
    complaint_id: Uuid,
    street: String,
}

#[derive(Deserialize)]
struct ClosureData {
    closure_id: Uuid,
    item_id: Uuid,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    reason: String,
}

impl Apply for Events {
    async fn apply(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        let meta = EventMeta::caused_by(ev);
        let result = match ev.event_type.as_str() {
            "complaint_dispatched" => on_dispatched(c, ev, &meta).await,
            "complaint_returned" => {
                let d: Returned = ev.data_as()?;
                match store::open_item_of_complaint(c, d.complaint_id).await? {
                    Some(item_id) => {
                        app::execute(c, item_id, &meta, |i| i.returned(d.complaint_id, &d.street))
                            .await
                            .map(drop)
                    }
                    None => Ok(()),
                }
            }
            "closure_requested" => {
                let d: ClosureData = ev.data_as()?;
                app::execute(c, d.item_id, &meta, |i| {
                    i.closure_requested(d.closure_id, &d.outcome)
                })
                .await
                .map(drop)
            }
            "closure_approved" => {
                let d: ClosureData = ev.data_as()?;
                app::execute(c, d.item_id, &meta, |i| {
                    i.closure_approved(d.closure_id, Utc::now())
                })
                .await
                .map(drop)
            }
            "closure_rejected" => {
                let d: ClosureData = ev.data_as()?;
                app::execute(c, d.item_id, &meta, |i| {
                    i.closure_rejected(d.closure_id, &d.reason)
                })
                .await
                .map(drop)
            }
            _ => Ok(()),
        };
        settle(ev, result)
    }

    /// Runs of dispatched complaints are decided together: one lookup of their points, and the
    /// new items written in one append and a few multi-row statements. A repeat call (its point
    /// already has an open item, perhaps one registered earlier in the run) is linked as alone.
    async fn apply_all(&self, c: &mut PgConnection, events: &[&Envelope]) -> anyhow::Result<()> {
        let registration = |e: &Envelope| {
            matches!(
                e.event_type.as_str(),
                "complaint_dispatched" | "complaint_received"
            )
        };
        for run in runs(events, registration) {
            match run {
                Run::Together(evs) => register_run(c, evs).await?,
                Run::Alone(ev) => apply_logged(self, c, ev).await?,
            }
        }
        Ok(())
    }

    fn committed(&self) {
        self.relay_wake.notify_one();
    }
}

/// The effect of a command the event asked for. An event that does not fit the item's state
/// (closure validated against an older view) is recorded as consumed with a warning, rather than
/// retried forever.
fn settle(ev: &Envelope, result: Result<(), CommandError>) -> anyhow::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(CommandError::Domain(e)) => {
            tracing::warn!(event_id = %ev.event_id, event_type = %ev.event_type, "ignored: {e}");
            Ok(())
        }
        Err(CommandError::NotFound(id)) => {
            tracing::warn!(event_id = %ev.event_id, event_type = %ev.event_type, "ignored: no item {id}");
            Ok(())
        }
        Err(CommandError::Store(e)) => Err(e.into()),
        Err(CommandError::Other(e)) => Err(e),
    }
}

/// [`on_dispatched`] for a run of `complaint_dispatched` (and `complaint_received`, which the
/// ledger ignores), with the same outcome as one by one.
async fn register_run(c: &mut PgConnection, run: &[&Envelope]) -> anyhow::Result<()> {
    let mut dispatched = Vec::with_capacity(run.len());
    for ev in run {
        let d: Option<Dispatched> = match ev.event_type.as_str() {
            "complaint_dispatched" => Some(ev.data_as()?),
            _ => None,
        };
        dispatched.push((*ev, d));
    }
    let mut points: Vec<(Uuid, String)> = dispatched
        .iter()
        .filter_map(|(_, d)| d.as_ref().map(|d| (d.point_id, d.category.clone())))
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut states = if points.is_empty() {
        Default::default()
    } else {
        store::point_states(c, &points).await?
    };
    let mut new: Vec<(Registered, EventMeta)> = vec![];
    for (ev, d) in dispatched {
        let span = apply_span(ev);
        if let Some(d) = d {
            let state = states.entry((d.point_id, d.category.clone())).or_default();
            let meta = EventMeta::caused_by(ev);
            if let Some(item_id) = state.open {
                // The open item may be in `new`: write those first.
                app::record_new(c, &std::mem::take(&mut new)).await?;
                let linked = app::execute(c, item_id, &meta, |i| i.link(d.complaint_id)).await;
                span.in_scope(|| settle(ev, linked.map(drop)))?;
            } else {
                let since = ev.occurred_at - chrono::Duration::days(REBOUND_WINDOW_DAYS);
                let item_id = Uuid::now_v7();
                state.open = Some(item_id);
                let rebound_of = state
                    .last_write_off
                    .filter(|(_, at)| *at >= since)
                    .map(|(id, _)| id);
                new.push((registration(item_id, d, rebound_of), meta));
            }
        }
        applied(&span);
    }
    app::record_new(c, &new).await?;
    Ok(())
}

fn registration(item_id: Uuid, d: Dispatched, rebound_of: Option<Uuid>) -> Registered {
    Registered {
        item_id,
        district: d.district,
        street: d.street,
        category: d.category,
        point_id: d.point_id,
        point: d.point,
        source: "complaint".into(),
        complaint_id: Some(d.complaint_id),
        urgency: d.urgency,
        description: d.description,
        respond_by: d.respond_by,
        resolve_by: d.resolve_by,
        rebound_of,
    }
}

/// 上账, or a repeat complaint linked to the point's open item.
async fn on_dispatched(
    c: &mut PgConnection,
    ev: &Envelope,
    meta: &EventMeta,
) -> Result<(), CommandError> {
    let d: Dispatched = ev.data_as()?;
    if let Some(item_id) = store::open_item_at(c, d.point_id, &d.category).await? {
        app::execute(c, item_id, meta, |i| i.link(d.complaint_id)).await?;
        return Ok(());
    }
    let since = ev.occurred_at - chrono::Duration::days(REBOUND_WINDOW_DAYS);
    let rebound_of = store::recent_write_off_at(c, d.point_id, &d.category, since).await?;
    let item_id = Uuid::now_v7();
    let registered = ItemEvent::ItemRegistered(registration(item_id, d, rebound_of));
    app::record(c, item_id, 0, &[registered], meta).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use qingling_shared::NewEvent;
    use serde_json::json;

    use super::*;

    async fn fresh_pool() -> qingling_shared::db::TestDb {
        qingling_shared::db::test_pool("ledger", crate::SPEC.migrations)
            .await
            .unwrap()
    }

    fn dispatched(point_id: Uuid) -> Envelope {
        let complaint_id = Uuid::now_v7();
        let data = json!({
            "complaint_id": complaint_id, "district": "tongzhou", "street": "songzhuang",
            "category": "basement_illegal_residence", "urgency": "normal", "point_id": point_id,
            "point": {"community": "小堡村"}, "description": "",
        });
        let meta = EventMeta::from_request("operator-tongzhou", complaint_id);
        let stream = format!("complaint-{complaint_id}");
        qingling_shared::store::prepare(
            &stream,
            1,
            &[NewEvent::new("complaint_dispatched", data)],
            &meta,
        )
        .remove(0)
    }

    /// One run holding a rebound, a new point with two repeat calls right behind it, and another
    /// new point: decided together, with the outcome of one by one.
    #[tokio::test]
    async fn a_run_of_dispatches_links_repeat_calls_within_it_and_finds_rebounds() {
        let pool = fresh_pool().await;
        let handler = Events {
            relay_wake: Arc::new(Notify::new()),
        };
        let (p1, p2, p3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let old = dispatched(p1);
        let mut tx = pool.begin().await.unwrap();
        handler.apply_all(&mut tx, &[&old]).await.unwrap();
        let old_item: Uuid = sqlx::query_scalar("select item_id from items")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        sqlx::query(
            "update items set status = 'written_off', write_off_kind = 'rectified', written_off_at = now()",
        )
        .execute(&mut *tx)
        .await
        .unwrap();

        let run = [
            dispatched(p1),
            dispatched(p2),
            dispatched(p2),
            dispatched(p2),
            dispatched(p3),
        ];
        handler
            .apply_all(&mut tx, &run.iter().collect::<Vec<_>>())
            .await
            .unwrap();
        let complaint = |e: &Envelope| {
            e.data["complaint_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap()
        };
        let items: Vec<(Uuid, Vec<Uuid>, Option<Uuid>)> = sqlx::query_as(
            "select point_id, complaint_ids, rebound_of from items where status <> 'written_off' order by item_id",
        )
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        assert_eq!(
            items,
            vec![
                (p1, vec![complaint(&run[0])], Some(old_item)),
                (p2, run[1..4].iter().map(complaint).collect(), None),
                (p3, vec![complaint(&run[4])], None),
            ]
        );
        let events: Vec<String> =
            sqlx::query_scalar("select event_type from events order by position")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        assert_eq!(
            events,
            [
                "item_registered",
                "item_registered",
                "item_registered",
                "complaint_linked",
                "complaint_linked",
                "item_registered"
            ]
        );
        let open: i64 =
            sqlx::query_scalar("select open from zero_marks where street = 'songzhuang'")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        // The old item was written off behind the marks' back: 1 + 3.
        assert_eq!(open, 4);
    }
}
