//! The loss watchdog: notices events a source published that never arrived, and asks the
//! source to publish them again.

use super::*;

/// The highest position such that every position of `source`'s log up to it is in the inbox.
/// Shared by all instances (each receives only part of the messages), so it is read from the
/// database, starting from the last figure stored.
pub async fn received_contiguous(pool: &PgPool, source: &str) -> anyhow::Result<i64> {
    let mut contiguous: i64 =
        sqlx::query_scalar("select contiguous from source_progress where service = $1")
            .bind(source)
            .fetch_optional(pool)
            .await?
            .unwrap_or(0);
    let after: Vec<i64> = sqlx::query_scalar(
        "select position from inbox where source = $1 and position > $2 order by position limit 100000",
    )
    .bind(source)
    .bind(contiguous)
    .fetch_all(pool)
    .await?;
    for p in after {
        if p == contiguous + 1 {
            contiguous = p;
        } else if p > contiguous + 1 {
            break;
        }
    }
    sqlx::query(
        "insert into source_progress (service, contiguous) values ($1, $2)
         on conflict (service) do update set contiguous = greatest(source_progress.contiguous, excluded.contiguous)",
    )
    .bind(source)
    .bind(contiguous)
    .execute(pool)
    .await?;
    Ok(contiguous)
}

impl<A: Apply> Consumer<A> {
    /// Every two seconds, per source: if the source has published further than this service has
    /// received without a hole, the broker has nothing left to deliver, and the hole has not moved
    /// for two checks, the missing events were lost: ask the source's relay to publish them again.
    /// (Messages held back as early still count as pending acks, so acks are not waited for: a
    /// lost event with a delivered successor is healed too.) A heal that closes nothing (an event
    /// that can never be applied) is retried less and less often.
    pub(super) async fn heal_losses(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let client = self.js.client();
        let mut watches: HashMap<String, Watch> = HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            for source in &self.sources {
                let head = match tokio::time::timeout(
                    Duration::from_secs(2),
                    client.request(
                        crate::relay::heal_subject(&self.prefix, source, "head"),
                        "{}".into(),
                    ),
                )
                .await
                {
                    Ok(Ok(reply)) => serde_json::from_slice::<serde_json::Value>(&reply.payload)
                        .ok()
                        .and_then(|v| v["head"].as_i64()),
                    _ => None,
                };
                let Some(head) = head else { continue };
                let contiguous = match received_contiguous(&self.pool, source).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(source = %source, error = %e, "cannot read what was received");
                        continue;
                    }
                };
                metrics::gauge!("qingling_consumer_lag_events", "source" => source.clone())
                    .set((head - contiguous).max(0) as f64);
                let delivered_all = match self.pull_consumer().await {
                    Ok(mut c) => c.info().await.is_ok_and(|i| i.num_pending == 0),
                    Err(_) => false,
                };
                let now = tokio::time::Instant::now();
                if !watches
                    .entry(source.clone())
                    .or_insert_with(|| Watch::new(contiguous, now))
                    .should_heal(head, contiguous, delivered_all, now)
                {
                    continue;
                }
                tracing::warn!(source = %source, from = contiguous + 1, head, "events missing from the broker; asking the source to publish them again");
                let body = serde_json::json!({"from": contiguous + 1}).to_string();
                let _ = tokio::time::timeout(
                    Duration::from_secs(30),
                    client.request(
                        crate::relay::heal_subject(&self.prefix, source, "republish"),
                        body.into(),
                    ),
                )
                .await;
                metrics::counter!("qingling_consumer_heals_total", "source" => source.clone())
                    .increment(1);
            }
        }
    }
}

/// The loss watchdog's memory of one source.
#[derive(Debug)]
pub struct Watch {
    last: i64,
    stalled: u32,
    failed_heals: u32,
    next_heal: tokio::time::Instant,
}

impl Watch {
    pub fn new(contiguous: i64, now: tokio::time::Instant) -> Watch {
        Watch {
            last: contiguous,
            stalled: 0,
            failed_heals: 0,
            next_heal: now,
        }
    }

    /// One check: whether to ask for a republish now.
    pub fn should_heal(
        &mut self,
        head: i64,
        contiguous: i64,
        delivered_all: bool,
        now: tokio::time::Instant,
    ) -> bool {
        let moved = contiguous != self.last;
        self.last = contiguous;
        if moved || head <= contiguous {
            self.failed_heals = 0;
        }
        if head <= contiguous {
            self.stalled = 0;
            return false;
        }
        self.stalled = if delivered_all && !moved {
            self.stalled + 1
        } else {
            0
        };
        if self.stalled < 2 || now < self.next_heal {
            return false;
        }
        self.stalled = 0;
        self.next_heal = now + Duration::from_secs(2) * 2u32.pow(self.failed_heals.min(8));
        self.failed_heals += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hole_that_does_not_close_is_healed_less_and_less_often() {
        let t0 = tokio::time::Instant::now();
        let mut w = Watch::new(10, t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Caught up: nothing to do.
        assert!(!w.should_heal(10, 10, true, at(2)));
        // A hole, everything delivered: healed on the second still check.
        assert!(!w.should_heal(12, 10, true, at(4)));
        assert!(w.should_heal(12, 10, true, at(6)));
        // Still the same hole: the next heal waits 2 s, then 4 s, 8 s …
        assert!(!w.should_heal(12, 10, true, at(8)));
        assert!(w.should_heal(12, 10, true, at(10)));
        assert!(!w.should_heal(12, 10, true, at(12)));
        assert!(w.should_heal(12, 10, true, at(14)));
        assert!(!w.should_heal(12, 10, true, at(16)));
        assert!(!w.should_heal(12, 10, true, at(18)));
        assert!(!w.should_heal(12, 10, true, at(20)));
        assert!(w.should_heal(12, 10, true, at(22)));
        // Messages still pending at the broker, or progress: no heal.
        assert!(!w.should_heal(20, 11, true, at(100)));
        assert!(!w.should_heal(20, 11, false, at(102)));
        assert!(!w.should_heal(20, 11, false, at(104)));
        // Progress reset the back-off: healed again after two still checks.
        assert!(!w.should_heal(20, 11, true, at(106)));
        assert!(w.should_heal(20, 11, true, at(108)));
    }
}
