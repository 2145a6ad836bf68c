//! intake follows the ledger: a complaint becomes `registered` when its item is on the ledger and
//! `written_off` when the item is written off.

use qingling_shared::consumer::Apply;
use qingling_shared::Envelope;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store;

pub struct LedgerEvents;

impl Apply for LedgerEvents {
    async fn apply(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        let item_id = ev
            .data
            .get("item_id")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<Uuid>().ok());
        let complaint_id = ev
            .data
            .get("complaint_id")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<Uuid>().ok());
        let (ids, by_item) = match ev.event_type.as_str() {
            "item_registered" | "complaint_linked" => {
                (complaint_id.into_iter().collect::<Vec<_>>(), None)
            }
            "item_written_off" => (vec![], item_id),
            _ => return Ok(()),
        };
        if ids.is_empty() && by_item.is_none() {
            return Ok(());
        }
        let kind = ev.data.get("kind").and_then(|v| v.as_str());
        for (id, status) in store::complaints_for_update(c, &ids, by_item).await? {
            store::insert_history(c, id, ev).await?;
            if let Some(next) = status.after_ledger_event(&ev.event_type, kind) {
                store::set_status(c, id, next, item_id, ev.occurred_at).await?;
            }
        }
        Ok(())
    }
}
