//! End-to-end tests: the three real binaries, a fresh PostgreSQL database and a fresh NATS subject
//! prefix per test.

mod admin;
mod auth;
mod bad_input;
mod cleanup;
mod console;
mod consuming;
mod evidence;
mod faults;
mod fuzz;
mod lifecycle;
mod live;
mod load;
mod log;
mod main_path;
mod oidc;
mod open311;
mod openapi;
mod operations;
mod owner;
mod points;
mod races;
mod rebuild;
mod scale;
mod security;

use std::time::Duration;

use qingling_shared::Role;
use qingling_tests::{eventually, TestEnv};
use reqwest::StatusCode;
use serde_json::Value;

pub const WAIT: Duration = Duration::from_secs(15);

/// POSTs a complaint and waits until it is on the ledger; returns (complaint_id, item_id).
pub async fn register(env: &TestEnv, body: &Value) -> (String, String) {
    let op = env.token(Role::Operator, "tongzhou");
    let (status, created) = env.post("intake", "/v1/complaints", &op, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["complaint_id"].as_str().unwrap().to_string();
    let registered = complaint_status(env, &id, "registered", WAIT).await;
    let item = registered["item_id"].as_str().unwrap().to_string();
    (id, item)
}

/// Waits until intake shows the complaint in `status`; returns the complaint.
pub async fn complaint_status(env: &TestEnv, id: &str, status: &str, within: Duration) -> Value {
    let op = env.token(Role::Operator, "tongzhou");
    eventually(
        &format!("complaint {id} to be {status}"),
        within,
        || async {
            let (_, c) = env
                .get("intake", &format!("/v1/complaints/{id}"), &op)
                .await;
            (c["status"] == status).then_some(c)
        },
    )
    .await
}

/// Waits until the ledger shows the item in `status`.
pub async fn item_status(env: &TestEnv, item: &str, status: &str) -> Value {
    let t = env.token(Role::District, "tongzhou");
    eventually(&format!("item {item} to be {status}"), WAIT, || async {
        let (_, i) = env
            .get("ledger", &format!("/v1/ledger/items/{item}"), &t)
            .await;
        (i["status"] == status).then_some(i)
    })
    .await
}

/// Files a write-off request, waiting for closure to learn that the item was acknowledged.
pub async fn request_closure(env: &TestEnv, street: &str, body: &Value) -> String {
    let st = env.token(Role::Street, street);
    eventually("closure to accept the write-off request", WAIT, || async {
        let (status, r) = env.post("closure", "/v1/closures", &st, body).await;
        match status {
            StatusCode::CREATED => Some(r["closure_id"].as_str().unwrap().to_string()),
            StatusCode::CONFLICT | StatusCode::NOT_FOUND => None,
            other => panic!("unexpected {other}: {r}"),
        }
    })
    .await
}

pub fn street_row<'a>(summary: &'a Value, street: &str) -> &'a Value {
    summary["streets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["street"] == street)
        .expect("street row")
}

/// 签收 → 销账申请 → 销账.
pub async fn write_off(env: &TestEnv, street: &str, item: &str) {
    acknowledge(env, street, item).await;
    let closure = request_closure(env, street, &qingling_tests::rectified(item)).await;
    let (status, v) = env
        .post(
            "closure",
            &format!("/v1/closures/{closure}/approve"),
            &env.token(Role::Reviewer, "tongzhou"),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    item_status(env, item, "written_off").await;
}

/// 改派 of a returned complaint, once the ledger has taken the return (until then intake answers
/// 409: the ledger may still refuse it).
pub async fn redispatch(env: &TestEnv, complaint: &str, street: &str) -> Value {
    let op = env.token(Role::Operator, "tongzhou");
    eventually("the ledger to take the return", WAIT, || async {
        let (status, v) = env
            .post(
                "intake",
                &format!("/v1/complaints/{complaint}/dispatch"),
                &op,
                &serde_json::json!({ "street": street }),
            )
            .await;
        match status {
            StatusCode::OK => Some(v),
            StatusCode::CONFLICT if v["detail"].as_str()?.contains("not yet taken") => None,
            other => panic!("re-dispatch answered {other}: {v}"),
        }
    })
    .await
}

/// 签收: the street acknowledges its item.
pub async fn acknowledge(env: &TestEnv, street: &str, item: &str) {
    let (status, v) = env
        .post(
            "ledger",
            &format!("/v1/ledger/items/{item}/acknowledge"),
            &env.token(Role::Street, street),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

/// Waits until a service's relay has published its whole log (of at least `at_least` events).
pub async fn log_published(env: &TestEnv, schema: &str, at_least: i64) {
    eventually(&format!("{schema} to publish its log"), WAIT, || async {
        let (cursor, head): (i64, i64) = sqlx::query_as(
            "select (select position from relay_cursor), (select coalesce(max(position), 0) from events)",
        )
        .fetch_one(&mut env.db(schema).await)
        .await
        .ok()?;
        (cursor == head && head >= at_least).then_some(())
    })
    .await;
}

/// The district office's summary of tongzhou.
pub async fn summary(env: &TestEnv) -> Value {
    env.get(
        "ledger",
        "/v1/ledger/summary?district=tongzhou",
        &env.token(Role::District, "tongzhou"),
    )
    .await
    .1
}
