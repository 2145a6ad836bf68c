//! Store first, publish after, consume once: redelivery, republishing, crashes and an unreachable
//! broker change nothing that was acknowledged.

use qingling_events::ledger::types::*;
use std::time::Duration;

use futures::StreamExt;
use qingling_shared::Role;
use qingling_tests::{complaint, eventually, rectified, TestEnv};
use reqwest::StatusCode;

use crate::{acknowledge, complaint_status, log_published, register, WAIT};

/// Waits until every durable consumer has nothing pending or unacknowledged.
pub async fn consumers_idle(env: &TestEnv) {
    let js = async_nats::jetstream::new(env.nats().await);
    eventually("consumers to drain", Duration::from_secs(45), || async {
        let mut stream = js.get_stream(env.stream_name()).await.ok()?;
        for name in ["intake", "ledger", "closure"] {
            let mut c: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer(name).await.ok()?;
            let info = c.info().await.ok()?;
            if info.num_pending > 0 || info.num_ack_pending > 0 {
                return None;
            }
        }
        stream.info().await.ok().map(drop)
    })
    .await;
}

async fn count(env: &TestEnv, schema: &str, sql: impl Into<String>) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.into()))
        .fetch_one(&mut env.db(schema).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn republished_events_change_nothing() {
    let env = TestEnv::start().await;
    let (_, item) = register(&env, &complaint("luyuan", "潞源嘉园", "8", "B1")).await;
    acknowledge(&env, "luyuan", &item).await;
    consumers_idle(&env).await;
    let before = (
        count(&env, "ledger", "select count(*) from events").await,
        count(&env, "ledger", "select count(*) from items").await,
        count(&env, "ledger", "select count(*) from journal").await,
        count(&env, "intake", "select count(*) from complaint_history").await,
        count(&env, "intake", "select count(*) from inbox").await,
        count(
            &env,
            "closure",
            "select count(*) from items where status = 'acknowledged'",
        )
        .await,
    );
    // The ledger's two events in the complaint's history (its own two are read from the log).
    assert_eq!(before, (2, 1, 1, 2, 2, 1));

    // Publish every event on the stream again, under new message ids so JetStream's own
    // de-duplication does not hide them: only the consumers' idempotence stands in the way.
    let nc = env.nats().await;
    let js = async_nats::jetstream::new(nc.clone());
    let stream = js.get_stream(env.stream_name()).await.unwrap();
    let replay = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let total = stream.cached_info().state.messages;
    let mut msgs = replay.messages().await.unwrap();
    for _ in 0..total {
        let m = tokio::time::timeout(Duration::from_secs(10), msgs.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            format!("replay-{}", uuid::Uuid::now_v7()).as_str(),
        );
        js.publish_with_headers(m.subject.clone(), headers, m.payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert_eq!(
        js.get_stream(env.stream_name())
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages,
        total * 2
    );
    consumers_idle(&env).await;
    let after = (
        count(&env, "ledger", "select count(*) from events").await,
        count(&env, "ledger", "select count(*) from items").await,
        count(&env, "ledger", "select count(*) from journal").await,
        count(&env, "intake", "select count(*) from complaint_history").await,
        count(&env, "intake", "select count(*) from inbox").await,
        count(
            &env,
            "closure",
            "select count(*) from items where status = 'acknowledged'",
        )
        .await,
    );
    assert_eq!(after, before, "a republished event changed a projection");
    env.cleanup().await;
}

#[tokio::test]
async fn complaints_stored_while_nats_is_unreachable_are_published_when_it_returns() {
    let mut env = TestEnv::start().await;
    let op = env.token(Role::Operator, "tongzhou");
    // intake loses its broker: it keeps accepting complaints, reports degraded health.
    env.restart("intake", &[("NATS_URL", "nats://127.0.0.1:1")])
        .await;
    let r = env
        .http
        .get(env.url("intake", "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (health["status"].as_str(), health["checks"]["nats"].as_str()),
        (Some("degraded"), Some("down"))
    );
    let mut ids = vec![];
    for b in ["B1", "B2", "B3"] {
        let (status, c) = env
            .post(
                "intake",
                "/v1/complaints",
                &op,
                &complaint("taihu", "台湖家园", "1", b),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        ids.push(c["complaint_id"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dist = env.token(Role::District, "tongzhou");
    let (_, summary) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    assert_eq!(
        summary["registered_total"], 0,
        "nothing reached the ledger yet"
    );

    // The broker is back (intake restarts against it): the relay publishes what was stored.
    env.restart("intake", &[]).await;
    eventually(
        "the stored complaints to reach the ledger",
        WAIT,
        || async {
            let (_, s) = env
                .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
                .await;
            (s["registered_total"] == 3).then_some(())
        },
    )
    .await;
    for id in &ids {
        complaint_status(&env, id, "registered", WAIT).await;
    }
    env.cleanup().await;
}

#[tokio::test]
async fn a_relay_restarted_from_the_start_of_its_log_doubles_nothing_and_a_crashed_consumer_catches_up(
) {
    let mut env = TestEnv::start().await;
    let op = env.token(Role::Operator, "tongzhou");
    let (_, first) = register(&env, &complaint("wenjing", "文景苑", "2", "B1")).await;

    // The ledger crashes; complaints keep coming; it restarts and catches up from its durable consumer.
    env.svc("ledger").signal("KILL");
    for b in ["B2", "B3"] {
        let (status, _) = env
            .post(
                "intake",
                "/v1/complaints",
                &op,
                &complaint("wenjing", "文景苑", "2", b),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    env.restart("ledger", &[]).await;
    let dist = env.token(Role::District, "tongzhou");
    eventually("the ledger to catch up", WAIT, || async {
        let (_, s) = env
            .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
            .await;
        (s["registered_total"] == 3).then_some(())
    })
    .await;

    // intake "forgets" how far it published (as if it crashed before saving its cursor) and
    // publishes its whole log again: nothing may be doubled.
    env.svc("intake").signal("KILL");
    let mut db = env.db("intake").await;
    sqlx::query("update relay_cursor set position = 0")
        .execute(&mut db)
        .await
        .unwrap();
    env.restart("intake", &[]).await;
    eventually(
        "intake's relay to publish its whole log again",
        WAIT,
        || async {
            let p: i64 = sqlx::query_scalar("select position from relay_cursor")
                .fetch_one(&mut env.db("intake").await)
                .await
                .ok()?;
            (p == 6).then_some(())
        },
    )
    .await;
    consumers_idle(&env).await;
    let (_, s) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    assert_eq!(
        (s["registered_total"].as_i64(), s["open"].as_i64()),
        (Some(3), Some(3)),
        "{s}"
    );
    let items: i64 = sqlx::query_scalar("select count(*) from items")
        .fetch_one(&mut env.db("ledger").await)
        .await
        .unwrap();
    assert_eq!(items, 3);
    let (_, i) = env
        .get("ledger", &format!("/v1/ledger/items/{first}"), &dist)
        .await;
    assert_eq!(i["complaint_ids"].as_array().unwrap().len(), 1);
    env.cleanup().await;
}

#[tokio::test]
async fn sigterm_finishes_and_exits_zero() {
    let mut env = TestEnv::start().await;
    let (_, _) = register(&env, &complaint("liyuan", "梨园小区", "9", "B1")).await;
    for name in ["intake", "ledger", "closure"] {
        env.svc(name).signal("TERM");
        let status = tokio::time::timeout(Duration::from_secs(15), env.svc_mut(name).child.wait())
            .await
            .expect("exits in time")
            .unwrap();
        assert_eq!(status.code(), Some(0), "{name} exit status");
    }
    env.services.clear();
    env.cleanup().await;
}

async fn registered_total(env: &TestEnv) -> i64 {
    let (_, s) = env
        .get(
            "ledger",
            "/v1/ledger/summary?district=tongzhou",
            &env.token(Role::District, "tongzhou"),
        )
        .await;
    s["registered_total"].as_i64().unwrap_or(-1)
}

/// After healing: every complaint is on the ledger exactly once, and intake knows it.
async fn converged(env: &TestEnv, ids: &[String]) {
    for id in ids {
        complaint_status(env, id, "registered", Duration::from_secs(45)).await;
    }
    let placed: Vec<(String, i64)> = sqlx::query_as(
        sqlx::AssertSqlSafe(format!("select data->>'complaint_id', count(*) from events where event_type in ('{ITEM_REGISTERED}', '{COMPLAINT_LINKED}') group by 1")),
    )
    .fetch_all(&mut env.db("ledger").await)
    .await
    .unwrap();
    assert_eq!(placed.len(), ids.len());
    assert!(
        placed.iter().all(|(_, n)| *n == 1),
        "nothing doubled: {placed:?}"
    );
    let items: i64 = sqlx::query_scalar("select count(*) from items")
        .fetch_one(&mut env.db("ledger").await)
        .await
        .unwrap();
    assert_eq!(
        items as usize,
        ids.len(),
        "the projection holds exactly the log's items"
    );
}

async fn post_complaints(env: &TestEnv, street: &str, n: usize) -> Vec<String> {
    let op = env.token(Role::Operator, "tongzhou");
    let mut ids = vec![];
    for i in 0..n {
        let (status, c) = env
            .post(
                "intake",
                "/v1/complaints",
                &op,
                &complaint(
                    street,
                    "丢失小区",
                    "1",
                    &format!("B{i}-{}", uuid::Uuid::now_v7().simple()),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(c["complaint_id"].as_str().unwrap().to_string());
    }
    ids
}

#[tokio::test]
async fn messages_the_broker_lost_are_noticed_and_published_again() {
    let mut env = TestEnv::start().await;
    let mut ids = post_complaints(&env, "zhangjiawan", 1).await;
    eventually("the first complaint on the ledger", WAIT, || async {
        (registered_total(&env).await == 1).then_some(())
    })
    .await;

    // The ledger is down while three complaints are published, and the broker loses them.
    env.svc("ledger").signal("KILL");
    let lost = post_complaints(&env, "zhangjiawan", 3).await;
    let js = async_nats::jetstream::new(env.nats().await);
    log_published(&env, "intake", 0).await;
    js.get_stream(env.stream_name())
        .await
        .unwrap()
        .purge()
        .filter(format!("{}.intake.>", env.prefix))
        .await
        .unwrap();
    ids.extend(lost);
    env.restart("ledger", &[]).await;
    converged(&env, &ids).await;
    assert_eq!(registered_total(&env).await, 4);
    env.cleanup().await;
}

#[tokio::test]
async fn a_stream_recreated_empty_is_refilled_from_the_sources() {
    let mut env = TestEnv::start().await;
    let mut ids = post_complaints(&env, "lucheng", 2).await;
    eventually("the first complaints on the ledger", WAIT, || async {
        (registered_total(&env).await == 2).then_some(())
    })
    .await;
    env.svc("ledger").signal("KILL");
    ids.extend(post_complaints(&env, "lucheng", 2).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The broker loses the whole stream (and every durable consumer with it).
    let js = async_nats::jetstream::new(env.nats().await);
    js.delete_stream(env.stream_name()).await.unwrap();
    env.restart("ledger", &[]).await;
    ids.extend(post_complaints(&env, "lucheng", 1).await);
    converged(&env, &ids).await;
    assert_eq!(registered_total(&env).await, 5);
    env.cleanup().await;
}

#[tokio::test]
async fn a_lost_event_whose_successor_arrived_is_published_again() {
    let mut env = TestEnv::start().await;
    // closure is down while an item is registered and acknowledged; the broker then loses the
    // registration but keeps the acknowledgement, which closure will hold back as early.
    env.svc("closure").signal("KILL");
    let (_, item) = register(&env, &complaint("xiji", "西集小区", "2", "B1")).await;
    acknowledge(&env, "xiji", &item).await;
    log_published(&env, "ledger", 2).await;
    let js = async_nats::jetstream::new(env.nats().await);
    let stream = js.get_stream(env.stream_name()).await.unwrap();
    let registered = stream
        .get_last_raw_message_by_subject(&format!("{}.ledger.{ITEM_REGISTERED}", env.prefix))
        .await
        .unwrap();
    stream.delete_message(registered.sequence).await.unwrap();

    env.restart("closure", &[]).await;
    let st = env.token(Role::Street, "xiji");
    // closure can only accept the write-off request once it has both events, in order.
    let closure = eventually(
        "closure to learn the lost registration",
        Duration::from_secs(40),
        || async {
            let (status, r) = env
                .post("closure", "/v1/closures", &st, &rectified(&item))
                .await;
            (status == StatusCode::CREATED).then(|| r["closure_id"].as_str().unwrap().to_string())
        },
    )
    .await;
    assert!(!closure.is_empty());
    let heals: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from inbox where envelope->>'event_type' = '{ITEM_REGISTERED}'"
    )))
    .fetch_one(&mut env.db("closure").await)
    .await
    .unwrap();
    assert_eq!(heals, 1, "applied once");
    env.cleanup().await;
}

/// The ledger decides a backlog of dispatched complaints together (one lookup of their points,
/// one append for the new items): the outcome is the one of deciding them one by one — a repeat
/// call joins the item registered just before it in the same backlog, and a call at a point
/// written off lately is a rebound.
#[tokio::test]
async fn a_backlog_decided_together_links_repeat_calls_and_finds_rebounds() {
    let mut env = TestEnv::start().await;
    let (_, first) = register(&env, &complaint("songzhuang", "小堡村", "1", "B1")).await;
    crate::write_off(&env, "songzhuang", &first).await;
    crate::item_status(&env, &first, "written_off").await;

    env.svc("ledger").signal("KILL");
    let op = env.token(Role::Operator, "tongzhou");
    let calls = [
        ("小堡村", "1", "B1"),     // the written-off point again: a rebound
        ("小堡村", "2", "B1"),     // a new point …
        ("小堡村", "2号楼", "B1"), // … and two repeat calls about it
        ("小堡村", "２", "B1"),
        ("小堡村", "3", "B1"), // another new point
    ];
    let mut ids = vec![];
    for (community, building, basement) in calls {
        let (status, c) = env
            .post(
                "intake",
                "/v1/complaints",
                &op,
                &complaint("songzhuang", community, building, basement),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        ids.push(c["complaint_id"].as_str().unwrap().to_string());
    }
    log_published(&env, "intake", 2 + 2 * calls.len() as i64).await;
    env.restart("ledger", &[]).await;

    let mut items = vec![];
    for id in &ids {
        let c = complaint_status(&env, id, "registered", WAIT).await;
        items.push(c["item_id"].as_str().unwrap().to_string());
    }
    assert_ne!(items[0], first);
    assert_eq!(
        (&items[1], &items[1]),
        (&items[2], &items[3]),
        "repeat calls join one item"
    );
    assert_ne!(items[1], items[4]);
    let dist = env.token(Role::District, "tongzhou");
    let item = |id: String| {
        let (env, dist) = (&env, &dist);
        async move {
            env.get("ledger", &format!("/v1/ledger/items/{id}"), dist)
                .await
                .1
        }
    };
    let rebound = item(items[0].clone()).await;
    assert_eq!(rebound["rebound_of"], first.as_str());
    let joined = item(items[1].clone()).await;
    assert_eq!(joined["complaint_ids"].as_array().unwrap().len(), 3);
    assert!(joined["rebound_of"].is_null());
    let s = crate::summary(&env).await;
    let row = crate::street_row(&s, "songzhuang");
    assert_eq!(
        (row["open"].as_i64(), s["registered_total"].as_i64()),
        (Some(3), Some(4))
    );
    assert_eq!(
        count(
            &env,
            "ledger",
            format!("select count(*) from events where event_type = '{ITEM_REGISTERED}'")
        )
        .await,
        4
    );
    env.cleanup().await;
}
