//! `qingling-test-sweep`: removes what crashed test runs left behind — databases named
//! `qingling_test_…` and JetStream streams `QINGLING_TEST_<16 hex>_EVENTS` (with their durable
//! consumers) — on the test servers (`QINGLING_TEST_DATABASE_URL`, `QINGLING_TEST_NATS_URL`).
//! Only leftovers older than `--older-than` (default 1h) go, so that tests running right now
//! (another checkout's, on the same servers) keep theirs. A test removes its own when it ends,
//! passed or failed; this is for the runs that were killed.

use std::time::Duration;

use anyhow::Context;
use futures::TryStreamExt;
use qingling_shared::db::{drop_database, TEST_DATABASE_PREFIX};
use qingling_tests::{delete_stream, is_test_stream, nats_url, pg_base};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

const USAGE: &str = "usage: qingling-test-sweep [--older-than <1h>]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let older_than = match args.as_slice() {
        [] => Duration::from_secs(3600),
        [flag, age] if flag == "--older-than" => humantime::parse_duration(age).context(USAGE)?,
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let cutoff = chrono::Utc::now().timestamp() - older_than.as_secs() as i64;
    let (dbs, streams) = (sweep_databases(cutoff).await, sweep_streams(cutoff).await);
    let (dbs, streams) = (dbs.context("PostgreSQL")?, streams.context("NATS")?);
    eprintln!(
        "sweep: {dbs} test database(s) and {streams} test stream(s) older than {} removed",
        humantime::format_duration(older_than)
    );
    Ok(())
}

/// When a test database was made: the UUIDv7 its name ends with (none for a name without one).
fn made_at(name: &str) -> Option<i64> {
    let hex = name.get(name.len().checked_sub(32)?..)?;
    let (secs, _) = uuid::Uuid::parse_str(hex).ok()?.get_timestamp()?.to_unix();
    Some(secs as i64)
}

async fn sweep_databases(cutoff: i64) -> anyhow::Result<usize> {
    let server = pg_base();
    let mut c = server
        .parse::<PgConnectOptions>()?
        .database("postgres")
        .connect()
        .await?;
    let names: Vec<String> =
        sqlx::query_scalar("select datname from pg_database where starts_with(datname, $1)")
            .bind(TEST_DATABASE_PREFIX)
            .fetch_all(&mut c)
            .await?;
    c.close().await.ok();
    let mut n = 0;
    for name in names {
        if made_at(&name).is_some_and(|t| t > cutoff) {
            continue;
        }
        drop_database(&server, &name).await?;
        eprintln!("sweep: dropped database {name}");
        n += 1;
    }
    Ok(n)
}

async fn sweep_streams(cutoff: i64) -> anyhow::Result<usize> {
    let url = nats_url();
    let nc = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(qingling_shared::nats::server_addrs(&url)?)
        .await?;
    let js = async_nats::jetstream::new(nc);
    let names: Vec<String> = js.stream_names().try_collect().await?;
    let mut n = 0;
    for name in names.into_iter().filter(|s| is_test_stream(s)) {
        let Ok(stream) = js.get_stream(&name).await else {
            continue; // gone meanwhile
        };
        if stream.cached_info().created.unix_timestamp() > cutoff {
            continue;
        }
        delete_stream(&url, &name).await?;
        eprintln!("sweep: deleted stream {name}");
        n += 1;
    }
    Ok(n)
}
