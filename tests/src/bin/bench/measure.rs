//! What the benchmark measures with: percentiles, process and machine CPU, memory, database
//! footprint, the commit ceiling, and waiting for the consumers.

use super::*;

pub(crate) fn percentiles(mut v: Vec<Duration>) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort();
    let p = |q: f64| {
        v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1].as_secs_f64() * 1000.0
    };
    json!({"p50_ms": p(0.50), "p95_ms": p(0.95), "p99_ms": p(0.99), "max_ms": p(1.0), "samples": v.len()})
}

pub(crate) fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time a process has used so far, in clock ticks (user + system).
pub(crate) fn process_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Busy CPU time of the whole machine so far (every core, everything but idle and iowait), in
/// clock ticks: what the services, PostgreSQL, NATS and this client used together.
pub(crate) fn machine_busy_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<u64> = s
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal
            Some(f.iter().take(8).sum::<u64>() - f.get(3)? - f.get(4)?)
        })
        .unwrap_or(0)
}

pub(crate) fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Events in the three logs, WAL written so far, the logs' size on disk, and the whole database's.
pub(crate) async fn footprint(env: &TestEnv) -> anyhow::Result<(i64, i64, i64, i64)> {
    let mut events = 0;
    let mut bytes = 0;
    for svc in ["intake", "ledger", "closure"] {
        let (n, b): (i64, i64) = sqlx::query_as(
            "select (select count(*) from events), pg_total_relation_size('events')",
        )
        .fetch_one(&mut env.db(svc).await)
        .await?;
        events += n;
        bytes += b;
    }
    let (wal, db): (i64, i64) = sqlx::query_as(
        "select pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, pg_database_size(current_database())",
    )
    .fetch_one(&mut env.db("intake").await)
    .await?;
    Ok((events, wal, bytes, db))
}

pub(crate) fn body(i: usize, tag: &str) -> Value {
    let mut c = complaint(
        STREETS[i % STREETS.len()],
        &format!("{tag}小区{}", i / 1000),
        &format!("{}", i % 50 + 1),
        &format!("B{i}"),
    );
    // A position in the district, spread like a city's calls (a few dense blocks, many alone).
    let x = (i as u64).wrapping_mul(2_654_435_761) % 10_000;
    let y = (i as u64).wrapping_mul(40_503) % 10_000;
    let dense = i.is_multiple_of(3);
    let (lat, long) = match dense {
        true => (
            39.90 + (x % 40) as f64 * 1e-4,
            116.65 + (y % 40) as f64 * 1e-4,
        ),
        false => (39.75 + x as f64 * 2e-5, 116.55 + y as f64 * 2.5e-5),
    };
    c["point"]["location"] = serde_json::json!({"lat": lat, "long": long});
    c
}

/// Raw PostgreSQL single-row INSERT + COMMIT per second at `concurrency`: the machine's limit for
/// one-commit-per-request work.
pub(crate) async fn ceiling(url: &str, concurrency: usize, seconds: f64) -> anyhow::Result<f64> {
    let pool = PgPoolOptions::new()
        .max_connections(concurrency as u32)
        .connect(url)
        .await?;
    sqlx::query("create table if not exists bench_ceiling (id bigserial primary key, payload text not null)").execute(&pool).await?;
    let count = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (pool, count) = (pool.clone(), count.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    sqlx::query("insert into bench_ceiling (payload) values ('地下室违规住人')")
                        .execute(&pool)
                        .await
                        .unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    sqlx::query("drop table bench_ceiling")
        .execute(&pool)
        .await?;
    Ok(count.load(Ordering::Relaxed) as f64 / seconds)
}

/// Waits until no durable consumer has messages pending or unacknowledged.
pub(crate) async fn consumers_idle(env: &TestEnv, within: Duration) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(env.nats().await);
    let deadline = Instant::now() + within;
    loop {
        let stream = js.get_stream(env.stream_name()).await?;
        let mut idle = true;
        for name in ["intake", "ledger", "closure"] {
            let mut c: async_nats::jetstream::consumer::PullConsumer = stream
                .get_consumer(name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let info = c.info().await?;
            idle &= info.num_pending == 0 && info.num_ack_pending == 0;
        }
        if idle {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the consumers did not catch up within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn registered_total(env: &TestEnv, token: &str) -> i64 {
    env.get("ledger", "/v1/ledger/summary?district=tongzhou", token)
        .await
        .1["registered_total"]
        .as_i64()
        .unwrap_or(0)
}
