//! CONTRACT §3: bad input gets its status as problem+json, and leaves no event behind.

use qingling_events::intake::types::*;
use qingling_shared::Role;
use qingling_tests::{complaint, read, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// (what, content type, body, expected status, the field named in `errors`)
type Case<'a> = (&'a str, &'a str, Vec<u8>, StatusCode, Option<&'a str>);

async fn raw(
    env: &TestEnv,
    svc: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value, String) {
    let r = env
        .http
        .post(env.url(svc, path))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let (s, v) = read(r).await;
    (s, v, ct)
}

#[tokio::test]
async fn bad_complaints_get_problem_json_and_write_nothing() {
    let env = TestEnv::start().await;
    let op = env.token(Role::Operator, "tongzhou");
    let good = complaint("jiukeshu", "园景阁西区", "3", "B1");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = good.clone();
        f(&mut b);
        serde_json::to_vec(&b).unwrap()
    };
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            "application/json",
            b"{\"district\": \"tongzhou\",".to_vec(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "wrong type",
            "application/json",
            with(&|b| b["point"] = json!(42)),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "wrong type deep",
            "application/json",
            with(&|b| b["point"]["building"] = json!(["3"])),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "unknown street",
            "application/json",
            with(&|b| b["street"] = json!("wangfujing")),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("street"),
        ),
        (
            "unknown district",
            "application/json",
            with(&|b| b["district"] = json!("gotham")),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("district"),
        ),
        (
            "unknown category",
            "application/json",
            with(&|b| b["category"] = json!("noise")),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("category"),
        ),
        (
            "missing basement",
            "application/json",
            with(&|b| {
                b["point"].as_object_mut().unwrap().remove("basement");
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("point.basement"),
        ),
        (
            "bad urgency",
            "application/json",
            with(&|b| b["urgency"] = json!("now")),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("urgency"),
        ),
        (
            "oversized",
            "application/json",
            with(&|b| b["description"] = json!("地".repeat(30_000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        (
            "not JSON",
            "text/plain",
            serde_json::to_vec(&good).unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
        (
            "form",
            "application/x-www-form-urlencoded",
            b"district=tongzhou".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
        (
            "empty",
            "application/json",
            vec![],
            StatusCode::BAD_REQUEST,
            None,
        ),
    ];
    for (what, ct, body, expected, field) in cases {
        let (status, problem, content_type) =
            raw(&env, "intake", "/v1/complaints", &op, ct, body).await;
        assert_eq!(status, expected, "{what}: {problem}");
        assert_eq!(content_type, "application/problem+json", "{what}");
        assert_eq!(problem["status"], expected.as_u16(), "{what}");
        assert!(
            problem["title"].is_string()
                && problem["type"].is_string()
                && problem["detail"].is_string(),
            "{what}: {problem}"
        );
        if let Some(field) = field {
            let fields: Vec<&str> = problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(fields.contains(&field), "{what}: {problem}");
        }
    }
    // Unknown ids and routes.
    let (status, p) = env
        .get(
            "intake",
            &format!("/v1/complaints/{}", uuid::Uuid::now_v7()),
            &op,
        )
        .await;
    assert_eq!(
        (status, p["status"].as_u64()),
        (StatusCode::NOT_FOUND, Some(404))
    );
    let (status, _) = env.get("intake", "/v1/complaints/not-an-id", &op).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = env
        .get(
            "ledger",
            "/v1/ledger/items?limit=abc",
            &env.token(Role::District, "tongzhou"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = env
        .get(
            "ledger",
            "/v1/ledger/summary?district=gotham",
            &env.token(Role::Operator, "*"),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        env.count_events("intake").await,
        0,
        "no rejected request left an event"
    );
    let (status, _) = env.post("intake", "/v1/complaints", &op, &good).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(env.count_events("intake").await, 2, "received + dispatched");
    env.cleanup().await;
}

#[tokio::test]
async fn bad_write_off_requests_name_each_failed_rule_and_write_nothing() {
    let env = TestEnv::start().await;
    let st = env.token(Role::Street, "jiukeshu");
    let (_, item) = crate::register(&env, &complaint("jiukeshu", "园景阁西区", "5", "B1")).await;
    let mut body = qingling_tests::rectified(&item);
    body["checklist"]["layout_restored"] = json!(false);
    body["checklist"]["no_illegal_use"] = json!(false);
    let (status, p) = env.post("closure", "/v1/closures", &st, &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["checklist.no_illegal_use", "checklist.layout_restored"]
    );
    let (status, p) = env
        .post(
            "closure",
            "/v1/closures",
            &st,
            &json!({"item_id": item, "outcome": "rectified", "checklist": "yes"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    // Well-formed but the item is only registered, not acknowledged.
    let body = qingling_tests::rectified(&item);
    crate::eventually("closure to learn the item", crate::WAIT, || async {
        let (status, _) = env.post("closure", "/v1/closures", &st, &body).await;
        (status == StatusCode::CONFLICT).then_some(())
    })
    .await;
    let (status, _) = env
        .post(
            "closure",
            "/v1/closures",
            &st,
            &qingling_tests::rectified(&uuid::Uuid::now_v7().to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(env.count_events("closure").await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let env = TestEnv::start().await;
    let op = env.token(Role::Operator, "tongzhou");
    let body = complaint("xinhua", "运河苑", "12", "B1");
    let send = |b: Value| {
        let env = &env;
        let op = op.clone();
        async move {
            let r = env
                .http
                .post(env.url("intake", "/v1/complaints"))
                .bearer_auth(op)
                .header("Idempotency-Key", "call-0001")
                .json(&b)
                .send()
                .await
                .unwrap();
            read(r).await
        }
    };
    let (s1, first) = send(body.clone()).await;
    let (s2, second) = send(body.clone()).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(first["complaint_id"], second["complaint_id"]);
    assert_eq!(first, second);
    let mut other = body.clone();
    other["description"] = json!("另一件事");
    let (s3, p) = send(other).await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    // Concurrent retries of one call still make one complaint.
    let mut b = body.clone();
    b["point"]["basement"] = json!("B2");
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (http, url, op, b) = (
                env.http.clone(),
                env.url("intake", "/v1/complaints"),
                op.clone(),
                b.clone(),
            );
            tokio::spawn(async move {
                read(
                    http.post(url)
                        .bearer_auth(op)
                        .header("Idempotency-Key", "call-0002")
                        .json(&b)
                        .send()
                        .await
                        .unwrap(),
                )
                .await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{s}: {v}");
        ids.insert(v["complaint_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1);
    let received: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from events where event_type = '{COMPLAINT_RECEIVED}'"
    )))
    .fetch_one(&mut env.db("intake").await)
    .await
    .unwrap();
    assert_eq!(received, 2, "one complaint per key");
    env.cleanup().await;
}
