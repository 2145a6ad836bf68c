//! closure learns items from the ledger, to validate write-off requests against their state.

use qingling_events::ledger::{types, ItemEvent};
use qingling_events::Event;
use qingling_shared::consumer::{applied, apply_logged, apply_span, runs, Apply, Run};
use qingling_shared::Envelope;
use sqlx::PgConnection;

use crate::store;

pub struct LedgerEvents;

/// The ledger's event types closure acts on (its rebuild's replay reads the others as nothing).
pub(crate) const HANDLED: [&str; 5] = [
    types::ITEM_REGISTERED,
    types::ITEM_ACKNOWLEDGED,
    types::ITEM_CLOSURE_PENDING,
    types::ITEM_CLOSURE_REJECTED,
    types::ITEM_WRITTEN_OFF,
];

impl Apply for LedgerEvents {
    async fn apply(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        // Only the types closure acts on are parsed; any other cannot hold the consumer up.
        if !HANDLED.contains(&ev.event_type.as_str()) {
            return Ok(());
        }
        let Some(item) = ItemEvent::from_envelope(ev)? else {
            return Ok(());
        };
        let status = match &item {
            ItemEvent::ItemRegistered(r) => {
                store::learn_item(
                    c,
                    r.item_id,
                    &r.district,
                    &r.street,
                    &r.category,
                    ev.occurred_at,
                )
                .await?;
                return Ok(());
            }
            ItemEvent::ItemAcknowledged { .. } | ItemEvent::ItemClosureRejected { .. } => {
                "acknowledged"
            }
            ItemEvent::ItemClosurePending { .. } => "closure_pending",
            ItemEvent::ItemWrittenOff(_) => "written_off",
            _ => return Ok(()),
        };
        store::set_item_status(c, item.item_id(), status, ev.occurred_at).await?;
        Ok(())
    }

    /// Runs of `item_registered` are learnt in one statement.
    async fn apply_all(&self, c: &mut PgConnection, events: &[&Envelope]) -> anyhow::Result<()> {
        for run in runs(events, |e| e.event_type == types::ITEM_REGISTERED) {
            match run {
                Run::Together(evs) => {
                    let mut registered = Vec::with_capacity(evs.len());
                    for ev in evs {
                        if let ItemEvent::ItemRegistered(r) = ItemEvent::from_own(ev)? {
                            registered.push((r, ev.occurred_at));
                        }
                    }
                    let items: Vec<_> = registered
                        .iter()
                        .map(|(r, at)| {
                            (
                                r.item_id,
                                r.district.as_str(),
                                r.street.as_str(),
                                r.category.as_str(),
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
    use qingling_events::testing::item_registered;
    use qingling_shared::store::prepare;
    use qingling_shared::EventMeta;
    use uuid::Uuid;

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
                let event = item_registered(item_id, street, None).to_new_event();
                let stream = qingling_events::ledger::stream(item_id);
                prepare(&stream, 0, &[event], &meta).remove(0)
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
