//! closure's projections of its own events; the same function serves live commands and rebuilds.

use qingling_shared::Envelope;
use sqlx::PgConnection;

use qingling_events::Event;

use crate::domain::{ClosureEvent, ClosureStatus};
use crate::store;

pub struct Projector;

/// A second pending request for one item (two racing requests; the unique index decided).
#[derive(Debug, thiserror::Error)]
#[error("item {0} already has a pending write-off request")]
pub struct AlreadyPending(pub uuid::Uuid);

impl qingling_shared::rebuild::Projector for Projector {
    fn tables(&self) -> &'static [&'static str] {
        &["closures", "items", "evidence"]
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
}

pub async fn project(c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
    // A type of a newer release (in a mixed deployment) changes nothing here.
    let Some(event) = ClosureEvent::from_envelope(ev)? else {
        return Ok(());
    };
    // A photo's stream is named by its hash, not by a request id.
    if let ClosureEvent::EvidenceUploaded(u) = &event {
        store::insert_evidence(c, u, &ev.actor, ev.occurred_at).await?;
        return Ok(());
    }
    let id = ev
        .stream_id()
        .ok_or_else(|| anyhow::anyhow!("{} is not a closure stream", ev.stream))?;
    match event {
        ClosureEvent::EvidenceUploaded(_) => {}
        ClosureEvent::ClosureRequested(r) => {
            if !store::insert_requested(c, &r, &ev.actor, ev.occurred_at).await? {
                return Err(AlreadyPending(r.item_id).into());
            }
        }
        ClosureEvent::ClosureApproved { note, .. } => {
            store::review(
                c,
                id,
                ClosureStatus::Approved,
                &ev.actor,
                ev.occurred_at,
                note.as_deref(),
                None,
            )
            .await?
        }
        ClosureEvent::ClosureRejected { reason, .. } => {
            store::review(
                c,
                id,
                ClosureStatus::Rejected,
                &ev.actor,
                ev.occurred_at,
                None,
                Some(&reason),
            )
            .await?
        }
    }
    Ok(())
}
