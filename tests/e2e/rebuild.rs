//! Projections dropped and rebuilt from the log come out identical, and live processing goes on.

use qingling_shared::Role;
use qingling_tests::{bin_dir, complaint, rectified, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::consuming::consumers_idle;
use crate::{complaint_status, item_status, register, request_closure, WAIT};

const PROJECTIONS: [(&str, &[&str]); 3] = [
    (
        "intake",
        &[
            "complaints",
            "complaint_history",
            "street_metrics",
            "caller_reveals",
            "open_items",
            "point_streets",
            "dispatches",
        ],
    ),
    (
        "ledger",
        &["items", "journal", "zero_marks", "street_tallies"],
    ),
    ("closure", &["closures", "items", "evidence"]),
];

pub async fn snapshot(env: &TestEnv) -> Value {
    let mut all = serde_json::Map::new();
    for (schema, tables) in PROJECTIONS {
        let mut c = env.db(schema).await;
        for table in tables {
            let sql =
                format!("select coalesce(json_agg(t order by t::text), '[]'::json) from {table} t");
            let rows: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut c)
                .await
                .unwrap();
            all.insert(format!("{schema}.{table}"), rows);
        }
    }
    Value::Object(all)
}

/// `qingling-<service> rebuild` for the three services; their figures.
pub async fn rebuild_all(env: &TestEnv) -> Vec<Value> {
    rebuild_all_with(env, false).await
}

/// [`rebuild_all`], by the services' whole-log replays or (`eventwise`) event by event as live.
pub async fn rebuild_all_with(env: &TestEnv, eventwise: bool) -> Vec<Value> {
    let mut all = vec![];
    for svc in ["intake", "ledger", "closure"] {
        let out = tokio::process::Command::new(bin_dir().join(format!("qingling-{svc}")))
            .arg("rebuild")
            .env("DATABASE_URL", env.database_url())
            .env(
                "QINGLING_REBUILD_EVENTWISE",
                if eventwise { "1" } else { "0" },
            )
            .env("RUST_LOG", "warn")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{svc} rebuild: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        all.push(serde_json::from_slice(&out.stdout).unwrap());
    }
    all
}

