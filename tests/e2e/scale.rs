//! Scale-out: several instances of every service against one PostgreSQL and one NATS (or a
//! three-node NATS cluster), clients picking an instance at random, instances and brokers dying.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qingling_shared::Role;
use qingling_tests::cluster::NatsCluster;
use qingling_tests::{bin_dir, complaint, random_below, read, rectified, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::consuming::consumers_idle;
use crate::rebuild::snapshot;
use crate::{complaint_status, item_status, register, request_closure, WAIT};

/// The sum of a metric's samples (all label sets) whose labels contain `labels`.
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics_of(env: &TestEnv, url: &str) -> String {
    env.http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn count(env: &TestEnv, schema: &str, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&mut env.db(schema).await)
        .await
        .unwrap()
}

/// Which instance of `svc` leads `role` (exactly one must).
async fn leader(env: &TestEnv, svc: &str, role: &str) -> usize {
    let label = format!("role=\"{role}\"");
    let mut leaders = vec![];
    for (i, s) in env.instances(svc).iter().enumerate() {
        if metric(&metrics_of(env, &s.url).await, "qingling_leader", &label) == 1.0 {
            leaders.push(i);
        }
    }
    assert_eq!(leaders.len(), 1, "{svc}: exactly one {role} leader");
    leaders[0]
}

#[tokio::test]
async fn two_instances_of_every_service_behave_as_one_without_a_load_balancer() {
    let mut env = TestEnv::new(&[
        ("QINGLING_RESPOND_WITHIN", "1s"),
        ("QINGLING_DEADLINE_TICK", "100ms"),
    ]);
    env.random_instances = true;
    env.start_instances(2).await;
    let (op, rv) = (
        env.token(Role::Operator, "tongzhou"),
        env.token(Role::Reviewer, "tongzhou"),
    );
    let streets = [
        "jiukeshu",
        "yongshun",
        "zhongcang",
        "xinhua",
        "beiyuan",
        "luyuan",
    ];
    let mut items = vec![];
    for (n, street) in streets.iter().enumerate() {
        items.push((
            *street,
            register(&env, &complaint(street, "双实例小区", &n.to_string(), "B1")).await,
        ));
    }
    // A repeat call, through whichever instance: linked, not registered again.
    let (status, again) = env
        .post(
            "intake",
            "/v1/complaints",
            &op,
            &complaint("jiukeshu", "双实例小区", "0号楼", "b1"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    let again_id = again["complaint_id"].as_str().unwrap();
    let linked = complaint_status(&env, again_id, "registered", WAIT).await;
    assert_eq!(linked["item_id"].as_str(), Some(items[0].1 .1.as_str()));

    // The whole write-off path for half of them, each step on a random instance.
    for (street, (complaint_id, item)) in &items[..3] {
        let st = env.token(Role::Street, street);
        let (status, v) = env
            .post(
                "ledger",
                &format!("/v1/ledger/items/{item}/acknowledge"),
                &st,
                &json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let closure = request_closure(&env, street, &rectified(item)).await;
        let (status, v) = env
            .post(
                "closure",
                &format!("/v1/closures/{closure}/approve"),
                &rv,
                &json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        item_status(&env, item, "written_off").await;
        complaint_status(&env, complaint_id, "written_off", WAIT).await;
    }
    // The other half pass their 1 s respond limit: flagged once each, by one watcher.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    consumers_idle(&env).await;
    let doubled = count(&env, "ledger", "select count(*) from (select stream, data->>'kind' from events where event_type = 'item_overdue' group by 1, 2 having count(*) > 1) d").await;
    assert_eq!(doubled, 0, "no deadline flagged twice");
    let flagged = count(&env, "ledger", "select count(distinct stream) from events where event_type = 'item_overdue' and data->>'kind' = 'respond'").await;
    assert!(
        flagged >= 3,
        "the unacknowledged items were flagged: {flagged}"
    );

    // One relay per service published the whole log, once; the other instance published nothing.
    for svc in ["intake", "ledger", "closure"] {
        let lead = leader(&env, svc, "relay").await;
        let mut published = vec![];
        for s in env.instances(svc) {
            published.push(metric(
                &metrics_of(&env, &s.url).await,
                "qingling_events_published_total",
                "",
            ) as i64);
        }
        let events = env.count_events(svc).await;
        assert_eq!(published[lead], events, "{svc}: the leader published all");
        assert_eq!(published[1 - lead], 0, "{svc}: the follower published none");
    }
    leader(&env, "ledger", "deadlines").await;
    // Every foreign event applied once, shared between the instances of each consumer.
    let (intake_events, closure_events, ledger_events) = (
        env.count_events("intake").await,
        env.count_events("closure").await,
        env.count_events("ledger").await,
    );
    let mut consumed = 0.0;
    for s in env.instances("ledger") {
        consumed += metric(
            &metrics_of(&env, &s.url).await,
            "qingling_events_consumed_total",
            "",
        );
    }
    assert_eq!(consumed as i64, intake_events + closure_events);
    assert_eq!(
        count(&env, "ledger", "select count(*) from inbox").await,
        intake_events + closure_events
    );
    assert_eq!(
        count(&env, "intake", "select count(*) from inbox").await,
        ledger_events
    );

    // The ledger's relay leader dies: the other instance takes over, and the flow goes on.
    let lead = leader(&env, "ledger", "relay").await;
    let dead = env
        .services
        .iter()
        .position(|s| s.name == "ledger" && s.url == env.instances("ledger")[lead].url)
        .unwrap();
    let mut gone = env.services.remove(dead);
    gone.child.kill().await.unwrap();
    let started = Instant::now();
    let (c, item) = register(&env, &complaint("songzhuang", "双实例小区", "9", "B1")).await;
    println!(
        "ledger relay taken over; a registration went through in {:?}",
        started.elapsed()
    );
    leader(&env, "ledger", "relay").await;
    leader(&env, "ledger", "deadlines").await;
    assert!(!c.is_empty() && !item.is_empty());
    env.cleanup().await;
}

/// One client of the load: sends to a random instance, retrying (same request, same
/// Idempotency-Key) on transport errors and 503 until it gets an answer.
async fn send(
    urls: &[String],
    req: impl Fn(&str) -> reqwest::RequestBuilder,
) -> Option<(StatusCode, Value)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        match req(&urls[random_below(urls.len())]).send().await {
            Ok(r) if r.status() != StatusCode::SERVICE_UNAVAILABLE => return Some(read(r).await),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    None
}

#[tokio::test]
async fn a_three_node_nats_cluster_and_two_instances_lose_and_double_nothing_when_nodes_and_instances_die(
) {
    let mut cluster = NatsCluster::start().await;
    let mut env = TestEnv::new(&[("QINGLING_NATS_REPLICAS", "3")]);
    env.nats_url = cluster.url();
    env.start_instances(2).await;
    let urls =
        |svc: &str| -> Vec<String> { env.instances(svc).iter().map(|s| s.url.clone()).collect() };
    let (intake, ledger, closure) = (urls("intake"), urls("ledger"), urls("closure"));

    // The stream and the consumers are replicated on all three nodes.
    let js = async_nats::jetstream::new(env.nats().await);
    let mut stream = js.get_stream(env.stream_name()).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(
        info.cluster.as_ref().map(|c| c.replicas.len()),
        Some(2),
        "a leader and two replicas"
    );
    for name in ["intake", "ledger", "closure"] {
        let mut c: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(name).await.unwrap();
        let ci = c.info().await.unwrap();
        assert_eq!(
            ci.cluster.as_ref().map(|c| c.replicas.len()),
            Some(2),
            "consumer {name} replicated"
        );
    }

    let (op, rv, dist) = (
        env.token(Role::Operator, "tongzhou"),
        env.token(Role::Reviewer, "tongzhou"),
        env.token(Role::District, "tongzhou"),
    );
    let streets = ["jiukeshu", "yongshun", "zhongcang", "xinhua", "beiyuan"];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let running = Arc::new(AtomicBool::new(true));
    const WORKERS: usize = 4;
    const PER_WORKER: usize = 40;
    let mut complaint_tasks = vec![];
    for w in 0..WORKERS {
        let (http, intake, op) = (http.clone(), intake.clone(), op.clone());
        complaint_tasks.push(tokio::spawn(async move {
            let mut accepted = vec![];
            for i in 0..PER_WORKER {
                // Every fourth call repeats an earlier basement: it must link, not register.
                let n = if i % 4 == 3 { i - 1 } else { i };
                let body = complaint(
                    streets[(w + n) % streets.len()],
                    "集群小区",
                    "1",
                    &format!("B{w}-{n}"),
                );
                let key = uuid::Uuid::now_v7().to_string();
                let answer = send(&intake, |url| {
                    http.post(format!("{url}/v1/complaints"))
                        .bearer_auth(&op)
                        .header("Idempotency-Key", &key)
                        .json(&body)
                })
                .await;
                let (status, c) = answer.expect("a complaint was answered within 90 s");
                assert!(
                    status == StatusCode::CREATED || status == StatusCode::OK,
                    "{status}: {c}"
                );
                accepted.push(c["complaint_id"].as_str().unwrap().to_string());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            accepted
        }));
    }
    let writeoffs = {
        let (http, ledger, closure, rv, dist, running) = (
            http.clone(),
            ledger.clone(),
            closure.clone(),
            rv.clone(),
            dist.clone(),
            running.clone(),
        );
        let tokens: Vec<(String, String)> = streets
            .iter()
            .map(|s| (s.to_string(), env.token(Role::Street, s)))
            .collect();
        tokio::spawn(async move {
            let mut approved: HashSet<String> = HashSet::new();
            while running.load(Ordering::SeqCst) {
                let Some((_, list)) = send(&ledger, |url| {
                    http.get(format!("{url}/v1/ledger/items?status=open&limit=20"))
                        .bearer_auth(&dist)
                })
                .await
                else {
                    continue;
                };
                for it in list["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .take(3)
                {
                    let id = it["item_id"].as_str().unwrap().to_string();
                    let st = &tokens.iter().find(|(s, _)| it["street"] == **s).unwrap().1;
                    if it["status"] == "registered" {
                        send(&ledger, |url| {
                            http.post(format!("{url}/v1/ledger/items/{id}/acknowledge"))
                                .bearer_auth(st)
                        })
                        .await;
                    }
                    let Some((StatusCode::CREATED, c)) = send(&closure, |url| {
                        http.post(format!("{url}/v1/closures"))
                            .bearer_auth(st)
                            .json(&rectified(&id))
                    })
                    .await
                    else {
                        continue; // not yet known as acknowledged, or a request is pending
                    };
                    let cid = c["closure_id"].as_str().unwrap().to_string();
                    if let Some((status, _)) = send(&closure, |url| {
                        http.post(format!("{url}/v1/closures/{cid}/approve"))
                            .bearer_auth(&rv)
                            .json(&json!({}))
                    })
                    .await
                    {
                        if status == StatusCode::OK || status == StatusCode::CONFLICT {
                            approved.insert(cid);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            approved
        })
    };

    // Under that load: the stream's leader node dies; one instance of every service dies; the node
    // returns.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let leader_name = stream
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .unwrap()
        .leader
        .unwrap();
    let victim = cluster
        .nodes
        .iter()
        .position(|n| n.name == leader_name)
        .expect("the stream leader is one of our nodes");
    cluster.kill(victim).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for svc in ["intake", "ledger", "closure"] {
        let i = env.services.iter().position(|s| s.name == svc).unwrap();
        env.services[i].child.kill().await.unwrap();
        env.services.remove(i);
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;
    cluster.restart(victim).await;

    let mut accepted = vec![];
    for t in complaint_tasks {
        accepted.extend(t.await.unwrap());
    }
    running.store(false, Ordering::SeqCst);
    let approvals_seen = writeoffs.await.unwrap();
    consumers_idle(&env).await;
    // The restarted node caught up: all replicas current again, under a new leader.
    let new_leader = qingling_tests::eventually(
        "the restarted node to catch up",
        Duration::from_secs(30),
        || async {
            let c = js
                .get_stream(env.stream_name())
                .await
                .ok()?
                .cached_info()
                .cluster
                .clone()?;
            (c.replicas.len() == 2 && c.replicas.iter().all(|r| r.current)).then_some(c.leader?)
        },
    )
    .await;
    assert_ne!(new_leader, leader_name, "the stream changed leader");

    // Every accepted complaint is in intake's log once, and registered or linked once.
    let unique: HashSet<&String> = accepted.iter().collect();
    let total = (WORKERS * PER_WORKER) as i64;
    assert_eq!(unique.len() as i64, total, "every call answered once");
    assert_eq!(
        count(
            &env,
            "intake",
            "select count(*) from events where event_type = 'complaint_received'"
        )
        .await,
        total
    );
    let placed: Vec<(String, i64)> = sqlx::query_as(
        "select data->>'complaint_id', count(*) from events where event_type in ('item_registered', 'complaint_linked') and data->>'complaint_id' is not null group by 1",
    )
    .fetch_all(&mut env.db("ledger").await)
    .await
    .unwrap();
    assert_eq!(
        placed.len() as i64,
        total,
        "every complaint reached the ledger"
    );
    assert!(placed.iter().all(|(_, n)| *n == 1), "none placed twice");
    // Every approval is applied once.
    let approvals: Vec<String> = sqlx::query_scalar(
        "select data->>'closure_id' from events where event_type = 'closure_approved'",
    )
    .fetch_all(&mut env.db("closure").await)
    .await
    .unwrap();
    assert!(!approvals.is_empty(), "write-offs ran during the failures");
    assert!(approvals_seen.iter().all(|c| approvals.contains(c)));
    let offs: Vec<(String, i64)> = sqlx::query_as("select data->>'closure_id', count(*) from events where event_type = 'item_written_off' group by 1")
        .fetch_all(&mut env.db("ledger").await)
        .await
        .unwrap();
    assert_eq!(offs.len(), approvals.len());
    assert!(offs.iter().all(|(c, n)| *n == 1 && approvals.contains(c)));
    // Each consumer applied each foreign event once; every log is published whole.
    let (ie, le, ce) = (
        env.count_events("intake").await,
        env.count_events("ledger").await,
        env.count_events("closure").await,
    );
    assert_eq!(
        count(&env, "ledger", "select count(*) from inbox").await,
        ie + ce
    );
    assert_eq!(
        count(&env, "intake", "select count(*) from inbox").await,
        le
    );
    assert_eq!(
        count(&env, "closure", "select count(*) from inbox").await,
        le
    );
    for svc in ["intake", "ledger", "closure"] {
        let mut c = env.db(svc).await;
        let (cursor, head): (i64, i64) = sqlx::query_as("select (select position from relay_cursor), (select coalesce(max(position), 0) from events)")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(cursor, head, "{svc} published its whole log");
    }
    let (_, s) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    let registered = count(
        &env,
        "ledger",
        "select count(*) from events where event_type = 'item_registered'",
    )
    .await;
    assert_eq!(s["registered_total"].as_i64(), Some(registered));
    assert_eq!(
        s["written_off_total"].as_i64(),
        Some(approvals.len() as i64)
    );

    // The projections agree with the log: rebuilt from it, they come out the same.
    let live = snapshot(&env).await;
    for svc in ["intake", "ledger", "closure"] {
        let out = tokio::process::Command::new(bin_dir().join(format!("qingling-{svc}")))
            .arg("rebuild")
            .env("DATABASE_URL", env.database_url())
            .env("RUST_LOG", "warn")
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{svc} rebuild failed");
    }
    let rebuilt = snapshot(&env).await;
    for (key, rows) in live.as_object().unwrap() {
        assert_eq!(&rebuilt[key], rows, "{key} differs from the log's");
    }
    println!(
        "cluster: {total} complaints, {registered} items, {} write-offs through a NATS node kill and an instance kill per service",
        approvals.len()
    );
    env.cleanup().await;
    drop(cluster);
}
