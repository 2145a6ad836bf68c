//! intake's projections of its own events; `project` serves live commands and rebuilds alike, and
//! registrations written in groups go through `project_registrations`, which leaves the same rows
//! (the rebuild test compares them).

use std::collections::BTreeMap;

use qingling_shared::Envelope;
use sqlx::PgConnection;

use crate::domain::{month_of, Dispatch, Dispatched, FollowUp, Received, Status};
use crate::store;

pub struct Projector;

impl qingling_shared::rebuild::Projector for Projector {
    fn tables(&self) -> &'static [&'static str] {
        &["complaints", "complaint_history", "street_metrics"]
    }

    async fn project_own(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        project(c, ev).await
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
                if received.event_type == "complaint_received"
                    && received.version == 1
                    && dispatched.event_type == "complaint_dispatched"
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
        anyhow::ensure!(
            received.event_type == "complaint_received"
                && dispatched.event_type == "complaint_dispatched",
            "a registration is received then dispatched"
        );
        parsed.push((
            received.data_as::<Received>()?,
            dispatched.data_as::<Dispatched>()?,
            received.actor.as_str(),
        ));
    }
    let rows: Vec<_> = parsed.iter().map(|(r, d, a)| (r, d, *a)).collect();
    store::insert_dispatched(c, &rows).await?;
    let history: Vec<_> = parsed
        .iter()
        .zip(regs)
        .flat_map(|((r, ..), events)| events.iter().map(|e| (r.complaint_id, e)))
        .collect();
    store::insert_histories(c, &history).await?;
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
    match ev.event_type.as_str() {
        "complaint_received" => {
            store::insert_received(c, &ev.data_as::<Received>()?, &ev.actor, at).await?
        }
        // The first dispatch and every re-dispatch: the complaint counts for this street afresh.
        "complaint_dispatched" => {
            let d: Dispatched = ev.data_as()?;
            let dispatch = Dispatch {
                dispatched_at: d.dispatched_at,
                respond_by: d.respond_by,
                resolve_by: d.resolve_by,
            };
            store::redispatch(c, id, &d.street, &dispatch).await?;
        }
        "complaint_returned" => {
            store::set_status(c, id, Status::Returned, None, at).await?;
            store::update_metrics(c, id, None, |f| f.counted = false).await?;
        }
        "follow_up_recorded" => {
            let f: FollowUp = ev.data_as()?;
            store::set_status(c, id, Status::FollowedUp, None, at).await?;
            store::update_metrics(c, id, None, |m| m.satisfaction = Some(f.satisfaction)).await?;
        }
        _ => {}
    }
    store::insert_history(c, id, ev).await?;
    Ok(())
}
