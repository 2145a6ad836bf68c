//! Reliability under faults: broker and database outages, crashes at random moments, SIGTERM
//! under load. PostgreSQL and NATS are real; outages are staged with a TCP proxy in front of
//! them, so the servers other tests share are never touched.

use qingling_events::{intake::types::*, ledger::types::*};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qingling_shared::Role;
use qingling_tests::proxy::{host_port, FaultProxy};
use qingling_tests::{complaint, eventually, nats_url, pg_base, read, TestEnv};
use reqwest::StatusCode;
use serde_json::Value;

use crate::consuming::consumers_idle;
use crate::load::{assert_each_once, Load, Urls};
use crate::{complaint_status, register, summary};

const LONG: Duration = Duration::from_secs(40);

async fn health(env: &TestEnv, svc: &str) -> (StatusCode, Value) {
    read(env.http.get(env.url(svc, "/healthz")).send().await.unwrap()).await
}

#[tokio::test]
async fn while_nats_is_down_intake_keeps_accepting_and_everything_flows_once_it_returns() {
    let proxy = FaultProxy::start(&host_port(&nats_url())).await;
    let via_proxy = proxy.url_for(&nats_url());
    let env = TestEnv::start_with(&[("NATS_URL", via_proxy.as_str())]).await;
    let op = env.token(Role::Operator, "tongzhou");
    register(&env, &complaint("tongyun", "通运小区", "1", "B0")).await;

    proxy.go_down();
    for svc in ["intake", "ledger", "closure"] {
        let (_, h) = eventually(&format!("{svc} to report degraded"), LONG, || async {
            let h = health(&env, svc).await;
            (h.0 == StatusCode::SERVICE_UNAVAILABLE).then_some(h)
        })
        .await;
        assert_eq!(
            (
                h["status"].as_str(),
                h["checks"]["nats"].as_str(),
                h["checks"]["database"].as_str()
            ),
            (Some("degraded"), Some("down"), Some("ok"))
        );
    }
    let mut accepted = vec![];
    for i in 1..=10 {
        let (status, c) = env
            .post(
                "intake",
                "/v1/complaints",
                &op,
                &complaint("tongyun", "通运小区", "1", &format!("B{i}")),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "intake accepts while NATS is down: {c}"
        );
        accepted.push(c["complaint_id"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        summary(&env).await["registered_total"],
        1,
        "nothing travels while the broker is down"
    );

    proxy.come_back();
    eventually("the ledger to catch up", LONG, || async {
        (summary(&env).await["registered_total"] == 11).then_some(())
    })
    .await;
    for svc in ["intake", "ledger", "closure"] {
        eventually(&format!("{svc} healthy again"), LONG, || async {
            (health(&env, svc).await.0 == StatusCode::OK).then_some(())
        })
        .await;
    }
    consumers_idle(&env).await;
    let registered: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from events where event_type = '{ITEM_REGISTERED}'"
    )))
    .fetch_one(&mut env.db("ledger").await)
    .await
    .unwrap();
    assert_eq!(registered, 11, "no duplicates");
    for id in &accepted {
        complaint_status(&env, id, "registered", LONG).await;
    }
    env.cleanup().await;
}

#[tokio::test]
async fn while_postgres_is_down_requests_get_503_quickly_and_the_services_recover_by_themselves() {
    let proxy = FaultProxy::start(&host_port(&pg_base())).await;
    let mut env = TestEnv::new(&[]);
    let via_proxy = proxy.url_for(&env.database_url());
    env.extra_env.push(("DATABASE_URL".into(), via_proxy));
    env.start_services().await;
    let op = env.token(Role::Operator, "tongzhou");
    let dist = env.token(Role::District, "tongzhou");
    let (_, item) = register(&env, &complaint("linheli", "临河里小区", "2", "B1")).await;
    let before = env.count_events("intake").await;

    proxy.go_down();
    let requests: Vec<(&str, String, Option<Value>, String)> = vec![
        (
            "intake",
            "/v1/complaints".into(),
            Some(complaint("linheli", "临河里小区", "2", "B2")),
            op.clone(),
        ),
        (
            "ledger",
            "/v1/ledger/summary?district=tongzhou".into(),
            None,
            dist.clone(),
        ),
        (
            "ledger",
            format!("/v1/ledger/items/{item}"),
            None,
            dist.clone(),
        ),
        (
            "closure",
            "/v1/closures".into(),
            None,
            env.token(Role::Reviewer, "tongzhou"),
        ),
    ];
    for (svc, path, body, token) in requests {
        let path = path.as_str();
        let started = Instant::now();
        let (status, p) = match body {
            Some(b) => env.post(svc, path, &token, &b).await,
            None => env.get(svc, path, &token).await,
        };
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{svc} {path}: {p}");
        assert_eq!(p["status"], 503);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{svc} {path} answered in {:?}",
            started.elapsed()
        );
    }
    let (status, h) = health(&env, "ledger").await;
    assert_eq!(
        (status, h["checks"]["database"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("down"))
    );
    assert_eq!(
        env.count_events("intake").await,
        before,
        "nothing half-written"
    );

    proxy.come_back();
    let id = eventually("intake to accept again", LONG, || async {
        let (status, c) = env
            .post(
                "intake",
                "/v1/complaints",
                &op,
                &complaint("linheli", "临河里小区", "2", "B3"),
            )
            .await;
        (status == StatusCode::CREATED).then(|| c["complaint_id"].as_str().unwrap().to_string())
    })
    .await;
    complaint_status(&env, &id, "registered", LONG).await;
    assert_eq!(summary(&env).await["registered_total"], 2);
    env.cleanup().await;
}

