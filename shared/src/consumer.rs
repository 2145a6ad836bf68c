//! Consuming other services' events without doubling.
//!
//! Each service has one durable JetStream consumer over the subjects of the services it listens to.
//! An event's effects and the record that it was applied (the source stream's version in
//! `consumed_streams`) commit in one transaction; the message is acked only after the commit. A
//! redelivered or republished event finds its version already applied and changes nothing. An event
//! that arrives before its predecessor in the same source stream is held (nak with delay) until the
//! predecessor has been applied.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;

use crate::event::Envelope;
use crate::store::StoreError;

/// A service's projection logic for foreign events. Runs inside the consumer's transaction.
pub trait Apply: Send + Sync + 'static {
    fn apply(
        &self,
        conn: &mut PgConnection,
        ev: &Envelope,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Called after an applied event's transaction committed (e.g. to wake the relay).
    fn committed(&self) {}
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Already applied before: nothing changed.
    Duplicate,
    /// Its predecessor in the source stream has not been applied yet.
    Early,
}

/// Applies one event exactly once. Retries a few times when the handler's own append loses an
/// optimistic-concurrency race.
pub async fn apply_once<A: Apply>(
    pool: &PgPool,
    handler: &A,
    ev: &Envelope,
) -> anyhow::Result<Outcome> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = pool.begin().await?;
        let last: Option<i64> =
            sqlx::query_scalar("select version from consumed_streams where stream = $1 for update")
                .bind(&ev.stream)
                .fetch_optional(&mut *tx)
                .await?;
        let last = last.unwrap_or(0);
        if ev.version <= last {
            return Ok(Outcome::Duplicate);
        }
        if ev.version > last + 1 {
            return Ok(Outcome::Early);
        }
        match handler.apply(&mut tx, ev).await {
            Ok(()) => {}
            Err(e)
                if attempt < 5
                    && matches!(
                        e.downcast_ref::<StoreError>(),
                        Some(StoreError::Conflict { .. })
                    ) =>
            {
                drop(tx);
                continue;
            }
            Err(e) => return Err(e),
        }
        let done = sqlx::query(
            "insert into consumed_streams (stream, version) values ($1, $2)
             on conflict (stream) do update set version = excluded.version, applied_at = now()
             where consumed_streams.version = excluded.version - 1",
        )
        .bind(&ev.stream)
        .bind(ev.version)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // Another instance applied it first.
            return Ok(Outcome::Duplicate);
        }
        sqlx::query("insert into inbox (event_id, envelope) values ($1, $2)")
            .bind(ev.event_id)
            .bind(serde_json::to_value(ev)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        handler.committed();
        metrics::counter!("qingling_events_consumed_total", "event_type" => ev.event_type.clone())
            .increment(1);
        return Ok(Outcome::Applied);
    }
}

pub struct Consumer<A> {
    pub pool: PgPool,
    pub js: jetstream::Context,
    pub stream: String,
    pub durable: String,
    pub subjects: Vec<String>,
    pub handler: Arc<A>,
}

impl<A: Apply> Consumer<A> {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(200);
        while !*shutdown.borrow() {
            match self.consume(&mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(consumer = %self.durable, error = %e, retry_in = ?backoff, "consumer interrupted");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn consume(&self, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        let stream = self.js.get_stream(&self.stream).await?;
        let consumer: pull::Stream = stream
            .get_or_create_consumer(
                &self.durable,
                pull::Config {
                    durable_name: Some(self.durable.clone()),
                    filter_subjects: self.subjects.clone(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    // A consumer killed mid-batch leaves its messages to be redelivered after this.
                    ack_wait: Duration::from_secs(10),
                    max_ack_pending: 1000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot create consumer {}: {e}", self.durable))?
            .stream()
            .max_messages_per_batch(200)
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await?;
        let mut messages = consumer;
        loop {
            let msg = tokio::select! {
                m = messages.next() => m,
                _ = shutdown.changed() => return Ok(()),
            };
            let msg = match msg {
                None => anyhow::bail!("message stream ended"),
                Some(Err(e)) => anyhow::bail!("message stream error: {e}"),
                Some(Ok(m)) => m,
            };
            let ev: Envelope = match serde_json::from_slice(&msg.payload) {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::error!(subject = %msg.subject, error = %e, "dropping a message that is not an event envelope");
                    msg.ack_with(AckKind::Term).await.ok();
                    continue;
                }
            };
            match apply_once(&self.pool, self.handler.as_ref(), &ev).await {
                Ok(Outcome::Applied | Outcome::Duplicate) => {
                    msg.ack()
                        .await
                        .map_err(|e| anyhow::anyhow!("ack failed: {e}"))?;
                }
                Ok(Outcome::Early) => {
                    tracing::debug!(stream = %ev.stream, version = ev.version, "holding an event until its predecessor arrives");
                    msg.ack_with(AckKind::Nak(Some(Duration::from_millis(500))))
                        .await
                        .ok();
                }
                Err(e) => {
                    tracing::warn!(event_id = %ev.event_id, event_type = %ev.event_type, error = %e, "could not apply event; will retry");
                    msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await
                        .ok();
                }
            }
        }
    }
}
