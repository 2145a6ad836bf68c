//! `qingling-admin`: operator tasks.
//! - `token`: mint a bearer token for a role and org;
//! - `rebuild`: rebuild projections from the logs (runs `qingling-<service> rebuild`);
//! - `import`: register the open rows of an existing ledger (CSV or .xlsx) as items;
//! - `export`: the journal as .xlsx;
//! - `check`: recompute invariants from the logs and report any mismatch.

use qingling_events::{closure::types::*, intake::types::*, ledger::types::*};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::NaiveDate;
use qingling_shared::{config::DEV_JWT_SECRET, Claims, JwtKeys, Orgs, Role};
use serde_json::{json, Value};

const USAGE: &str = "usage:
  qingling-admin token --role <operator|street|reviewer|district> --org <code|*> [--sub <id>] [--ttl <12h>] [--dev]
  qingling-admin rebuild [intake|ledger|closure|all]          (DATABASE_URL)
  qingling-admin import <ledger.csv|ledger.xlsx> [--district tongzhou] [--ledger http://127.0.0.1:8082] [--dev]
  qingling-admin export <journal.xlsx> [--district tongzhou] [--ledger http://127.0.0.1:8082] [--dev]
  qingling-admin check                                          (DATABASE_URL)
The token secret is QINGLING_JWT_SECRET, or the development secret with --dev or QINGLING_DEV=1.";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("token") => token(rest),
        Some("rebuild") => rebuild(rest),
        Some("import") => rt.block_on(import(rest)),
        Some("export") => rt.block_on(export(rest)),
        Some("check") => rt.block_on(check()),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

/// `--flag value` options and the positional arguments.
struct Opts {
    flags: Vec<(String, String)>,
    dev: bool,
    positional: Vec<String>,
}

impl Opts {
    fn parse(args: &[String], with_value: &[&str]) -> anyhow::Result<Opts> {
        let mut o = Opts {
            flags: vec![],
            dev: false,
            positional: vec![],
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--dev" {
                o.dev = true;
            } else if with_value.contains(&a.as_str()) {
                let v = it
                    .next()
                    .with_context(|| format!("{a} needs a value\n{USAGE}"))?;
                o.flags.push((a.clone(), v.clone()));
            } else if a.starts_with("--") {
                bail!("unknown option {a}\n{USAGE}");
            } else {
                o.positional.push(a.clone());
            }
        }
        o.dev |= std::env::var("QINGLING_DEV").is_ok_and(|v| v == "1");
        Ok(o)
    }

    fn get(&self, flag: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
    }
}

fn keys(dev: bool) -> anyhow::Result<JwtKeys> {
    let secret = match std::env::var("QINGLING_JWT_SECRET") {
        Ok(s) if !s.is_empty() => s,
        _ if dev => DEV_JWT_SECRET.to_string(),
        _ => bail!("set QINGLING_JWT_SECRET, or pass --dev for the development secret"),
    };
    Ok(JwtKeys::new(secret.as_bytes()))
}

fn mint(keys: &JwtKeys, role: Role, org: &str, sub: &str, ttl: Duration) -> String {
    keys.mint(&Claims {
        sub: sub.into(),
        role,
        org: org.into(),
        exp: chrono::Utc::now().timestamp() + ttl.as_secs() as i64,
    })
}

fn token(args: &[String]) -> anyhow::Result<()> {
    let o = Opts::parse(args, &["--role", "--org", "--sub", "--ttl"])?;
    let role: Role = serde_json::from_value(Value::String(o.get("--role").context(USAGE)?.into()))
        .context("unknown role")?;
    let org = o.get("--org").context(USAGE)?;
    let sub = o
        .get("--sub")
        .map(String::from)
        .unwrap_or_else(|| format!("{}-{org}", role.as_str()));
    let ttl = humantime::parse_duration(o.get("--ttl").unwrap_or("12h")).context("bad --ttl")?;
    println!("{}", mint(&keys(o.dev)?, role, org, &sub, ttl));
    Ok(())
}

/// The service binaries sit next to this one (release or debug build, or an install).
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn rebuild(args: &[String]) -> anyhow::Result<()> {
    let o = Opts::parse(args, &[])?;
    let which = o.positional.first().map(String::as_str).unwrap_or("all");
    let services: Vec<&str> = match which {
        "all" => vec!["intake", "ledger", "closure"],
        s @ ("intake" | "ledger" | "closure") => vec![s],
        other => bail!("unknown service {other}\n{USAGE}"),
    };
    for svc in services {
        // The service's own rebuild draws the progress bar and prints its figures.
        let status = std::process::Command::new(sibling(&format!("qingling-{svc}")))
            .arg("rebuild")
            .status()
            .with_context(|| format!("cannot run qingling-{svc} rebuild"))?;
        if !status.success() {
            bail!("qingling-{svc} rebuild failed ({status})");
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------ import

/// One row of an old ledger, as read (before validation).
#[derive(Debug, Default, Clone)]
struct Row {
    line: usize,
    cells: Vec<(Column, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Street,
    Community,
    Building,
    Basement,
    Rooms,
    Registered,
    Status,
    Address,
    Category,
}

/// The headers districts use today (Chinese or English), matched after removing spaces.
fn column_of(header: &str) -> Option<Column> {
    let h: String = header
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase();
    let h = h.trim_start_matches('\u{feff}');
    Some(match h {
        "街道" | "街乡" | "街道乡镇" | "街道(乡镇)" | "街道（乡镇）" | "乡镇" | "street" => {
            Column::Street
        }
        "社区" | "小区" | "社区(小区)" | "社区（小区）" | "community" => {
            Column::Community
        }
        "楼号" | "楼栋" | "楼栋号" | "building" => Column::Building,
        "地下室" | "地下室编号" | "地下室位置" | "basement" => Column::Basement,
        "房间数" | "间数" | "房间" | "rooms" => Column::Rooms,
        "登记日期" | "上账日期" | "登记时间" | "registered" | "registered_on" | "date" => {
            Column::Registered
        }
        "状态" | "销账状态" | "status" => Column::Status,
        "地址" | "address" => Column::Address,
        "类别" | "问题类别" | "category" => Column::Category,
        _ => return None,
    })
}

fn read_rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_lowercase();
    let table: Vec<Vec<String>> = match ext.as_str() {
        "csv" => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_path(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            r.records()
                .map(|rec| Ok(rec?.iter().map(|c| c.trim().to_string()).collect()))
                .collect::<anyhow::Result<_>>()?
        }
        "xlsx" | "xlsm" | "xls" => {
            use calamine::{Data, Reader};
            let mut wb = calamine::open_workbook_auto(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let sheet = wb
                .sheet_names()
                .first()
                .cloned()
                .context("the workbook has no sheet")?;
            let range = wb.worksheet_range(&sheet)?;
            range
                .rows()
                .map(|r| {
                    r.iter()
                        .map(|c| match c {
                            Data::DateTime(d) => d
                                .as_datetime()
                                .map(|t| t.date().to_string())
                                .unwrap_or_default(),
                            Data::Float(f) if f.fract() == 0.0 => format!("{}", *f as i64),
                            other => other.to_string().trim().to_string(),
                        })
                        .collect()
                })
                .collect()
        }
        _ => bail!("{}: expected a .csv or .xlsx file", path.display()),
    };
    let mut lines = table.into_iter().enumerate();
    let (_, header) = lines.next().context("the file is empty")?;
    let columns: Vec<Option<Column>> = header.iter().map(|h| column_of(h)).collect();
    for needed in [
        Column::Street,
        Column::Community,
        Column::Building,
        Column::Basement,
        Column::Registered,
        Column::Status,
    ] {
        if !columns.contains(&Some(needed)) {
            bail!("the header row has no {needed:?} column (found: {header:?})");
        }
    }
    Ok(lines
        .filter(|(_, cells)| cells.iter().any(|c| !c.is_empty()))
        .map(|(i, cells)| Row {
            line: i + 1,
            cells: columns
                .iter()
                .zip(cells)
                .filter_map(|(c, v)| c.map(|c| (c, v)))
                .collect(),
        })
        .collect())
}

impl Row {
    fn get(&self, c: Column) -> &str {
        self.cells
            .iter()
            .find(|(col, _)| *col == c)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

#[derive(Debug, PartialEq)]
enum Planned {
    Open(Value),
    Closed,
    Rejected(Vec<String>),
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    ["%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日", "%Y%m%d"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
        .or_else(|| {
            s.get(..10)
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        })
}

/// What to do with one row: validated against the organisation directory, before any request.
fn plan(row: &Row, orgs: &Orgs, district: &str) -> Planned {
    let mut why = vec![];
    let status = row.get(Column::Status).trim().to_lowercase();
    let open = match status.as_str() {
        "未销账" | "在账" | "未整改" | "整改中" | "open" | "待销账" => true,
        "已销账" | "销账" | "已整改" | "closed" | "written_off" => false,
        other => {
            why.push(format!(
                "status {other:?} is neither open (未销账) nor closed (已销账)"
            ));
            true
        }
    };
    let street_cell = row.get(Column::Street).trim();
    let street = orgs.district(district).and_then(|d| {
        d.streets
            .iter()
            .find(|s| s.code == street_cell || s.name == street_cell)
            .map(|s| s.code.clone())
    });
    if street.is_none() {
        why.push(format!(
            "street {street_cell:?} is not a street of {district}"
        ));
    }
    for (c, name) in [
        (Column::Community, "community"),
        (Column::Building, "building"),
        (Column::Basement, "basement"),
    ] {
        if row.get(c).trim().is_empty() {
            why.push(format!("{name} is empty"));
        }
    }
    let date = parse_date(row.get(Column::Registered));
    if date.is_none() {
        why.push(format!(
            "registered date {:?} is not a date",
            row.get(Column::Registered)
        ));
    }
    let rooms = match row.get(Column::Rooms).trim() {
        "" => None,
        r => match r.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                why.push(format!("rooms {r:?} is not a whole number"));
                None
            }
        },
    };
    if !why.is_empty() {
        return Planned::Rejected(why);
    }
    if !open {
        return Planned::Closed;
    }
    let category = match row.get(Column::Category).trim() {
        "" => "basement_illegal_residence",
        c => c,
    };
    Planned::Open(json!({
        "district": district, "street": street, "category": category,
        "community": row.get(Column::Community).trim(), "building": row.get(Column::Building).trim(),
        "basement": row.get(Column::Basement).trim(),
        "address": Some(row.get(Column::Address).trim()).filter(|a| !a.is_empty()),
        "rooms": rooms, "registered_on": date.map(|d| d.to_string()),
    }))
}

fn progress(label: &str, done: usize, total: usize) {
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    eprint!(
        "\r{label}: [{:<25}] {done}/{total} rows ({pct}%)",
        "#".repeat(pct / 4)
    );
    std::io::stderr().flush().ok();
}

async fn import(args: &[String]) -> anyhow::Result<()> {
    let o = Opts::parse(args, &["--district", "--ledger"])?;
    let path = PathBuf::from(o.positional.first().context(USAGE)?);
    let district = o.get("--district").unwrap_or("tongzhou").to_string();
    let ledger = o
        .get("--ledger")
        .map(String::from)
        .or_else(|| std::env::var("QINGLING_LEDGER_URL").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8082".into());
    let orgs = Orgs::load()?;
    if orgs.district(&district).is_none() {
        bail!("unknown district {district}");
    }
    let token = mint(
        &keys(o.dev)?,
        Role::Reviewer,
        &district,
        "qingling-admin-import",
        Duration::from_secs(3600),
    );
    let rows = read_rows(&path)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let (mut imported, mut already, mut closed) = (0, 0, 0);
    let mut rejected: Vec<Value> = vec![];
    let mut seen = std::collections::HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        progress("import", i, rows.len());
        match plan(row, &orgs, &district) {
            Planned::Closed => closed += 1,
            Planned::Rejected(why) => rejected.push(json!({"row": row.line, "reasons": why})),
            Planned::Open(body) => {
                // The same basement, category and date twice in one file: one item, and say so.
                let s = |k: &str| body[k].as_str().unwrap_or_default().to_string();
                let key = (
                    qingling_shared::point::point_id(
                        &district,
                        &s("community"),
                        &s("building"),
                        &s("basement"),
                    ),
                    s("category"),
                    s("registered_on"),
                );
                if let Some(first) = seen.get(&key) {
                    rejected.push(json!({"row": row.line, "reasons": [format!(
                        "the same basement, category and registered date as row {first}")]}));
                    continue;
                }
                seen.insert(key, row.line);
                let r = http
                    .post(format!("{ledger}/v1/ledger/imports"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .with_context(|| format!("cannot reach the ledger at {ledger}"))?;
                let status = r.status();
                let answer: Value = r.json().await.unwrap_or(Value::Null);
                match status.as_u16() {
                    201 => imported += 1,
                    200 => already += 1,
                    409 => rejected.push(json!({"row": row.line, "reasons": [format!(
                        "the basement already has an open item on the ledger ({})",
                        answer["item_id"].as_str().unwrap_or("?"))]})),
                    400 | 422 => rejected.push(json!({"row": row.line, "reasons": answer["errors"]
                        .as_array().map(|e| e.iter().map(|f| format!("{}: {}", f["field"].as_str().unwrap_or(""), f["message"].as_str().unwrap_or(""))).collect::<Vec<_>>())
                        .unwrap_or_else(|| vec![answer["detail"].as_str().unwrap_or("invalid").to_string()])})),
                    _ => bail!(
                        "row {}: the ledger answered {status}: {answer}; rows before it are imported, run again to resume",
                        row.line
                    ),
                }
            }
        }
    }
    progress("import", rows.len(), rows.len());
    eprintln!();
    let report = json!({
        "file": path.display().to_string(), "district": district, "rows": rows.len(),
        "imported": imported, "already_imported": already, "closed_not_imported": closed,
        "rejected": rejected,
    });
    eprintln!(
        "import: {} rows: {imported} imported, {already} already imported, {closed} closed (not imported), {} rejected",
        rows.len(),
        rejected.len()
    );
    for r in &rejected {
        eprintln!("  row {}: {}", r["row"], r["reasons"]);
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

// ------------------------------------------------------------------------------------ export

async fn export(args: &[String]) -> anyhow::Result<()> {
    let o = Opts::parse(args, &["--district", "--ledger"])?;
    let path = PathBuf::from(o.positional.first().context(USAGE)?);
    let district = o.get("--district").unwrap_or("tongzhou");
    let ledger = o
        .get("--ledger")
        .map(String::from)
        .or_else(|| std::env::var("QINGLING_LEDGER_URL").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8082".into());
    let token = mint(
        &keys(o.dev)?,
        Role::District,
        district,
        "qingling-admin-export",
        Duration::from_secs(600),
    );
    let r = reqwest::Client::new()
        .get(format!(
            "{ledger}/v1/ledger/entries?district={district}&format=xlsx"
        ))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach the ledger at {ledger}"))?;
    if !r.status().is_success() {
        bail!("the ledger answered {}: {}", r.status(), r.text().await?);
    }
    let bytes = r.bytes().await?;
    std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "export: the journal of {district} written to {} ({} bytes)",
        path.display(),
        bytes.len()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------- check

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

async fn check() -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[(Column, &str)]) -> Row {
        Row {
            line: 2,
            cells: cells.iter().map(|(c, v)| (*c, v.to_string())).collect(),
        }
    }

    #[test]
    fn rows_are_planned_by_status_and_validated() {
        let orgs = Orgs::load().unwrap();
        let good = [
            (Column::Street, "九棵树街道"),
            (Column::Community, "园景阁"),
            (Column::Building, "3"),
            (Column::Basement, "B1"),
            (Column::Registered, "2026/03/01"),
            (Column::Status, "未销账"),
            (Column::Rooms, "7"),
        ];
        match plan(&row(&good), &orgs, "tongzhou") {
            Planned::Open(v) => {
                assert_eq!(v["street"], "jiukeshu");
                assert_eq!(v["registered_on"], "2026-03-01");
                assert_eq!(v["rooms"], 7);
            }
            other => panic!("{other:?}"),
        }
        let mut closed = good;
        closed[5] = (Column::Status, "已销账");
        assert_eq!(plan(&row(&closed), &orgs, "tongzhou"), Planned::Closed);
        let mut bad = good;
        bad[0] = (Column::Street, "不存在街道");
        bad[4] = (Column::Registered, "去年");
        match plan(&row(&bad), &orgs, "tongzhou") {
            Planned::Rejected(why) => assert_eq!(why.len(), 2, "{why:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn headers_are_recognised_in_chinese_and_english() {
        assert_eq!(column_of("街道（乡镇）"), Some(Column::Street));
        assert_eq!(column_of(" 登记日期 "), Some(Column::Registered));
        assert_eq!(column_of("\u{feff}street"), Some(Column::Street));
        assert_eq!(column_of("备注"), None);
    }
}
