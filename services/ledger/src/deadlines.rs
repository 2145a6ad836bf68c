//! 督查督办: the deadline watcher. Every tick it finds open items whose respond-by or resolve-by has
//! passed without a flag and records `item_overdue` for them. The decision is the item's own
//! (`Item::check_deadlines`), appended at the version it was read: when two ledger instances race,
//! one appends and the other's append conflicts, so each item and kind is flagged exactly once. At
//! start-up the first tick catches up on limits that passed while the service was down.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use qingling_shared::store::StoreError;
use qingling_shared::EventMeta;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::app::{self, CommandError};
use crate::store;

pub async fn run(
    pool: PgPool,
    relay_wake: Arc<Notify>,
    tick: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match sweep(&pool, &relay_wake).await {
            Ok(n) if n > 0 => tracing::info!(flagged = n, "items flagged overdue"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "deadline sweep failed; retrying next tick"),
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One pass: flags every item due now. Returns how many overdue events were recorded.
pub async fn sweep(pool: &PgPool, relay_wake: &Notify) -> anyhow::Result<usize> {
    let now = Utc::now();
    let due = store::items_past_deadline(&mut *pool.acquire().await?, now, 500).await?;
    let mut flagged = 0;
    for item_id in due {
        let meta = EventMeta::from_request("system", Uuid::now_v7());
        let mut tx = pool.begin().await?;
        match app::execute(&mut tx, item_id, &meta, |i| Ok(i.check_deadlines(now))).await {
            Ok(events) => {
                tx.commit().await?;
                flagged += events.len();
                metrics::counter!("qingling_items_overdue_total").increment(events.len() as u64);
            }
            // Another writer (or instance) got there first; the next tick decides again.
            Err(CommandError::Store(StoreError::Conflict { .. })) => continue,
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        }
    }
    if flagged > 0 {
        relay_wake.notify_one();
    }
    Ok(flagged)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{DateTime, Duration, SubsecRound};
    use qingling_events::testing::item_registered;

    use super::*;
    use crate::domain::{due_overdue, ItemEvent, ItemStatus, OverdueKind};

    /// The watcher's query picks exactly the items the domain's rule calls due, at the boundary
    /// (a limit equal to now is in time) and for every status and flag.
    #[tokio::test]
    async fn the_watchers_query_follows_the_deadline_rule() {
        let pool = qingling_shared::db::test_pool("ledger", crate::SPEC.migrations)
            .await
            .unwrap();
        let now: DateTime<Utc> = Utc::now().trunc_subsecs(6);
        let offsets = [-1, 0, 1].map(Duration::microseconds);
        let statuses = [
            ItemStatus::Registered,
            ItemStatus::Acknowledged,
            ItemStatus::ClosurePending,
            ItemStatus::WrittenOff,
        ];
        let flags: [&[OverdueKind]; 3] = [&[], &[OverdueKind::Respond], &[OverdueKind::Resolve]];
        let mut want = BTreeSet::new();
        let mut c = pool.acquire().await.unwrap();
        for status in statuses {
            for respond in offsets {
                for resolve in offsets {
                    for flagged in flags {
                        let item_id = Uuid::now_v7();
                        let (respond_by, resolve_by) = (Some(now + respond), Some(now + resolve));
                        let mut registered = item_registered(item_id, "jiukeshu", None);
                        if let ItemEvent::ItemRegistered(r) = &mut registered {
                            (r.respond_by, r.resolve_by) = (respond_by, resolve_by);
                        }
                        let meta = EventMeta::from_request("t", Uuid::now_v7());
                        app::record(&mut c, item_id, 0, &[registered], &meta)
                            .await
                            .unwrap();
                        sqlx::query(
                            "update items set status = $2, overdue = $3 where item_id = $1",
                        )
                        .bind(item_id)
                        .bind(status.as_str())
                        .bind(flagged.iter().map(|k| k.as_str()).collect::<Vec<_>>())
                        .execute(&mut *c)
                        .await
                        .unwrap();
                        if !due_overdue(status, respond_by, resolve_by, flagged, now).is_empty() {
                            want.insert(item_id);
                        }
                    }
                }
            }
        }
        let got: BTreeSet<Uuid> = store::items_past_deadline(&mut c, now, 1000)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert!(!want.is_empty() && want.len() < 108, "the cases are mixed");
        assert_eq!(got, want);
    }
}
