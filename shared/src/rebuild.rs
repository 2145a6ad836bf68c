//! Rebuilding a service's projections from its own log and the foreign events it applied (its
//! inbox), replayed in the order they were first applied. Runs in one transaction: readers and
//! writers wait while it runs and carry on afterwards; a failure leaves the old projections.

use std::future::Future;
use std::time::Instant;

use sqlx::{PgConnection, PgPool, Row};

use crate::consumer::Apply;
use crate::event::Envelope;

/// How a service projects its own events.
pub trait Projector: Send + Sync {
    /// The projection tables, emptied before the replay.
    fn tables(&self) -> &'static [&'static str];

    fn project_own(
        &self,
        conn: &mut PgConnection,
        ev: &Envelope,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Projects a run of consecutive own events, with the effects of [`Projector::project_own`]
    /// on each in order; a service may write them together.
    fn project_own_all(
        &self,
        conn: &mut PgConnection,
        events: &[Envelope],
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async move {
            for ev in events {
                self.project_own(conn, ev).await?;
            }
            Ok(())
        }
    }

    /// Replays the whole log — the own events and, for a service that applies foreign ones, its
    /// inbox, in apply order — at once, much faster than event by event, where the service has
    /// such a replay (`None` where not): (own, foreign) events. Must leave the projections exactly
    /// as [`Projector::project_own`] and the service's [`Apply`] would.
    fn replay_all(
        &self,
        _pool: &PgPool,
        _conn: &mut PgConnection,
        _progress: &mut (dyn FnMut(u64) + Send),
    ) -> impl Future<Output = anyhow::Result<Option<(u64, u64)>>> + Send {
        async { Ok(None) }
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    pub own: u64,
    pub foreign: u64,
    pub seconds: f64,
}

const PAGE: i64 = 5000;

/// Empties the projections and replays. `foreign` applies inbox events (None: the service's own
/// log alone determines its projections).
pub async fn rebuild<P: Projector, A: Apply>(
    pool: &PgPool,
    projector: &P,
    foreign: Option<&A>,
    mut progress: impl FnMut(u64, u64) + Send,
) -> anyhow::Result<Stats> {
    let started = Instant::now();
    let total_sql = if foreign.is_some() {
        "select (select count(*) from events) + (select count(*) from inbox)"
    } else {
        "select count(*) from events"
    };
    let total: i64 = sqlx::query_scalar(total_sql).fetch_one(pool).await?;
    let mut tx = pool.begin().await?;
    // Everything that writes projections or the log waits until the rebuild commits.
    let mut tables: Vec<&str> = vec!["events", "inbox", "consumed_streams"];
    tables.extend(projector.tables());
    let lock = format!("lock table {} in exclusive mode", tables.join(", "));
    sqlx::query(sqlx::AssertSqlSafe(lock))
        .execute(&mut *tx)
        .await?;
    let truncate = format!("truncate {}", projector.tables().join(", "));
    sqlx::query(sqlx::AssertSqlSafe(truncate))
        .execute(&mut *tx)
        .await?;
    let mut stats = Stats::default();
    let mut after = -1i64;
    // `QINGLING_REBUILD_EVENTWISE=1`: event by event, as live (to compare the two).
    if std::env::var("QINGLING_REBUILD_EVENTWISE").as_deref() != Ok("1") {
        let total = total as u64;
        let mut report = |done| progress(done, total);
        if let Some((own, foreign)) = projector.replay_all(pool, &mut tx, &mut report).await? {
            stats.own = own;
            stats.foreign = foreign;
            after = i64::MAX;
        }
    }
    if after < i64::MAX {
        // The projections were emptied in this transaction, so the planner believes them empty
        // and would scan them whole for every lookup while they grow back: quadratic. Every
        // lookup of the replay is by key.
        sqlx::query("set local enable_seqscan = off")
            .execute(&mut *tx)
            .await?;
    }
    while after < i64::MAX {
        let rows = sqlx::query(
            "select apply_seq, true as own, position, event_id, stream, version, event_type, occurred_at, actor, actor_name,
                    correlation_id, causation_id, data, null::jsonb as envelope
             from events where apply_seq > $1
             union all
             select apply_seq, false, 0, event_id, '', 0, '', now(), '', null, event_id, event_id, 'null'::jsonb, envelope
             from inbox where apply_seq > $1
             order by apply_seq limit $2",
        )
        .bind(after)
        .bind(PAGE)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            break;
        }
        // A page goes out as runs of own events and runs of foreign ones, in apply order: each
        // run is projected together (the services batch what they can).
        let mut own: Vec<Envelope> = vec![];
        let mut foreign_run: Vec<Envelope> = vec![];
        for r in rows {
            after = r.try_get("apply_seq")?;
            if r.try_get::<bool, _>("own")? {
                if !foreign_run.is_empty() {
                    stats.foreign += apply_run(&mut tx, foreign, &mut foreign_run).await?;
                }
                own.push(Envelope {
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
                });
            } else if foreign.is_some() {
                if !own.is_empty() {
                    projector.project_own_all(&mut tx, &own).await?;
                    stats.own += std::mem::take(&mut own).len() as u64;
                }
                foreign_run.push(serde_json::from_value(r.try_get("envelope")?)?);
            }
        }
        if !own.is_empty() {
            projector.project_own_all(&mut tx, &own).await?;
            stats.own += own.len() as u64;
        }
        if !foreign_run.is_empty() {
            stats.foreign += apply_run(&mut tx, foreign, &mut foreign_run).await?;
        }
        progress(stats.own + stats.foreign, total as u64);
    }
    tx.commit().await?;
    progress(stats.own + stats.foreign, total as u64);
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Applies a run of inbox events together and empties it; how many there were.
async fn apply_run<A: Apply>(
    tx: &mut PgConnection,
    foreign: Option<&A>,
    run: &mut Vec<Envelope>,
) -> anyhow::Result<u64> {
    if let Some(apply) = foreign {
        apply.apply_all(tx, &run.iter().collect::<Vec<_>>()).await?;
    }
    let n = run.len() as u64;
    run.clear();
    Ok(n)
}

/// Drops the secondary indexes of `table` (in the current schema) for a bulk load; returns the
/// statements that build them again ([`build_indexes`]): one sorted build is much cheaper than
/// keeping them up to date row by row. Inside the rebuild's transaction, so a failure drops
/// nothing.
pub async fn drop_secondary_indexes(
    c: &mut PgConnection,
    table: &str,
) -> sqlx::Result<Vec<String>> {
    let defs: Vec<(String, String)> = sqlx::query_as(
        "select i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
         from pg_index i
         where i.indrelid = (current_schema() || '.' || $1)::regclass and not i.indisprimary",
    )
    .bind(table)
    .fetch_all(&mut *c)
    .await?;
    for (name, _) in &defs {
        sqlx::query(sqlx::AssertSqlSafe(format!("drop index {name}")))
            .execute(&mut *c)
            .await?;
    }
    Ok(defs.into_iter().map(|(_, def)| def).collect())
}

/// Builds the indexes [`drop_secondary_indexes`] dropped, with memory enough to sort in one go.
pub async fn build_indexes(c: &mut PgConnection, defs: Vec<String>) -> sqlx::Result<()> {
    sqlx::query("set local maintenance_work_mem = '256MB'")
        .execute(&mut *c)
        .await?;
    for def in defs {
        sqlx::query(sqlx::AssertSqlSafe(def))
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// `qingling-<service> rebuild`: rebuilds the service's projections in the database of
/// `DATABASE_URL`, while the service may keep running. Prints progress to stderr and the figures
/// as JSON to stdout.
pub async fn command<P: Projector, A: Apply>(
    service: &str,
    migrations: &'static [crate::db::Migration],
    projector: P,
    foreign: Option<A>,
) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/qingling".into());
    let pool = crate::db::connect(&url, service, 4).await?;
    crate::db::migrate(&pool, service, migrations).await?;
    let mut attempt = 0;
    let stats = loop {
        attempt += 1;
        let mut last = 0u64;
        let result = rebuild(&pool, &projector, foreign.as_ref(), |done, total| {
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            if done == total || pct != last {
                last = pct;
                let bar = "#".repeat((pct / 4) as usize);
                eprint!("\rrebuild {service}: [{bar:<25}] {done}/{total} events ({pct}%)");
            }
        })
        .await;
        eprintln!();
        match result {
            Ok(stats) => break stats,
            // A live request deadlocked with the rebuild's table locks and one was rolled back.
            Err(e) if attempt < 5 && format!("{e:#}").contains("deadlock") => {
                eprintln!("rebuild {service}: {e:#}; retrying");
                continue;
            }
            Err(e) => return Err(e),
        }
    };
    let per_sec = (stats.own + stats.foreign) as f64 / stats.seconds.max(1e-9);
    // The process's peak resident memory (the fold holds the projections' rows).
    let peak_kib: Option<u64> = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        });
    println!(
        "{}",
        serde_json::json!({"service": service, "own_events": stats.own, "foreign_events": stats.foreign, "seconds": stats.seconds,
                           "events_per_second": per_sec, "peak_rss_mib": peak_kib.map(|k| (k as f64 / 102.4).round() / 10.0)})
    );
    Ok(())
}
