//! Consuming other services' events without doubling.
//!
//! Each service has one durable JetStream consumer over the subjects of the services it listens to.
//! An event's effects and the record that it was applied (the source stream's version in
//! `consumed_streams`) commit in one transaction; the message is acked only after the commit. A
//! redelivered or republished event finds its version already applied and changes nothing. An event
//! that arrives before its predecessor in the same source stream is held (nak with delay) until the
//! predecessor has been applied.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::{FutureExt, StreamExt};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;

use crate::event::Envelope;
use crate::store::StoreError;

mod watchdog;

pub use watchdog::{received_contiguous, Watch};

/// A service's projection logic for foreign events. Runs inside the consumer's transaction.
pub trait Apply: Send + Sync + 'static {
    fn apply(
        &self,
        conn: &mut PgConnection,
        ev: &Envelope,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Applies several events in order, with the effects of applying them one by one; a handler
    /// may decide them together to spare statements. Each event's "applied" line carries its own
    /// span (correlation id); work done for several at once is logged outside them.
    fn apply_all(
        &self,
        conn: &mut PgConnection,
        events: &[&Envelope],
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async move {
            for ev in events {
                apply_logged(self, conn, ev).await?;
            }
            Ok(())
        }
    }

    /// Called after an applied event's transaction committed (e.g. to wake the relay).
    fn committed(&self) {}
}

/// The log line of an applied event, in the span from [`apply_span`].
pub fn applied(span: &tracing::Span) {
    span.in_scope(|| tracing::info!(target: "qingling::apply", "applied"));
}

/// [`Apply::apply`] for one event, in its span, with its log line.
pub async fn apply_logged<A: Apply + ?Sized>(
    handler: &A,
    conn: &mut PgConnection,
    ev: &Envelope,
) -> anyhow::Result<()> {
    let span = apply_span(ev);
    tracing::Instrument::instrument(handler.apply(conn, ev), span.clone()).await?;
    applied(&span);
    Ok(())
}

/// A stretch of a batch, for an [`Apply::apply_all`] that decides some events together.
#[derive(Debug, PartialEq)]
pub enum Run<'a> {
    /// Two or more consecutive events the handler takes together.
    Together(&'a [&'a Envelope]),
    Alone(&'a Envelope),
}

