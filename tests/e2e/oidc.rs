//! Sign-in with the district's identity provider (OpenID Connect): a real, certified provider
//! (`oidc-provider`) on loopback; its tokens accepted by every service, every kind of bad token
//! refused, keys rotated and the provider down without the services noticing.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use qingling_shared::Role;
use qingling_tests::oidc::Provider;
use qingling_tests::{complaint, eventually, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{complaint_status, item_status, WAIT};

/// Where get-token.mjs is sent back to (nothing needs to listen there).
const REDIRECT: &str = "http://127.0.0.1:9/console/";

fn provider_env<'a>(p: &'a Provider, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("QINGLING_OIDC_ISSUER", p.issuer.as_str()),
        ("QINGLING_OIDC_AUDIENCE", "qingling"),
    ];
    env.extend_from_slice(extra);
    env
}

async fn status_with(env: &TestEnv, token: &str) -> (StatusCode, Value) {
    env.get("ledger", "/v1/ledger/items?status=open", token)
        .await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn people_work_with_the_providers_tokens_and_histories_show_their_names() {
    let p = Provider::start(&[("CONSOLE_REDIRECT_URIS", REDIRECT)]).await;
    let env = TestEnv::start_with(&provider_env(&p, &[])).await;
    let operator = p.token("operator-tongzhou", REDIRECT).await;
    let street = p.token("street-jiukeshu", REDIRECT).await;
    let header = jsonwebtoken::decode_header(&street).unwrap();
    assert_eq!(
        header.alg,
        Algorithm::ES256,
        "the provider signs with ES256"
    );

    let (status, created) = env
        .post(
            "intake",
            "/v1/complaints",
            &operator,
            &complaint("jiukeshu", "身份小区", "1", "B1"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["complaint_id"].as_str().unwrap();
    let registered = complaint_status(&env, id, "registered", WAIT).await;
    let item = registered["item_id"].as_str().unwrap().to_string();
    let (status, v) = env
        .post(
            "ledger",
            &format!("/v1/ledger/items/{item}/acknowledge"),
            &street,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // Another street's person may not touch it.
    let other = p.token("street-yongshun", REDIRECT).await;
    let (status, _) = env
        .get("ledger", &format!("/v1/ledger/items/{item}"), &other)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Each event's actor is the person's sub; the history names them.
    let detail = item_status(&env, &item, "acknowledged").await;
    let history = detail["history"].as_array().unwrap();
    let by = |t: &str| {
        history
            .iter()
            .find(|h| h["event_type"] == t)
            .unwrap()
            .clone()
    };
    assert_eq!(by("item_registered")["actor"], "operator-tongzhou");
    assert_eq!(by("item_registered")["actor_name"], "钱接线");
    assert_eq!(by("item_acknowledged")["actor"], "street-jiukeshu");
    assert_eq!(by("item_acknowledged")["actor_name"], "李明（九棵树街道）");
    let actors: Vec<(String, Option<String>)> =
        sqlx::query_as("select actor, actor_name from events order by position")
            .fetch_all(&mut env.db("intake").await)
            .await
            .unwrap();
    assert!(actors
        .iter()
        .all(|(a, n)| a == "operator-tongzhou" && n.as_deref() == Some("钱接线")));

    // Machines keep their shared-secret tokens.
    let machine = env.token(Role::District, "tongzhou");
    assert_eq!(status_with(&env, &machine).await.0, StatusCode::OK);

    // A person the provider gave no Qingling role: 403, saying what is missing.
    for (user, claim) in [("no-role", "qingling_role"), ("bad-role", "qingling_role")] {
        let t = p.token(user, REDIRECT).await;
        let (status, v) = status_with(&env, &t).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{user}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(claim), "{v}");
    }
    env.cleanup().await;
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_and_logged_without_the_token() {
    let p = Provider::start(&[
        ("CONSOLE_REDIRECT_URIS", REDIRECT),
        ("EXTRA_AUDIENCES", "another-system"),
    ])
    .await;
    let env = TestEnv::start_with(&provider_env(
        &p,
        &[("QINGLING_OIDC_REFRESH_INTERVAL", "10s")],
    ))
    .await;
    let good = |extra: Value| {
        let mut c = json!({
            "iss": p.issuer, "aud": "qingling", "sub": "street-jiukeshu",
            "iat": now(), "exp": now() + 300,
            "qingling_role": "street", "qingling_org": "jiukeshu", "name": "李明",
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    // The provider's own keys, each algorithm: accepted.
    for alg in [Algorithm::ES256, Algorithm::RS256] {
        let t = p.sign(alg, &good(json!({})));
        assert_eq!(status_with(&env, &t).await.0, StatusCode::OK, "{alg:?}");
    }
    let mut refused = vec![];
    let mut expect = |what: &str, token: String, want: StatusCode| {
        refused.push((what.to_string(), token, want));
    };
    expect(
        "another issuer",
        p.sign(
            Algorithm::ES256,
            &good(json!({"iss": "http://127.0.0.1:1"})),
        ),
        StatusCode::UNAUTHORIZED,
    );
    expect(
        "another audience",
        p.sign(Algorithm::ES256, &good(json!({"aud": "another-system"}))),
        StatusCode::UNAUTHORIZED,
    );
    expect(
        "a genuine token for another audience",
        p.token_for("street-jiukeshu", REDIRECT, Some("another-system"))
            .await,
        StatusCode::UNAUTHORIZED,
    );
    expect(
        "expired",
        p.sign(Algorithm::ES256, &good(json!({"exp": now() - 5}))),
        StatusCode::UNAUTHORIZED,
    );
    expect(
        "not yet valid",
        p.sign(Algorithm::ES256, &good(json!({"nbf": now() + 3600}))),
        StatusCode::UNAUTHORIZED,
    );
    expect(
        "no expiry",
        p.sign(Algorithm::ES256, &good(json!({"exp": null}))),
        StatusCode::UNAUTHORIZED,
    );
    expect(
        "role missing",
        p.sign(Algorithm::ES256, &good(json!({"qingling_role": null}))),
        StatusCode::FORBIDDEN,
    );
    expect(
        "org missing",
        p.sign(Algorithm::ES256, &good(json!({"qingling_org": null}))),
        StatusCode::FORBIDDEN,
    );
    expect(
        "role not a role",
        p.sign(Algorithm::ES256, &good(json!({"qingling_role": "admin"}))),
        StatusCode::FORBIDDEN,
    );
    expect(
        "role not a string",
        p.sign(
            Algorithm::ES256,
            &good(json!({"qingling_role": ["street"]})),
        ),
        StatusCode::FORBIDDEN,
    );
    expect(
        "org not a string",
        p.sign(Algorithm::ES256, &good(json!({"qingling_org": 7}))),
        StatusCode::FORBIDDEN,
    );
    expect(
        "a reviewer of every district",
        p.sign(
            Algorithm::ES256,
            &good(json!({"qingling_role": "reviewer", "qingling_org": "*"})),
        ),
        StatusCode::FORBIDDEN,
    );
    // A key the provider does not publish (a forger's own), under a kid it does publish and
    // under one it does not.
    let forger = Provider::start(&[("CONSOLE_REDIRECT_URIS", REDIRECT)]).await;
    let forged = forger.sign(Algorithm::ES256, &good(json!({})));
    expect(
        "signed by another key",
        forged.clone(),
        StatusCode::UNAUTHORIZED,
    );
    let genuine = p.sign(Algorithm::ES256, &good(json!({})));
    let genuine_kid = jsonwebtoken::decode_header(&genuine).unwrap().kid.unwrap();
    let mut parts: Vec<String> = forged.split('.').map(String::from).collect();
    let mut h = jsonwebtoken::decode_header(&forged).unwrap();
    h.kid = Some(genuine_kid);
    parts[0] = b64(&serde_json::to_vec(&h).unwrap());
    expect(
        "another key under a published kid",
        parts.join("."),
        StatusCode::UNAUTHORIZED,
    );
    // alg none, and HS256 keyed with the provider's public key (algorithm confusion).
    let body = genuine.split('.').nth(1).unwrap().to_string();
    expect(
        "alg none",
        format!("{}.{body}.", b64(br#"{"alg":"none","typ":"JWT"}"#)),
        StatusCode::UNAUTHORIZED,
    );
    let public = p.jwks().await;
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &good(json!({})),
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    expect(
        "HS256 keyed with the provider's public keys",
        confused,
        StatusCode::UNAUTHORIZED,
    );
    let mut rs_as_es =
        jsonwebtoken::decode_header(&p.sign(Algorithm::RS256, &good(json!({})))).unwrap();
    rs_as_es.alg = Algorithm::ES256;
    let rs = p.sign(Algorithm::RS256, &good(json!({})));
    let rs_parts: Vec<&str> = rs.split('.').collect();
    expect(
        "an RS256 signature claiming ES256",
        format!(
            "{}.{}.{}",
            b64(&serde_json::to_vec(&rs_as_es).unwrap()),
            rs_parts[1],
            rs_parts[2]
        ),
        StatusCode::UNAUTHORIZED,
    );

    for (what, token, want) in &refused {
        let (status, v) = status_with(&env, token).await;
        assert_eq!(status, *want, "{what}: {v}");
        assert_eq!(v["status"], want.as_u16(), "{what}: problem+json");
    }
    // Made-up key ids do not make the services hammer the provider: one fetch for the lot.
    let metrics = env
        .http
        .get(env.url("ledger", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let fetches: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("qingling_oidc_key_fetches_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        (1.0..=2.0).contains(&fetches),
        "start-up and at most one refresh within the interval, not {fetches}"
    );
    // Refusals are logged, the tokens never.
    for s in &env.services {
        let log = std::fs::read_to_string(&s.log).unwrap();
        if s.name == "ledger" {
            assert!(log.contains("bearer token refused"));
        }
        for (what, token, _) in &refused {
            let signature = token.rsplit('.').next().unwrap();
            assert!(
                signature.len() < 8 || !log.contains(signature),
                "{} logged the token ({what})",
                s.name
            );
        }
    }
    env.cleanup().await;
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Keys rotated at the provider are picked up without a restart; while the provider is down
/// for a minute, people signed in keep working on the keys already fetched.
#[tokio::test]
async fn key_rotation_is_picked_up_and_a_provider_outage_goes_unnoticed() {
    let mut p = Provider::start(&[("CONSOLE_REDIRECT_URIS", REDIRECT)]).await;
    let env = TestEnv::start_with(&provider_env(
        &p,
        &[
            ("QINGLING_OIDC_REFRESH_INTERVAL", "1s"),
            ("QINGLING_OIDC_JWKS_TTL", "2s"),
        ],
    ))
    .await;
    let before = p.token("street-jiukeshu", REDIRECT).await;
    assert_eq!(status_with(&env, &before).await.0, StatusCode::OK);

    let new_kid = p.rotate(false).await;
    let after = p.token("street-jiukeshu", REDIRECT).await;
    assert_eq!(
        jsonwebtoken::decode_header(&after).unwrap().kid.as_deref(),
        Some(new_kid.as_str()),
        "the provider signs with the new key"
    );
    assert_eq!(
        status_with(&env, &after).await.0,
        StatusCode::OK,
        "a new key, learnt without a restart"
    );
    assert_eq!(
        status_with(&env, &before).await.0,
        StatusCode::OK,
        "the old key is still published"
    );

    // The provider goes down for a minute, far past the keys' freshness (2 s).
    p.stop().await;
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut checks = 0;
    while tokio::time::Instant::now() < until {
        for t in [&before, &after] {
            let started = std::time::Instant::now();
            let (status, v) = status_with(&env, t).await;
            assert_eq!(status, StatusCode::OK, "while the provider is down: {v}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "no request waits on the provider"
            );
        }
        checks += 1;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    assert!(checks >= 15);
    p.restart().await;
    // Rotated again, the old keys dropped: the new key is learnt, the dropped one refused once
    // the keys are fetched again.
    p.rotate(true).await;
    let newest = p.token("street-jiukeshu", REDIRECT).await;
    eventually("the newest key to be accepted", WAIT, || async {
        (status_with(&env, &newest).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    eventually("the dropped key to be refused", WAIT, || async {
        (status_with(&env, &before).await.0 == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    env.cleanup().await;
}

/// In Chromium, as a street user would: sign in at the provider, work a case, and when the
/// session expires while the write-off form is being filled, sign in again without losing it.
#[tokio::test]
async fn a_street_user_signs_in_at_the_provider_and_works_a_case_in_chromium() {
    let mut env = TestEnv::for_console(&[]);
    let console = format!("{}/console/", env.fixed_url("ledger"));
    const TTL: &str = "20";
    let p = Provider::start(&[
        ("CONSOLE_REDIRECT_URIS", console.as_str()),
        ("POST_LOGOUT_REDIRECT_URIS", console.as_str()),
        ("ACCESS_TOKEN_TTL", TTL),
    ])
    .await;
    env.extra_env
        .push(("QINGLING_OIDC_ISSUER".into(), p.issuer.clone()));
    env.start_services().await;
    // The call comes in through a machine (the hotline's system) with a shared-secret token.
    let (_, item) = crate::register(&env, &complaint("jiukeshu", "统一认证小区", "2", "B1")).await;

    let result = qingling_tests::browser::run(
        "console-oidc.mjs",
        &[
            ("LEDGER_URL", env.svc("ledger").url.clone()),
            ("OIDC_ISSUER", p.issuer.clone()),
            (
                "PHOTO1",
                qingling_tests::browser::fixture("basement-after-1.jpg"),
            ),
            ("ITEM_ID", item.clone()),
            ("TOKEN_TTL", TTL.to_string()),
        ],
    )
    .await;
    assert!(
        result["signed_in_as"].as_str().unwrap().contains("李明"),
        "{result}"
    );
    // The write-off request was filed by the person, under their own name, after re-signing in.
    let closure = result["closure_id"].as_str().unwrap();
    let rev = env.token(Role::Reviewer, "tongzhou");
    let (status, detail) = env
        .get("closure", &format!("/v1/closures/{closure}"), &rev)
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["item_id"], item.as_str());
    let requested = &detail["history"][0];
    assert_eq!(requested["actor"], "street-jiukeshu", "{detail}");
    assert_eq!(requested["actor_name"], "李明（九棵树街道）");
    let item_detail = item_status(&env, &item, "closure_pending").await;
    let ack = item_detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event_type"] == "item_acknowledged")
        .unwrap()
        .clone();
    assert_eq!(ack["actor"], "street-jiukeshu");
    assert_eq!(ack["actor_name"], "李明（九棵树街道）");
    env.cleanup().await;
}
