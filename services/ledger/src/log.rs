//! Keeping the verifiable log (CONTRACT §12): one task (the leader's) follows the ledger's events
//! by position, adds each as a leaf (a few stored hashes per event, from the tree's right edge in
//! memory), and signs a checkpoint every few seconds while the log grows. At start it rebuilds
//! the tree from the events and compares: a changed, deleted, inserted or reordered event row is
//! reported (log, `/metrics`, the checkpoint route) and nothing more is signed.

use std::sync::Arc;
use std::time::Duration;

use qingling_shared::tlog::{self, Frontier, LogKeys, Tamper};
use sqlx::PgPool;
use tokio::sync::watch;

/// The log's settings and keys.
pub struct Log {
    /// None: checkpoints are not signed (no key configured).
    pub keys: Option<LogKeys>,
    pub origin: String,
    pub interval: Duration,
}

impl Log {
    /// `QINGLING_LOG_ORIGIN`, `QINGLING_LOG_KEY` (a file holding the signer key),
    /// `QINGLING_LOG_COSIGNER_KEY` (a second one), `QINGLING_LOG_CHECKPOINT_INTERVAL`; in
    /// development mode without a key, one is made (and kept in the temporary directory).
    pub fn from_env(dev: bool) -> anyhow::Result<Log> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let origin = var("QINGLING_LOG_ORIGIN").unwrap_or_else(|| "qingling.local/ledger".into());
        let interval = match var("QINGLING_LOG_CHECKPOINT_INTERVAL") {
            Some(v) => humantime::parse_duration(v.trim())
                .map_err(|e| anyhow::anyhow!("QINGLING_LOG_CHECKPOINT_INTERVAL={v:?}: {e}"))?,
            None => Duration::from_secs(2),
        };
        let read = |var_name: &str, path: String| -> anyhow::Result<String> {
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .map_err(|e| anyhow::anyhow!("{var_name}={path}: {e}"))
        };
        let mut signer_keys = vec![];
        match var("QINGLING_LOG_KEY") {
            Some(path) => signer_keys.push(read("QINGLING_LOG_KEY", path)?),
            None if dev => {
                let path = std::env::temp_dir().join("qingling-dev-log.key");
                let key = match std::fs::read_to_string(&path) {
                    Ok(k) => k.trim().to_string(),
                    Err(_) => {
                        let (k, _) = tlog::generate_key(&origin);
                        std::fs::write(&path, &k)?;
                        k
                    }
                };
                tracing::warn!(path = %path.display(), "QINGLING_DEV=1: checkpoints are signed with a DEVELOPMENT log key; set QINGLING_LOG_KEY in production");
                signer_keys.push(key);
            }
            None => {
                tracing::warn!("QINGLING_LOG_KEY is not set: the log is kept but no checkpoint is signed (see `qingling-admin log-key`)");
            }
        }
        if let Some(path) = var("QINGLING_LOG_COSIGNER_KEY") {
            signer_keys.push(read("QINGLING_LOG_COSIGNER_KEY", path)?);
        }
        let keys = match signer_keys.is_empty() {
            true => None,
            false => Some(LogKeys::new(&origin, &signer_keys)?),
        };
        Ok(Log {
            keys,
            origin,
            interval,
        })
    }
}

/// The recorded disagreement, if any (shared by every instance).
pub async fn tamper(pool: &PgPool) -> sqlx::Result<Option<(i64, String)>> {
    let t: Option<(i64, String)> = sqlx::query_as("select index, detail from log_tamper")
        .fetch_optional(pool)
        .await?;
    metrics::gauge!("qingling_log_tamper_detected").set(if t.is_some() { 1.0 } else { 0.0 });
    Ok(t)
}

async fn report(pool: &PgPool, t: &Tamper) -> sqlx::Result<()> {
    tracing::error!(index = t.index, detail = %t.what, "THE LEDGER'S LOG DISAGREES WITH THE TREE IT SIGNED: no checkpoint is signed until it is resolved");
    sqlx::query(
        "insert into log_tamper (index, detail) values ($1, $2)
         on conflict (id) do update set index = excluded.index, detail = excluded.detail, found_at = now()",
    )
    .bind(t.index as i64)
    .bind(&t.what)
    .execute(pool)
    .await?;
    metrics::gauge!("qingling_log_tamper_detected").set(1.0);
    Ok(())
}

