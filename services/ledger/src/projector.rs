//! The ledger's projections come from its own log alone (what it learned from intake and closure
//! became item events).

use qingling_shared::Envelope;
use sqlx::PgConnection;

use crate::domain::ItemEvent;
use crate::store;

pub struct Projector;

impl qingling_shared::rebuild::Projector for Projector {
    fn tables(&self) -> &'static [&'static str] {
        &["items", "journal", "zero_marks"]
    }

    async fn project_own(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        store::project_with(c, ev, &ItemEvent::from_envelope(ev)?, false).await?;
        Ok(())
    }

    async fn replay_all(
        &self,
        c: &mut PgConnection,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> anyhow::Result<Option<u64>> {
        Ok(Some(crate::replay::replay(c, progress).await?))
    }

    async fn finish(&self, c: &mut PgConnection) -> anyhow::Result<()> {
        store::recompute_zero_marks(c).await?;
        Ok(())
    }
}
