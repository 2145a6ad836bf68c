//! intake's projections of its own events; `project` serves live commands and rebuilds alike, and
//! registrations written in groups go through `project_registrations`, which leaves the same rows
//! (the rebuild test compares them).

use std::collections::BTreeMap;

use qingling_events::intake::types::{COMPLAINT_DISPATCHED, COMPLAINT_RECEIVED};
use qingling_events::Event;
use qingling_shared::Envelope;
use sqlx::PgConnection;

use crate::domain::{month_of, ComplaintEvent, Dispatch, ReturnReason, Status};
use crate::store;

pub struct Projector;

impl qingling_shared::rebuild::Projector for Projector {
    fn tables(&self) -> &'static [&'static str] {
        &[
            "complaints",
            "complaint_history",
            "street_metrics",
            "caller_reveals",
            "open_items",
            "point_streets",
            "dispatches",
        ]
    }

    async fn project_own(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        project(c, ev).await
    }

    async fn replay_all(
        &self,
        pool: &sqlx::PgPool,
        c: &mut PgConnection,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> anyhow::Result<Option<(u64, u64)>> {
        Ok(Some(crate::replay::replay(pool, c, progress).await?))
    }

    /// New complaints (received then dispatched, versions 1 and 2 of their stream) together, the
    /// rest one by one, in order.
    async fn project_own_all(
        &self,
        c: &mut PgConnection,
        events: &[Envelope],
    ) -> anyhow::Result<()> {
        let mut pending: Vec<&[Envelope]> = vec![];
        let mut rest = events;
        while !rest.is_empty() {
            if let [received, dispatched, ..] = rest {
                if received.event_type == COMPLAINT_RECEIVED
                    && received.version == 1
                    && dispatched.event_type == COMPLAINT_DISPATCHED
                    && dispatched.stream == received.stream
                {
                    pending.push(&rest[..2]);
                    rest = &rest[2..];
                    continue;
                }
            }
            if !pending.is_empty() {
                project_registrations(c, &std::mem::take(&mut pending)).await?;
            }
            project(c, &rest[0]).await?;
            rest = &rest[1..];
        }
        if !pending.is_empty() {
            project_registrations(c, &pending).await?;
        }
        Ok(())
    }
}

/// New complaints, each as its `complaint_received` and `complaint_dispatched`: the same rows
/// [`project`] leaves after both, written a few statements for the lot (group commit).
pub async fn project_registrations(
    c: &mut PgConnection,
    regs: &[&[Envelope]],
) -> anyhow::Result<()> {
    let mut parsed = Vec::with_capacity(regs.len());
    for events in regs {
        let [received, dispatched] = events else {
            anyhow::bail!("a registration is two events, not {}", events.len());
        };
        let (ComplaintEvent::ComplaintReceived(r), ComplaintEvent::ComplaintDispatched(d)) = (
            ComplaintEvent::from_own(received)?,
            ComplaintEvent::from_own(dispatched)?,
        ) else {
            anyhow::bail!("a registration is received then dispatched");
        };
        parsed.push((r, d, received.actor.as_str()));
    }
    let rows: Vec<_> = parsed.iter().map(|(r, d, a)| (r, d, *a)).collect();
    store::insert_dispatched(c, &rows).await?;
    let dispatches: Vec<_> = parsed
        .iter()
        .zip(regs)
        .map(|((_, d, _), evs)| (evs[1].event_id, d))
        .collect();
    store::routing::record_dispatches(c, &dispatches).await?;
    // The shared counters last (in key order): their rows stay locked only until the commit.
    let mut counts: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    for (r, d, _) in &parsed {
        *counts
            .entry((
                r.district.clone(),
                month_of(r.received_at),
                d.street.clone(),
            ))
            .or_default() += 1;
    }
    store::add_received(c, &counts.into_iter().collect::<Vec<_>>()).await?;
    Ok(())
}

pub async fn project(c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
    let id = ev
        .stream_id()
        .ok_or_else(|| anyhow::anyhow!("{} is not a complaint stream", ev.stream))?;
    let at = ev.occurred_at;
    // A type of a newer release (in a mixed deployment) changes nothing (the history is the log's).
    match ComplaintEvent::from_envelope(ev)? {
        None => {}
        Some(ComplaintEvent::ComplaintReceived(r)) => {
            store::insert_received(c, &r, &ev.actor, at).await?
        }
        // The first dispatch and every re-dispatch: the complaint counts for this street afresh.
        Some(ComplaintEvent::ComplaintDispatched(d)) => {
            let dispatch = Dispatch {
                dispatched_at: d.dispatched_at,
                respond_by: d.respond_by,
                resolve_by: d.resolve_by,
            };
            store::redispatch(c, id, &d.street, &dispatch).await?;
            store::routing::record_dispatches(c, &[(ev.event_id, &d)]).await?;
        }
        Some(ComplaintEvent::ComplaintReturned {
            street,
            reason_code,
            ..
        }) => {
            store::routing::record_return(
                c,
                id,
                &street,
                reason_code.unwrap_or(ReturnReason::Other),
            )
            .await?;
            store::set_status(c, id, Status::Returned, None, at).await?;
            store::set_return_pending(c, id, true).await?;
            store::update_metrics(c, id, None, |f| f.counted = false).await?;
        }
        Some(ComplaintEvent::CallerRevealed { street, .. }) => {
            store::record_reveal(c, ev, id, &street).await?;
        }
        Some(ComplaintEvent::FollowUpRecorded { satisfaction, .. }) => {
            store::set_status(c, id, Status::FollowedUp, None, at).await?;
            store::update_metrics(c, id, None, |m| m.satisfaction = Some(satisfaction)).await?;
        }
    }
    Ok(())
}
