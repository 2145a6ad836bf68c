//! The ledger reacts to intake (a dispatched complaint is registered, 上账, or linked to the open
//! item at its point) and to closure (a write-off request, its approval — 销账 — or rejection).

use std::sync::Arc;

use chrono::Utc;
use qingling_events::closure::{self, ClosureEvent};
use qingling_events::intake::{self, types, ComplaintEvent, Dispatched};
use qingling_events::Event;
use qingling_shared::consumer::{applied, apply_logged, apply_span, runs, Apply, Run};
use qingling_shared::{Envelope, EventMeta};
use sqlx::PgConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::app::{self, CommandError};
use crate::domain::{at_point, AtPoint, Cleared, ItemEvent, Registered, Source};
use crate::store;

pub struct Events {
    pub relay_wake: Arc<Notify>,
}

/// What the ledger does with an event of another service.
enum Foreign {
    Complaint(ComplaintEvent),
    Closure(ClosureEvent),
}

/// The types the ledger acts on; any other (received, follow-up, a newer release's) is not
/// even parsed, so nothing in it can hold the consumer up.
const HANDLED: [&str; 5] = [
    intake::types::COMPLAINT_DISPATCHED,
    intake::types::COMPLAINT_RETURNED,
    closure::types::CLOSURE_REQUESTED,
    closure::types::CLOSURE_APPROVED,
    closure::types::CLOSURE_REJECTED,
];

fn foreign(ev: &Envelope) -> anyhow::Result<Option<Foreign>> {
    if !HANDLED.contains(&ev.event_type.as_str()) {
        return Ok(None);
    }
    if let Some(e) = ComplaintEvent::from_envelope(ev)? {
        return Ok(Some(Foreign::Complaint(e)));
    }
    Ok(ClosureEvent::from_envelope(ev)?.map(Foreign::Closure))
}

impl Apply for Events {
    async fn apply(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        let meta = EventMeta::caused_by(ev);
        let result = match foreign(ev)? {
            Some(Foreign::Complaint(ComplaintEvent::ComplaintDispatched(d))) => {
                on_dispatched(c, ev, d, &meta).await
            }
            Some(Foreign::Complaint(ComplaintEvent::ComplaintReturned {
                complaint_id,
                street,
                ..
            })) => match store::open_item_of_complaint(c, complaint_id).await? {
                Some(item_id) => {
                    let acknowledged_at = store::get_item(c, item_id)
                        .await?
                        .and_then(|row| row.acknowledged_at);
                    app::execute(c, item_id, &meta, |i| {
                        i.returned(complaint_id, &street, acknowledged_at)
                    })
                    .await
                    .map(drop)
                }
                None => Ok(()),
            },
            Some(Foreign::Closure(ClosureEvent::ClosureRequested(r))) => {
                app::execute(c, r.item_id, &meta, |i| {
                    i.closure_requested(
                        r.closure_id,
                        r.outcome,
                        Cleared {
                            rooms: r.rooms_cleared,
                            partition_area_m2: r.partition_area_m2,
                        },
                    )
                })
                .await
                .map(drop)
            }
            Some(Foreign::Closure(ClosureEvent::ClosureApproved {
                closure_id,
                item_id,
                ..
            })) => app::execute(c, item_id, &meta, |i| {
                i.closure_approved(closure_id, Utc::now())
            })
            .await
            .map(drop),
            Some(Foreign::Closure(ClosureEvent::ClosureRejected {
                closure_id,
                item_id,
                reason,
                ..
            })) => app::execute(c, item_id, &meta, |i| {
                i.closure_rejected(closure_id, &reason)
            })
            .await
            .map(drop),
            Some(Foreign::Complaint(
                ComplaintEvent::ComplaintReceived(_)
                | ComplaintEvent::FollowUpRecorded { .. }
                | ComplaintEvent::CallerRevealed { .. },
            ))
            | Some(Foreign::Closure(ClosureEvent::EvidenceUploaded(_)))
            | None => Ok(()),
        };
        settle(ev, result)
    }

