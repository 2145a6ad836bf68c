//! Racing commands on one item: exactly one wins, the others get 409, the log shows one outcome.

use qingling_events::{closure::types::*, intake::types::*, ledger::types::*};
use qingling_shared::Role;
use qingling_tests::{complaint, rectified, TestEnv};
use reqwest::StatusCode;
use serde_json::json;

use crate::{item_status, register, request_closure};

async fn statuses(
    tasks: Vec<tokio::task::JoinHandle<(StatusCode, serde_json::Value)>>,
) -> Vec<StatusCode> {
    let mut out = vec![];
    for t in tasks {
        out.push(t.await.unwrap().0);
    }
    out.sort();
    out
}

#[tokio::test]
async fn racing_acknowledgements_requests_and_reviews_have_one_winner() {
    let env = std::sync::Arc::new(TestEnv::start().await);
    let st = env.token(Role::Street, "zhongcang");
    let rv = env.token(Role::Reviewer, "tongzhou");
    let (_, item) = register(&env, &complaint("zhongcang", "中仓小区", "4", "B1")).await;

    let post = |svc: &'static str, path: String, token: String, body: serde_json::Value| {
        let env = env.clone();
        tokio::spawn(async move { env.post(svc, &path, &token, &body).await })
    };
    let acks = (0..4)
        .map(|_| {
            post(
                "ledger",
                format!("/v1/ledger/items/{item}/acknowledge"),
                st.clone(),
                json!({}),
            )
        })
        .collect();
    assert_eq!(
        statuses(acks).await,
        [
            StatusCode::OK,
            StatusCode::CONFLICT,
            StatusCode::CONFLICT,
            StatusCode::CONFLICT
        ]
    );

    // Wait until closure knows the item is acknowledged, then race two requests.
    let first = request_closure(&env, "zhongcang", &rectified(&item)).await;
    let (status, _) = env
        .post(
            "closure",
            &format!("/v1/closures/{first}/reject"),
            &rv,
            &json!({"reason": "补充照片"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    item_status(&env, &item, "acknowledged").await;
    let requests = (0..3)
        .map(|_| {
            post(
                "closure",
                "/v1/closures".into(),
                st.clone(),
                rectified(&item),
            )
        })
        .collect();
    assert_eq!(
        statuses(requests).await,
        [
            StatusCode::CREATED,
            StatusCode::CONFLICT,
            StatusCode::CONFLICT
        ]
    );
    let (_, pending) = env.get("closure", "/v1/closures?status=pending", &rv).await;
    let closure = pending["closures"][0]["closure_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(pending["closures"].as_array().unwrap().len(), 1);

    let reviews = vec![
        post(
            "closure",
            format!("/v1/closures/{closure}/approve"),
            rv.clone(),
            json!({}),
        ),
        post(
            "closure",
            format!("/v1/closures/{closure}/reject"),
            rv.clone(),
            json!({"reason": "x"}),
        ),
        post(
            "closure",
            format!("/v1/closures/{closure}/approve"),
            rv.clone(),
            json!({}),
        ),
    ];
    assert_eq!(
        statuses(reviews).await,
        [StatusCode::OK, StatusCode::CONFLICT, StatusCode::CONFLICT]
    );
    let outcomes: i64 = sqlx::query_scalar(
        sqlx::AssertSqlSafe(format!("select count(*) from events where stream = $1 and event_type in ('{CLOSURE_APPROVED}', '{CLOSURE_REJECTED}')")),
    )
    .bind(format!("closure-{closure}"))
    .fetch_one(&mut env.db("closure").await)
    .await
    .unwrap();
    assert_eq!(outcomes, 1, "the log shows one outcome");
    let acked: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from events where event_type = '{ITEM_ACKNOWLEDGED}'"
    )))
    .fetch_one(&mut env.db("ledger").await)
    .await
    .unwrap();
    assert_eq!(acked, 1);
    if let Ok(env) = std::sync::Arc::try_unwrap(env) {
        env.cleanup().await;
    }
}

