//! A property-based run of the HTTP API with random bodies and query strings: no 5xx, no hang,
//! and no event written by a rejected request.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use qingling_shared::Role;
use qingling_tests::{complaint, read, TestEnv};
use serde_json::{json, Value};

use crate::consuming::consumers_idle;
use crate::register;

const KEYS: [&str; 24] = [
    "district",
    "street",
    "category",
    "urgency",
    "point",
    "community",
    "building",
    "basement",
    "address",
    "caller",
    "name",
    "phone",
    "description",
    "received_at",
    "item_id",
    "outcome",
    "checklist",
    "evidence",
    "kind",
    "uri",
    "note",
    "until",
    "reason",
    "satisfaction",
];

/// Hostile text: invisible and bidi characters, NUL, spreadsheet formulas, markup, paths, odd
/// numbers and dates, long and astral strings.
const PROBES: [&str; 16] = [
    "\u{200B}\u{200C}\u{FEFF}",
    "园景阁\u{202E}西区",
    "a\u{0}b",
    "=HYPERLINK(\"http://x\",\"y\")",
    "\t=1+1",
    "\r-2+3",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "13812345678",
    "11010519491231002X",
    "-9999-01-01",
    "292277026596-12-04T15:30:07Z",
    "𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏𝕏",
    "%FF%FE",
    "NaN",
    "１２３\u{3000}号楼",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        ".{0,24}".prop_map(Value::String),
        prop_oneof![
            Just("tongzhou"),
            Just("jiukeshu"),
            Just("rectified"),
            Just("satisfied"),
            Just("2026-11-28T08:00:00Z"),
            Just("basement_illegal_residence")
        ]
        .prop_map(|s| Value::String(s.into())),
        // The security probe's payloads (CONTRACT §13).
        proptest::sample::select(PROBES.to_vec()).prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        proptest::sample::select(KEYS.to_vec()).prop_map(String::from),
                        "[a-z_]{1,8}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

async fn event_counts(env: &TestEnv) -> (i64, i64, i64) {
    (
        env.count_events("intake").await,
        env.count_events("ledger").await,
        env.count_events("closure").await,
    )
}

#[test]
fn random_requests_never_get_a_5xx_and_rejected_ones_write_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = rt.block_on(TestEnv::start());
    let (cid, item) = rt.block_on(register(
        &env,
        &complaint("jiukeshu", "模糊小区", "1", "B1"),
    ));
    rt.block_on(consumers_idle(&env));
    let (op, st, rv) = (
        env.token(Role::Operator, "tongzhou"),
        env.token(Role::Street, "jiukeshu"),
        env.token(Role::Reviewer, "tongzhou"),
    );
    let posts: Vec<(&str, String, String)> = vec![
        ("intake", "/v1/complaints".into(), op.clone()),
        ("intake", format!("/v1/complaints/{cid}/return"), st.clone()),
        (
            "intake",
            format!("/v1/complaints/{cid}/dispatch"),
            op.clone(),
        ),
        (
            "intake",
            format!("/v1/complaints/{cid}/follow-up"),
            op.clone(),
        ),
        ("ledger", "/v1/ledger/items".into(), st.clone()),
        (
            "ledger",
            format!("/v1/ledger/items/{item}/extension"),
            st.clone(),
        ),
        (
            "ledger",
            format!("/v1/ledger/items/{item}/extension/reject"),
            rv.clone(),
        ),
        ("closure", "/v1/closures".into(), st.clone()),
        (
            "closure",
            format!("/v1/closures/{}/reject", uuid::Uuid::now_v7()),
            rv.clone(),
        ),
    ];
    let gets: Vec<(&str, &str, String)> = vec![
        ("ledger", "/v1/ledger/items", st.clone()),
        ("ledger", "/v1/ledger/summary", rv.clone()),
        ("ledger", "/v1/ledger/entries", rv.clone()),
        ("closure", "/v1/closures", rv.clone()),
        ("intake", "/v1/metrics/streets", op.clone()),
    ];
    let baseline = std::cell::RefCell::new(rt.block_on(event_counts(&env)));
    let mut runner = TestRunner::new(Config {
        cases: 160,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0usize..posts.len() + gets.len(),
        json_value(),
        proptest::collection::vec(("[a-z_]{1,8}", ".{0,12}"), 0..4),
    );
    let result = runner.run(&strategy, |(which, body, query)| {
        rt.block_on(async {
            let started = std::time::Instant::now();
            let (svc, status, answer) = if which < posts.len() {
                let (svc, path, token) = &posts[which];
                let r = env
                    .http
                    .post(env.url(svc, path))
                    .bearer_auth(token)
                    .json(&body)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let (s, v) =
                    read(r.map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?).await;
                (*svc, s, v)
            } else {
                let (svc, path, token) = &gets[which - posts.len()];
                let q: Vec<(String, String)> = query;
                let r = env
                    .http
                    .get(env.url(svc, path))
                    .query(&q)
                    .bearer_auth(token)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let (s, v) =
                    read(r.map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?).await;
                (*svc, s, v)
            };
            prop_assert!(started.elapsed() < Duration::from_secs(10));
            prop_assert!(!status.is_server_error(), "{svc}: {status} {answer}");
            if !status.is_success() {
                prop_assert!(
                    answer["status"] == status.as_u16(),
                    "problem+json: {answer}"
                );
                prop_assert_eq!(
                    event_counts(&env).await,
                    *baseline.borrow(),
                    "a rejected request wrote an event"
                );
            } else {
                consumers_idle(&env).await;
                *baseline.borrow_mut() = event_counts(&env).await;
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(env.cleanup());
}
