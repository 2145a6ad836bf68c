//! The ledger's projections come from its own log alone (what it learned from intake and closure
//! became item events). The journal is a view of the log and needs no rebuilding.

use qingling_events::Event;
use qingling_shared::Envelope;
use sqlx::PgConnection;

use crate::domain::ItemEvent;
use crate::store;

pub struct Projector;

impl qingling_shared::rebuild::Projector for Projector {
    fn tables(&self) -> &'static [&'static str] {
        &["items", "zero_marks", "street_tallies"]
    }

    async fn project_own(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        store::project(c, ev, &ItemEvent::from_own(ev)?).await?;
        Ok(())
    }

    async fn replay_all(
        &self,
        pool: &sqlx::PgPool,
        c: &mut PgConnection,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> anyhow::Result<Option<(u64, u64)>> {
        Ok(Some((crate::replay::replay(pool, c, progress).await?, 0)))
    }
}
