//! The full 接诉即办 lifecycle: deadlines, return and re-dispatch, inspection finds, rebound,
//! follow-up, extension, monthly street metrics.

use qingling_events::ledger::types::*;
use std::time::Duration;

use qingling_shared::Role;
use qingling_tests::{complaint, eventually, rectified, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    complaint_status, item_status, register, request_closure, street_row, write_off, WAIT,
};

/// Short limits and a fast deadline watcher: time is driven by configuration, not slept on long.
mod deadlines;

const SHORT: [(&str, &str); 5] = [
    ("QINGLING_RESPOND_WITHIN", "1s"),
    ("QINGLING_RESPOND_WITHIN_URGENT", "1s"),
    ("QINGLING_RESOLVE_WITHIN", "2s"),
    ("QINGLING_RESOLVE_WITHIN_URGENT", "2s"),
    ("QINGLING_DEADLINE_TICK", "100ms"),
];

async fn overdue_events(env: &TestEnv, item: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select data->>'kind' from events where stream = $1 and event_type = '{ITEM_OVERDUE}' order by version")))
        .bind(format!("item-{item}"))
        .fetch_all(&mut env.db("ledger").await)
        .await
        .unwrap()
}

async fn wait_overdue(env: &TestEnv, item: &str, kinds: &[&str]) {
    eventually(&format!("item {item} flagged {kinds:?}"), WAIT, || async {
        let got = overdue_events(env, item).await;
        (got.len() >= kinds.len()).then_some(())
    })
    .await;
    // A few more ticks: nothing more may come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        overdue_events(env, item).await,
        kinds,
        "exactly one overdue event per kind"
    );
}

