//! The event store: one `events` table per service schema, with a gap-free global `position` and a
//! per-stream `version`.
//!
//! Appends take a transaction-scoped advisory lock for the service's log, so positions are assigned
//! and committed strictly in order: a reader of "everything after position N" can never skip a
//! transaction that commits late. Callers append as the last step of their transaction to keep the
//! lock short.

use chrono::{SubsecRound, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::event::{Envelope, EventMeta, NewEvent};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("concurrency conflict on {stream}: expected version {expected}, found {actual}")]
    Conflict {
        stream: String,
        expected: i64,
        actual: i64,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("corrupt event: {0}")]
    Corrupt(anyhow::Error),
}

/// Advisory-lock class for "append to this service's log"; the key is the schema's hash.
const APPEND_LOCK: &str = "select pg_advisory_xact_lock(7100, hashtext(current_schema()))";

/// Appends `events` to `stream`, which must be at `expected_version` (0 for a new stream).
/// Runs inside the caller's transaction; nothing is visible until it commits.
pub async fn append(
    conn: &mut PgConnection,
    stream: &str,
    expected_version: i64,
    events: &[NewEvent],
    meta: &EventMeta,
) -> Result<Vec<Envelope>, StoreError> {
    let mut envelopes = prepare(stream, expected_version, events, meta);
    write(conn, &mut envelopes).await?;
    Ok(envelopes)
}

/// The envelopes `events` will have once written after `expected_version` (positions still 0).
/// Lets a caller project first and write last, so the log's lock is held only for the write.
pub fn prepare(
    stream: &str,
    expected_version: i64,
    events: &[NewEvent],
    meta: &EventMeta,
) -> Vec<Envelope> {
    // PostgreSQL keeps microseconds: the envelopes equal what a later read gives.
    let now = Utc::now().trunc_subsecs(6);
    events
        .iter()
        .enumerate()
        .map(|(i, e)| Envelope {
            event_id: Uuid::now_v7(),
            event_type: e.event_type.clone(),
            stream: stream.into(),
            version: expected_version + 1 + i as i64,
            occurred_at: now,
            actor: meta.actor.clone(),
            actor_name: meta.actor_name.clone(),
            correlation_id: meta.correlation_id,
            causation_id: meta.causation_id,
            data: e.data.clone(),
            position: 0,
        })
        .collect()
}