#[tokio::test]
async fn many_concurrent_calls_about_one_new_basement_make_one_item() {
    let env = std::sync::Arc::new(TestEnv::start().await);
    let op = env.token(Role::Operator, "tongzhou");
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (env, op) = (env.clone(), op.clone());
            // Spelled a few ways, as different callers would.
            let building = ["6", "６", "6号楼"][i % 3];
            tokio::spawn(async move {
                env.post(
                    "intake",
                    "/v1/complaints",
                    &op,
                    &complaint("beiyuan", "北苑家园", building, "B1"),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().0, StatusCode::CREATED);
    }
    let dist = env.token(Role::District, "tongzhou");
    let item = qingling_tests::eventually(
        "all twelve complaints on the ledger",
        crate::WAIT,
        || async {
            let (_, list) = env
                .get("ledger", "/v1/ledger/items?street=beiyuan", &dist)
                .await;
            let items = list["items"].as_array()?.clone();
            (items.len() == 1 && items[0]["complaint_ids"].as_array()?.len() == 12)
                .then(|| items[0].clone())
        },
    )
    .await;
    assert_eq!(item["status"], "registered");
    let (_, s) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    assert_eq!(crate::street_row(&s, "beiyuan")["open"], 1);
    if let Ok(env) = std::sync::Arc::try_unwrap(env) {
        env.cleanup().await;
    }
}

/// Registrations arriving together are written together (group commit): each is still answered
/// once, counted once and kept once, and idempotency keys — repeated within the burst, even with
/// another body — keep their meaning.
#[tokio::test]
async fn a_burst_of_registrations_is_written_together_and_each_counted_once() {
    let env = std::sync::Arc::new(TestEnv::start().await);
    let op = env.token(Role::Operator, "tongzhou");
    // 16 calls without a key, 8 keys sent three times each, one key sent with two bodies.
    let calls: Vec<(Option<String>, serde_json::Value)> = (0..48)
        .map(|i| {
            let basement = |n: usize| complaint("yongshun", "永顺小区", "3", &format!("B{n}"));
            match i {
                0..16 => (None, basement(i)),
                16..40 => (
                    Some(format!("burst-{}", (i - 16) / 3)),
                    basement(100 + (i - 16) / 3),
                ),
                _ => (Some("burst-two-bodies".into()), basement(200 + i % 2)),
            }
        })
        .collect();
    let tasks: Vec<_> = calls
        .iter()
        .cloned()
        .map(|(key, body)| {
            let (env, op) = (env.clone(), op.clone());
            tokio::spawn(async move {
                let mut r = env
                    .http
                    .post(env.url("intake", "/v1/complaints"))
                    .bearer_auth(op);
                if let Some(k) = key {
                    r = r.header("Idempotency-Key", k);
                }
                qingling_tests::read(r.json(&body).send().await.unwrap()).await
            })
        })
        .collect();
    let mut answers = vec![];
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 16 + 8 + 1, "{answers:?}");
    for k in 0..8 {
        let ids: std::collections::HashSet<_> = answers[16 + 3 * k..19 + 3 * k]
            .iter()
            .map(|(s, v)| {
                assert!(
                    *s == StatusCode::CREATED || *s == StatusCode::OK,
                    "{s}: {v}"
                );
                v["complaint_id"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(ids.len(), 1, "one complaint per key");
    }
    // The key sent with two bodies: the first written wins, its body replays, the other is refused.
    let two = &answers[40..48];
    let winner = two
        .iter()
        .position(|(s, _)| *s == StatusCode::CREATED)
        .unwrap();
    for (i, (s, v)) in two.iter().enumerate() {
        let same_body = i % 2 == winner % 2;
        match (i == winner, same_body) {
            (true, _) => {}
            (false, true) => assert_eq!(*s, StatusCode::OK, "{v}"),
            (false, false) => assert_eq!(*s, StatusCode::UNPROCESSABLE_ENTITY, "{v}"),
        }
    }

    let mut db = env.db("intake").await;
    async fn count(db: &mut sqlx::PgConnection, sql: impl Into<String>) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.into()))
            .fetch_one(db)
            .await
            .unwrap()
    }
    assert_eq!(
        count(
            &mut db,
            format!("select count(*) from events where event_type = '{COMPLAINT_RECEIVED}'")
        )
        .await,
        25
    );
    assert_eq!(
        count(
            &mut db,
            format!("select count(*) from events where event_type = '{COMPLAINT_DISPATCHED}'")
        )
        .await,
        25
    );
    assert_eq!(count(&mut db, "select count(*) from complaints where status in ('dispatched', 'registered') and counted").await, 25);
    assert_eq!(
        count(
            &mut db,
            "select count(*) from events where stream like 'complaint-%'"
        )
        .await,
        50
    );
    assert_eq!(count(&mut db, "select count(*) from callers").await, 25);
    assert_eq!(count(&mut db, "select coalesce(sum(received), 0)::bigint from street_metrics where street = 'yongshun'").await, 25);
    assert_eq!(
        count(
            &mut db,
            "select count(distinct position)::bigint - max(position) from events"
        )
        .await,
        0,
        "positions have no gaps"
    );
    drop(db);
    let dist = env.token(Role::District, "tongzhou");
    qingling_tests::eventually("all 25 on the ledger", crate::WAIT, || async {
        let (_, list) = env
            .get(
                "ledger",
                "/v1/ledger/items?street=yongshun&limit=100",
                &dist,
            )
            .await;
        (list["items"].as_array()?.len() == 25).then_some(())
    })
    .await;
    if let Ok(env) = std::sync::Arc::try_unwrap(env) {
        env.cleanup().await;
    }
}
