//! The owner has the last word: the ledger decides a return (退单) that races an acknowledgement
//! (签收), a write-off withdraws a pending extension request, and after a burst of mixed actions
//! through a crash every item and its complaints agree with the order the ledger saw.

use std::time::Duration;

use chrono::Utc;
use qingling_events::ledger::types::*;
use qingling_shared::Role;
use qingling_tests::{complaint, eventually, rectified, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::consuming::consumers_idle;
use crate::load::{send, Urls};
use crate::{item_status, register, request_closure, WAIT};

/// The event types of an item's stream, in the order the ledger recorded them.
async fn item_log(env: &TestEnv, item: &str) -> Vec<String> {
    sqlx::query_scalar("select event_type from events where stream = $1 order by version")
        .bind(qingling_events::ledger::stream(item.parse().unwrap()))
        .fetch_all(&mut env.db("ledger").await)
        .await
        .unwrap()
}

async fn get(env: &TestEnv, svc: &str, path: &str) -> Value {
    let token = match svc {
        "intake" => env.token(Role::Operator, "tongzhou"),
        _ => env.token(Role::District, "tongzhou"),
    };
    env.get(svc, path, &token).await.1
}

fn has(log: &[String], t: &str) -> bool {
    log.iter().any(|e| e == t)
}

/// What the ledger's log says happened to an item whose complaint a street tried to return, and
/// whether the item and its complaint agree with it. Returns the outcome's name.
async fn assert_settled(
    env: &TestEnv,
    complaint_id: &str,
    item: &str,
    ack: Option<StatusCode>,
    ret: StatusCode,
    through_crash: bool,
) -> &'static str {
    let log = item_log(env, item).await;
    let i = get(env, "ledger", &format!("/v1/ledger/items/{item}")).await;
    let c = get(env, "intake", &format!("/v1/complaints/{complaint_id}")).await;
    let history: Vec<&str> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["event_type"].as_str())
        .collect();
    if has(&log, COMPLAINT_UNLINKED) {
        // A repeat call held the item: the return reached the ledger first and took only this
        // complaint off it; the acknowledgement, if any, was of the item the other call keeps.
        assert_eq!(ret, StatusCode::ACCEPTED);
        assert_eq!(c["status"], "returned", "{c}");
        assert!(!i["complaint_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(complaint_id)));
        return "unlinked";
    }
    if has(&log, ITEM_WRITTEN_OFF) && i["write_off_kind"] == "returned" {
        // The return reached the ledger first: any acknowledgement came too late.
        assert!(!has(&log, ITEM_ACKNOWLEDGED), "{log:?}");
        assert_ne!(ack, Some(StatusCode::OK), "{log:?}");
        assert_eq!(ret, StatusCode::ACCEPTED);
        assert_eq!(c["status"], "returned", "{c}");
        return "returned";
    }
    // Through a crash a client may have retried an acknowledgement the ledger had already
    // recorded, and been told 409 for its own first try.
    let acked = [Some(StatusCode::OK)]
        .into_iter()
        .chain(through_crash.then_some(Some(StatusCode::CONFLICT)));
    assert!(acked.clone().any(|a| a == ack), "{ack:?} {log:?}");
    assert_eq!(i["status"], "acknowledged", "{i}");
    assert_eq!(c["status"], "registered", "{c}");
    assert!(c["acknowledged_at"].is_string(), "{c}");
    match ret {
        StatusCode::ACCEPTED => {
            // Intake took the return on its older view; the ledger refused it, after the
            // acknowledgement, and intake shows the refusal.
            let acked = log.iter().position(|e| e == ITEM_ACKNOWLEDGED).unwrap();
            let refused = log.iter().position(|e| e == COMPLAINT_RETURN_REFUSED);
            assert!(refused.is_some_and(|r| r > acked), "{log:?}");
            assert!(history.contains(&COMPLAINT_RETURN_REFUSED), "{history:?}");
            "refused"
        }
        StatusCode::CONFLICT => {
            assert!(!has(&log, COMPLAINT_RETURN_REFUSED), "{log:?}");
            "refused by intake"
        }
        other => panic!("return answered {other}"),
    }
}

#[tokio::test]
async fn a_return_racing_an_acknowledgement_settles_as_the_ledger_saw_it() {
    let env = TestEnv::start().await;
    let street = "jiukeshu";
    let st = env.token(Role::Street, street);
    let mut cases = vec![];
    for n in 0..16 {
        cases.push(register(&env, &complaint(street, "竞态小区", &n.to_string(), "B1")).await);
    }
    let races = cases.iter().enumerate().map(|(n, (c, i))| {
        let (env, st) = (&env, &st);
        async move {
            let (ack_path, empty) = (format!("/v1/ledger/items/{i}/acknowledge"), json!({}));
            // At once; the acknowledgement 1 ms ahead; the return 5 or 20 ms ahead (it reaches
            // the ledger through intake and the bus, the acknowledgement directly).
            let (ack_after, ret_after) = [(0, 0), (0, 1), (5, 0), (20, 0)][n % 4];
            let ack = async {
                tokio::time::sleep(Duration::from_millis(ack_after)).await;
                env.post("ledger", &ack_path, st, &empty).await
            };
            let ret = async {
                tokio::time::sleep(Duration::from_millis(ret_after)).await;
                env.post(
                    "intake",
                    &format!("/v1/complaints/{c}/return"),
                    st,
                    &json!({"reason": "不属于本辖区"}),
                )
                .await
            };
            let ((ack, _), (ret, body)) = tokio::join!(ack, ret);
            assert!(
                [StatusCode::ACCEPTED, StatusCode::CONFLICT].contains(&ret),
                "{ret} {body}"
            );
            (ack, ret)
        }
    });
    let answers = futures::future::join_all(races).await;
    consumers_idle(&env).await;
    let mut outcomes = std::collections::BTreeMap::new();
    for ((c, i), (ack, ret)) in cases.iter().zip(answers) {
        *outcomes
            .entry(assert_settled(&env, c, i, Some(ack), ret, false).await)
            .or_insert(0) += 1;
        // A refused return leaves nothing to re-dispatch; a taken one can be re-dispatched.
        let op = env.token(Role::Operator, "tongzhou");
        let (status, v) = env
            .post(
                "intake",
                &format!("/v1/complaints/{c}/dispatch"),
                &op,
                &json!({"street": "yongshun"}),
            )
            .await;
        let c_now = get(&env, "intake", &format!("/v1/complaints/{c}")).await;
        match c_now["status"].as_str() {
            Some("dispatched") => assert_eq!(status, StatusCode::OK, "{v}"),
            _ => assert_eq!(status, StatusCode::CONFLICT, "{v}"),
        }
    }
    eprintln!("outcomes: {outcomes:?}");
    assert_eq!(outcomes.values().sum::<i32>(), 16);
    env.cleanup().await;
}

#[tokio::test]
async fn a_write_off_withdraws_a_pending_extension_request() {
    let env = TestEnv::start().await;
    let street = "yongshun";
    let st = env.token(Role::Street, street);
    let (_, item) = register(&env, &complaint(street, "延期小区", "1", "B1")).await;
    crate::acknowledge(&env, street, &item).await;
    let until = (Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let (status, v) = env
        .post(
            "ledger",
            &format!("/v1/ledger/items/{item}/extension"),
            &st,
            &json!({"until": until, "reason": "住户多"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["extension"]["status"], "pending");
    let closure = request_closure(&env, street, &rectified(&item)).await;
    let reviewer = env.token(Role::Reviewer, "tongzhou");
    let (status, v) = env
        .post(
            "closure",
            &format!("/v1/closures/{closure}/approve"),
            &reviewer,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let done = item_status(&env, &item, "written_off").await;
    assert_eq!(done["extension"]["status"], "withdrawn", "{done}");
    let log = item_log(&env, &item).await;
    let withdrawn = log.iter().position(|e| e == EXTENSION_WITHDRAWN);
    let off = log.iter().position(|e| e == ITEM_WRITTEN_OFF);
    assert!(withdrawn.is_some() && withdrawn < off, "{log:?}");
    for decision in ["approve", "reject"] {
        let (status, _) = env
            .post(
                "ledger",
                &format!("/v1/ledger/items/{item}/extension/{decision}"),
                &reviewer,
                &json!({"reason": "已销账"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "nothing left to {decision}");
    }
    env.cleanup().await;
}

/// What a client did to one item in the burst.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// 签收 and 退单 at once.
    Race,
    /// 签收, 延期 asked, 销账申请, 销账 approved.
    Through,
    /// 退单 alone.
    Return,
    /// 签收 alone.
    Acknowledge,
}

/// A burst of mixed concurrent actions, the ledger killed in the middle of it: afterwards the
/// summary equals the journal, each complaint is on one item, and each item's status is what its
/// last accepted action made it, with its complaints agreeing.
#[tokio::test]
async fn after_a_burst_of_mixed_actions_through_a_crash_items_and_complaints_agree() {
    let mut env = TestEnv::start_on_fixed_ports(&[]).await;
    let streets = ["jiukeshu", "yongshun", "zhongcang", "xinhua"];
    let mut cases = vec![];
    for n in 0..24 {
        let street = streets[n % streets.len()];
        let body = complaint(street, "混合小区", &n.to_string(), "B1");
        let (c, i) = register(&env, &body).await;
        // Every third item also carries a repeat call.
        if n % 3 == 0 {
            let op = env.token(Role::Operator, "tongzhou");
            let (status, _) = env.post("intake", "/v1/complaints", &op, &body).await;
            assert_eq!(status, StatusCode::CREATED);
        }
        let plan = [Plan::Race, Plan::Through, Plan::Return, Plan::Acknowledge][n % 4];
        cases.push((env.token(Role::Street, street), c, i, plan));
    }
    consumers_idle(&env).await;
    // The burst holds its own addresses (fixed across the restart), tokens and client.
    let urls = Urls::of(&env);
    let reviewer = env.token(Role::Reviewer, "tongzhou");
    let http = reqwest::Client::new();
    let run = cases.iter().map(|(st, c, i, plan)| {
        let (urls, reviewer, http) = (&urls, &reviewer, &http);
        async move {
            let call = |svc: &str, path: String, token: String, body: Value| {
                let list = match svc {
                    "ledger" => urls.ledger.clone(),
                    "intake" => urls.intake.clone(),
                    _ => urls.closure.clone(),
                };
                async move {
                    send(&list, |u| {
                        http.post(format!("{u}{path}"))
                            .bearer_auth(&token)
                            .json(&body)
                    })
                    .await
                }
            };
            let ack = || {
                call(
                    "ledger",
                    format!("/v1/ledger/items/{i}/acknowledge"),
                    st.clone(),
                    json!({}),
                )
            };
            let ret = || {
                call(
                    "intake",
                    format!("/v1/complaints/{c}/return"),
                    st.clone(),
                    json!({"reason": "不属于本辖区"}),
                )
            };
            let status = |r: Option<(StatusCode, Value)>| r.map(|(s, _)| s);
            match plan {
                Plan::Race => {
                    let (a, r) = tokio::join!(ack(), ret());
                    (status(a), status(r), None)
                }
                Plan::Return => (None, status(ret().await), None),
                Plan::Acknowledge => (status(ack().await), None, None),
                Plan::Through => {
                    let a = status(ack().await);
                    let until = (Utc::now() + chrono::Duration::days(30)).to_rfc3339();
                    call(
                        "ledger",
                        format!("/v1/ledger/items/{i}/extension"),
                        st.clone(),
                        json!({"until": until, "reason": "住户多"}),
                    )
                    .await;
                    // Closure learns of the acknowledgement through the ledger, which may be down.
                    let closure = eventually("the write-off request", WAIT * 4, || async {
                        let (s, v) =
                            call("closure", "/v1/closures".into(), st.clone(), rectified(i))
                                .await?;
                        (s == StatusCode::CREATED)
                            .then(|| v["closure_id"].as_str().unwrap().to_string())
                    })
                    .await;
                    let approved = call(
                        "closure",
                        format!("/v1/closures/{closure}/approve"),
                        reviewer.clone(),
                        json!({}),
                    )
                    .await;
                    (a, None, status(approved))
                }
            }
        }
    });
    let crash = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        env.restart("ledger", &[]).await;
    };
    let (answers, ()) = tokio::join!(futures::future::join_all(run), crash);
    consumers_idle(&env).await;
    crate::load::assert_summary_agrees_with_journal(&env).await;
    // Each complaint is on at most one open item.
    let doubled: i64 = sqlx::query_scalar(
        "select count(*) from (select c from items, unnest(complaint_ids) c where status <> 'written_off'
           group by c having count(*) > 1) d",
    )
    .fetch_one(&mut env.db("ledger").await)
    .await
    .unwrap();
    assert_eq!(doubled, 0, "a complaint on two open items");
    for ((_, c, i, plan), (ack, ret, approved)) in cases.iter().zip(answers) {
        let item = get(&env, "ledger", &format!("/v1/ledger/items/{i}")).await;
        let cv = get(&env, "intake", &format!("/v1/complaints/{c}")).await;
        match plan {
            Plan::Race => {
                let ret = ret.expect("the return was answered");
                assert_settled(&env, c, i, ack, ret, true).await;
            }
            Plan::Return => {
                assert_eq!(ret, Some(StatusCode::ACCEPTED));
                if item["status"] == "written_off" {
                    assert_eq!(item["write_off_kind"], "returned", "{item}");
                } else {
                    // A repeat call holds the problem on the ledger: only this complaint left.
                    assert_eq!(item["status"], "registered", "{item}");
                    let ids = item["complaint_ids"].as_array().unwrap();
                    assert!(!ids.contains(&json!(c)) && ids.len() == 1, "{item}");
                }
                assert_eq!(cv["status"], "returned", "{cv}");
            }
            Plan::Acknowledge => {
                // 409: its own retry, through the crash, of an acknowledgement already recorded.
                assert!([Some(StatusCode::OK), Some(StatusCode::CONFLICT)].contains(&ack));
                assert_eq!(item["status"], "acknowledged", "{item}");
                assert_eq!(cv["status"], "registered", "{cv}");
            }
            Plan::Through => {
                assert_eq!(approved, Some(StatusCode::OK));
                assert_eq!(item["status"], "written_off", "{item}");
                assert_eq!(item["write_off_kind"], "rectified", "{item}");
                assert_ne!(item["extension"]["status"], "pending", "{item}");
                assert_eq!(cv["status"], "written_off", "{cv}");
            }
        }
    }
    env.cleanup().await;
}
