//! CONTRACT §10, the server side of the work console: the page and its policy, CORS for the
//! console's origin on intake and closure, the operator's preview and look-ups, the reviewer's
//! list of pending extensions.

use qingling_shared::Role;
use qingling_tests::{complaint, eventually, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{acknowledge, complaint_status, register, write_off, WAIT};

async fn preview(env: &TestEnv, token: &str, body: &Value) -> (StatusCode, Value) {
    env.post("intake", "/v1/complaints/preview", token, body)
        .await
}

#[tokio::test]
async fn the_operator_sees_before_sending_which_open_item_a_call_joins() {
    let env = TestEnv::start().await;
    let op = env.token(Role::Operator, "tongzhou");
    let body = complaint("jiukeshu", "预览小区", "2", "B1");
    let (status, p) = preview(&env, &op, &body).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["street"], "jiukeshu");
    assert_eq!(p["would_link_to"], Value::Null, "no item at the point yet");
    assert_eq!(
        env.count_events("intake").await,
        0,
        "a preview records nothing"
    );

    let (complaint_id, item) = register(&env, &body).await;
    let point = eventually("the preview to name the open item", WAIT, || async {
        let (_, p) = preview(&env, &op, &body).await;
        (p["would_link_to"] == item.as_str()).then_some(p)
    })
    .await;
    // Spelled differently, the same basement: the same point, the same item.
    let mut respelled = body.clone();
    respelled["point"]["community"] = json!(" 预览小区 ");
    respelled["point"]["building"] = json!("２");
    let (_, p) = preview(&env, &op, &respelled).await;
    assert_eq!(p["point_id"], point["point_id"]);
    assert_eq!(p["would_link_to"], item.as_str());

    // An item the street found itself (no complaint of intake's on it) is known too.
    let st = env.token(Role::Street, "jiukeshu");
    let found = complaint("jiukeshu", "巡查小区", "5", "B2");
    let (status, v) = env
        .post(
            "ledger",
            "/v1/ledger/items",
            &st,
            &json!({"category": "basement_illegal_residence", "point": found["point"], "description": "巡查发现"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let inspected = v["item_id"].as_str().unwrap().to_string();
    eventually(
        "the preview to name the street's own item",
        WAIT,
        || async {
            let (_, p) = preview(&env, &op, &found).await;
            (p["would_link_to"] == inspected.as_str()).then_some(())
        },
    )
    .await;

    // Bad input as a registration would get it; only operators may ask.
    let mut bad = body.clone();
    bad["street"] = json!("nowhere");
    let (status, v) = preview(&env, &op, &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (status, _) = preview(&env, &st, &body).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Written off: the point is free again.
    write_off(&env, "jiukeshu", &item).await;
    eventually(
        "the preview to forget the written-off item",
        WAIT,
        || async {
            let (_, p) = preview(&env, &op, &body).await;
            p["would_link_to"].is_null().then_some(())
        },
    )
    .await;
    complaint_status(&env, &complaint_id, "written_off", WAIT).await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_operator_finds_a_callers_complaints_and_the_work_waiting() {
    let env = TestEnv::start().await;
    let op = env.token(Role::Operator, "tongzhou");
    let mut first = complaint("jiukeshu", "来电小区", "1", "B1");
    first["caller"]["phone"] = json!("139 1234 5678");
    let (a, item_a) = register(&env, &first).await;
    let mut second = complaint("yongshun", "来电小区二", "3", "B1");
    second["caller"]["phone"] = json!("13912345678");
    let (b, _) = register(&env, &second).await;
    let (_, other) = register(&env, &complaint("jiukeshu", "别人小区", "1", "B1")).await;

    let (status, found) = env
        .get("intake", "/v1/complaints?phone=139-1234-5678", &op)
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let ids: Vec<&str> = found["complaints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["complaint_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![b.as_str(), a.as_str()],
        "that caller's, newest first"
    );
    let shown = &found["complaints"][0];
    assert_eq!(shown["caller"]["phone"], "*******5678", "masked even here");
    assert!(shown.get("history").is_none());
    assert!(!found.to_string().contains("13912345678"));
    let (status, _) = env
        .get(
            "intake",
            "/v1/complaints?phone=139",
            &env.token(Role::Street, "jiukeshu"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, v) = env.get("intake", "/v1/complaints", &op).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (status, _) = env
        .get("intake", "/v1/complaints?status=dispatched", &op)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // 退单 → the returned list; 销账 → the follow-up list, until 回访.
    let st = env.token(Role::Street, "jiukeshu");
    let (status, v) = env
        .post(
            "intake",
            &format!("/v1/complaints/{a}/return"),
            &st,
            &json!({"reason": "不属于本辖区"}),
        )
        .await;
    assert!(status.is_success(), "{status} {v}");
    let listed = |status: &'static str| {
        let (env, op) = (&env, &op);
        async move {
            let (_, v) = env
                .get("intake", &format!("/v1/complaints?status={status}"), op)
                .await;
            v["complaints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["complaint_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("returned").await, vec![a.clone()]);
    let _ = item_a;
    write_off(&env, "jiukeshu", &other).await;
    let other_complaint = eventually("the written-off complaint to be listed", WAIT, || async {
        let l = listed("written_off").await;
        (l.len() == 1).then(|| l[0].clone())
    })
    .await;
    let (status, v) = env
        .post(
            "intake",
            &format!("/v1/complaints/{other_complaint}/follow-up"),
            &op,
            &json!({"satisfaction": "satisfied"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(
        listed("written_off").await.is_empty(),
        "followed up: off the list"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn the_reviewer_lists_the_extensions_waiting_for_an_answer() {
    let env = TestEnv::start().await;
    let (_, item) = register(&env, &complaint("jiukeshu", "延期小区", "1", "B1")).await;
    let (_, calm) = register(&env, &complaint("jiukeshu", "平静小区", "1", "B1")).await;
    acknowledge(&env, "jiukeshu", &item).await;
    let until = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let (status, v) = env
        .post(
            "ledger",
            &format!("/v1/ledger/items/{item}/extension"),
            &env.token(Role::Street, "jiukeshu"),
            &json!({"until": until, "reason": "需协调产权单位"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let rev = env.token(Role::Reviewer, "tongzhou");
    let (status, page) = env
        .get(
            "ledger",
            "/v1/ledger/items?status=open&extension=pending",
            &rev,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![item.as_str()], "not {calm}");
    assert_eq!(page["items"][0]["extension"]["status"], "pending");
    let (status, _) = env
        .get("ledger", "/v1/ledger/items?extension=approved", &rev)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, v) = env
        .post(
            "ledger",
            &format!("/v1/ledger/items/{item}/extension/approve"),
            &rev,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, page) = env
        .get(
            "ledger",
            "/v1/ledger/items?status=open&extension=pending",
            &rev,
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    env.cleanup().await;
}

#[tokio::test]
async fn the_console_is_served_and_intake_and_closure_allow_it_by_cors() {
    let env = TestEnv::start_for_console(&[]).await;
    let ledger = env.svc("ledger").url.clone();
    let (intake, closure) = (
        env.svc("intake").url.clone(),
        env.svc("closure").url.clone(),
    );
    let r = env
        .http
        .get(format!("{ledger}/console/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(
        csp.contains(&format!("connect-src 'self' {intake} {closure};")),
        "{csp}"
    );
    assert!(r.text().await.unwrap().contains("console.js"));
    let r = env
        .http
        .get(format!("{ledger}/console/config.json"))
        .send()
        .await
        .unwrap();
    let config: Value = r.json().await.unwrap();
    assert_eq!(
        config,
        json!({"intake": intake, "closure": closure, "oidc": null})
    );
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{ledger}/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers()["location"], "/console/");
    // The dashboard keeps its stricter policy.
    let r = env.http.get(format!("{ledger}/")).send().await.unwrap();
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("connect-src 'self';"));

    for (base, path) in [(&intake, "/v1/complaints"), (&closure, "/v1/evidence")] {
        let preflight = |origin: &str| {
            env.http
                .request(reqwest::Method::OPTIONS, format!("{base}{path}"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type, idempotency-key",
                )
                .send()
        };
        let r = preflight(&ledger).await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        assert_eq!(r.headers()["access-control-allow-origin"], ledger.as_str());
        let allowed = r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(allowed.contains("authorization") && allowed.contains("idempotency-key"));
        let r = preflight("http://evil.example").await.unwrap();
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "another site is not allowed"
        );
        // A refusal reaches the console's script, so it can show the detail.
        let r = env
            .http
            .post(format!("{base}{path}"))
            .header("origin", &ledger)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()["access-control-allow-origin"], ledger.as_str());
    }
    env.cleanup().await;
}

/// The whole path in headless Chromium, through the console only: an operator registers a call;
/// the street (on a phone-sized screen) acknowledges it, uploads two photos and files the
/// write-off; the reviewer rejects it with a reason; the street resubmits; the reviewer approves;
/// the district is back at dynamic zero. The photos the reviewer saw are the ones uploaded.
#[tokio::test]
async fn the_whole_path_in_the_console_in_chromium() {
    use qingling_tests::browser;
    let env = TestEnv::start_for_console(&[]).await;
    let photos = [
        browser::fixture("basement-after-1.jpg"),
        browser::fixture("basement-after-2.png"),
    ];
    let result = browser::run(
        "console.mjs",
        &[
            ("LEDGER_URL", env.svc("ledger").url.clone()),
            ("TOKEN_OPERATOR", env.token(Role::Operator, "tongzhou")),
            ("TOKEN_STREET", env.token(Role::Street, "jiukeshu")),
            ("TOKEN_REVIEWER", env.token(Role::Reviewer, "tongzhou")),
            ("TOKEN_DISTRICT", env.token(Role::District, "tongzhou")),
            ("PHOTO1", photos[0].clone()),
            ("PHOTO2", photos[1].clone()),
        ],
    )
    .await;

    // The photos the street chose are the ones kept, and the ones the reviewer saw.
    let mut chosen: Vec<String> = photos
        .iter()
        .map(|p| {
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                std::fs::read(p).unwrap(),
            ))
        })
        .collect();
    chosen.sort();
    let sorted = |v: &Value| {
        let mut s: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        s.sort();
        s.dedup();
        s
    };
    assert_eq!(sorted(&result["uploaded_sha256"]), chosen, "{result}");
    assert_eq!(sorted(&result["reviewer_saw_sha256"]), chosen, "{result}");

    // And the system agrees: the complaint was written off through an approved, photo-backed
    // request after a rejected one; the district is at dynamic zero.
    let item = result["item_id"].as_str().unwrap();
    let complaint = result["complaint_id"].as_str().unwrap();
    complaint_status(&env, complaint, "written_off", WAIT).await;
    let rev = env.token(Role::Reviewer, "tongzhou");
    let (_, approved) = env
        .get("closure", "/v1/closures?status=approved", &rev)
        .await;
    let (_, rejected) = env
        .get("closure", "/v1/closures?status=rejected", &rev)
        .await;
    let of_item = |v: &Value| -> Vec<Value> {
        v["closures"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["item_id"] == item)
            .cloned()
            .collect()
    };
    assert_eq!(of_item(&approved).len(), 1, "{approved}");
    assert_eq!(of_item(&rejected).len(), 1, "{rejected}");
    let cited = sorted(&Value::Array(
        of_item(&approved)[0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["sha256"].clone())
            .collect(),
    ));
    assert_eq!(cited, chosen);
    let summary = crate::summary(&env).await;
    assert_eq!(summary["dynamic_zero"], true, "{summary}");
    for shot in result["screenshots"].as_array().unwrap() {
        assert!(
            std::path::Path::new(shot.as_str().unwrap()).exists(),
            "{shot}"
        );
    }
    env.cleanup().await;
}
