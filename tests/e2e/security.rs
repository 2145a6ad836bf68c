//! CONTRACT §13 against a hostile network and a curious insider: one test per defence.

use std::time::{Duration, Instant};

use qingling_shared::Role;
use qingling_tests::{complaint, eventually, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{register, WAIT};

/// Short limits, so that the tests wait seconds rather than a minute.
const LIMITS: [(&str, &str); 3] = [
    ("QINGLING_HEADER_TIMEOUT", "1s"),
    ("QINGLING_BODY_TIMEOUT", "2s"),
    ("QINGLING_IDLE_TIMEOUT", "3s"),
];

fn addr(env: &TestEnv, svc: &str) -> String {
    env.url(svc, "")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Reads until the server closes the connection; how long that took.
async fn closed_within(mut s: TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection was still open after {limit:?}"),
        }
    }
}

#[tokio::test]
async fn slow_and_silent_clients_are_cut_off() {
    let env = TestEnv::start_with(&LIMITS).await;
    let a = addr(&env, "intake");
    // Nothing at all.
    let silent = TcpStream::connect(&a).await.unwrap();
    assert!(closed_within(silent, Duration::from_secs(6)).await < Duration::from_secs(5));
    // A header line every half second, never finishing.
    let mut slow = TcpStream::connect(&a).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let dripping = tokio::spawn(async move {
        for n in 0..20 {
            if slow
                .write_all(format!("X-Drip-{n}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("the slow header was never cut off");
    });
    let started = Instant::now();
    let cut = dripping.await.unwrap();
    assert!(
        cut - started < Duration::from_secs(5),
        "{:?}",
        cut - started
    );
    // A body one byte a second.
    let mut body = TcpStream::connect(&a).await.unwrap();
    let op = env.token(Role::Operator, "tongzhou");
    body.write_all(
        format!("POST /v1/complaints HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {op}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{").as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut answer = vec![];
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            n = body.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if body.write_all(b" ").await.is_err() { break; }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the slow body was never cut off"
        );
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 408") || text.is_empty(),
        "{text}"
    );
    // A kept-alive connection left idle after an answer closes too.
    let mut idle = TcpStream::connect(&a).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(closed_within(idle, Duration::from_secs(6)).await < Duration::from_secs(5));
    // A normal request is served throughout.
    let (status, _) = env
        .get(
            "intake",
            "/v1/catalog",
            &env.token(Role::Operator, "tongzhou"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    env.cleanup().await;
}

#[tokio::test]
async fn a_live_stream_ends_with_its_token_and_a_token_holds_twenty() {
    let env = TestEnv::start().await;
    let http = reqwest::Client::new();
    let url = |q: &str| env.url("ledger", &format!("/v1/ledger/stream?district=tongzhou{q}"));
    // A token that expires in 3 s: the stream ends then.
    let exp = chrono::Utc::now().timestamp() + 3;
    let short = env.token_with(Role::District, "tongzhou", "d-short", exp);
    let started = Instant::now();
    let r = http.get(url("")).bearer_auth(&short).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(10), r.text())
        .await
        .expect("the stream ended");
    assert!(body.unwrap().contains("event: summary"));
    assert!(started.elapsed() < Duration::from_secs(6));
    // Twenty streams per token; the twenty-first is 429 until one closes.
    let token = env.token(Role::District, "tongzhou");
    let mut open = vec![];
    for _ in 0..20 {
        let r = http.get(url("")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        open.push(r);
    }
    let r = http.get(url("")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    drop(open.pop());
    eventually("a slot to free", WAIT, || async {
        let r = http.get(url("")).bearer_auth(&token).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    // A made-up category is refused, as the summary refuses it.
    let other = env.token_with(Role::District, "tongzhou", "d-other", exp + 3600);
    let r = http
        .get(url("&category=made_up"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    env.cleanup().await;
}

#[tokio::test]
async fn callers_are_masked_revealed_on_the_record_and_kept_off_the_public_list() {
    let env = TestEnv::start_with(&[("QINGLING_OPEN311_KEYS", "key-abc=civic-app")]).await;
    let mut body = complaint("jiukeshu", "园景阁西区", "3", "B1");
    body["caller"] = json!({"name": "张先生", "phone": "010-6512-3456"});
    body["description"] = json!("来电人说可打13912345678或身份证11010519491231002X核实");
    let (id, _) = register(&env, &body).await;
    let st = env.token(Role::Street, "jiukeshu");
    let (_, seen) = env
        .get("intake", &format!("/v1/complaints/{id}"), &st)
        .await;
    assert_eq!(
        seen["caller"],
        json!({"name": "张**", "phone": "*******3456"})
    );
    let op = env.token(Role::Operator, "tongzhou");
    let (_, seen) = env
        .get("intake", &format!("/v1/complaints/{id}"), &op)
        .await;
    assert_eq!(seen["caller"]["name"], "张先生");
    assert_eq!(seen["caller"]["phone"], "*******3456");
    // The street reveals, on the record; another street may not.
    let (status, _) = env
        .post(
            "intake",
            &format!("/v1/complaints/{id}/caller"),
            &env.token(Role::Street, "yongshun"),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let r = env
        .http
        .post(env.url("intake", &format!("/v1/complaints/{id}/caller")))
        .bearer_auth(&st)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let revealed: Value = r.json().await.unwrap();
    assert_eq!(
        revealed,
        json!({"name": "张先生", "phone": "010-6512-3456"})
    );
    let month = (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m")
        .to_string();
    let (status, list) = env
        .get(
            "intake",
            &format!("/v1/caller-reveals?district=tongzhou&month={month}"),
            &env.token(Role::District, "tongzhou"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let reveals = list["reveals"].as_array().unwrap();
    assert_eq!(reveals.len(), 1);
    assert_eq!(reveals[0]["complaint_id"], id.as_str());
    assert_eq!(reveals[0]["street"], "jiukeshu");
    assert_eq!(reveals[0]["revealed_by"], "street-jiukeshu");
    let (status, _) = env.get("intake", "/v1/caller-reveals", &st).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "streets do not see the list");
    // The public list: no numbers, no building or basement.
    let list: Value = env
        .http
        .get(env.url("intake", "/open311/v2/requests.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = list.to_string();
    for secret in ["13912345678", "11010519491231002X", "6512", "3号楼", "B1"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(list[0]["address"], "园景阁西区");
    env.cleanup().await;
}

#[tokio::test]
async fn failed_sign_ins_past_thirty_a_minute_get_429_while_valid_tokens_pass() {
    let env = TestEnv::start_with(&[("QINGLING_OPEN311_KEYS", "key-abc=civic-app")]).await;
    let forged = qingling_shared::JwtKeys::new(b"not-the-secret-not-the-secret-xx").mint(
        &qingling_shared::Claims::new(
            "x",
            Role::Operator,
            "*",
            chrono::Utc::now().timestamp() + 600,
        ),
    );
    let mut statuses = vec![];
    for _ in 0..35 {
        statuses.push(env.get("intake", "/v1/catalog", &forged).await.0);
    }
    assert!(statuses[..30]
        .iter()
        .all(|s| *s == StatusCode::UNAUTHORIZED));
    assert!(statuses[30..]
        .iter()
        .all(|s| *s == StatusCode::TOO_MANY_REQUESTS));
    let r = env
        .http
        .get(env.url("intake", "/v1/catalog"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("retry-after"));
    // A valid token from the same address is served.
    let (status, _) = env
        .get(
            "intake",
            "/v1/catalog",
            &env.token(Role::Operator, "tongzhou"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Wrong Open311 keys count too.
    let r = env
        .http
        .post(env.url("intake", "/open311/v2/requests.json"))
        .form(&[
            ("api_key", "wrong"),
            ("service_code", "basement_illegal_residence"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    env.cleanup().await;
}

#[tokio::test]
async fn one_basement_is_one_point_whatever_invisible_characters_it_carries() {
    let env = TestEnv::start().await;
    let spellings = [
        "园景阁西区",
        "园景阁\u{200B}西区",
        "\u{FEFF}园景阁西区",
        "园景阁\u{202E}西区\u{202C}",
        "园\u{200D}景阁西区",
    ];
    let mut points = std::collections::HashSet::new();
    let op = env.token(Role::Operator, "tongzhou");
    for s in spellings {
        let (status, v) = env
            .post(
                "intake",
                "/v1/complaints",
                &op,
                &complaint("jiukeshu", s, "3", "B1"),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        points.insert(v["point_id"].as_str().unwrap().to_string());
    }
    assert_eq!(points.len(), 1, "{points:?}");
    // A community of zero-width characters only is missing.
    let (status, v) = env
        .post(
            "intake",
            "/v1/complaints",
            &op,
            &complaint("jiukeshu", "\u{200B}\u{200C}\u{FEFF}", "3", "B1"),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("point.community"));
    // Another street's point, named by id, is refused.
    let (_, other) = env
        .post(
            "intake",
            "/v1/complaints",
            &op,
            &complaint("yongshun", "永顺小区", "1", "B1"),
        )
        .await;
    let mut body = complaint("jiukeshu", "随便", "1", "B1");
    body["point"]["point_id"] = other["point_id"].clone();
    let (status, v) = env.post("intake", "/v1/complaints", &op, &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("point.point_id"));
    env.cleanup().await;
}

#[tokio::test]
async fn odd_tokens_bodies_and_targets_get_clear_refusals() {
    let env = TestEnv::start().await;
    let now = chrono::Utc::now().timestamp();
    let keys = qingling_shared::JwtKeys::new(qingling_tests::SECRET.as_bytes());
    let mint = |f: &dyn Fn(&mut qingling_shared::Claims)| {
        let mut c = qingling_shared::Claims::new("op", Role::Operator, "tongzhou", now + 600);
        f(&mut c);
        keys.mint(&c)
    };
    for (what, token) in [
        ("a NUL in sub", mint(&|c| c.sub = "a\0b".into())),
        ("iat a day ahead", mint(&|c| c.iat = Some(now + 86_400))),
        ("nbf a day ahead", mint(&|c| c.nbf = Some(now + 86_400))),
        (
            "exp in the year 292 billion",
            mint(&|c| c.exp = 9_000_000_000_000_000),
        ),
    ] {
        let (status, v) = env.get("intake", "/v1/catalog", &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {v}");
    }
    let op = env.token(Role::Operator, "tongzhou");
    let post = |body: &'static str, ct: &'static str| {
        env.http
            .post(env.url("intake", "/v1/complaints"))
            .bearer_auth(&op)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let r = post(
        r#"{"district":"tongzhou","district":"chaoyang"}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post("{}", "application/json; charset=utf-16")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Open311 form fields that are not UTF-8 once decoded: 400, nothing stored.
    let r = env
        .http
        .post(env.url("intake", "/open311/v2/requests.json"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("api_key=x&service_code=basement_illegal_residence&description=%FF%FE")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("not UTF-8"));
    // The framework's own refusals come as problem+json too.
    let r = env
        .http
        .get(env.url("intake", "/v1/complaints/not-a-uuid"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    // Bytes the HTTP layer cannot parse: 400 as problem+json, before any handler.
    let mut raw = TcpStream::connect(addr(&env, "intake")).await.unwrap();
    raw.write_all(b"GET /v1/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![];
    raw.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("application/problem+json") && answer.contains("\"status\":400"),
        "{answer}"
    );
    // An over-long target: 414 as problem+json.
    let r = env
        .http
        .get(env.url("intake", &format!("/v1/catalog?x={}", "a".repeat(10_000))))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    // Pages carry their policy; API answers are not cached.
    let r = env.http.get(env.url("ledger", "/")).send().await.unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(
        !r.text().await.unwrap().contains("<script>"),
        "no inline script"
    );
    let r = env
        .http
        .get(env.url("intake", "/v1/catalog"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    // An import dated the year -9999 is refused.
    let (status, _) = env
        .post(
            "ledger",
            "/v1/ledger/imports",
            &env.token(Role::Reviewer, "tongzhou"),
            &json!({"street": "jiukeshu", "community": "c", "building": "1", "basement": "B1",
                    "registered_on": "-9999-01-01"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    env.cleanup().await;
}

#[tokio::test]
async fn a_short_signing_secret_refuses_to_start() {
    let out = tokio::process::Command::new(qingling_tests::bin_dir().join("qingling-intake"))
        .env("QINGLING_JWT_SECRET", "x")
        .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 32"), "{err}");
}

/// A nats-server of the test's own, with the shipped authorization: each service its user.
struct Bus {
    child: tokio::process::Child,
    url: String,
    dir: std::path::PathBuf,
}

const BUS_PASSWORD: &str = "bus-password-of-the-test";

impl Bus {
    async fn start() -> Bus {
        let exe = std::env::var("QINGLING_NATS_SERVER")
            .unwrap_or_else(|_| "/opt/qingling-nats/bin/nats-server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("qingling-bus-{}", uuid::Uuid::now_v7()));
        let conf =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/server.conf");
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args([
            "-c",
            conf.to_str().unwrap(),
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .arg("-sd")
        .arg(&dir)
        .kill_on_drop(true);
        for svc in ["INTAKE", "LEDGER", "CLOSURE"] {
            cmd.env(format!("QINGLING_NATS_PASSWORD_{svc}"), BUS_PASSWORD);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {exe} (scripts/setup installs it): {e}"));
        let url = format!("nats://127.0.0.1:{port}");
        eventually("the test's nats-server to listen", WAIT, || async {
            TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop)
        })
        .await;
        Bus { child, url, dir }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.child.start_kill().ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

#[tokio::test]
async fn the_bus_takes_a_services_events_only_from_that_service() {
    let bus = Bus::start().await;
    let env = TestEnv::start_with(&[
        ("NATS_URL", bus.url.as_str()),
        ("QINGLING_NATS_PASSWORD", BUS_PASSWORD),
    ])
    .await;
    // The services work under their own users.
    let (_, item) = register(&env, &complaint("jiukeshu", "总线小区", "1", "B1")).await;
    // No password, no bus.
    let anonymous = async_nats::ConnectOptions::new()
        .connect(bus.url.as_str())
        .await;
    assert!(anonymous.is_err(), "an anonymous client connected");
    // The closure service's identity cannot speak for intake.
    let closure =
        async_nats::ConnectOptions::with_user_and_password("closure".into(), BUS_PASSWORD.into())
            .connect(bus.url.as_str())
            .await
            .unwrap();
    let errors = closure.clone();
    let forged_id = uuid::Uuid::now_v7();
    let complaint_id = uuid::Uuid::now_v7();
    let forged = json!({
        "event_id": forged_id, "event_type": qingling_events::intake::types::COMPLAINT_DISPATCHED,
        "stream": qingling_events::intake::stream(complaint_id), "version": 1,
        "occurred_at": chrono::Utc::now(), "actor": "FORGED-VIA-NATS",
        "correlation_id": forged_id, "causation_id": forged_id,
        "data": serde_json::to_value(qingling_events::testing::dispatched(
            complaint_id, "jiukeshu", uuid::Uuid::now_v7(), chrono::Utc::now())).unwrap(),
    });
    let subject = format!(
        "{}.intake.{}",
        env.prefix,
        qingling_events::intake::types::COMPLAINT_DISPATCHED
    );
    closure
        .publish(subject.clone(), forged.to_string().into())
        .await
        .ok();
    closure.flush().await.ok();
    drop(errors);
    // Whatever the client was told, nothing reached the ledger: give it the time it takes a real
    // event, then look.
    let (_, real) = register(&env, &complaint("jiukeshu", "总线小区", "2", "B1")).await;
    assert_ne!(real, item);
    let forged_seen: i64 = sqlx::query_scalar("select count(*) from inbox where event_id = $1")
        .bind(forged_id)
        .fetch_one(&mut env.db("ledger").await)
        .await
        .unwrap();
    assert_eq!(forged_seen, 0, "the ledger applied a forged event");
    let items: i64 = sqlx::query_scalar("select count(*) from items")
        .fetch_one(&mut env.db("ledger").await)
        .await
        .unwrap();
    assert_eq!(items, 2, "only the two real complaints are on the ledger");
    env.cleanup().await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_served_again_when_one_frees() {
    let env = TestEnv::start_with(&[
        ("QINGLING_MAX_CONNECTIONS", "3"),
        ("QINGLING_HEADER_TIMEOUT", "2s"),
    ])
    .await;
    let a = addr(&env, "closure");
    let mut held = vec![];
    for _ in 0..3 {
        held.push(TcpStream::connect(&a).await.unwrap());
    }
    // Give the server a moment to take the three.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let extra = TcpStream::connect(&a).await.unwrap();
    assert!(
        closed_within(extra, Duration::from_secs(1)).await < Duration::from_millis(900),
        "the fourth connection was kept"
    );
    // The silent three are cut off by the header timeout; then the service serves again.
    drop(held);
    eventually("a free connection slot", WAIT, || async {
        let r = reqwest::get(env.url("closure", "/healthz")).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    env.cleanup().await;
}
