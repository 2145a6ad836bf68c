//! One instance at a time: work that must not run twice across a service's instances (the outbox
//! relay, the deadline watcher, the loss watchdog) runs while its instance holds a PostgreSQL
//! session advisory lock. PostgreSQL releases the lock the moment the holder's connection ends (at
//! once when the holder's process dies; within about 11 s when its machine vanishes, by TCP
//! keepalive), and another instance takes over at its next try.

use std::future::Future;
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

/// How often a follower tries to take over, and the leader checks it still holds its lock.
const TRY_EVERY: Duration = Duration::from_millis(500);

/// Runs `work` whenever this instance holds the lock `role` of the pool's schema, until `shutdown`.
/// `work` gets the shutdown signal (to finish cleanly while still leader); if the lock's connection
/// is lost, `work` is dropped at once and this instance goes back to following.
pub async fn lead<F, Fut>(
    pool: PgPool,
    role: &'static str,
    shutdown: watch::Receiver<bool>,
    work: F,
) where
    F: Fn(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut stop = shutdown.clone();
    // Its own connection, out of the pool: the lock lives exactly as long as it.
    let mut held: Option<PgConnection> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let mut conn = match held.take() {
            Some(c) => c,
            None => match lock_connection(&pool).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(role, error = %e, "cannot try for leadership");
                    wait(&mut stop, TRY_EVERY * 4).await;
                    continue;
                }
            },
        };
        match try_lock(&mut conn, role).await {
            Ok(true) => {}
            Ok(false) => {
                held = Some(conn);
                wait(&mut stop, TRY_EVERY).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(role, error = %e, "cannot try for leadership");
                wait(&mut stop, TRY_EVERY * 4).await;
                continue;
            }
        }
        tracing::info!(role, "this instance leads");
        metrics::gauge!("qingling_leader", "role" => role).set(1.0);
        let lost = async {
            loop {
                tokio::time::sleep(TRY_EVERY).await;
                let alive = tokio::time::timeout(Duration::from_secs(3), conn.ping()).await;
                if !matches!(alive, Ok(Ok(()))) {
                    return;
                }
            }
        };
        let finished = tokio::select! {
            _ = work(shutdown.clone()) => true,
            _ = lost => false,
        };
        metrics::gauge!("qingling_leader", "role" => role).set(0.0);
        if finished {
            // Closing the connection releases the lock for the next leader.
            conn.close().await.ok();
            return;
        }
        tracing::warn!(
            role,
            "lost the leadership lock's connection; following again"
        );
    }
}

/// A connection of its own for the lock. The server probes it every few seconds and ends the
/// session (freeing the lock) about 11 s after its holder's machine stops answering; the holder
/// itself stops leading within 3.5 s of losing the connection (see `lost` above), so a new leader
/// never starts while the old one still works.
async fn lock_connection(pool: &PgPool) -> sqlx::Result<PgConnection> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::raw_sql(
        "set tcp_keepalives_idle = 5; set tcp_keepalives_interval = 2; set tcp_keepalives_count = 3",
    )
    .execute(&mut conn)
    .await?;
    Ok(conn)
}

async fn try_lock(conn: &mut PgConnection, role: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("select pg_try_advisory_lock(7102, hashtext(current_schema() || ':' || $1))")
        .bind(role)
        .fetch_one(conn)
        .await
}

async fn wait(stop: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
}