    /// Runs of dispatched complaints are decided together: one lookup of their points, and the
    /// new items written in one append and a few multi-row statements. A repeat call (its point
    /// already has an open item, perhaps one registered earlier in the run) is linked as alone.
    async fn apply_all(&self, c: &mut PgConnection, events: &[&Envelope]) -> anyhow::Result<()> {
        let registration = |e: &Envelope| {
            [types::COMPLAINT_DISPATCHED, types::COMPLAINT_RECEIVED]
                .contains(&e.event_type.as_str())
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
        let d = match foreign(ev)? {
            Some(Foreign::Complaint(ComplaintEvent::ComplaintDispatched(d))) => Some(d),
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
            match at_point(state, Source::Complaint, ev.occurred_at) {
                AtPoint::Open(item_id) => {
                    // The open item may be in `new`: write those first.
                    app::record_new(c, &std::mem::take(&mut new)).await?;
                    let linked = app::execute(c, item_id, &meta, |i| i.link(d.complaint_id)).await;
                    span.in_scope(|| settle(ev, linked.map(drop)))?;
                }
                AtPoint::Register { rebound_of } => {
                    let item_id = Uuid::now_v7();
                    state.registered(item_id);
                    new.push((registration(item_id, d, rebound_of), meta));
                }
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
        source: Source::Complaint,
        complaint_id: Some(d.complaint_id),
        urgency: d.urgency,
        description: d.description,
        respond_by: Some(d.respond_by),
        resolve_by: Some(d.resolve_by),
        rebound_of,
    }
}

/// 上账, or a repeat complaint linked to the point's open item.
async fn on_dispatched(
    c: &mut PgConnection,
    ev: &Envelope,
    d: Dispatched,
    meta: &EventMeta,
) -> Result<(), CommandError> {
    let state = store::point_state(c, d.point_id, &d.category).await?;
    match at_point(&state, Source::Complaint, ev.occurred_at) {
        AtPoint::Open(item_id) => {
            app::execute(c, item_id, meta, |i| i.link(d.complaint_id)).await?;
        }
        AtPoint::Register { rebound_of } => {
            let item_id = Uuid::now_v7();
            let registered = ItemEvent::ItemRegistered(registration(item_id, d, rebound_of));
            app::record(c, item_id, 0, &[registered], meta).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fresh_pool() -> qingling_shared::db::TestDb {
        qingling_shared::db::test_pool("ledger", crate::SPEC.migrations)
            .await
            .unwrap()
    }

    fn dispatched(point_id: Uuid) -> Envelope {
        let complaint_id = Uuid::now_v7();
        let event = ComplaintEvent::ComplaintDispatched(qingling_events::testing::dispatched(
            complaint_id,
            "songzhuang",
            point_id,
            Utc::now(),
        ));
        let meta = EventMeta::from_request("operator-tongzhou", complaint_id);
        qingling_shared::store::prepare(
            &qingling_events::intake::stream(complaint_id),
            1,
            &[event.to_new_event()],
            &meta,
        )
        .remove(0)
    }

    /// How the events are handed over: a run (the batch path) or one by one (the single path).
    #[derive(Clone, Copy)]
    enum Path {
        Run,
        OneByOne,
    }

    async fn deliver(c: &mut PgConnection, path: Path, events: &[Envelope]) {
        let handler = Events {
            relay_wake: Arc::new(Notify::new()),
        };
        match path {
            Path::Run => handler
                .apply_all(c, &events.iter().collect::<Vec<_>>())
                .await
                .unwrap(),
            Path::OneByOne => {
                for ev in events {
                    handler.apply(c, ev).await.unwrap();
                }
            }
        }
    }

    /// A rebound, a new point with two repeat calls right behind it, and another new point: the
    /// same items and events whichever path they take.
    async fn repeat_calls_link_and_rebounds_are_found(path: Path) {
        let pool = fresh_pool().await;
        let (p1, p2, p3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut tx = pool.begin().await.unwrap();
        deliver(&mut tx, path, &[dispatched(p1)]).await;
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
        deliver(&mut tx, path, &run).await;
        let complaint = |e: &Envelope| match ComplaintEvent::from_envelope(e) {
            Ok(Some(c)) => c.complaint_id(),
            other => panic!("{other:?}"),
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
        use qingling_events::ledger::types::{COMPLAINT_LINKED, ITEM_REGISTERED};
        assert_eq!(
            events,
            [
                ITEM_REGISTERED,
                ITEM_REGISTERED,
                ITEM_REGISTERED,
                COMPLAINT_LINKED,
                COMPLAINT_LINKED,
                ITEM_REGISTERED
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

    #[tokio::test]
    async fn a_run_of_dispatches_links_repeat_calls_within_it_and_finds_rebounds() {
        repeat_calls_link_and_rebounds_are_found(Path::Run).await;
    }

    #[tokio::test]
    async fn dispatches_one_by_one_link_repeat_calls_and_find_rebounds() {
        repeat_calls_link_and_rebounds_are_found(Path::OneByOne).await;
    }

    /// A newer release's event type, and a type the ledger does not act on even with data it
    /// could not parse, are consumed without effect: they cannot hold the consumer up.
    #[tokio::test]
    async fn types_the_ledger_does_not_act_on_are_passed_over() {
        let pool = fresh_pool().await;
        let meta = EventMeta::from_request("operator-tongzhou", Uuid::now_v7());
        let odd = |event_type: &str| {
            let e = qingling_shared::NewEvent {
                event_type: event_type.to_string(),
                data: serde_json::json!({"complaint_id": "not an id"}),
            };
            qingling_shared::store::prepare(&intake::stream(Uuid::now_v7()), 2, &[e], &meta)
                .remove(0)
        };
        let events = [
            odd("complaint_escalated"),
            odd(intake::types::FOLLOW_UP_RECORDED),
            odd(intake::types::COMPLAINT_RECEIVED),
        ];
        let mut tx = pool.begin().await.unwrap();
        for path in [Path::Run, Path::OneByOne] {
            deliver(&mut tx, path, &events).await;
        }
        let written: i64 = sqlx::query_scalar("select count(*) from events")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(written, 0);
        // A type it acts on, malformed, is an error (retried, not silently dropped).
        let handler = Events {
            relay_wake: Arc::new(Notify::new()),
        };
        assert!(handler
            .apply(&mut tx, &odd(intake::types::COMPLAINT_DISPATCHED))
            .await
            .is_err());
    }
}
