//! PostgreSQL connection and per-service schema migrations.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// One migration: a name (ordered) and its SQL.
pub type Migration = (&'static str, &'static str);

/// The event-store tables every service has in its own schema.
pub const COMMON_MIGRATIONS: &[Migration] = &[
    (
        "0001_event_store",
        include_str!("../../migrations/common/0001_event_store.sql"),
    ),
    (
        "0100_inbox_position",
        include_str!("../../migrations/common/0100_inbox_position.sql"),
    ),
    (
        "0101_actor_name",
        include_str!("../../migrations/common/0101_actor_name.sql"),
    ),
];

/// Creates the database of `url` if it does not exist.
pub async fn create_database_if_absent(url: &str) -> anyhow::Result<()> {
    let opts = PgConnectOptions::from_str(url).context("DATABASE_URL is not a PostgreSQL URL")?;
    let name = opts.get_database().unwrap_or("postgres").to_string();
    if let Ok(c) = opts.clone().connect().await {
        c.close().await.ok();
        return Ok(());
    }
    let mut admin = opts
        .database("postgres")
        .connect()
        .await
        .context("cannot connect to PostgreSQL")?;
    let sql = format!("create database \"{}\"", name.replace('"', "\"\""));
    match sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
    {
        Ok(_) => tracing::info!(database = %name, "created database"),
        // 42P04 duplicate_database: another process created it first.
        Err(sqlx::Error::Database(e))
            if e.code().as_deref() == Some("42P04") || e.code().as_deref() == Some("23505") => {}
        Err(e) => return Err(e).context("cannot create the database"),
    }
    admin.close().await.ok();
    Ok(())
}

/// A pool whose connections work in `schema` (every unqualified table is the service's own).
pub async fn connect(url: &str, schema: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    create_database_if_absent(url).await?;
    let opts = PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(opts)
        .await
        .context("cannot connect to PostgreSQL")?;
    Ok(pool)
}

/// Every database a test makes ([`test_pool`], the end-to-end `TestEnv`) is named with this
/// prefix, so that `scripts/test` can sweep what a crashed run left behind.
pub const TEST_DATABASE_PREFIX: &str = "qingling_test_";

/// The server tests use (`QINGLING_TEST_DATABASE_URL`, default the local one), without a database.
pub fn test_server_url() -> String {
    std::env::var("QINGLING_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_string()
}

/// A test's own database, dropped when this is dropped (at the end of the test, passed or
/// failed). Use it as the [`PgPool`] it derefs to.
pub struct TestDb {
    pool: PgPool,
    server: String,
    name: String,
}

impl TestDb {
    /// The database's name (`qingling_test_…`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::ops::Deref for TestDb {
    type Target = PgPool;

    fn deref(&self) -> &PgPool {
        &self.pool
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // The pool opens no more connections; `drop database … with (force)` ends the open ones.
        // (Awaiting the pool's close could wait forever on a connection the test still holds.)
        let _closing = self.pool.close();
        let (server, name) = (self.server.clone(), self.name.clone());
        if let Err(e) = run_apart(async move { drop_database(&server, &name).await }) {
            eprintln!("cannot drop the test database {}: {e:#}", self.name);
        }
    }
}

/// A fresh database of its own for a test that needs PostgreSQL (`QINGLING_TEST_DATABASE_URL`,
/// default the local server), migrated for `schema` with `own` migrations; dropped with the
/// returned [`TestDb`].
pub async fn test_pool(schema: &str, own: &[Migration]) -> anyhow::Result<TestDb> {
    let server = test_server_url();
    let name = format!(
        "{TEST_DATABASE_PREFIX}{schema}_{}",
        uuid::Uuid::now_v7().simple()
    );
    let pool = connect(&format!("{server}/{name}"), schema, 8).await?;
    // From here on the database is dropped however this ends.
    let db = TestDb { pool, server, name };
    migrate(&db, schema, own).await?;
    Ok(db)
}

/// Drops the database `name` of the server at `server` (a URL without a database), ending its
/// sessions; nothing if there is no such database.
pub async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnectOptions::from_str(server)
        .context("not a PostgreSQL URL")?
        .database("postgres")
        .connect()
        .await
        .context("cannot connect to PostgreSQL")?;
    let sql = format!(
        "drop database if exists \"{}\" with (force)",
        name.replace('"', "\"\"")
    );
    let dropped = sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
        .with_context(|| format!("cannot drop database {name}"));
    admin.close().await.ok();
    dropped.map(|_| ())
}

/// Runs `work` to its end on a fresh single-threaded runtime in a thread of its own, and returns
/// its result: async clean-up from a `Drop`, which may run inside another runtime (that cannot
/// be blocked on) or outside any, also while a failed test unwinds.
pub fn run_apart<F, T>(work: F) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(work)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the clean-up thread panicked"))?
}

/// Applies, in order and once each, the common migrations and then `own`, inside `schema`.
pub async fn migrate(pool: &PgPool, schema: &str, own: &[Migration]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    // Several instances may start at once: one migrates, the others wait.
    sqlx::query("select pg_advisory_xact_lock(7101, hashtext($1))")
        .bind(schema)
        .execute(&mut *tx)
        .await?;
    let create = format!(
        "create schema if not exists \"{}\"",
        schema.replace('"', "")
    );
    sqlx::query(sqlx::AssertSqlSafe(create))
        .execute(&mut *tx)
        .await?;
    sqlx::query("create table if not exists schema_migrations (name text primary key, applied_at timestamptz not null default now())")
        .execute(&mut *tx)
        .await?;
    for (name, sql) in COMMON_MIGRATIONS.iter().chain(own) {
        let done: Option<String> =
            sqlx::query_scalar("select name from schema_migrations where name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_some() {
            continue;
        }
        sqlx::raw_sql(*sql)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("migration {schema}/{name} failed"))?;
        sqlx::query("insert into schema_migrations (name) values ($1)")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tracing::info!(schema, migration = name, "applied migration");
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exists(name: &str) -> bool {
        let mut c = PgConnectOptions::from_str(&test_server_url())
            .unwrap()
            .database("postgres")
            .connect()
            .await
            .unwrap();
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_test_database_is_dropped_with_its_guard() {
        let db = test_pool("testdrop", &[]).await.unwrap();
        let name = db.name().to_string();
        assert!(name.starts_with(TEST_DATABASE_PREFIX), "{name}");
        // A connection still held when the guard goes does not keep the database alive.
        let mut held = db.acquire().await.unwrap();
        sqlx::query("select count(*) from events")
            .execute(&mut *held)
            .await
            .unwrap();
        assert!(exists(&name).await);
        drop(db);
        assert!(!exists(&name).await, "{name} is still there");
    }

    #[test]
    fn a_failing_test_drops_its_database_too() {
        let (tx, rx) = std::sync::mpsc::channel();
        let failed = std::panic::catch_unwind(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let db = test_pool("testpanic", &[]).await.unwrap();
                    tx.send(db.name().to_string()).unwrap();
                    panic!("the test fails while it holds its database");
                })
        });
        assert!(failed.is_err());
        let name = rx.recv().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert!(!rt.block_on(exists(&name)), "{name} is still there");
    }
}
