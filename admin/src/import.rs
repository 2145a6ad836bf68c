//! `qingling-admin import`: the open rows of a ledger kept before Qingling, registered as items.

use super::*;
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

pub async fn import(args: &[String]) -> anyhow::Result<()> {
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
