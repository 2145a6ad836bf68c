//! intake's projections of its own events; the same function serves live commands and rebuilds.

use qingling_shared::Envelope;
use sqlx::PgConnection;

use crate::domain::{Dispatch, Dispatched, FollowUp, Received, Status};
use crate::store;

pub struct Projector;

impl qingling_shared::rebuild::Projector for Projector {
    fn tables(&self) -> &'static [&'static str] {
        &["complaints", "complaint_history", "street_metrics"]
    }

    async fn project_own(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        project(c, ev).await
    }
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
