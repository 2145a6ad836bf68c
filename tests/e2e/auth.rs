//! CONTRACT §2: 401 for a missing, forged or expired token; 403 for the wrong role or org.

use qingling_shared::{JwtKeys, Role};
use qingling_tests::{complaint, rectified, TestEnv};
use reqwest::StatusCode;
use serde_json::json;

use crate::{register, request_closure};

#[tokio::test]
async fn tokens_roles_and_orgs_are_enforced_everywhere() {
    let env = TestEnv::start().await;
    let body = complaint("jiukeshu", "新城阳光", "7", "B1");

    // 401: none, malformed, forged, expired — on every service.
    let forged = JwtKeys::new(b"not-the-secret").mint(&qingling_shared::Claims::new(
        "x",
        Role::Operator,
        "*",
        chrono::Utc::now().timestamp() + 600,
    ));
    let expired = env.token_with(
        Role::Operator,
        "tongzhou",
        "op",
        chrono::Utc::now().timestamp() - 3600,
    );
    for (svc, path) in [
        ("intake", "/v1/orgs"),
        ("ledger", "/v1/ledger/summary?district=tongzhou"),
        ("closure", "/v1/closures"),
    ] {
        let r = env.http.get(env.url(svc, path)).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{svc} without a token"
        );
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        for bad in ["garbage", forged.as_str(), expired.as_str()] {
            let (status, p) = env.get(svc, path, bad).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{svc} {path}: {p}");
            assert_eq!(p["status"], 401);
        }
    }
    let (status, _) = env.post("intake", "/v1/complaints", &expired, &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // 403: wrong role.
    let st = env.token(Role::Street, "jiukeshu");
    let (status, p) = env.post("intake", "/v1/complaints", &st, &body).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a street cannot register complaints: {p}"
    );
    // 403: an operator of another district.
    let (status, _) = env
        .post(
            "intake",
            "/v1/complaints",
            &env.token(Role::Operator, "chaoyang"),
            &body,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (complaint_id, item) = register(&env, &body).await;
    let other_street = env.token(Role::Street, "yongshun");
    let (status, _) = env
        .get("ledger", &format!("/v1/ledger/items/{item}"), &other_street)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "another street cannot read the item"
    );
    let (status, _) = env
        .post(
            "ledger",
            &format!("/v1/ledger/items/{item}/acknowledge"),
            &other_street,
            &json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "another street cannot acknowledge it"
    );
    let (status, _) = env
        .get(
            "intake",
            &format!("/v1/complaints/{complaint_id}"),
            &other_street,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = env
        .get("intake", &format!("/v1/complaints/{complaint_id}"), &st)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the street it was dispatched to may read it"
    );
    let (status, _) = env
        .get("ledger", "/v1/ledger/items?street=jiukeshu", &other_street)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = env
        .post(
            "ledger",
            &format!("/v1/ledger/items/{item}/acknowledge"),
            &env.token(Role::Reviewer, "tongzhou"),
            &json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only the street acknowledges"
    );
    let (status, _) = env
        .get(
            "ledger",
            "/v1/ledger/summary?district=tongzhou",
            &env.token(Role::District, "chaoyang"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another district's office");
    let (status, _) = env
        .get(
            "ledger",
            "/v1/ledger/entries?district=tongzhou",
            &env.token(Role::Reviewer, "chaoyang"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, _) = env
        .post(
            "ledger",
            &format!("/v1/ledger/items/{item}/acknowledge"),
            &st,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = env
        .post("closure", "/v1/closures", &other_street, &rectified(&item))
        .await;
    assert!(
        status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
        "{status}"
    );
    let closure = request_closure(&env, "jiukeshu", &rectified(&item)).await;
    let (status, _) = env
        .post(
            "closure",
            &format!("/v1/closures/{closure}/approve"),
            &env.token(Role::Reviewer, "chaoyang"),
            &json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a reviewer of another district"
    );
    let (status, _) = env
        .post(
            "closure",
            &format!("/v1/closures/{closure}/approve"),
            &st,
            &json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a street cannot approve its own request"
    );
    let (status, _) = env
        .post(
            "closure",
            &format!("/v1/closures/{closure}/approve"),
            &env.token(Role::District, "tongzhou"),
            &json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the district office only watches"
    );
    let (status, _) = env
        .get("closure", &format!("/v1/closures/{closure}"), &other_street)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    env.cleanup().await;
}
