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

/// A fresh database of its own for a test that needs PostgreSQL (`QINGLING_TEST_DATABASE_URL`,
/// default the local server), migrated for `schema` with `own` migrations.
pub async fn test_pool(schema: &str, own: &[Migration]) -> anyhow::Result<PgPool> {
    let base = std::env::var("QINGLING_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let url = format!(
        "{}/qingling_{schema}_{}",
        base.trim_end_matches('/'),
        uuid::Uuid::now_v7().simple()
    );
    let pool = connect(&url, schema, 8).await?;
    migrate(&pool, schema, own).await?;
    Ok(pool)
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
