//! The rebuild benchmarks: every service from its own run's history, and the ledger from a
//! generated history.

use super::*;

/// `qingling-<service> rebuild` against `url`; the figures it prints.
pub(crate) async fn rebuild_service(service: &str, url: &str) -> anyhow::Result<Value> {
    let out =
        tokio::process::Command::new(qingling_tests::bin_dir().join(format!("qingling-{service}")))
            .arg("rebuild")
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .output()
            .await?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Generates a ledger log of `events` events in a scratch database, then times
/// `qingling-ledger rebuild` over it. Each item lives as items do: registered; a repeat call
/// linked to one in five; one in ten flagged overdue; acknowledged; a write-off requested and
/// approved, except one in twenty still open. The items' lives interleave in the log.
pub(crate) async fn rebuild_bench(events: usize) -> anyhow::Result<Value> {
    let scratch = TestEnv::new(&[]);
    let url = scratch.database_url();
    // The first run creates the database and the schema (an empty rebuild).
    rebuild_service("ledger", &url).await?;
    let mut c = scratch.db("ledger").await;
    // 4.2 events per item on average.
    let items = (events as i64 * 10).div_euclid(42) + 1;
    sqlx::query(
        "create temp table gen as
         select g, gen_random_uuid() as item, gen_random_uuid() as point, gen_random_uuid() as closure,
                (array['jiukeshu','yongshun','zhongcang','xinhua','songzhuang'])[1 + g % 5] as street
         from generate_series(1, $1) g",
    )
    .bind(items)
    .execute(&mut c)
    .await?;
    sqlx::query(
        sqlx::AssertSqlSafe(format!("insert into events (position, event_id, stream, version, event_type, occurred_at, actor, correlation_id, causation_id, data)
         select position, gen_random_uuid(), 'item-' || item, version, event_type,
                timestamptz '2026-01-01' + position * interval '30 ms', 'bench', gen_random_uuid(), gen_random_uuid(), data
         from (select row_number() over (order by g + step * 997, step) as position,
                      row_number() over (partition by g order by step) as version, item, event_type, data
               from gen cross join lateral (values
                 (1, '{ITEM_REGISTERED}', jsonb_build_object('item_id', item, 'district', 'tongzhou', 'street', street,
                     'category', 'basement_illegal_residence', 'point_id', point,
                     'point', jsonb_build_object('community', '压测', 'building', '1', 'basement', 'B' || g),
                     'source', 'complaint', 'complaint_id', gen_random_uuid(), 'urgency', 'normal', 'description', '',
                     'respond_by', null, 'resolve_by', null, 'rebound_of', null)),
                 (2, '{COMPLAINT_LINKED}', jsonb_build_object('item_id', item, 'complaint_id', gen_random_uuid())),
                 (3, '{ITEM_OVERDUE}', jsonb_build_object('item_id', item, 'street', street, 'kind', 'respond')),
                 (4, '{ITEM_ACKNOWLEDGED}', jsonb_build_object('item_id', item, 'street', street)),
                 (5, '{ITEM_CLOSURE_PENDING}', jsonb_build_object('item_id', item, 'street', street, 'closure_id', closure,
                     'outcome', 'rectified')),
                 (6, '{ITEM_WRITTEN_OFF}', jsonb_build_object('item_id', item, 'district', 'tongzhou', 'street', street,
                     'category', 'basement_illegal_residence', 'point_id', point, 'kind', 'rectified', 'closure_id', closure))
               ) e(step, event_type, data)
               where (step <> 2 or g % 5 = 0) and (step <> 3 or g % 10 = 0) and (step < 5 or g % 20 <> 0)) l
         where position <= $2")),
    )
    .bind(items)
    .bind(events as i64)
    .execute(&mut c)
    .await?;
    let stats = rebuild_service("ledger", &url).await?;
    drop(c);
    scratch.cleanup().await;
    Ok(stats)
}