#[tokio::test]
async fn services_killed_at_random_moments_lose_and_double_nothing() {
    let env = TestEnv::start_on_fixed_ports(&[]).await;
    // Restarted services keep their addresses: the clients retry the same URL.
    let load = Load::start(&env, Urls::of(&env), 4, 30, "压测小区");

    // Kill each service in turn, twice, at random moments.
    let mut env = env;
    let mut kills = 0;
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(
            300 + (uuid::Uuid::now_v7().as_u128() % 600) as u64,
        ))
        .await;
        let name = ["intake", "ledger", "closure"][round % 3];
        env.restart(name, &[]).await;
        kills += 1;
    }
    let (accepted, approvals_seen) = load.finish().await;
    consumers_idle(&env).await;
    let approvals = assert_each_once(&env, &accepted, 120, &approvals_seen).await;
    println!(
        "survived {kills} SIGKILLs; {} complaints, {} write-offs",
        accepted.len(),
        approvals.len()
    );
    env.cleanup().await;
}

#[tokio::test]
async fn sigterm_under_load_finishes_in_flight_requests_publishes_what_is_owed_and_exits_zero() {
    let env = TestEnv::start().await;
    let op = env.token(Role::Operator, "tongzhou");
    let url = env.url("intake", "/v1/complaints");
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = vec![];
    for w in 0..6 {
        let (http, url, op, stop) = (env.http.clone(), url.clone(), op.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (vec![], 0);
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                match http
                    .post(&url)
                    .bearer_auth(&op)
                    .json(&complaint(
                        "yuqiao",
                        "玉桥小区",
                        &w.to_string(),
                        &format!("B{i}"),
                    ))
                    .send()
                    .await
                {
                    Ok(r) => {
                        let (status, c) = read(r).await;
                        assert_eq!(
                            status,
                            StatusCode::CREATED,
                            "an answered request completed: {c}"
                        );
                        ok.push(c["complaint_id"].as_str().unwrap().to_string());
                    }
                    Err(e) => {
                        assert!(
                            e.is_connect() || e.is_request(),
                            "only new connections are refused: {e}"
                        );
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (ok, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut env = env;
    env.svc("intake").signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), env.svc_mut("intake").child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    stop.store(true, Ordering::SeqCst);
    let mut accepted = vec![];
    for w in workers {
        accepted.extend(w.await.unwrap().0);
    }
    assert!(accepted.len() > 10, "load ran: {}", accepted.len());
    let mut c = env.db("intake").await;
    let (cursor, head, received): (i64, i64, i64) = sqlx::query_as(
        sqlx::AssertSqlSafe(format!("select (select position from relay_cursor), (select coalesce(max(position), 0) from events),
                (select count(*) from events where event_type = '{COMPLAINT_RECEIVED}')")),
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(
        received as usize,
        accepted.len(),
        "every answered complaint is stored"
    );
    assert_eq!(cursor, head, "everything stored was published before exit");
    // With intake still stopped, the ledger receives every accepted complaint.
    eventually(
        "the ledger to register every accepted complaint",
        LONG,
        || async {
            (summary(&env).await["registered_total"].as_u64() == Some(accepted.len() as u64))
                .then_some(())
        },
    )
    .await;
    env.cleanup().await;
}
