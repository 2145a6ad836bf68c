//! closure's projections of its own events; the same function serves live commands and rebuilds.

use qingling_shared::Envelope;
use sqlx::PgConnection;

use crate::domain::Requested;
use crate::store;

pub struct Projector;

/// A second pending request for one item (two racing requests; the unique index decided).
#[derive(Debug, thiserror::Error)]
#[error("item {0} already has a pending write-off request")]
pub struct AlreadyPending(pub uuid::Uuid);

impl qingling_shared::rebuild::Projector for Projector {
    fn tables(&self) -> &'static [&'static str] {
        &["closures", "items"]
    }

    async fn project_own(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        project(c, ev).await
    }
}

pub async fn project(c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
    let id = ev
        .stream_id()
        .ok_or_else(|| anyhow::anyhow!("{} is not a closure stream", ev.stream))?;
    let text = |k: &str| ev.data.get(k).and_then(|v| v.as_str()).map(str::to_string);
    match ev.event_type.as_str() {
        "closure_requested" => {
            let r: Requested = ev.data_as()?;
            if !store::insert_requested(c, &r, &ev.actor, ev.occurred_at).await? {
                return Err(AlreadyPending(r.item_id).into());
            }
        }
        "closure_approved" => {
            store::review(
                c,
                id,
                "approved",
                &ev.actor,
                ev.occurred_at,
                text("note").as_deref(),
                None,
            )
            .await?
        }
        "closure_rejected" => {
            store::review(
                c,
                id,
                "rejected",
                &ev.actor,
                ev.occurred_at,
                None,
                text("reason").as_deref(),
            )
            .await?
        }
        _ => {}
    }
    Ok(())
}
