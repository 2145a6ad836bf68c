//! The outbox relay: publishes a service's log to JetStream in position order, after it is safe in
//! PostgreSQL. It resumes from its stored cursor after a crash and keeps retrying while NATS is down;
//! a republish after a crash is harmless (`Nats-Msg-Id` dedup, idempotent consumers).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use sqlx::PgPool;
use tokio::sync::{watch, Notify};

use crate::{nats, store};

const BATCH: i64 = 500;

#[derive(Clone)]
pub struct Relay {
    pub pool: PgPool,
    pub js: jetstream::Context,
    pub prefix: String,
    pub service: &'static str,
    /// Poked after every local commit so publishing starts at once instead of at the next poll.
    pub wake: Arc<Notify>,
}

impl Relay {
    /// Publishes until `shutdown`, and answers heal requests meanwhile. Run it on one instance at
    /// a time (see [`crate::leader`]): dropping the future stops both.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        tokio::join!(
            self.clone().answer_heal_requests(shutdown.clone()),
            self.publish_loop(shutdown)
        );
    }

    async fn publish_loop(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() {
                self.drain(Duration::from_secs(5)).await;
                return;
            }
            match self.publish_batch().await {
                Ok(0) => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        // Commits on other instances do not wake this one: poll often.
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(service = self.service, error = %e, retry_in = ?backoff, "relay cannot publish yet");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Answers consumers that missed events (the broker can lose acknowledged messages):
    /// `head` tells how far this log is published; `republish {"from": n}` publishes it again from
    /// position n, under fresh message ids so JetStream's de-duplication lets them through.
    async fn answer_heal_requests(self, mut shutdown: watch::Receiver<bool>) {
        let client = self.js.client();
        let subject = heal_subject(&self.prefix, self.service, "*");
        loop {
            let mut sub = match client
                .queue_subscribe(subject.clone(), "relay".into())
                .await
            {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                let msg = tokio::select! {
                    m = futures::StreamExt::next(&mut sub) => m,
                    _ = shutdown.changed() => return,
                };
                let Some(msg) = msg else { break };
                let Some(reply) = msg.reply.clone() else {
                    continue;
                };
                let answer = match msg.subject.rsplit('.').next() {
                    Some("head") => self
                        .published_head()
                        .await
                        .map(|head| serde_json::json!({"head": head})),
                    Some("republish") => {
                        let from = serde_json::from_slice::<serde_json::Value>(&msg.payload)
                            .ok()
                            .and_then(|v| v["from"].as_i64())
                            .unwrap_or(1);
                        self.republish(from)
                            .await
                            .map(|n| serde_json::json!({"republished": n}))
                    }
                    _ => continue,
                };
                let body = answer.unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}));
                client
                    .publish(reply, serde_json::to_vec(&body).unwrap_or_default().into())
                    .await
                    .ok();
            }
        }
    }

    async fn published_head(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("select position from relay_cursor")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Publishes again, in order, the events from `from` up to the published head.
    pub async fn republish(&self, from: i64) -> anyhow::Result<usize> {
        let head = self.published_head().await?;
        let mut after = from.max(1) - 1;
        let mut total = 0;
        let stamp = chrono::Utc::now().timestamp_millis();
        while after < head {
            let events = store::read_after(&mut *self.pool.acquire().await?, after, BATCH).await?;
            let events: Vec<_> = events.into_iter().filter(|e| e.position <= head).collect();
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            let mut acks = Vec::with_capacity(events.len());
            for ev in &events {
                let msg = PublishMessage::build()
                    .message_id(format!("{}:r{stamp}", ev.event_id))
                    .header("Qingling-Position", ev.position.to_string().as_str())
                    .payload(serde_json::to_vec(ev)?.into());
                acks.push(
                    self.js
                        .send_publish(
                            nats::subject(&self.prefix, self.service, &ev.event_type),
                            msg,
                        )
                        .await?,
                );
            }
            for ack in acks {
                ack.await?;
            }
            total += events.len();
            after = last;
        }
        if total > 0 {
            tracing::warn!(
                service = self.service,
                from,
                republished = total,
                "republished events a consumer missed"
            );
            metrics::counter!("qingling_events_republished_total").increment(total as u64);
        }
        Ok(total)
    }

    /// Publishes what is owed, within `limit`, before the process exits.
    async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, self.publish_batch()).await {
                Ok(Ok(0)) => return,
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => {
                    tracing::warn!(service = self.service, error = %e, "relay could not finish publishing before shutdown; it resumes at next start");
                    return;
                }
                Err(_) => break,
            }
        }
        tracing::warn!(
            service = self.service,
            "relay drain timed out; the rest is published at next start"
        );
    }

    /// Publishes the next batch after the cursor and advances the cursor; returns how many.
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        let client = self.js.client();
        if !nats::is_connected(&client) {
            anyhow::bail!("NATS is not connected");
        }
        nats::check_version(&client)?;
        let mut conn = self.pool.acquire().await?;
        let cursor: i64 = sqlx::query_scalar("select position from relay_cursor")
            .fetch_one(&mut *conn)
            .await?;
        let events = store::read_after(&mut conn, cursor, BATCH).await?;
        drop(conn);
        let Some(last) = events.last().map(|e| e.position) else {
            metrics::gauge!("qingling_relay_lag_events").set(0.0);
            return Ok(0);
        };
        // Pipelined: send the batch, then wait for every ack. One connection keeps them in order.
        let mut acks = Vec::with_capacity(events.len());
        for ev in &events {
            let msg = PublishMessage::build()
                .message_id(ev.event_id.to_string())
                .header("Qingling-Position", ev.position.to_string().as_str())
                .payload(serde_json::to_vec(ev)?.into());
            acks.push(
                self.js
                    .send_publish(
                        nats::subject(&self.prefix, self.service, &ev.event_type),
                        msg,
                    )
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
        sqlx::query("update relay_cursor set position = $1 where position < $1")
            .bind(last)
            .execute(&self.pool)
            .await?;
        for ev in &events {
            metrics::counter!("qingling_events_published_total", "event_type" => ev.event_type.clone()).increment(1);
        }
        let head: i64 = sqlx::query_scalar("select coalesce(max(position), 0) from events")
            .fetch_one(&self.pool)
            .await?;
        metrics::gauge!("qingling_relay_lag_events").set((head - last) as f64);
        Ok(events.len())
    }
}

/// Core-NATS subject of a relay's heal requests; outside `<prefix>.>` so the event stream does
/// not capture them.
pub fn heal_subject(prefix: &str, service: &str, verb: &str) -> String {
    format!("_qingling.{prefix}.relay.{service}.{verb}")
}
