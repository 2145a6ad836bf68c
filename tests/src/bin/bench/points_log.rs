//! The map's queries and the verifiable log, measured on the run's own history, and
//! `qingling-admin verify` on a generated export.

use std::io::Write;
use std::time::{Duration, Instant};

use qingling_shared::tlog::{self, Frontier};
use qingling_tests::{bin_dir, TestEnv};
use serde_json::{json, Value};

/// The median of three timings of a GET, in milliseconds, and the last answer.
async fn timed(env: &TestEnv, path: &str, token: &str) -> anyhow::Result<(f64, Value)> {
    let mut ms = vec![];
    let mut last = Value::Null;
    for _ in 0..3 {
        let t = Instant::now();
        let (status, v) = env.get("ledger", path, token).await;
        anyhow::ensure!(status.is_success(), "{path}: {status} {v}");
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        last = v;
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms[1], last))
}

/// The points (every point of the district as GeoJSON) and the hot spots of 90 days.
pub(crate) async fn map_queries(env: &TestEnv, dist: &str) -> anyhow::Result<Value> {
    let (points_ms, fc) = timed(env, "/v1/ledger/points?status=all&limit=10000", dist).await?;
    let (hot_ms, cells) = timed(env, "/v1/ledger/hotspots?days=90&resolution=8", dist).await?;
    let (rebounds_ms, _) = timed(env, "/v1/ledger/points?order=rebounds&limit=10", dist).await?;
    let points = fc["features"].as_array().map_or(0, Vec::len);
    let cells = cells["features"].as_array().map_or(0, Vec::len);
    eprintln!(
        "  map: {points} points as GeoJSON in {points_ms:.0} ms, {cells} hot-spot cells in {hot_ms:.0} ms, rebound ranking in {rebounds_ms:.0} ms"
    );
    Ok(
        json!({"points": points, "points_ms": points_ms, "hotspot_cells": cells, "hotspots_ms": hot_ms,
              "rebound_ranking_ms": rebounds_ms,
              "projection_writes_per_event": 0}),
    )
}

/// What the log costs: stored bytes per event, CPU per leaf, and how soon the checkpoint
/// covered the whole run.
pub(crate) async fn log_costs(env: &TestEnv, _url: &str) -> anyhow::Result<Value> {
    let mut c = env.db("ledger").await;
    let waited = Instant::now();
    let (events, size) = loop {
        let events: i64 = sqlx::query_scalar("select count(*) from events")
            .fetch_one(&mut c)
            .await?;
        let signed: Option<i64> = sqlx::query_scalar("select max(size) from log_checkpoints")
            .fetch_one(&mut c)
            .await?;
        if signed == Some(events) || waited.elapsed() > Duration::from_secs(120) {
            break (events, signed.unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let covered_after = waited.elapsed().as_secs_f64();
    let bytes: i64 = sqlx::query_scalar("select pg_total_relation_size('log_hashes')")
        .fetch_one(&mut c)
        .await?;
    // CPU per leaf: canonical JSON, the leaf hash and the stored hashes, on this run's events.
    let sample = qingling_shared::store::read_after(&mut c, 0, 20_000).await?;
    let t = Instant::now();
    let mut f = Frontier::default();
    for ev in &sample {
        f.push(tlog::leaf_hash(&tlog::canonical(ev)));
    }
    let us_per_leaf = t.elapsed().as_secs_f64() * 1e6 / sample.len().max(1) as f64;
    let checkpoints: i64 = sqlx::query_scalar("select count(*) from log_checkpoints")
        .fetch_one(&mut c)
        .await?;
    eprintln!(
        "  log: {events} events, checkpoint of {size} signed {covered_after:.1} s after the load; {:.0} stored bytes and {us_per_leaf:.1} µs CPU per event; {checkpoints} checkpoints",
        bytes as f64 / events.max(1) as f64
    );
    Ok(
        json!({"events": events, "checkpoint_size": size, "whole_log_signed_seconds_after_load": covered_after,
              "stored_bytes_per_event": (bytes as f64 / events.max(1) as f64).round(),
              "cpu_microseconds_per_event": (us_per_leaf * 10.0).round() / 10.0,
              "checkpoints": checkpoints}),
    )
}

/// An export of `n` entries shaped like the ledger's events, signed, checked by `qingling-admin verify`.
pub(crate) async fn verify_export(n: usize) -> anyhow::Result<Value> {
    if n == 0 {
        return Ok(Value::Null);
    }
    let dir = std::env::temp_dir().join(format!("qingling-bench-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (entries, checkpoint) = (dir.join("log.jsonl"), dir.join("checkpoint.txt"));
    let (signer, verifier) = tlog::generate_key("qingling.bench/ledger");
    let keys = tlog::LogKeys::new("qingling.bench/ledger", &[signer])?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&entries)?);
    let mut f = Frontier::default();
    let t0 = chrono::Utc::now();
    for i in 0..n {
        let item = uuid::Uuid::now_v7();
        let event = json!({
            "event_id": uuid::Uuid::now_v7(), "event_type": "item_registered", "stream": format!("item-{item}"),
            "version": 1, "occurred_at": t0 + chrono::Duration::milliseconds(i as i64), "actor": "operator-tongzhou",
            "correlation_id": item, "causation_id": item,
            "data": {"item_id": item, "district": "tongzhou", "street": "jiukeshu", "category": "basement_illegal_residence",
                     "point_id": item, "point": {"community": format!("小区{}", i / 1000), "building": "3", "basement": format!("B{i}")},
                     "source": "complaint", "complaint_id": item, "urgency": "normal", "description": "地下室有人居住",
                     "respond_by": t0, "resolve_by": t0, "rebound_of": null},
        });
        let leaf = tlog::leaf_hash(&tlog::canonical_value(&event));
        f.push(leaf);
        serde_json::to_writer(
            &mut out,
            &json!({"index": i, "leaf_hash": tlog::b64(&leaf), "event": event}),
        )?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    drop(out);
    std::fs::write(&checkpoint, keys.sign(n as u64, &tlog::tree_root(&f))?)?;
    let file_bytes = std::fs::metadata(&entries)?.len();
    let t = Instant::now();
    let run = tokio::process::Command::new(bin_dir().join("qingling-admin"))
        .arg("verify")
        .arg(&entries)
        .args([
            "--checkpoint",
            &checkpoint.display().to_string(),
            "--key",
            &verifier,
        ])
        .output()
        .await?;
    let seconds = t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&dir).ok();
    anyhow::ensure!(
        run.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    eprintln!(
        "  qingling-admin verify: {n} entries ({:.0} MB) in {seconds:.1} s",
        file_bytes as f64 / 1e6
    );
    Ok(json!({"entries": n, "file_bytes": file_bytes, "seconds": seconds}))
}
