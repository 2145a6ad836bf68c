//! `qingling-admin`: importing a district's existing ledger from .xlsx and CSV (idempotent, with a
//! report of rejected rows), exporting the journal, checking invariants, rebuilding.

use qingling_tests::{bin_dir, complaint, TestEnv, SECRET};
use serde_json::Value;

use crate::{register, street_row, summary};

async fn admin(env: &TestEnv, args: &[&str]) -> (i32, Value, String) {
    let out = tokio::process::Command::new(bin_dir().join("qingling-admin"))
        .args(args)
        .env("QINGLING_JWT_SECRET", SECRET)
        .env("DATABASE_URL", env.database_url())
        .env("QINGLING_LEDGER_URL", &env.svc("ledger").url)
        .env_remove("QINGLING_DEV")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// street, community, building, basement, rooms, registered (y, m, d), status
type OldRow<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    (u16, u8, u8),
    &'a str,
);

/// An old ledger as districts keep it: Chinese headers, street names or codes, dates as cells.
fn write_xlsx(path: &std::path::Path) {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    for (c, h) in [
        "街道",
        "社区",
        "楼号",
        "地下室",
        "房间数",
        "登记日期",
        "状态",
        "备注",
    ]
    .iter()
    .enumerate()
    {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    let rows: [OldRow; 6] = [
        (
            "九棵树街道",
            "园景阁西区",
            "3",
            "B1",
            "7",
            (2026, 3, 1),
            "未销账",
        ),
        (
            "yongshun",
            "永顺小区",
            "12",
            "B2",
            "4",
            (2026, 4, 15),
            "未销账",
        ),
        ("潞城镇", "潞城家园", "1", "B1", "", (2026, 5, 20), "在账"),
        (
            "中仓街道",
            "中仓小区",
            "5",
            "B1",
            "3",
            (2025, 12, 1),
            "已销账",
        ),
        (
            "不存在街道",
            "某小区",
            "1",
            "B1",
            "2",
            (2026, 1, 1),
            "未销账",
        ),
        ("新华街道", "新华里", "2", "", "x", (2026, 2, 2), "未销账"),
    ];
    for (i, (street, community, building, basement, rooms, (y, m, d), status)) in
        rows.iter().enumerate()
    {
        let r = i as u32 + 1;
        ws.write_string(r, 0, *street).unwrap();
        ws.write_string(r, 1, *community).unwrap();
        ws.write_string(r, 2, *building).unwrap();
        ws.write_string(r, 3, *basement).unwrap();
        if let Ok(n) = rooms.parse::<f64>() {
            ws.write_number(r, 4, n).unwrap();
        } else {
            ws.write_string(r, 4, *rooms).unwrap();
        }
        ws.write_datetime_with_format(r, 5, ExcelDateTime::from_ymd(*y, *m, *d).unwrap(), &date)
            .unwrap();
        ws.write_string(r, 6, *status).unwrap();
        ws.write_string(r, 7, "老台账").unwrap();
    }
    wb.save(path).unwrap();
}

#[tokio::test]
async fn an_existing_ledger_is_imported_once_exported_checked_and_rebuilt() {
    let env = TestEnv::start().await;
    // A basement already on the ledger through a complaint: its row in the old ledger is refused.
    register(&env, &complaint("beiyuan", "北苑小区", "8", "B1")).await;
    let dir = std::env::temp_dir().join(format!("qingling-admin-{}", env.db_name));
    std::fs::create_dir_all(&dir).unwrap();
    let xlsx = dir.join("台账.xlsx");
    write_xlsx(&xlsx);
    let csv = dir.join("ledger.csv");
    std::fs::write(
        &csv,
        "\u{feff}街道,社区,楼号,地下室,房间数,登记日期,状态\n北苑街道,北苑小区,8号楼,b1,3,2026-06-01,未销账\n漷县镇,漷县新村,4,B3,2,2026/06/02,未销账\nhuoxian,漷县新村,4号楼,b3,2,2026-06-02,未销账\n",
    )
    .unwrap();
    let before = summary(&env).await;

    // token: a street's token the ledger accepts; none without a secret.
    let mint = |secret: Option<&str>| {
        let mut c = tokio::process::Command::new(bin_dir().join("qingling-admin"));
        c.args([
            "token", "--role", "street", "--org", "jiukeshu", "--sub", "s-1", "--ttl", "10m",
        ])
        .env_remove("QINGLING_DEV")
        .env_remove("QINGLING_JWT_SECRET");
        if let Some(secret) = secret {
            c.env("QINGLING_JWT_SECRET", secret);
        }
        c.output()
    };
    let out = mint(Some(SECRET)).await.unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (status, _) = env.get("ledger", "/v1/ledger/items", &token).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let (status, _) = env
        .get("ledger", "/v1/ledger/items?street=yongshun", &token)
        .await;
    assert_eq!(
        status,
        reqwest::StatusCode::FORBIDDEN,
        "a street reads only its own"
    );
    assert!(!mint(None).await.unwrap().status.success());

    let (code, report, err) = admin(&env, &["import", xlsx.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["rows"], 6, "{report}");
    assert_eq!(report["imported"], 3, "{report}");
    assert_eq!(report["closed_not_imported"], 1, "{report}");
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(
        rejected
            .iter()
            .map(|r| r["row"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [6, 7],
        "rows numbered as the spreadsheet shows them: {report}"
    );
    let why = rejected[1]["reasons"].to_string();
    assert!(why.contains("basement") && why.contains("rooms"), "{why}");
    assert!(err.contains("import: ["), "a progress bar: {err}");

    let after = summary(&env).await;
    assert_eq!(
        after["registered_total"].as_i64().unwrap(),
        before["registered_total"].as_i64().unwrap() + 3
    );
    assert_eq!(street_row(&after, "jiukeshu")["open"], 1);
    assert_eq!(street_row(&after, "lucheng")["open"], 1);
    let sources: Vec<(String, i64)> =
        sqlx::query_as("select source, count(*) from items group by 1 order by 1")
            .fetch_all(&mut env.db("ledger").await)
            .await
            .unwrap();
    assert_eq!(
        sources,
        [("complaint".to_string(), 1), ("import".to_string(), 3)]
    );

    // Twice: nothing new.
    let (code, again, err) = admin(&env, &["import", xlsx.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (
            again["imported"].as_i64(),
            again["already_imported"].as_i64()
        ),
        (Some(0), Some(3))
    );
    assert_eq!(
        summary(&env).await["registered_total"],
        after["registered_total"]
    );

    // CSV: the row of a basement already open through a complaint is rejected with the reason.
    let (code, from_csv, err) = admin(&env, &["import", csv.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(from_csv["imported"], 1, "{from_csv}");
    assert!(from_csv["rejected"][0]["reasons"]
        .to_string()
        .contains("already has an open item"));
    assert!(
        from_csv["rejected"][1]["reasons"]
            .to_string()
            .contains("as row 3"),
        "a row repeated in the file is named: {from_csv}"
    );

    // Export: the journal as a workbook with a row per registration.
    let out = dir.join("journal.xlsx");
    let (code, _, err) = admin(&env, &["export", out.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    use calamine::Reader;
    let mut wb: calamine::Xlsx<_> = calamine::open_workbook(&out).unwrap();
    let sheet = wb.sheet_names()[0].clone();
    let rows = wb.worksheet_range(&sheet).unwrap().rows().count();
    assert_eq!(rows, 1 + 5, "a header and five registrations");

    // Check: all invariants hold; a tampered projection is reported.
    crate::consuming::consumers_idle(&env).await;
    let (code, checked, err) = admin(&env, &["check"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(checked["ok"], true, "{checked}");
    sqlx::query("update zero_marks set open = open + 1 where street = 'jiukeshu'")
        .execute(&mut env.db("ledger").await)
        .await
        .unwrap();
    let (code, checked, err) = admin(&env, &["check"]).await;
    assert_eq!(code, 1, "{err}");
    let failing: Vec<&str> = checked["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        failing,
        ["ledger: open counts per street equal the open items"]
    );

    // Rebuild from the log repairs it.
    let (code, _, err) = admin(&env, &["rebuild", "ledger"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("rebuild ledger: ["), "{err}");
    let (code, checked, err) = admin(&env, &["check"]).await;
    assert_eq!(code, 0, "{err}: {checked}");

    std::fs::remove_dir_all(&dir).ok();
    env.cleanup().await;
}
