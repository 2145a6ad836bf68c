//! intake follows the ledger: a complaint becomes `registered` when its item is on the ledger,
//! `written_off` (or `returned`) when the item is written off; acknowledgements, overdue flags and
//! write-offs also set the complaint's part in its street's monthly metrics.

use qingling_shared::consumer::Apply;
use qingling_shared::Envelope;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::Status;
use crate::store;

pub struct LedgerEvents;

fn uuid_field(ev: &Envelope, name: &str) -> Option<Uuid> {
    ev.data
        .get(name)
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
}

impl Apply for LedgerEvents {
    async fn apply(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        let item_id = uuid_field(ev, "item_id");
        let complaint_id = uuid_field(ev, "complaint_id");
        let (ids, by_item) = match ev.event_type.as_str() {
            "item_registered" | "complaint_linked" => {
                (complaint_id.into_iter().collect::<Vec<_>>(), None)
            }
            "item_written_off" | "item_acknowledged" | "item_overdue" => (vec![], item_id),
            _ => return Ok(()),
        };
        if ids.is_empty() && by_item.is_none() {
            return Ok(());
        }
        let kind = ev.data.get("kind").and_then(|v| v.as_str());
        for (id, status) in store::complaints_for_update(c, &ids, by_item).await? {
            store::insert_history(c, id, ev).await?;
            if status == Status::Returned {
                // Back with the operator: the old item's news no longer concerns it.
                continue;
            }
            if let Some(next) = status.after_ledger_event(&ev.event_type, kind) {
                store::set_status(c, id, next, item_id, ev.occurred_at).await?;
            }
            match (ev.event_type.as_str(), kind) {
                ("complaint_linked", _) => {
                    // A repeat call joining an item already taken on was responded to in time.
                    if let Some(at) =
                        store::item_acknowledged_at(c, item_id.unwrap_or_default()).await?
                    {
                        store::set_acknowledged(c, id, at).await?;
                    }
                }
                ("item_acknowledged", _) => store::set_acknowledged(c, id, ev.occurred_at).await?,
                ("item_overdue", _) => {
                    store::update_metrics(c, id, None, |f| f.overdue = true).await?
                }
                ("item_written_off", Some("returned")) => {
                    store::update_metrics(c, id, None, |f| f.counted = false).await?
                }
                ("item_written_off", _) => {
                    store::update_metrics(c, id, None, |f| f.resolved = true).await?
                }
                _ => {}
            }
        }
        Ok(())
    }
}
