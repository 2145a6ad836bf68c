//! 督查督办 and 延期: limits flagged once, caught up after a restart, once across instances; an
//! extension moves resolve-by once.

use super::*;

#[tokio::test]
async fn passed_limits_are_flagged_once_counted_and_listed() {
    let env = TestEnv::start_with(&SHORT).await;
    let dist = env.token(Role::District, "tongzhou");
    let (_, item) = register(&env, &complaint("huoxian", "漷县新村", "1", "B1")).await;
    let (_, fresh) = env
        .get("ledger", &format!("/v1/ledger/items/{item}"), &dist)
        .await;
    assert!(fresh["respond_by"].is_string() && fresh["resolve_by"].is_string());
    wait_overdue(&env, &item, &["respond", "resolve"]).await;
    let (_, detail) = env
        .get("ledger", &format!("/v1/ledger/items/{item}"), &dist)
        .await;
    assert_eq!(detail["overdue"], json!(["respond", "resolve"]));
    let (_, summary) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    assert_eq!(
        (
            summary["overdue"].as_i64(),
            street_row(&summary, "huoxian")["overdue"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let (_, listed) = env
        .get("ledger", "/v1/ledger/items?overdue=true", &dist)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    // An item acknowledged in time is never respond-overdue.
    let (_, other) = register(&env, &complaint("huoxian", "漷县新村", "2", "B1")).await;
    let (status, _) = env
        .post(
            "ledger",
            &format!("/v1/ledger/items/{other}/acknowledge"),
            &env.token(Role::Street, "huoxian"),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_overdue(&env, &other, &["resolve"]).await;
    env.cleanup().await;
}

#[tokio::test]
async fn limits_that_passed_while_the_ledger_was_down_are_caught_up_at_start() {
    let mut env = TestEnv::start_with(&SHORT).await;
    let (_, item) = register(&env, &complaint("xiji", "西集花园", "3", "B1")).await;
    env.svc("ledger").signal("KILL");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        overdue_events(&env, &item).await.is_empty(),
        "nothing flagged while down"
    );
    env.restart("ledger", &[]).await;
    wait_overdue(&env, &item, &["respond", "resolve"]).await;
    env.cleanup().await;
}

#[tokio::test]
async fn two_ledger_instances_flag_each_deadline_exactly_once() {
    let mut env = TestEnv::start_with(&SHORT).await;
    let second = env.spawn("ledger").await;
    let mut items = vec![];
    for b in ["B1", "B2", "B3", "B4"] {
        items.push(
            register(&env, &complaint("yongledian", "永乐店小区", "5", b))
                .await
                .1,
        );
    }
    for item in &items {
        wait_overdue(&env, item, &["respond", "resolve"]).await;
    }
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from events where event_type = '{ITEM_OVERDUE}'"
    )))
    .fetch_one(&mut env.db("ledger").await)
    .await
    .unwrap();
    assert_eq!(total, 8);
    env.services.push(second);
    env.cleanup().await;
}

#[tokio::test]
async fn an_extension_moves_the_resolve_deadline_once() {
    let env = TestEnv::start_with(&[
        ("QINGLING_RESOLVE_WITHIN", "3s"),
        ("QINGLING_DEADLINE_TICK", "100ms"),
    ])
    .await;
    let st = env.token(Role::Street, "majuqiao");
    let rv = env.token(Role::Reviewer, "tongzhou");
    let (_, item) = register(&env, &complaint("majuqiao", "马驹桥家园", "1", "B1")).await;
    let (_, other) = register(&env, &complaint("majuqiao", "马驹桥家园", "1", "B2")).await;
    let path = |i: &str, tail: &str| format!("/v1/ledger/items/{i}/extension{tail}");
    let until = (chrono::Utc::now() + chrono::Duration::hours(48)).to_rfc3339();

    let (status, p) = env
        .post("ledger", &path(&item, ""), &st, &json!({"until": until}))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a reason is required: {p}"
    );
    let (status, p) = env
        .post(
            "ledger",
            &path(&item, ""),
            &st,
            &json!({"until": "2020-01-01T00:00:00Z", "reason": "x"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "until must be later: {p}"
    );
    let (status, v) = env
        .post(
            "ledger",
            &path(&item, ""),
            &st,
            &json!({"until": until, "reason": "需协调产权单位"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["extension"]["status"], "pending");
    let (status, _) = env
        .post(
            "ledger",
            &path(&item, ""),
            &st,
            &json!({"until": until, "reason": "again"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "one pending at a time");
    let (status, _) = env
        .post("ledger", &path(&item, "/approve"), &st, &json!({}))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a street cannot grant itself"
    );
    let (status, v) = env
        .post("ledger", &path(&item, "/approve"), &rv, &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["extension"]["status"], "approved");
    let moved: chrono::DateTime<chrono::Utc> = v["resolve_by"].as_str().unwrap().parse().unwrap();
    let asked: chrono::DateTime<chrono::Utc> = until.parse().unwrap();
    assert_eq!(
        moved,
        chrono::SubsecRound::trunc_subsecs(asked, 6),
        "resolve-by moved to the date asked (to the microsecond)"
    );
    let (status, _) = env
        .post(
            "ledger",
            &path(&item, ""),
            &st,
            &json!({"until": until, "reason": "再延"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "only once");

    // The other item's extension is rejected; its old deadline stands and passes.
    let (status, _) = env
        .post(
            "ledger",
            &path(&other, ""),
            &st,
            &json!({"until": until, "reason": "人手不足"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = env
        .post(
            "ledger",
            &path(&other, "/reject"),
            &rv,
            &json!({"reason": ""}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, v) = env
        .post(
            "ledger",
            &path(&other, "/reject"),
            &rv,
            &json!({"reason": "理由不充分"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["extension"]["status"], "rejected");
    let events: Vec<String> = eventually("the other item to go resolve-overdue", WAIT, || async {
        let k = overdue_events(&env, &other).await;
        k.contains(&"resolve".to_string()).then_some(k)
    })
    .await;
    assert!(events.contains(&"resolve".to_string()));
    assert!(
        !overdue_events(&env, &item)
            .await
            .contains(&"resolve".to_string()),
        "an extended item is not overdue before its new date"
    );
    env.cleanup().await;
}