/// The leader's task: check the stored tree, then grow it and sign checkpoints until stopped.
pub async fn run(pool: PgPool, log: Arc<Log>, mut stop: watch::Receiver<bool>) {
    // Check first: a tree that disagrees with its events is neither grown nor signed.
    let started = std::time::Instant::now();
    loop {
        match check(&pool).await {
            Ok(true) => break,
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "checking the log failed; again shortly");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "the log agrees with its events"
    );
    let mut frontier: Option<Frontier> = None;
    let mut last_signed = std::time::Instant::now() - log.interval;
    loop {
        match grow(&pool, &mut frontier).await {
            Ok(_) => {}
            Err(e) => {
                frontier = None;
                tracing::warn!(error = %format!("{e:#}"), "growing the log failed");
            }
        }
        if last_signed.elapsed() >= log.interval {
            last_signed = std::time::Instant::now();
            if let Some(keys) = &log.keys {
                if let Err(e) = sign(&pool, keys).await {
                    tracing::warn!(error = %format!("{e:#}"), "signing a checkpoint failed");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Compares the stored tree with the events; false (reported) when they disagree.
async fn check(pool: &PgPool) -> anyhow::Result<bool> {
    let mut c = pool.acquire().await?;
    match tlog::verify_stored(&mut c).await? {
        Ok(_) => {
            sqlx::query("delete from log_tamper")
                .execute(&mut *c)
                .await?;
            metrics::gauge!("qingling_log_tamper_detected").set(0.0);
            Ok(true)
        }
        Err(t) => {
            report(pool, &t).await?;
            Ok(false)
        }
    }
}

/// Adds the events not yet in the tree, a page at a time.
async fn grow(pool: &PgPool, frontier: &mut Option<Frontier>) -> anyhow::Result<()> {
    const PAGE: i64 = 2_000;
    loop {
        let mut tx = pool.begin().await?;
        let size: i64 = sqlx::query_scalar("select size from log_state for update")
            .fetch_one(&mut *tx)
            .await?;
        let mut f = match frontier.take() {
            Some(f) if f.size == size as u64 => f,
            _ => Frontier::load(&mut tx, size as u64).await?,
        };
        let events = qingling_shared::store::read_after(&mut tx, size, PAGE).await?;
        if events.is_empty() {
            *frontier = Some(f);
            return Ok(());
        }
        let mut idx = Vec::with_capacity(events.len() * 2);
        let mut hashes = Vec::with_capacity(events.len() * 2);
        for ev in &events {
            // Positions commit in order and without gaps; a gap is an event not yet visible.
            if ev.position as u64 != f.size + 1 {
                break;
            }
            for (i, h) in f.push(tlog::leaf_hash(&tlog::canonical(ev))) {
                idx.push(i as i64);
                hashes.push(h.0.to_vec());
            }
        }
        sqlx::query(
            "insert into log_hashes (idx, hash) select * from unnest($1::bigint[], $2::bytea[])",
        )
        .bind(&idx)
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
        sqlx::query("update log_state set size = $1")
            .bind(f.size as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        metrics::gauge!("qingling_log_size").set(f.size as f64);
        let full = events.len() as i64 == PAGE;
        *frontier = Some(f);
        if !full {
            return Ok(());
        }
    }
}

/// Signs a checkpoint of the tree as it is, if it grew since the last (or none was signed),
/// after checking that the tree still contains the last one signed.
async fn sign(pool: &PgPool, keys: &LogKeys) -> anyhow::Result<()> {
    if tamper(pool).await?.is_some() {
        return Ok(());
    }
    let mut c = pool.acquire().await?;
    let size: i64 = sqlx::query_scalar("select size from log_state")
        .fetch_one(&mut *c)
        .await?;
    let last: Option<(i64, Vec<u8>)> =
        sqlx::query_as("select size, root from log_checkpoints order by size desc limit 1")
            .fetch_optional(&mut *c)
            .await?;
    if let Some((last_size, last_root)) = &last {
        if *last_size >= size {
            return Ok(());
        }
        let again = tlog::root(&mut c, *last_size as u64).await?;
        if again.0.as_slice() != last_root.as_slice() {
            report(
                pool,
                &Tamper {
                    index: (*last_size as u64).saturating_sub(1),
                    what: format!(
                        "the tree of {last_size} events no longer has the root signed for it"
                    ),
                },
            )
            .await?;
            return Ok(());
        }
    }
    let root = tlog::root(&mut c, size as u64).await?;
    let note = keys.sign(size as u64, &root)?;
    sqlx::query(
        "insert into log_checkpoints (size, root, note) values ($1, $2, $3) on conflict do nothing",
    )
    .bind(size)
    .bind(root.0.to_vec())
    .bind(&note)
    .execute(&mut *c)
    .await?;
    metrics::gauge!("qingling_log_checkpoint_size").set(size as f64);
    Ok(())
}

/// The latest signed checkpoint: (size, note).
pub async fn latest(pool: &PgPool) -> sqlx::Result<Option<(i64, String)>> {
    sqlx::query_as("select size, note from log_checkpoints order by size desc limit 1")
        .fetch_optional(pool)
        .await
}
