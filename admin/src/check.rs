//! `qingling-admin check`: invariants recomputed from the logs.

use super::*;
/// Invariants recomputed from the logs, each a query counting violations (0 = holds).
fn checks() -> Vec<(String, String)> {
    vec![
    ("intake: log positions are gap-free".into(),
     "select count(*) - coalesce(max(position), 0) from intake.events".into()),
    ("ledger: log positions are gap-free".into(),
     "select count(*) - coalesce(max(position), 0) from ledger.events".into()),
    ("closure: log positions are gap-free".into(),
     "select count(*) - coalesce(max(position), 0) from closure.events".into()),
    ("every stream's versions run 1..n".into(),
     "select count(*) from (select stream, max(version) m, count(*) c from intake.events group by 1 union all
       select stream, max(version), count(*) from ledger.events group by 1 union all
       select stream, max(version), count(*) from closure.events group by 1) s where m <> c".into()),
    ("relays never claim more than the log holds".into(),
     "select (select count(*) from intake.relay_cursor where position > (select coalesce(max(position), 0) from intake.events))
           + (select count(*) from ledger.relay_cursor where position > (select coalesce(max(position), 0) from ledger.events))
           + (select count(*) from closure.relay_cursor where position > (select coalesce(max(position), 0) from closure.events))".into()),
    ("consumers applied only events their sources logged".into(),
     "select (select count(*) from ledger.inbox i where i.source = 'intake' and not exists (select 1 from intake.events e where e.event_id = i.event_id))
           + (select count(*) from ledger.inbox i where i.source = 'closure' and not exists (select 1 from closure.events e where e.event_id = i.event_id))
           + (select count(*) from intake.inbox i where i.source = 'ledger' and not exists (select 1 from ledger.events e where e.event_id = i.event_id))
           + (select count(*) from closure.inbox i where i.source = 'ledger' and not exists (select 1 from ledger.events e where e.event_id = i.event_id))".into()),
    (format!("intake: one complaint row per {COMPLAINT_RECEIVED}"),
     format!("select abs((select count(*) from intake.complaints) - (select count(*) from intake.events where event_type = '{COMPLAINT_RECEIVED}'))")),
    (format!("ledger: one item row per {ITEM_REGISTERED}"),
     format!("select abs((select count(*) from ledger.items) - (select count(*) from ledger.events where event_type = '{ITEM_REGISTERED}'))")),
    ("ledger: open items are those registered and not written off".into(),
     format!("select count(*) from ledger.items i where (i.status = 'written_off') <> exists
        (select 1 from ledger.events e where e.stream = 'item-' || i.item_id and e.event_type = '{ITEM_WRITTEN_OFF}')")),
    ("ledger: an item is written off at most once".into(),
     format!("select count(*) from (select stream from ledger.events where event_type = '{ITEM_WRITTEN_OFF}' group by 1 having count(*) > 1) d")),
    ("ledger: open counts per street equal the open items".into(),
     "select count(*) from (select district, street, category, open from ledger.zero_marks where open <> 0) z
        full join (select district, street, category, count(*) open from ledger.items where status <> 'written_off' group by 1, 2, 3
                   union all -- the district-wide rows (street '')
                   select district, '', category, count(*) from ledger.items where status <> 'written_off' group by 1, 3) i
        using (district, street, category) where coalesce(z.open, 0) <> coalesce(i.open, 0)".into()),
    ("ledger: the summary's tallies equal a count of the items".into(),
     "select count(*) from (select * from ledger.street_tallies
                             where (registered_total, written_off_total, acknowledged, closure_pending, overdue, rebounds) <> (0, 0, 0, 0, 0, 0)) t
        full join (select district, street, category, count(*) registered_total,
                          count(*) filter (where status = 'written_off') written_off_total,
                          count(*) filter (where status = 'acknowledged') acknowledged,
                          count(*) filter (where status = 'closure_pending') closure_pending,
                          count(*) filter (where status <> 'written_off' and cardinality(overdue) > 0) overdue,
                          count(*) filter (where rebound_of is not null) rebounds
                   from ledger.items group by 1, 2, 3) i using (district, street, category)
        where (t.registered_total, t.written_off_total, t.acknowledged, t.closure_pending, t.overdue, t.rebounds)
              is distinct from (i.registered_total, i.written_off_total, i.acknowledged, i.closure_pending, i.overdue, i.rebounds)".into()),
    ("ledger: each item stands where it was registered".into(),
     format!("select count(*) from ledger.items i join ledger.events e on e.stream = 'item-' || i.item_id and e.event_type = '{ITEM_REGISTERED}'
        where e.data->>'district' <> i.district or e.data->>'street' <> i.street or (e.data->>'point_id')::uuid <> i.point_id")),
    ("ledger: a complaint is placed at most once per dispatch".into(),
     format!("select count(*) from (select data->>'complaint_id' c, count(*) n from ledger.events
        where event_type in ('{ITEM_REGISTERED}', '{COMPLAINT_LINKED}') and data->>'complaint_id' is not null group by 1) p
        where p.n > (select count(*) from intake.events d where d.event_type = '{COMPLAINT_DISPATCHED}' and d.stream = 'complaint-' || p.c)")),
    ("closure: every applied approval wrote its item off once".into(),
     format!("select count(*) from closure.events a where a.event_type = '{CLOSURE_APPROVED}'
        and exists (select 1 from ledger.inbox i where i.event_id = a.event_id)
        and (select count(*) from ledger.events w where w.event_type = '{ITEM_WRITTEN_OFF}' and w.data->>'closure_id' = a.data->>'closure_id') <> 1")),
    ]
}

pub async fn check() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/qingling".into());
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .context("cannot connect to DATABASE_URL")?;
    let mut results = vec![];
    let mut failed = 0;
    // One snapshot for every check, so they agree with each other.
    let mut tx = pool.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    for (name, sql) in checks() {
        let violations: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *tx)
            .await?;
        let ok = violations == 0;
        failed += usize::from(!ok);
        eprintln!(
            "{} {name}{}",
            if ok { "ok      " } else { "MISMATCH" },
            if ok {
                String::new()
            } else {
                format!(" ({violations})")
            }
        );
        results.push(json!({"check": name, "ok": ok, "violations": violations}));
    }
    // The verifiable log: the tree rebuilt from the ledger's events equals the stored one and
    // every signed checkpoint.
    sqlx::query("set local search_path to ledger")
        .execute(&mut *tx)
        .await?;
    let name = "ledger: the verifiable log agrees with its events and checkpoints";
    let has_log: bool = sqlx::query_scalar("select to_regclass('log_state') is not null")
        .fetch_one(&mut *tx)
        .await?;
    if has_log {
        match qingling_shared::tlog::verify_stored(&mut tx).await? {
            Ok(size) => {
                eprintln!("ok       {name} ({size} entries)");
                results.push(json!({"check": name, "ok": true, "violations": 0}));
            }
            Err(t) => {
                failed += 1;
                eprintln!("MISMATCH {name}: entry {}: {}", t.index, t.what);
                results.push(json!({"check": name, "ok": false, "violations": 1, "entry": t.index, "detail": t.what}));
            }
        }
    }
    tx.rollback().await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"ok": failed == 0, "checks": results}))?
    );
    if failed > 0 {
        eprintln!("check: {failed} invariant(s) do not hold");
        std::process::exit(1);
    }
    Ok(())
}
