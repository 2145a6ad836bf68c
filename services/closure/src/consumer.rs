//! closure learns items from the ledger, to validate write-off requests against their state.

use qingling_shared::consumer::{applied, apply_logged, apply_span, runs, Apply, Run};
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

    /// Runs of `item_registered` are learnt in one statement.
    async fn apply_all(&self, c: &mut PgConnection, events: &[&Envelope]) -> anyhow::Result<()> {
        for run in runs(events, |e| e.event_type == "item_registered") {
            match run {
                Run::Together(evs) => {
                    let refs = evs
                        .iter()
                        .map(|ev| Ok((ev.data_as::<ItemRef>()?, ev.occurred_at)))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let items: Vec<_> = refs
                        .iter()
                        .map(|(d, at)| {
                            (
                                d.item_id,
                                d.district.as_str(),
                                d.street.as_str(),
                                d.category.as_str(),
                                *at,
                            )
                        })
                        .collect();
                    store::learn_items(c, &items).await?;
                    for ev in evs {
                        applied(&apply_span(ev));
                    }
                }
                Run::Alone(ev) => apply_logged(self, c, ev).await?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use qingling_shared::store::prepare;
    use qingling_shared::{EventMeta, NewEvent};
    use serde_json::json;

    use super::*;

    /// A run of registrations is learnt at once; a redelivered one changes nothing.
    #[tokio::test]
    async fn a_run_of_items_registered_is_learnt_once() {
        let pool = qingling_shared::db::test_pool("closure", crate::SPEC.migrations)
            .await
            .unwrap();
        let meta = EventMeta::from_request("operator-tongzhou", Uuid::now_v7());
        let run: Vec<Envelope> = ["songzhuang", "yongshun", "songzhuang"]
            .iter()
            .map(|street| {
                let item_id = Uuid::now_v7();
                let data = json!({"item_id": item_id, "district": "tongzhou", "street": street, "category": "basement_illegal_residence"});
                let stream = format!("item-{item_id}");
                prepare(&stream, 0, &[NewEvent::new("item_registered", data)], &meta).remove(0)
            })
            .collect();
        let mut tx = pool.begin().await.unwrap();
        let mut refs: Vec<&Envelope> = run.iter().collect();
        refs.push(&run[0]);
        LedgerEvents.apply_all(&mut tx, &refs).await.unwrap();
        let rows: Vec<(Uuid, String, String)> =
            sqlx::query_as("select item_id, street, status from items order by item_id")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        let expected: Vec<(Uuid, String, String)> = run
            .iter()
            .map(|e| {
                let street = e.data["street"].as_str().unwrap().to_string();
                (e.stream_id().unwrap(), street, "registered".to_string())
            })
            .collect();
        assert_eq!(rows, expected);
    }
}