#[tokio::test]
async fn rebuilt_projections_equal_the_live_ones_and_processing_continues() {
    // A short respond limit, so items are flagged overdue too.
    let env = TestEnv::start_with(&[
        ("QINGLING_RESPOND_WITHIN", "1s"),
        ("QINGLING_DEADLINE_TICK", "100ms"),
    ])
    .await;
    let (op, rv, dist) = (
        env.token(Role::Operator, "tongzhou"),
        env.token(Role::Reviewer, "tongzhou"),
        env.token(Role::District, "tongzhou"),
    );
    let st = env.token(Role::Street, "jiukeshu");
    // A little of everything: registrations, a repeat call, acknowledgement, a rejected and an
    // approved write-off, a follow-up, a return and re-dispatch, an inspection find, extensions
    // approved, rejected and pending, a rebound, a complaint leaving an item that stays open, a
    // write-off request left pending, overdue flags.
    let (c1, i1) = register(&env, &complaint("jiukeshu", "园景阁西区", "3", "B1")).await;
    register(&env, &complaint("jiukeshu", "园景阁西区", "3号楼", "b1")).await;
    let (c3, _) = register(&env, &complaint("jiukeshu", "新城阳光", "7", "B1")).await;
    env.post(
        "ledger",
        &format!("/v1/ledger/items/{i1}/acknowledge"),
        &st,
        &json!({}),
    )
    .await;
    let first = request_closure(&env, "jiukeshu", &rectified(&i1)).await;
    env.post(
        "closure",
        &format!("/v1/closures/{first}/reject"),
        &rv,
        &json!({"reason": "照片不清"}),
    )
    .await;
    item_status(&env, &i1, "acknowledged").await;
    let second = request_closure(&env, "jiukeshu", &rectified(&i1)).await;
    env.post(
        "closure",
        &format!("/v1/closures/{second}/approve"),
        &rv,
        &json!({}),
    )
    .await;
    item_status(&env, &i1, "written_off").await;
    complaint_status(&env, &c1, "written_off", WAIT).await;
    let (status, _) = env
        .post(
            "intake",
            &format!("/v1/complaints/{c1}/follow-up"),
            &op,
            &json!({"satisfaction": "satisfied"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = env
        .post(
            "intake",
            &format!("/v1/complaints/{c3}/return"),
            &st,
            &json!({"reason": "不属于本辖区"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    crate::redispatch(&env, &c3, "yongshun").await;
    let (status, find) = env.post("ledger", "/v1/ledger/items", &st, &json!({"category": "group_rental", "point": {"community": "九棵树家园", "building": "1", "basement": "B2"}})).await;
    assert_eq!(status, StatusCode::CREATED, "{find}");
    let until = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let fid = find["item_id"].as_str().unwrap();
    env.post(
        "ledger",
        &format!("/v1/ledger/items/{fid}/extension"),
        &st,
        &json!({"until": until, "reason": "产权复杂"}),
    )
    .await;
    env.post(
        "ledger",
        &format!("/v1/ledger/items/{fid}/extension/approve"),
        &rv,
        &json!({}),
    )
    .await;
    for decision in ["reject", "none"] {
        let (status, find) = env.post("ledger", "/v1/ledger/items", &st, &json!({"category": "group_rental", "point": {"community": "九棵树家园", "building": decision, "basement": "B2"}})).await;
        assert_eq!(status, StatusCode::CREATED, "{find}");
        let fid = find["item_id"].as_str().unwrap();
        let (status, _) = env
            .post(
                "ledger",
                &format!("/v1/ledger/items/{fid}/extension"),
                &st,
                &json!({"until": until, "reason": "产权复杂"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        if decision == "reject" {
            let (status, _) = env
                .post(
                    "ledger",
                    &format!("/v1/ledger/items/{fid}/extension/reject"),
                    &rv,
                    &json!({"reason": "理由不足"}),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
    }
    // A rebound at the point written off above.
    let (_, again) = register(&env, &complaint("jiukeshu", "园景阁西区", "3", "B1")).await;
    // Two calls on one item; one is returned: it leaves, the item stays open.
    let (c5, i5) = register(&env, &complaint("xinhua", "运河小区", "2", "B1")).await;
    let (_, i6) = register(&env, &complaint("xinhua", "运河小区", "2号楼", "B1")).await;
    assert_eq!(i5, i6);
    let (status, r) = env
        .post(
            "intake",
            &format!("/v1/complaints/{c5}/return"),
            &env.token(Role::Street, "xinhua"),
            &json!({"reason": "重复派单"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    // A write-off request waiting for review.
    let (_, i7) = register(&env, &complaint("luyuan", "紫运南里", "5", "B1")).await;
    env.post(
        "ledger",
        &format!("/v1/ledger/items/{i7}/acknowledge"),
        &env.token(Role::Street, "luyuan"),
        &json!({}),
    )
    .await;
    request_closure(&env, "luyuan", &rectified(&i7)).await;
    item_status(&env, &i7, "closure_pending").await;
    // A call routed by its point, returned as not the street's area: its point forgets the street.
    let (routed, _) = register(&env, &complaint("yongshun", "路由小区", "1", "B1")).await;
    let _ = routed;
    let mut call = complaint("", "路由小区", "1", "B1");
    call.as_object_mut().unwrap().remove("street");
    let (status, v) = env.post("intake", "/v1/complaints", &op, &call).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["routed_by"], "point", "{v}");
    let wrong = v["complaint_id"].as_str().unwrap().to_string();
    complaint_status(&env, &wrong, "registered", WAIT).await;
    let (status, v) = env
        .post(
            "intake",
            &format!("/v1/complaints/{wrong}/return"),
            &env.token(Role::Street, "yongshun"),
            &json!({"reason": "不属于本辖区", "reason_code": "not_our_area"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    // A photo kept as evidence, and a caller's number revealed to the street.
    let photo = crate::evidence::jpeg(7, 2048);
    let (status, v) = crate::evidence::upload(
        &env,
        Some(&env.token(Role::Street, "luyuan")),
        &[("file", Some("after.jpg"), &photo)],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let r = env
        .http
        .post(env.url("intake", &format!("/v1/complaints/{c3}/caller")))
        .bearer_auth(env.token(Role::Street, "yongshun"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    complaint_status(&env, &c3, "registered", WAIT).await;
    // Every unacknowledged item passes its 1 s limit and is flagged before the snapshot.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    consumers_idle(&env).await;

    let live = snapshot(&env).await;
    let items = live["ledger.items"].as_array().unwrap();
    let item = |id: &str| items.iter().find(|i| i["item_id"] == id).unwrap().clone();
    assert_eq!(item(&again)["rebound_of"], i1.as_str());
    assert_eq!(item(&i5)["complaint_ids"].as_array().unwrap().len(), 1);
    assert_eq!(item(&i7)["status"], "closure_pending");
    let statuses: Vec<&str> = items
        .iter()
        .filter_map(|i| i["extension"]["status"].as_str())
        .collect();
    for s in ["approved", "rejected", "pending"] {
        assert!(statuses.contains(&s), "an extension {s}: {statuses:?}");
    }
    assert!(
        items.iter().any(|i| i["overdue"] == json!(["respond"])),
        "an item flagged overdue"
    );
    for key in [
        "intake.caller_reveals",
        "closure.evidence",
        "intake.complaint_history",
    ] {
        assert!(
            !live[key].as_array().unwrap().is_empty(),
            "{key} has rows to compare"
        );
    }
    let dispatches = live["intake.dispatches"].as_array().unwrap();
    assert!(
        dispatches.iter().any(|d| d["returned"] == true
            && d["reason_code"] == "not_our_area"
            && d["routed_by"] == "point"),
        "a routed call returned: {dispatches:?}"
    );
    // Event by event (as live), then by the whole-log replays: both leave what live left.
    for eventwise in [true, false] {
        for stats in rebuild_all_with(&env, eventwise).await {
            assert!(stats["own_events"].as_u64().unwrap() > 0, "{stats}");
        }
        let rebuilt = snapshot(&env).await;
        for (key, rows) in live.as_object().unwrap() {
            assert_eq!(
                &rebuilt[key], rows,
                "{key} differs after the rebuild (eventwise: {eventwise})"
            );
        }
    }

    // Live processing goes on.
    let (_, s) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    let before = s["registered_total"].as_i64().unwrap();
    register(&env, &complaint("jiukeshu", "园景阁西区", "4", "B1")).await;
    let (_, s) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    assert_eq!(s["registered_total"].as_i64().unwrap(), before + 1);
    env.cleanup().await;
}
