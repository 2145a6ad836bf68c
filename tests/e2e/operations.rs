//! What operators see: metrics per route and per event type, lags and open counts; JSON logs that
//! follow one correlation id through the services and never show a phone number or a token.

use qingling_events::{intake::types::*, ledger::types::*};
use std::time::Duration;

use qingling_shared::Role;
use qingling_tests::{complaint, eventually, read, TestEnv};
use reqwest::StatusCode;

use crate::{complaint_status, WAIT};

async fn metrics_text(env: &TestEnv, svc: &str) -> String {
    env.http
        .get(env.url(svc, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the first sample of `name` whose labels contain every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_and_json_logs_follow_a_complaint_through_the_services() {
    let env = TestEnv::start_with(&[("QINGLING_LOG_FORMAT", "json")]).await;
    let op = env.token(Role::Operator, "tongzhou");
    let correlation = uuid::Uuid::now_v7();
    let r = env
        .http
        .post(env.url("intake", "/v1/complaints"))
        .bearer_auth(&op)
        .header("X-Correlation-Id", correlation.to_string())
        .json(&complaint("jiukeshu", "日志小区", "1", "B1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok()),
        Some(correlation.to_string().as_str()),
        "the correlation id is echoed"
    );
    let (status, created) = read(r).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["complaint_id"].as_str().unwrap();
    complaint_status(&env, id, "registered", WAIT).await;

    // The client's correlation id is on its events in both services' logs.
    for (schema, event_type) in [("intake", COMPLAINT_RECEIVED), ("ledger", ITEM_REGISTERED)] {
        let found: i64 = sqlx::query_scalar(
            "select count(*) from events where correlation_id = $1 and event_type = $2",
        )
        .bind(correlation)
        .bind(event_type)
        .fetch_one(&mut env.db(schema).await)
        .await
        .unwrap();
        assert_eq!(found, 1, "{schema}.{event_type} carries the correlation id");
    }

    // Metrics: per route, per event type, lags, open counts.
    let intake = metrics_text(&env, "intake").await;
    assert!(
        sample(
            &intake,
            "qingling_http_requests_total",
            &[
                "route=\"/v1/complaints\"",
                "method=\"POST\"",
                "status=\"201\""
            ]
        ) >= Some(1.0),
        "{intake}"
    );
    assert!(sample(
        &intake,
        "qingling_http_request_duration_seconds_bucket",
        &["route=\"/v1/complaints\""]
    )
    .is_some());
    for ev in [COMPLAINT_RECEIVED, COMPLAINT_DISPATCHED] {
        let label = format!("event_type=\"{ev}\"");
        assert_eq!(
            sample(&intake, "qingling_events_appended_total", &[&label]),
            Some(1.0)
        );
    }
    let published = eventually("intake's relay metrics", WAIT, || async {
        let t = metrics_text(&env, "intake").await;
        (sample(
            &t,
            "qingling_events_published_total",
            &[&format!("event_type=\"{COMPLAINT_DISPATCHED}\"")],
        ) == Some(1.0))
        .then_some(t)
    })
    .await;
    assert!(sample(&published, "qingling_relay_lag_events", &[]).is_some());
    let ledger = eventually(
        "the ledger's consumer and open-count metrics",
        WAIT,
        || async {
            let t = metrics_text(&env, "ledger").await;
            let ready = sample(&t, "qingling_consumer_lag_events", &["source=\"intake\""])
                .is_some()
                && sample(
                    &t,
                    "qingling_open_items",
                    &["district=\"tongzhou\"", "street=\"jiukeshu\""],
                ) == Some(1.0);
            ready.then_some(t)
        },
    )
    .await;
    assert_eq!(
        sample(
            &ledger,
            "qingling_events_consumed_total",
            &[&format!("event_type=\"{COMPLAINT_DISPATCHED}\"")]
        ),
        Some(1.0)
    );

    // Logs: JSON lines; the correlation id shows in intake's and the ledger's; no phone, no token.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for svc in ["intake", "ledger", "closure"] {
        let log = std::fs::read_to_string(&env.svc(svc).log).unwrap();
        assert!(!log.is_empty(), "{svc} logged nothing");
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{svc}: not a JSON line: {line}"
            );
        }
        assert!(!log.contains("13800000000"), "{svc} logged a phone number");
        assert!(!log.contains(&op), "{svc} logged a token");
        if svc != "closure" {
            assert!(
                log.contains(&correlation.to_string()),
                "{svc}'s log does not show the correlation id:\n{log}"
            );
        }
    }
    env.cleanup().await;
}
