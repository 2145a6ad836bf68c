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

fn promtool() -> String {
    std::env::var("QINGLING_PROMTOOL").unwrap_or_else(|_| "promtool".into())
}

/// Prometheus's own tools: every service's `/metrics` passes `promtool check metrics` clean, the
/// shipped alert rules pass `promtool check rules` and their unit tests, and the Grafana
/// dashboard is valid JSON whose every query names metrics the services export.
#[tokio::test]
async fn metrics_alerts_and_dashboard_pass_prometheus_tools() {
    // A one-second respond limit, so that an item is flagged overdue and every metric is exported.
    let env = TestEnv::start_with(&[
        ("QINGLING_RESPOND_WITHIN", "1s"),
        ("QINGLING_DEADLINE_TICK", "100ms"),
    ])
    .await;
    crate::register(
        &env,
        &qingling_tests::complaint("jiukeshu", "指标小区", "1", "B1"),
    )
    .await;
    // The dependency gauges, the ledger's per-street gauges and the overdue flag, within seconds.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut exported = String::new();
    for svc in ["intake", "ledger", "closure"] {
        let text = env
            .http
            .get(env.url(svc, "/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.contains("# HELP qingling_dependency_up"),
            "{svc}: {text}"
        );
        let mut child = tokio::process::Command::new(promtool())
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool runs (scripts/test installs Debian's prometheus package)");
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{svc}: promtool check metrics: {said}"
        );
        exported.push_str(&text);
    }
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    for args in [
        ["check", "rules", "qingling-alerts.yml"],
        ["test", "rules", "qingling-alerts.test.yml"],
    ] {
        let out = tokio::process::Command::new(promtool())
            .args(args)
            .current_dir(&rules)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every metric the rules and the dashboard use is one the services export.
    let names: std::collections::HashSet<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(rules.join("../grafana/qingling-dashboard.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let alerts = std::fs::read_to_string(rules.join("qingling-alerts.yml")).unwrap();
    let mut queries: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    queries.extend(
        alerts
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr: "))
            .map(String::from),
    );
    for q in &queries {
        for word in q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(metric) = word.strip_prefix("qingling_") {
                let base = format!("qingling_{metric}");
                let base = base.trim_end_matches("_bucket");
                assert!(names.contains(base), "{base} (in {q}) is not exported");
            }
        }
    }
    for title in [
        "Open items per street",
        "lag",
        "Requests per second",
        "Latency",
    ] {
        assert!(
            panels
                .iter()
                .any(|p| p["title"].as_str().unwrap().contains(title)),
            "a panel for {title}"
        );
    }
    env.cleanup().await;
}
