//! The ledger reacts to intake (a dispatched complaint is registered, 上账, or linked to the open
//! item at its point) and to closure (a write-off request, its approval — 销账 — or rejection).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use qingling_shared::consumer::Apply;
use qingling_shared::{Envelope, EventMeta};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::app::{self, CommandError};
use crate::domain::{ItemEvent, Registered};
use crate::store;

/// How long after a write-off a new problem at the point counts as a rebound (防止反弹).
pub const REBOUND_WINDOW_DAYS: i64 = 90;

pub struct Events {
    pub relay_wake: Arc<Notify>,
}

#[derive(Deserialize)]
struct Dispatched {
    complaint_id: Uuid,
    district: String,
    street: String,
    category: String,
    #[serde(default = "normal")]
    urgency: String,
    point_id: Uuid,
    #[serde(default)]
    point: Value,
    #[serde(default)]
    description: String,
    respond_by: Option<DateTime<Utc>>,
    resolve_by: Option<DateTime<Utc>>,
}

fn normal() -> String {
    "normal".into()
}

#[derive(Deserialize)]
struct Returned {
    complaint_id: Uuid,
    street: String,
}

#[derive(Deserialize)]
struct ClosureData {
    closure_id: Uuid,
    item_id: Uuid,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    reason: String,
}

impl Apply for Events {
    async fn apply(&self, c: &mut PgConnection, ev: &Envelope) -> anyhow::Result<()> {
        let meta = EventMeta::caused_by(ev);
        let result = match ev.event_type.as_str() {
            "complaint_dispatched" => on_dispatched(c, ev, &meta).await,
            "complaint_returned" => {
                let d: Returned = ev.data_as()?;
                match store::open_item_of_complaint(c, d.complaint_id).await? {
                    Some(item_id) => {
                        app::execute(c, item_id, &meta, |i| i.returned(d.complaint_id, &d.street))
                            .await
                            .map(drop)
                    }
                    None => Ok(()),
                }
            }
            "closure_requested" => {
                let d: ClosureData = ev.data_as()?;
                app::execute(c, d.item_id, &meta, |i| {
                    i.closure_requested(d.closure_id, &d.outcome)
                })
                .await
                .map(drop)
            }
            "closure_approved" => {
                let d: ClosureData = ev.data_as()?;
                app::execute(c, d.item_id, &meta, |i| {
                    i.closure_approved(d.closure_id, Utc::now())
                })
                .await
                .map(drop)
            }
            "closure_rejected" => {
                let d: ClosureData = ev.data_as()?;
                app::execute(c, d.item_id, &meta, |i| {
                    i.closure_rejected(d.closure_id, &d.reason)
                })
                .await
                .map(drop)
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) => Ok(()),
            // The event does not fit the item's state (closure validated against an older view):
            // record it as consumed and say so, rather than retry forever.
            Err(CommandError::Domain(e)) => {
                tracing::warn!(event_id = %ev.event_id, event_type = %ev.event_type, "ignored: {e}");
                Ok(())
            }
            Err(CommandError::NotFound(id)) => {
                tracing::warn!(event_id = %ev.event_id, event_type = %ev.event_type, "ignored: no item {id}");
                Ok(())
            }
            Err(CommandError::Store(e)) => Err(e.into()),
            Err(CommandError::Other(e)) => Err(e),
        }
    }

    fn committed(&self) {
        self.relay_wake.notify_one();
    }
}

/// 上账, or a repeat complaint linked to the point's open item.
async fn on_dispatched(
    c: &mut PgConnection,
    ev: &Envelope,
    meta: &EventMeta,
) -> Result<(), CommandError> {
    let d: Dispatched = ev.data_as()?;
    if let Some(item_id) = store::open_item_at(c, d.point_id, &d.category).await? {
        app::execute(c, item_id, meta, |i| i.link(d.complaint_id)).await?;
        return Ok(());
    }
    let since = ev.occurred_at - chrono::Duration::days(REBOUND_WINDOW_DAYS);
    let rebound_of = store::recent_write_off_at(c, d.point_id, &d.category, since).await?;
    let item_id = Uuid::now_v7();
    let registered = ItemEvent::ItemRegistered(Registered {
        item_id,
        district: d.district,
        street: d.street,
        category: d.category,
        point_id: d.point_id,
        point: d.point,
        source: "complaint".into(),
        complaint_id: Some(d.complaint_id),
        urgency: d.urgency,
        description: d.description,
        respond_by: d.respond_by,
        resolve_by: d.resolve_by,
        rebound_of,
    });
    app::record(c, item_id, 0, &[registered], meta).await?;
    Ok(())
}
