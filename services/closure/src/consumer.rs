//! closure learns items from the ledger, to validate write-off requests against their state.

use qingling_shared::consumer::{applied, apply_span, Apply};
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
        let mut rest = events;
        while let Some(first) = rest.first() {
            let run = rest
                .iter()
                .take_while(|e| e.event_type == "item_registered")
                .count();
            if run > 1 {
                let items = rest[..run]
                    .iter()
                    .map(|ev| Ok((ev.data_as::<ItemRef>()?, ev.occurred_at)))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let items: Vec<_> = items
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
                for ev in &rest[..run] {
                    applied(&apply_span(ev));
                }
                rest = &rest[run..];
                continue;
            }
            let span = apply_span(first);
            tracing::Instrument::instrument(self.apply(c, first), span.clone()).await?;
            applied(&span);
            rest = &rest[1..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;

    /// A run of registrations is learnt at once; a redelivered one changes nothing.
    #[tokio::test]
    async fn a_run_of_items_registered_is_learnt_once() {
        let base = std::env::var("QINGLING_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let url = format!(
            "{}/qingling_closure_{}",
            base.trim_end_matches('/'),
            Uuid::now_v7().simple()
        );
        let pool = qingling_shared::db::connect(&url, "closure", 4)
            .await
            .unwrap();
        qingling_shared::db::migrate(&pool, "closure", crate::SPEC.migrations)
            .await
            .unwrap();
        let run: Vec<Envelope> = ["songzhuang", "yongshun", "songzhuang"]
            .iter()
            .map(|street| {
                let item_id = Uuid::now_v7();
                Envelope {
                    event_id: Uuid::now_v7(),
                    event_type: "item_registered".into(),
                    stream: format!("item-{item_id}"),
                    version: 1,
                    occurred_at: Utc::now(),
                    actor: "operator-tongzhou".into(),
                    correlation_id: item_id,
                    causation_id: item_id,
                    data: json!({"item_id": item_id, "district": "tongzhou", "street": street, "category": "basement_illegal_residence"}),
                    position: 0,
                }
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
