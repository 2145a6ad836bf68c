//! Scale-out: several instances of every service against one PostgreSQL and one NATS (or a
//! three-node NATS cluster), clients picking an instance at random, instances and brokers dying.

use qingling_events::{intake::types::*, ledger::types::*};
use std::time::{Duration, Instant};

use qingling_shared::Role;
use qingling_tests::cluster::NatsCluster;
use qingling_tests::{complaint, TestEnv};
use reqwest::StatusCode;

use crate::consuming::consumers_idle;
use crate::load::{assert_each_once, Load, Urls};
use crate::rebuild::{rebuild_all, snapshot};
use crate::{complaint_status, register, summary, write_off, WAIT};

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

async fn count(env: &TestEnv, schema: &str, sql: impl Into<String>) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.into()))
        .fetch_one(&mut env.db(schema).await)
        .await
        .unwrap()
}

async fn received(env: &TestEnv) -> i64 {
    count(
        env,
        "intake",
        format!("select count(*) from events where event_type = '{COMPLAINT_RECEIVED}'"),
    )
    .await
}

/// The granted advisory lock `$1` (`<schema>:<role>`) of this database, as `shared::leader`
/// takes it.
macro_rules! lock_rows {
    () => {
        "from pg_locks l
         where l.locktype = 'advisory' and l.granted and l.classid = 7102
           and l.objid = (hashtext($1)::bigint & 4294967295)::oid
           and l.database = (select oid from pg_database where datname = current_database())"
    };
}

/// Sessions holding `svc`'s advisory lock for `role`.
async fn lock_holders(env: &TestEnv, svc: &str, role: &str) -> i64 {
    sqlx::query_scalar(concat!("select count(*) ", lock_rows!()))
        .bind(format!("{svc}:{role}"))
        .fetch_one(&mut env.db(svc).await)
        .await
        .unwrap()
}

/// Which instance of `svc` leads `role`. A deposed holder notices within seconds, so this waits
/// until exactly one instance says it leads and one session holds the lock.
async fn leader(env: &TestEnv, svc: &str, role: &str) -> usize {
    let label = format!("role=\"{role}\"");
    qingling_tests::eventually(
        &format!("{svc}: exactly one {role} leader"),
        WAIT,
        || async {
            let mut leaders = vec![];
            for (i, s) in env.instances(svc).iter().enumerate() {
                if metric(&metrics_of(env, &s.url).await, "qingling_leader", &label) == 1.0 {
                    leaders.push(i);
                }
            }
            (leaders.len() == 1 && lock_holders(env, svc, role).await == 1).then(|| leaders[0])
        },
    )
    .await
}

#[tokio::test]
async fn two_instances_of_every_service_behave_as_one_without_a_load_balancer() {
    let mut env = TestEnv::new(&[
        ("QINGLING_RESPOND_WITHIN", "1s"),
        ("QINGLING_DEADLINE_TICK", "100ms"),
    ]);
    env.random_instances = true;
    env.start_instances(2).await;
    let op = env.token(Role::Operator, "tongzhou");
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
        write_off(&env, street, item).await;
        complaint_status(&env, complaint_id, "written_off", WAIT).await;
    }
    // The other half pass their 1 s respond limit: flagged once each, by one watcher.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    consumers_idle(&env).await;
    let doubled = count(&env, "ledger", format!("select count(*) from (select stream, data->>'kind' from events where event_type = '{ITEM_OVERDUE}' group by 1, 2 having count(*) > 1) d")).await;
    assert_eq!(doubled, 0, "no deadline flagged twice");
    let flagged = count(&env, "ledger", format!("select count(distinct stream) from events where event_type = '{ITEM_OVERDUE}' and data->>'kind' = 'respond'")).await;
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

    // The leader's lock session is cut (its database connection dropped): the lock is taken again,
    // by one instance only, and publishing goes on.
    let cut: i64 = sqlx::query_scalar(concat!(
        "select count(pg_terminate_backend(l.pid)) ",
        lock_rows!()
    ))
    .bind("ledger:relay")
    .fetch_one(&mut env.db("ledger").await)
    .await
    .unwrap();
    assert_eq!(cut, 1, "one session held the ledger's relay lock");
    register(&env, &complaint("majuqiao", "双实例小区", "8", "B1")).await;

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

#[tokio::test]
async fn a_three_node_nats_cluster_and_two_instances_lose_and_double_nothing_when_nodes_and_instances_die(
) {
    let mut cluster = NatsCluster::start().await;
    let mut env = TestEnv::new(&[("QINGLING_NATS_REPLICAS", "3")]);
    env.nats_url = cluster.url();
    env.start_instances(2).await;
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

    // Four operators and a clerk, each request to a random instance.
    const TOTAL: usize = 4 * 150;
    let load = Load::start(&env, Urls::of(&env), 4, 150, "集群小区");

    // Under that load: the stream's leader node dies; one instance of every service dies; the node
    // returns.
    tokio::time::sleep(Duration::from_millis(800)).await;
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
    let at_node_kill = received(&env).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for svc in ["intake", "ledger", "closure"] {
        let i = env.services.iter().position(|s| s.name == svc).unwrap();
        env.services[i].child.kill().await.unwrap();
        env.services.remove(i);
    }
    let at_instance_kill = received(&env).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    cluster.restart(victim).await;

    let (accepted, approvals_seen) = load.finish().await;
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

    let approvals = assert_each_once(&env, &accepted, TOTAL, &approvals_seen).await;
    // The failures struck under load: registrations went on after each of them.
    assert!(
        at_node_kill < at_instance_kill && at_instance_kill < TOTAL as i64,
        "registrations at the node kill {at_node_kill}, at the instance kills {at_instance_kill}, of {TOTAL}"
    );
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
    let s = summary(&env).await;
    let registered = count(
        &env,
        "ledger",
        format!("select count(*) from events where event_type = '{ITEM_REGISTERED}'"),
    )
    .await;
    assert_eq!(s["registered_total"].as_i64(), Some(registered));
    assert_eq!(
        s["written_off_total"].as_i64(),
        Some(approvals.len() as i64)
    );

    // The projections agree with the log: rebuilt from it, they come out the same.
    let live = snapshot(&env).await;
    rebuild_all(&env).await;
    let rebuilt = snapshot(&env).await;
    for (key, rows) in live.as_object().unwrap() {
        assert_eq!(&rebuilt[key], rows, "{key} differs from the log's");
    }
    println!(
        "cluster: {TOTAL} complaints ({at_node_kill} in at the node kill, {at_instance_kill} at the instance kills), {registered} items, {} write-offs",
        approvals.len()
    );
    env.cleanup().await;
    drop(cluster);
}
