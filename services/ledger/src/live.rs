//! The live summary behind `GET /v1/ledger/stream`: one watcher per process polls the ledger's log
//! head (every change to the ledger is an event in it) and, when it moves, recomputes the summary of
//! each district somebody is watching and hands it to every stream of that district. A stream is a
//! channel receiver: 500 watchers cost 500 receivers, not 500 queries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qingling_shared::Orgs;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::summary;

type Key = (String, String);

pub struct Live {
    pool: PgPool,
    orgs: Orgs,
    channels: Mutex<HashMap<Key, watch::Sender<Option<Arc<Value>>>>>,
}

impl Live {
    pub fn new(pool: PgPool, orgs: Orgs) -> Arc<Self> {
        Arc::new(Self {
            pool,
            orgs,
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// The latest summaries of a district and category, as they change.
    pub fn subscribe(&self, district: &str, category: &str) -> watch::Receiver<Option<Arc<Value>>> {
        let mut channels = self.channels.lock().unwrap();
        channels
            .entry((district.to_string(), category.to_string()))
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    pub fn watchers(&self) -> usize {
        self.channels
            .lock()
            .unwrap()
            .values()
            .map(|s| s.receiver_count())
            .sum()
    }

    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut last_head = -1i64;
        loop {
            tokio::select! {
                // One cheap indexed query per tick per process, whatever the number of watchers.
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.changed() => return,
            }
            let head: i64 =
                match sqlx::query_scalar("select coalesce(max(position), 0) from events")
                    .fetch_one(&self.pool)
                    .await
                {
                    Ok(h) => h,
                    Err(_) => continue,
                };
            let keys: Vec<(Key, bool)> = {
                let mut channels = self.channels.lock().unwrap();
                channels.retain(|_, tx| tx.receiver_count() > 0);
                channels
                    .iter()
                    .map(|(k, tx)| (k.clone(), tx.borrow().is_none()))
                    .collect()
            };
            metrics::gauge!("qingling_live_streams").set(self.watchers() as f64);
            if head != last_head {
                self.export_open_counts().await;
            }
            for ((district, category), fresh) in keys {
                if head == last_head && !fresh {
                    continue;
                }
                let Ok(summary) =
                    summary::compute(&self.pool, &self.orgs, &district, &category).await
                else {
                    continue;
                };
                if let Some(tx) = self.channels.lock().unwrap().get(&(district, category)) {
                    tx.send_if_modified(|old| {
                        let same = old
                            .as_ref()
                            .is_some_and(|o| without_time(o) == without_time(&summary));
                        if !same {
                            *old = Some(Arc::new(summary));
                        }
                        !same
                    });
                }
            }
            last_head = head;
        }
    }
}

impl Live {
    /// `qingling_open_items{district, street}` for operators' dashboards and alerts.
    async fn export_open_counts(&self) {
        let Ok(rows) = sqlx::query_as::<_, (String, String, i64)>(
            "select district, street, sum(open)::bigint from zero_marks where street <> '' group by 1, 2",
        )
        .fetch_all(&self.pool)
        .await
        else {
            return;
        };
        for (district, street, open) in rows {
            metrics::gauge!("qingling_open_items", "district" => district, "street" => street)
                .set(open as f64);
        }
    }
}

fn without_time(v: &Value) -> Value {
    let mut v = v.clone();
    v["as_of"] = Value::Null;
    v
}