/// Writes prepared envelopes — of one stream or several, each stream's events consecutive —
/// checking every stream's version and assigning positions, in one statement under the log's
/// lock. On a conflict nothing may be kept: the caller's transaction must roll back.
pub async fn write(conn: &mut PgConnection, envelopes: &mut [Envelope]) -> Result<(), StoreError> {
    if envelopes.is_empty() {
        return Ok(());
    }
    // Each event carries the version its stream must be at before this write.
    let mut expected = Vec::with_capacity(envelopes.len());
    for (i, e) in envelopes.iter().enumerate() {
        let first_of_stream = i == 0 || envelopes[i - 1].stream != e.stream;
        expected.push(if first_of_stream {
            e.version - 1
        } else {
            expected[i - 1]
        });
    }
    sqlx::query(APPEND_LOCK).execute(&mut *conn).await?;
    let col = |f: fn(&Envelope) -> String| envelopes.iter().map(f).collect::<Vec<_>>();
    // The check reads the log as it was before this statement (a statement does not see its own
    // rows), so a stream's second event is checked against the same version as its first.
    let written: Vec<(i64, Uuid)> = sqlx::query_as(
        "insert into events (position, event_id, stream, version, event_type, occurred_at, actor, correlation_id, causation_id, data, actor_name)
         select (select coalesce(max(position), 0) from events) + e.n, e.event_id, e.stream, e.version, e.event_type,
                e.occurred_at, e.actor, e.correlation_id, e.causation_id, e.data, e.actor_name
         from unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[], $6::text[], $7::uuid[], $8::uuid[], $9::jsonb[], $10::bigint[], $11::text[])
              with ordinality as e(event_id, stream, version, event_type, occurred_at, actor, correlation_id, causation_id, data, expected, actor_name, n)
         where (select coalesce(max(version), 0) from events x where x.stream = e.stream) = e.expected
         order by e.n
         returning position, event_id",
    )
    .bind(envelopes.iter().map(|e| e.event_id).collect::<Vec<_>>())
    .bind(col(|e| e.stream.clone()))
    .bind(envelopes.iter().map(|e| e.version).collect::<Vec<_>>())
    .bind(col(|e| e.event_type.clone()))
    .bind(envelopes.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
    .bind(col(|e| e.actor.clone()))
    .bind(envelopes.iter().map(|e| e.correlation_id).collect::<Vec<_>>())
    .bind(envelopes.iter().map(|e| e.causation_id).collect::<Vec<_>>())
    .bind(envelopes.iter().map(|e| e.data.clone()).collect::<Vec<_>>())
    .bind(&expected)
    .bind(envelopes.iter().map(|e| e.actor_name.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| match &e {
        // Backstop: the lock makes this unreachable within one schema, but never trust that
        // silently. (Several streams: which one is in the database's error.)
        sqlx::Error::Database(db)
            if db.is_unique_violation() && envelopes.iter().all(|e| e.stream == envelopes[0].stream) =>
        {
            StoreError::Conflict {
                stream: envelopes[0].stream.clone(),
                expected: expected[0],
                actual: expected[0] + 1,
            }
        }
        _ => StoreError::Database(e),
    })?;
    if written.len() != envelopes.len() {
        // A stream whose events were refused was not at its expected version.
        let refused = envelopes
            .iter()
            .zip(&expected)
            .find(|(e, _)| !written.iter().any(|(_, id)| *id == e.event_id));
        let (stream, expected) = match refused {
            Some((e, x)) => (e.stream.clone(), *x),
            None => (envelopes[0].stream.clone(), expected[0]),
        };
        let actual = stream_version(conn, &stream).await?;
        return Err(StoreError::Conflict {
            stream,
            expected,
            actual,
        });
    }
    let mut sorted: Vec<i64> = written.into_iter().map(|(p, _)| p).collect();
    sorted.sort_unstable();
    for (e, p) in envelopes.iter_mut().zip(sorted) {
        e.position = p;
        // Counted when written (a transaction rolled back later still counts; published does not).
        metrics::counter!("qingling_events_appended_total", "event_type" => e.event_type.clone())
            .increment(1);
    }
    Ok(())
}

fn row_to_envelope(r: sqlx::postgres::PgRow) -> Result<Envelope, sqlx::Error> {
    Ok(Envelope {
        position: r.try_get("position")?,
        event_id: r.try_get("event_id")?,
        stream: r.try_get("stream")?,
        version: r.try_get("version")?,
        event_type: r.try_get("event_type")?,
        occurred_at: r.try_get("occurred_at")?,
        actor: r.try_get("actor")?,
        actor_name: r.try_get("actor_name")?,
        correlation_id: r.try_get("correlation_id")?,
        causation_id: r.try_get("causation_id")?,
        data: r.try_get("data")?,
    })
}

/// Every event of one stream, in version order.
pub async fn read_stream(
    conn: &mut PgConnection,
    stream: &str,
) -> Result<Vec<Envelope>, StoreError> {
    let rows = sqlx::query(
        "select position, event_id, stream, version, event_type, occurred_at, actor, actor_name, correlation_id, causation_id, data
         from events where stream = $1 order by version",
    ).bind(stream).fetch_all(&mut *conn).await?;
    Ok(rows
        .into_iter()
        .map(row_to_envelope)
        .collect::<Result<_, _>>()?)
}

/// Up to `limit` events after global `position`, in order.
pub async fn read_after(
    conn: &mut PgConnection,
    position: i64,
    limit: i64,
) -> Result<Vec<Envelope>, StoreError> {
    let rows = sqlx::query(
        "select position, event_id, stream, version, event_type, occurred_at, actor, actor_name, correlation_id, causation_id, data
         from events where position > $1 order by position limit $2",
    ).bind(position).bind(limit).fetch_all(&mut *conn).await?;
    Ok(rows
        .into_iter()
        .map(row_to_envelope)
        .collect::<Result<_, _>>()?)
}

/// The current version of a stream (0 when it has no events).
pub async fn stream_version(conn: &mut PgConnection, stream: &str) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("select coalesce(max(version), 0) from events where stream = $1")
            .bind(stream)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// The highest position stored (0 when empty).
pub async fn head(conn: &mut PgConnection) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("select coalesce(max(position), 0) from events")
            .fetch_one(&mut *conn)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use sqlx::PgPool;

    use super::*;

    async fn fresh_pool() -> crate::db::TestDb {
        crate::db::test_pool("teststore", &[]).await.unwrap()
    }

    fn meta() -> EventMeta {
        EventMeta::from_request("tester", Uuid::now_v7())
    }

    fn ev(n: i64) -> NewEvent {
        // The store does not read what it keeps: any type will do.
        NewEvent {
            event_type: "thing_happened".into(),
            data: json!({ "n": n }),
        }
    }

    async fn append_one(
        pool: &PgPool,
        stream: &str,
        expected: i64,
        n: i64,
    ) -> Result<Vec<Envelope>, StoreError> {
        let mut tx = pool.begin().await?;
        let out = append(&mut tx, stream, expected, &[ev(n)], &meta()).await?;
        tx.commit().await?;
        Ok(out)
    }

    #[tokio::test]
    async fn appends_a_batch_with_versions_and_positions() {
        let pool = fresh_pool().await;
        let mut tx = pool.begin().await.unwrap();
        let out = append(&mut tx, "thing-1", 0, &[ev(1), ev(2), ev(3)], &meta())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            out.iter()
                .map(|e| (e.version, e.position))
                .collect::<Vec<_>>(),
            vec![(1, 1), (2, 2), (3, 3)]
        );
        let mut c = pool.acquire().await.unwrap();
        let read = read_stream(&mut c, "thing-1").await.unwrap();
        assert_eq!(read, out);
        assert_eq!(read[2].data, json!({"n": 3}));
        assert!(read_stream(&mut c, "thing-2").await.unwrap().is_empty());
    }

    /// Group commit: several streams in one write; one stale stream refuses the lot.
    #[tokio::test]
    async fn one_write_appends_several_streams_and_one_stale_stream_refuses_them_all() {
        let pool = fresh_pool().await;
        append_one(&pool, "thing-old", 0, 0).await.unwrap();
        let m = meta();
        let mut batch = prepare("thing-a", 0, &[ev(1), ev(2)], &m);
        batch.extend(prepare("thing-b", 0, &[ev(3)], &m));
        let mut tx = pool.begin().await.unwrap();
        write(&mut tx, &mut batch).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            batch
                .iter()
                .map(|e| (e.stream.as_str(), e.version, e.position))
                .collect::<Vec<_>>(),
            vec![("thing-a", 1, 2), ("thing-a", 2, 3), ("thing-b", 1, 4)]
        );

        let mut stale = prepare("thing-c", 0, &[ev(4)], &m);
        stale.extend(prepare("thing-old", 0, &[ev(5)], &m));
        let mut tx = pool.begin().await.unwrap();
        let err = write(&mut tx, &mut stale).await.unwrap_err();
        drop(tx);
        assert!(
            matches!(&err, StoreError::Conflict { stream, expected: 0, actual: 1 } if stream == "thing-old"),
            "{err:?}"
        );
        let mut c = pool.acquire().await.unwrap();
        assert!(read_stream(&mut c, "thing-c").await.unwrap().is_empty());
        assert_eq!(head(&mut c).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn a_stale_expected_version_is_a_conflict_and_writes_nothing() {
        let pool = fresh_pool().await;
        append_one(&pool, "thing-1", 0, 1).await.unwrap();
        let err = append_one(&pool, "thing-1", 0, 2).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Conflict {
                    expected: 0,
                    actual: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        let mut c = pool.acquire().await.unwrap();
        assert_eq!(read_stream(&mut c, "thing-1").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn racing_writers_on_one_stream_one_wins_the_rest_conflict() {
        let pool = fresh_pool().await;
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                tokio::spawn({
                    let pool = pool.clone();
                    async move { append_one(&pool, "thing-race", 0, n).await }
                })
            })
            .collect();
        let mut wins = 0;
        let mut conflicts = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => wins += 1,
                Err(StoreError::Conflict { .. }) => conflicts += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((wins, conflicts), (1, 7));
        let mut c = pool.acquire().await.unwrap();
        let read = read_stream(&mut c, "thing-race").await.unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].version, 1);
    }

    #[tokio::test]
    async fn read_after_pages_through_the_log_in_order() {
        let pool = fresh_pool().await;
        for n in 0..10 {
            append_one(&pool, &format!("thing-{n}"), 0, n)
                .await
                .unwrap();
        }
        let mut c = pool.acquire().await.unwrap();
        let first = read_after(&mut c, 0, 4).await.unwrap();
        assert_eq!(
            first.iter().map(|e| e.position).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        let rest = read_after(&mut c, 4, 100).await.unwrap();
        assert_eq!(
            rest.iter().map(|e| e.position).collect::<Vec<_>>(),
            (5..=10).collect::<Vec<_>>()
        );
        assert!(read_after(&mut c, 10, 100).await.unwrap().is_empty());
        assert_eq!(head(&mut c).await.unwrap(), 10);
    }

    /// The classic outbox trap: a transaction that appended first but commits last must not be
    /// skipped by a reader following "everything after position N". Here a transaction holds its
    /// append open while later writers try to commit and a relay-like reader polls throughout.
    #[tokio::test]
    async fn a_late_committing_transaction_is_never_skipped_by_a_position_reader() {
        let pool = fresh_pool().await;
        let mut slow = pool.begin().await.unwrap();
        append(&mut slow, "thing-slow", 0, &[ev(0)], &meta())
            .await
            .unwrap();

        let reader = tokio::spawn({
            let pool = pool.clone();
            async move {
                let (mut cursor, mut seen) = (0, Vec::new());
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while seen.len() < 6 && tokio::time::Instant::now() < deadline {
                    let mut c = pool.acquire().await.unwrap();
                    for e in read_after(&mut c, cursor, 100).await.unwrap() {
                        cursor = e.position;
                        seen.push(e.stream.clone());
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                seen
            }
        });
        let later: Vec<_> = (1..=5)
            .map(|n| {
                tokio::spawn({
                    let pool = pool.clone();
                    async move {
                        append_one(&pool, &format!("thing-{n}"), 0, n)
                            .await
                            .unwrap()
                    }
                })
            })
            .collect();

        tokio::time::sleep(Duration::from_millis(400)).await;
        {
            let mut c = pool.acquire().await.unwrap();
            assert!(
                read_after(&mut c, 0, 100).await.unwrap().is_empty(),
                "nothing may be visible past the open transaction"
            );
        }
        slow.commit().await.unwrap();
        for t in later {
            t.await.unwrap();
        }
        let seen = reader.await.unwrap();
        assert_eq!(seen.len(), 6, "the reader saw every event: {seen:?}");
        assert_eq!(seen[0], "thing-slow");
        let mut c = pool.acquire().await.unwrap();
        let all = read_after(&mut c, 0, 100).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.position).collect::<Vec<_>>(),
            (1..=6).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_rolled_back_append_leaves_no_trace_and_no_gap() {
        let pool = fresh_pool().await;
        let mut tx = pool.begin().await.unwrap();
        append(&mut tx, "thing-a", 0, &[ev(1)], &meta())
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        let out = append_one(&pool, "thing-b", 0, 2).await.unwrap();
        assert_eq!(out[0].position, 1);
        let mut c = pool.acquire().await.unwrap();
        assert!(read_stream(&mut c, "thing-a").await.unwrap().is_empty());
    }
}