/// Splits `events`, in order, into maximal runs of events `together` accepts, and the rest.
pub fn runs<'a>(events: &'a [&'a Envelope], together: impl Fn(&Envelope) -> bool) -> Vec<Run<'a>> {
    let mut out = vec![];
    let mut rest = events;
    while let Some(first) = rest.first() {
        let n = rest.iter().take_while(|e| together(e)).count();
        if n > 1 {
            out.push(Run::Together(&rest[..n]));
            rest = &rest[n..];
        } else {
            out.push(Run::Alone(first));
            rest = &rest[1..];
        }
    }
    out
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
    source: &str,
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
        let span = apply_span(ev);
        match tracing::Instrument::instrument(handler.apply(&mut tx, ev), span.clone()).await {
            Ok(()) => applied(&span),
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
        record(&mut tx, source, ev).await?;
        tx.commit().await?;
        handler.committed();
        metrics::counter!("qingling_events_consumed_total", "event_type" => ev.event_type.clone())
            .increment(1);
        return Ok(Outcome::Applied);
    }
}

/// Most events a consumer applies in one transaction.
const BATCH: usize = 200;

/// Applies several events in one transaction, each exactly once (the same checks as
/// [`apply_once`]); any error rolls the whole batch back and the caller retries them one by one.
pub async fn apply_batch<A: Apply>(
    pool: &PgPool,
    handler: &A,
    events: &[(&str, &Envelope)],
) -> anyhow::Result<Vec<Outcome>> {
    let mut tx = pool.begin().await?;
    // Lock every stream's row up front, in one order: instances applying overlapping batches
    // then queue behind each other instead of deadlocking. Rows for new streams are created
    // (version 0 = nothing applied) in that same order.
    let mut streams: Vec<&str> = events.iter().map(|(_, ev)| ev.stream.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    sqlx::query(
        "insert into consumed_streams (stream, version)
         select s, 0 from unnest($1::text[]) s order by s on conflict do nothing",
    )
    .bind(&streams)
    .execute(&mut *tx)
    .await?;
    let locked: Vec<(String, i64)> = sqlx::query_as(
        "select stream, version from consumed_streams where stream = any($1) order by stream for update",
    )
    .bind(&streams)
    .fetch_all(&mut *tx)
    .await?;
    let locked: HashMap<String, i64> = locked.into_iter().collect();
    let mut versions: HashMap<&str, i64> = streams
        .iter()
        .filter_map(|s| Some((*s, *locked.get(*s)?)))
        .collect();
    let before = versions.clone();
    let mut outcomes = Vec::with_capacity(events.len());
    let mut inbox = Vec::with_capacity(events.len());
    let mut applied = 0;
    for &(source, ev) in events {
        let last = versions.get(ev.stream.as_str()).copied().unwrap_or(0);
        if ev.version <= last {
            versions.insert(&ev.stream, last);
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        if ev.version > last + 1 {
            versions.insert(&ev.stream, last);
            outcomes.push(Outcome::Early);
            continue;
        }
        versions.insert(&ev.stream, ev.version);
        outcomes.push(Outcome::Applied);
        inbox.push((source, ev));
        applied += 1;
    }
    let to_apply: Vec<&Envelope> = inbox.iter().map(|(_, ev)| *ev).collect();
    handler.apply_all(&mut tx, &to_apply).await?;
    // The bookkeeping of the whole batch in two statements. The streams' rows are locked, so
    // nobody else moved them; the inbox rows take their apply order after every effect of the
    // batch and before its commit, still under the row locks of what those effects changed.
    if applied > 0 {
        let moved: Vec<(&str, i64)> = streams
            .iter()
            .filter_map(|s| {
                let v = versions.get(s).copied()?;
                (Some(&v) != before.get(s)).then_some((*s, v))
            })
            .collect();
        let done = sqlx::query(
            "update consumed_streams c set version = m.version, applied_at = now()
             from unnest($1::text[], $2::bigint[]) as m(stream, version) where c.stream = m.stream",
        )
        .bind(moved.iter().map(|(s, _)| *s).collect::<Vec<_>>())
        .bind(moved.iter().map(|(_, v)| *v).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        anyhow::ensure!(
            done.rows_affected() == moved.len() as u64,
            "consumed streams vanished under their locks"
        );
        record_all(&mut tx, &inbox).await?;
    }
    tx.commit().await?;
    if applied > 0 {
        handler.committed();
    }
    for ((_, ev), o) in events.iter().zip(&outcomes) {
        if *o == Outcome::Applied {
            metrics::counter!("qingling_events_consumed_total", "event_type" => ev.event_type.clone()).increment(1);
        }
    }
    Ok(outcomes)
}

/// Logs made while applying an event carry its correlation id: one complaint can be followed
/// through every service's log.
pub fn apply_span(ev: &Envelope) -> tracing::Span {
    tracing::info_span!("apply", correlation_id = %ev.correlation_id, event_type = %ev.event_type, stream = %ev.stream)
}

/// [`record`] for several events, whose apply order follows the slice's.
async fn record_all(conn: &mut PgConnection, events: &[(&str, &Envelope)]) -> anyhow::Result<()> {
    let envelopes = events
        .iter()
        .map(|(_, ev)| serde_json::to_value(ev))
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(
        "insert into inbox (event_id, envelope, source, position)
         select i, e, s, p from unnest($1::uuid[], $2::jsonb[], $3::text[], $4::bigint[]) with ordinality as x(i, e, s, p, n)
         order by n",
    )
    .bind(events.iter().map(|(_, ev)| ev.event_id).collect::<Vec<_>>())
    .bind(envelopes)
    .bind(events.iter().map(|(s, _)| s.to_string()).collect::<Vec<_>>())
    .bind(events.iter().map(|(_, ev)| (ev.position > 0).then_some(ev.position)).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Keeps an applied event for rebuilds, with where it sits in its source's log (for the loss
/// watchdog, which all instances share).
async fn record(conn: &mut PgConnection, source: &str, ev: &Envelope) -> anyhow::Result<()> {
    sqlx::query("insert into inbox (event_id, envelope, source, position) values ($1, $2, $3, $4)")
        .bind(ev.event_id)
        .bind(serde_json::to_value(ev)?)
        .bind(source)
        .bind((ev.position > 0).then_some(ev.position))
        .execute(conn)
        .await?;
    Ok(())
}

pub struct Consumer<A> {
    pub pool: PgPool,
    pub js: jetstream::Context,
    pub prefix: String,
    pub replicas: usize,
    pub durable: String,
    /// The services whose events this consumer applies.
    pub sources: Vec<String>,
    pub handler: Arc<A>,
}

impl<A: Apply> Consumer<A> {
    /// Applies events until `shutdown`. Every instance of a service pulls from the same durable
    /// consumer, so each message goes to one of them; the loss watchdog runs on one instance only.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let watchdog = this.clone();
        tokio::spawn(crate::leader::lead(
            this.pool.clone(),
            "consumer-watchdog",
            shutdown.clone(),
            move |stop| watchdog.clone().heal_losses(stop),
        ));
        let mut backoff = Duration::from_millis(200);
        while !*shutdown.borrow() {
            match this.consume(&mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(consumer = %this.durable, error = %e, retry_in = ?backoff, "consumer interrupted");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn subjects(&self) -> Vec<String> {
        self.sources
            .iter()
            .map(|s| format!("{}.{s}.>", self.prefix))
            .collect()
    }

    async fn pull_consumer(&self) -> anyhow::Result<jetstream::consumer::PullConsumer> {
        // Creates the stream if it is gone (a broker that lost it): the watchdog heals the rest.
        let stream = crate::nats::ensure_stream(&self.js, &self.prefix, self.replicas).await?;
        stream
            .get_or_create_consumer(
                &self.durable,
                pull::Config {
                    durable_name: Some(self.durable.clone()),
                    filter_subjects: self.subjects(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    // A consumer killed mid-batch leaves its messages to be redelivered after this.
                    ack_wait: Duration::from_secs(10),
                    max_ack_pending: 1000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot create consumer {}: {e}", self.durable))
    }

    async fn consume(&self, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut messages = self
            .pull_consumer()
            .await?
            .stream()
            .max_messages_per_batch(200)
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await?;
        loop {
            let msg = tokio::select! {
                m = messages.next() => m,
                _ = shutdown.changed() => return Ok(()),
            };
            let first = match msg {
                None => anyhow::bail!("message stream ended"),
                Some(Err(e)) => anyhow::bail!("message stream error: {e}"),
                Some(Ok(m)) => m,
            };
            // Whatever else is already here joins the batch: one transaction for all of them.
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match messages.next().now_or_never() {
                    Some(Some(Ok(m))) => batch.push(m),
                    _ => break,
                }
            }
            let mut events = Vec::with_capacity(batch.len());
            for msg in batch {
                // Which source, and where in its log: to notice what the broker lost.
                let source = msg
                    .subject
                    .split('.')
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let position = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Qingling-Position"))
                    .and_then(|v| v.as_str().parse::<i64>().ok())
                    .unwrap_or(0);
                match serde_json::from_slice::<Envelope>(&msg.payload) {
                    // Only what came on a listened source's subject, for its own event type: a
                    // message put straight into this consumer's inbox, or an envelope whose type
                    // is not its subject's, is no event of that source.
                    Ok(ev)
                        if !self.sources.contains(&source)
                            || msg.subject.as_str()
                                != crate::nats::subject(&self.prefix, &source, &ev.event_type) =>
                    {
                        tracing::error!(subject = %msg.subject, event_type = %ev.event_type, "dropping an event that did not come on its source's subject");
                        msg.ack_with(AckKind::Term).await.ok();
                    }
                    Ok(mut ev) => {
                        ev.position = position;
                        events.push((msg, source, ev));
                    }
                    Err(e) => {
                        tracing::error!(subject = %msg.subject, error = %e, "dropping a message that is not an event envelope");
                        msg.ack_with(AckKind::Term).await.ok();
                    }
                }
            }
            let envelopes: Vec<(&str, &Envelope)> = events
                .iter()
                .map(|(_, source, ev)| (source.as_str(), ev))
                .collect();
            let outcomes = match apply_batch(&self.pool, self.handler.as_ref(), &envelopes).await {
                Ok(outcomes) => outcomes.into_iter().map(Ok).collect::<Vec<_>>(),
                // Something in the batch failed: take them one by one, so only the failing one waits.
                Err(e) => {
                    tracing::warn!(consumer = %self.durable, events = events.len(), error = %e, "batch failed; applying its events one by one");
                    let mut each = Vec::with_capacity(events.len());
                    for (_, source, ev) in &events {
                        each.push(apply_once(&self.pool, self.handler.as_ref(), source, ev).await);
                    }
                    each
                }
            };
            for ((msg, source, ev), outcome) in events.iter().zip(outcomes) {
                if matches!(outcome, Ok(Outcome::Duplicate)) && ev.position > 0 {
                    // Applied before it carried a position (an older version), or the copy a
                    // heal republished: the watchdog now knows this position was received.
                    sqlx::query("update inbox set source = $2, position = $3 where event_id = $1 and position is null")
                        .bind(ev.event_id)
                        .bind(source)
                        .bind(ev.position)
                        .execute(&self.pool)
                        .await
                        .ok();
                }
                match outcome {
                    Ok(Outcome::Applied | Outcome::Duplicate) => {
                        msg.ack()
                            .await
                            .map_err(|e| anyhow::anyhow!("ack failed: {e}"))?;
                    }
                    Ok(Outcome::Early) => {
                        tracing::debug!(stream = %ev.stream, version = ev.version, "holding an event until its predecessor arrives");
                        msg.ack_with(AckKind::Nak(Some(Duration::from_millis(200))))
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_splits_into_runs_and_lone_events_in_order() {
        let meta = crate::event::EventMeta::from_request("t", uuid::Uuid::now_v7());
        let evs: Vec<Envelope> = ["a", "a", "b", "a", "b", "b", "b", "a"]
            .iter()
            .map(|t| {
                let e = crate::event::NewEvent {
                    event_type: t.to_string(),
                    data: serde_json::json!({}),
                };
                crate::store::prepare("s-1", 0, &[e], &meta).remove(0)
            })
            .collect();
        let refs: Vec<&Envelope> = evs.iter().collect();
        let shape: Vec<String> = runs(&refs, |e| e.event_type == "a")
            .iter()
            .map(|r| match r {
                Run::Together(evs) => format!("{}×a", evs.len()),
                Run::Alone(ev) => ev.event_type.clone(),
            })
            .collect();
        assert_eq!(shape, ["2×a", "b", "a", "b", "b", "b", "a"]);
    }
}
