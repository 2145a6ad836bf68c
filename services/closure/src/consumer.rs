//! closure learns items from the ledger, to validate write-off requests against their state.

use qingling_shared::consumer::Apply;
use qingling_shared::Envelope;
use serde::Deserialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store;

pub struct LedgerEvents;

#[derive(Deserialize)]
struct ItemRef {
    item_id: Uuid,
    #[serde(default)]
    district: String,
    #[serde(default)]
    street: String,
    #[serde(default)]
    category: String,
}

impl Apply for LedgerEvents {
    async fn apply(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        let status = match ev.event_type.as_str() {
            "item_registered" => {
                let d: ItemRef = ev.data_as()?;
                store::learn_item(
                    c,
                    d.item_id,
                    &d.district,
                    &d.street,
                    &d.category,
                    ev.occurred_at,
                )
                .await?;
                return Ok(());
            }
            "item_acknowledged" | "item_closure_rejected" => "acknowledged",
            "item_closure_pending" => "closure_pending",
            "item_written_off" => "written_off",
            _ => return Ok(()),
        };
        let d: ItemRef = ev.data_as()?;
        store::set_item_status(c, d.item_id, status, ev.occurred_at).await?;
        Ok(())
    }
}