#[tokio::test]
async fn a_returned_complaint_is_cancelled_on_the_ledger_and_registered_afresh_where_re_dispatched()
{
    let env = TestEnv::start().await;
    let op = env.token(Role::Operator, "tongzhou");
    let st = env.token(Role::Street, "jiukeshu");
    let dist = env.token(Role::District, "tongzhou");
    let (cid, item) = register(&env, &complaint("jiukeshu", "财富东方", "2", "B1")).await;

    let (status, p) = env
        .post(
            "intake",
            &format!("/v1/complaints/{cid}/return"),
            &st,
            &json!({"reason": ""}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (status, _) = env
        .post(
            "intake",
            &format!("/v1/complaints/{cid}/return"),
            &env.token(Role::Street, "yongshun"),
            &json!({"reason": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = env
        .post(
            "intake",
            &format!("/v1/complaints/{cid}/dispatch"),
            &op,
            &json!({"street": "yongshun"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "only a returned complaint is re-dispatched"
    );
    let (status, returned) = env
        .post(
            "intake",
            &format!("/v1/complaints/{cid}/return"),
            &st,
            &json!({"reason": "不属于本辖区"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{returned}");
    assert_eq!(returned["status"], "returned");
    let old = item_status(&env, &item, "written_off").await;
    assert_eq!(old["write_off_kind"], "returned");
    let (_, s) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    let row = street_row(&s, "jiukeshu");
    assert_eq!(
        (
            row["open"].as_i64(),
            row["registered_total"].as_i64(),
            row["written_off_total"].as_i64()
        ),
        (Some(0), Some(1), Some(1))
    );

    let (status, p) = env
        .post(
            "intake",
            &format!("/v1/complaints/{cid}/dispatch"),
            &op,
            &json!({"street": "gotham"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let v = crate::redispatch(&env, &cid, "yongshun").await;
    assert_eq!(
        (v["status"].as_str(), v["street"].as_str()),
        (Some("dispatched"), Some("yongshun"))
    );
    let new_item = eventually(
        "the re-dispatched complaint to be registered",
        WAIT,
        || async {
            let (_, c) = env
                .get("intake", &format!("/v1/complaints/{cid}"), &op)
                .await;
            (c["status"] == "registered").then(|| c["item_id"].as_str().unwrap().to_string())
        },
    )
    .await;
    assert_ne!(new_item, item);
    let (_, fresh) = env
        .get("ledger", &format!("/v1/ledger/items/{new_item}"), &dist)
        .await;
    assert_eq!(fresh["street"], "yongshun");
    let (_, s) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    assert_eq!(street_row(&s, "yongshun")["open"], 1);
    assert_eq!(
        (
            s["open"].as_i64(),
            s["registered_total"].as_i64(),
            s["written_off_total"].as_i64()
        ),
        (Some(1), Some(2), Some(1))
    );
    let (_, journal) = env
        .get("ledger", "/v1/ledger/entries?district=tongzhou", &dist)
        .await;
    let kinds: Vec<(&str, Option<&str>)> = journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["write_off_kind"].as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("registration", None),
            ("write_off", Some("returned")),
            ("registration", None)
        ]
    );

    // Once acknowledged, a complaint can no longer be returned.
    let ys = env.token(Role::Street, "yongshun");
    let (status, _) = env
        .post(
            "ledger",
            &format!("/v1/ledger/items/{new_item}/acknowledge"),
            &ys,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually("intake to learn the acknowledgement", WAIT, || async {
        let (_, c) = env
            .get("intake", &format!("/v1/complaints/{cid}"), &op)
            .await;
        c["acknowledged_at"].is_string().then_some(())
    })
    .await;
    let (status, p) = env
        .post(
            "intake",
            &format!("/v1/complaints/{cid}/return"),
            &ys,
            &json!({"reason": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("acknowledged"),
        "{p}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn inspection_finds_rebounds_and_follow_ups() {
    let env = TestEnv::start().await;
    let st = env.token(Role::Street, "songzhuang");
    let op = env.token(Role::Operator, "tongzhou");
    let dist = env.token(Role::District, "tongzhou");
    let find = json!({"category": "basement_illegal_residence", "description": "巡查发现",
                      "point": {"community": "宋庄小区", "building": "9", "basement": "B1"}});
    let (status, item) = env.post("ledger", "/v1/ledger/items", &st, &find).await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    assert_eq!(
        (item["source"].as_str(), item["status"].as_str()),
        (Some("inspection"), Some("acknowledged"))
    );
    let first = item["item_id"].as_str().unwrap().to_string();
    let (status, dup) = env.post("ledger", "/v1/ledger/items", &st, &find).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        dup["item_id"],
        first.as_str(),
        "the 409 names the open item"
    );
    let (status, p) = env
        .post(
            "ledger",
            "/v1/ledger/items",
            &st,
            &json!({"category": "noise", "point": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (status, _) = env.post("ledger", "/v1/ledger/items", &op, &find).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A call about the same basement joins the street's own find.
    let (c1, linked) = register(&env, &complaint("songzhuang", "宋庄小区", "9号楼", "B1")).await;
    assert_eq!(linked, first);

    // Follow-up only after the write-off, once.
    let (status, _) = env
        .post(
            "intake",
            &format!("/v1/complaints/{c1}/follow-up"),
            &op,
            &json!({"satisfaction": "satisfied"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let closure = request_closure(&env, "songzhuang", &rectified(&first)).await;
    let (status, _) = env
        .post(
            "closure",
            &format!("/v1/closures/{closure}/approve"),
            &env.token(Role::Reviewer, "tongzhou"),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    item_status(&env, &first, "written_off").await;
    complaint_status(&env, &c1, "written_off", WAIT).await;
    let (status, p) = env
        .post(
            "intake",
            &format!("/v1/complaints/{c1}/follow-up"),
            &op,
            &json!({"satisfaction": "very"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (status, v) = env
        .post(
            "intake",
            &format!("/v1/complaints/{c1}/follow-up"),
            &op,
            &json!({"satisfaction": "basically_satisfied", "note": "已无人居住"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "followed_up");
    let (status, _) = env
        .post(
            "intake",
            &format!("/v1/complaints/{c1}/follow-up"),
            &op,
            &json!({"satisfaction": "satisfied"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "one follow-up per complaint");

    // 防止反弹: the problem comes back within 90 days.
    let (_, again) = register(&env, &complaint("songzhuang", "宋庄小区", "9", "b1")).await;
    assert_ne!(again, first);
    let (_, detail) = env
        .get("ledger", &format!("/v1/ledger/items/{again}"), &dist)
        .await;
    assert_eq!(detail["rebound_of"], first.as_str());
    let (_, s) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    assert_eq!(
        (
            street_row(&s, "songzhuang")["rebounds"].as_i64(),
            s["rebounds"].as_i64()
        ),
        (Some(1), Some(1))
    );
    env.cleanup().await;
}

#[tokio::test]
async fn monthly_street_metrics_follow_the_events() {
    let env = TestEnv::start_with(&[
        ("QINGLING_RESPOND_WITHIN", "2s"),
        ("QINGLING_DEADLINE_TICK", "100ms"),
    ])
    .await;
    let op = env.token(Role::Operator, "tongzhou");
    // luyi: three complaints. A acknowledged in time, written off, followed up satisfied.
    // B acknowledged in time, written off, followed up unknown. C never acknowledged: overdue.
    let (a, ia) = register(&env, &complaint("luyi", "潞邑小区", "1", "B1")).await;
    let (b, ib) = register(&env, &complaint("luyi", "潞邑小区", "2", "B1")).await;
    let (_c, ic) = register(&env, &complaint("luyi", "潞邑小区", "3", "B1")).await;
    write_off(&env, "luyi", &ia).await;
    write_off(&env, "luyi", &ib).await;
    wait_overdue(&env, &ic, &["respond"]).await;
    for (id, answer) in [(&a, "satisfied"), (&b, "unknown")] {
        complaint_status(&env, id, "written_off", WAIT).await;
        let (status, _) = env
            .post(
                "intake",
                &format!("/v1/complaints/{id}/follow-up"),
                &op,
                &json!({"satisfaction": answer}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let month = (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m")
        .to_string();
    let row = eventually("the overdue flag to reach the metrics", WAIT, || async {
        let (_, m) = env
            .get(
                "intake",
                &format!("/v1/metrics/streets?district=tongzhou&month={month}"),
                &op,
            )
            .await;
        let row = m["streets"]
            .as_array()?
            .iter()
            .find(|s| s["street"] == "luyi")?
            .clone();
        (row["overdue"] == 1).then_some(row)
    })
    .await;
    assert_eq!(
        (
            row["received"].as_i64(),
            row["responded_on_time"].as_i64(),
            row["resolved"].as_i64()
        ),
        (Some(3), Some(2), Some(2))
    );
    let approx = |v: &Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-9;
    assert!(approx(&row["response_rate"], 2.0 / 3.0), "{row}");
    assert!(approx(&row["resolution_rate"], 2.0 / 3.0));
    assert_eq!(row["followed_up"], 2);
    assert!(
        approx(&row["satisfaction_score"], 5.0),
        "unknown counts as the mean of the known answers"
    );
    assert!(approx(&row["satisfaction_rate"], 1.0));
    let (_, m) = env
        .get(
            "intake",
            &format!("/v1/metrics/streets?district=tongzhou&month={month}"),
            &op,
        )
        .await;
    let empty = m["streets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["street"] == "xinhua")
        .unwrap();
    assert_eq!(
        (empty["received"].as_i64(), empty["response_rate"].clone()),
        (Some(0), Value::Null)
    );
    assert_eq!(m["streets"].as_array().unwrap().len(), 22);
    let (status, _) = env
        .get(
            "intake",
            "/v1/metrics/streets?district=tongzhou&month=2026-13",
            &op,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = env
        .get(
            "intake",
            "/v1/metrics/streets?district=tongzhou",
            &env.token(Role::Street, "luyi"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    env.cleanup().await;
}

#[tokio::test]
async fn a_return_leaves_an_item_that_other_calls_or_another_street_still_hold() {
    let env = TestEnv::start().await;
    let op = env.token(Role::Operator, "tongzhou");
    let dist = env.token(Role::District, "tongzhou");
    let (a, item) = register(&env, &complaint("jiukeshu", "共用小区", "1", "B1")).await;
    // A repeat call on the same basement, wrongly dispatched to another street, links to the item.
    let (b, linked) = register(&env, &complaint("yongshun", "共用小区", "1", "B1")).await;
    assert_eq!(linked, item);
    let (status, _) = env
        .post(
            "intake",
            &format!("/v1/complaints/{b}/return"),
            &env.token(Role::Street, "yongshun"),
            &json!({"reason": "不属于本辖区"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let detail = eventually("the returned call to leave the item", WAIT, || async {
        let (_, i) = env
            .get("ledger", &format!("/v1/ledger/items/{item}"), &dist)
            .await;
        (i["complaint_ids"].as_array()?.len() == 1).then_some(i)
    })
    .await;
    assert_eq!(
        (detail["status"].as_str(), detail["street"].as_str()),
        (Some("registered"), Some("jiukeshu")),
        "another street cannot cancel jiukeshu's item"
    );
    assert_eq!(detail["complaint_ids"], json!([a]));
    let (_, s) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    assert_eq!(
        (s["open"].as_i64(), s["written_off_total"].as_i64()),
        (Some(1), Some(0))
    );
    let (_, first) = env.get("intake", &format!("/v1/complaints/{a}"), &op).await;
    assert_eq!(
        first["status"], "registered",
        "the other caller's complaint is untouched"
    );
    // The remaining complaint is the item's last: its return cancels the registration.
    let (status, _) = env
        .post(
            "intake",
            &format!("/v1/complaints/{a}/return"),
            &env.token(Role::Street, "jiukeshu"),
            &json!({"reason": "地址有误"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let done = item_status(&env, &item, "written_off").await;
    assert_eq!(done["write_off_kind"], "returned");
    env.cleanup().await;
}
