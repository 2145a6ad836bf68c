//! A load of clients for the crash and scale-out tests: operators registering complaints (every
//! fourth a repeat call about an earlier basement) and a clerk writing items off, each client
//! retrying the same request through crashes and sending each try to a random instance. And the
//! check that afterwards nothing was lost or doubled.

use qingling_events::{closure::types::*, intake::types::*, ledger::types::*};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qingling_shared::Role;
use qingling_tests::{complaint, random_below, read, rectified, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

const STREETS: [&str; 5] = ["jiukeshu", "yongshun", "zhongcang", "xinhua", "beiyuan"];

/// Where each service can be reached: one URL, or one per instance.
#[derive(Clone)]
pub struct Urls {
    pub intake: Vec<String>,
    pub ledger: Vec<String>,
    pub closure: Vec<String>,
}

impl Urls {
    pub fn of(env: &TestEnv) -> Urls {
        let urls = |svc: &str| env.instances(svc).iter().map(|s| s.url.clone()).collect();
        Urls {
            intake: urls("intake"),
            ledger: urls("ledger"),
            closure: urls("closure"),
        }
    }
}

/// Sends to a random instance, retrying (same request, same Idempotency-Key) on transport errors
/// and 503 for up to 90 s.
pub async fn send(
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

pub struct Load {
    complaints: Vec<JoinHandle<Vec<String>>>,
    writeoffs: JoinHandle<HashSet<String>>,
    running: Arc<AtomicBool>,
}

impl Load {
    /// `workers` operators each register `per_worker` complaints in `community`, while a clerk
    /// acknowledges, requests and approves write-offs of what is open.
    pub fn start(
        env: &TestEnv,
        urls: Urls,
        workers: usize,
        per_worker: usize,
        community: &str,
    ) -> Load {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let op = env.token(Role::Operator, "tongzhou");
        let complaints = (0..workers)
            .map(|w| {
                let (http, intake, op) = (http.clone(), urls.intake.clone(), op.clone());
                let community = community.to_string();
                tokio::spawn(async move {
                    let mut accepted = vec![];
                    for i in 0..per_worker {
                        let n = if i % 4 == 3 { i - 1 } else { i };
                        let body = complaint(
                            STREETS[(w + n) % STREETS.len()],
                            &community,
                            "1",
                            &format!("B{w}-{n}"),
                        );
                        let key = uuid::Uuid::now_v7().to_string();
                        let (status, c) = send(&intake, |url| {
                            http.post(format!("{url}/v1/complaints"))
                                .bearer_auth(&op)
                                .header("Idempotency-Key", &key)
                                .json(&body)
                        })
                        .await
                        .expect("a complaint was answered within 90 s");
                        assert!(
                            status == StatusCode::CREATED || status == StatusCode::OK,
                            "{status}: {c}"
                        );
                        accepted.push(c["complaint_id"].as_str().unwrap().to_string());
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    accepted
                })
            })
            .collect();
        let running = Arc::new(AtomicBool::new(true));
        let writeoffs = {
            let (rv, dist, running) = (
                env.token(Role::Reviewer, "tongzhou"),
                env.token(Role::District, "tongzhou"),
                running.clone(),
            );
            let tokens: Vec<(String, String)> = STREETS
                .iter()
                .map(|s| (s.to_string(), env.token(Role::Street, s)))
                .collect();
            tokio::spawn(async move {
                let mut approved = HashSet::new();
                while running.load(Ordering::SeqCst) {
                    let Some((_, list)) = send(&urls.ledger, |url| {
                        http.get(format!("{url}/v1/ledger/items?status=open&limit=20"))
                            .bearer_auth(&dist)
                    })
                    .await
                    else {
                        continue;
                    };
                    let items = list["items"].as_array().cloned().unwrap_or_default();
                    for it in items.into_iter().take(3) {
                        let id = it["item_id"].as_str().unwrap().to_string();
                        let st = &tokens.iter().find(|(s, _)| it["street"] == **s).unwrap().1;
                        if it["status"] == "registered" {
                            send(&urls.ledger, |url| {
                                http.post(format!("{url}/v1/ledger/items/{id}/acknowledge"))
                                    .bearer_auth(st)
                            })
                            .await;
                        }
                        let Some((StatusCode::CREATED, c)) = send(&urls.closure, |url| {
                            http.post(format!("{url}/v1/closures"))
                                .bearer_auth(st)
                                .json(&rectified(&id))
                        })
                        .await
                        else {
                            continue; // not yet known as acknowledged, or a request is pending
                        };
                        let cid = c["closure_id"].as_str().unwrap().to_string();
                        if let Some((status, _)) = send(&urls.closure, |url| {
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
        Load {
            complaints,
            writeoffs,
            running,
        }
    }

    /// Waits for every complaint to be answered, then stops the write-offs. Returns the accepted
    /// complaint ids and the approvals the clerk saw.
    pub async fn finish(self) -> (Vec<String>, HashSet<String>) {
        let mut accepted = vec![];
        for t in self.complaints {
            accepted.extend(t.await.unwrap());
        }
        self.running.store(false, Ordering::SeqCst);
        (accepted, self.writeoffs.await.unwrap())
    }
}

async fn count(env: &TestEnv, schema: &str, sql: impl Into<String>) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.into()))
        .fetch_one(&mut env.db(schema).await)
        .await
        .unwrap()
}

/// After the load (and once the consumers are idle): every call was answered once, every
/// complaint placed once, every approval written off once, the summary agrees with the journal,
/// and every log is fully published. Returns the approvals.
pub async fn assert_each_once(
    env: &TestEnv,
    accepted: &[String],
    expected: usize,
    approvals_seen: &HashSet<String>,
) -> Vec<String> {
    let unique: HashSet<&String> = accepted.iter().collect();
    assert_eq!(unique.len(), expected, "every call was answered once");
    assert_eq!(
        count(
            env,
            "intake",
            format!("select count(*) from events where event_type = '{COMPLAINT_RECEIVED}'")
        )
        .await,
        expected as i64
    );
    let placed: Vec<(String, i64)> = sqlx::query_as(
        sqlx::AssertSqlSafe(format!("select data->>'complaint_id', count(*) from events where event_type in ('{ITEM_REGISTERED}', '{COMPLAINT_LINKED}') and data->>'complaint_id' is not null group by 1")),
    )
    .fetch_all(&mut env.db("ledger").await)
    .await
    .unwrap();
    assert_eq!(placed.len(), expected, "every complaint reached the ledger");
    assert!(placed.iter().all(|(_, n)| *n == 1), "none placed twice");
    assert!(
        count(
            env,
            "ledger",
            format!("select count(*) from events where event_type = '{COMPLAINT_LINKED}'")
        )
        .await
            > 0,
        "repeat calls linked"
    );
    let approvals: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select data->>'closure_id' from events where event_type = '{CLOSURE_APPROVED}'"
    )))
    .fetch_all(&mut env.db("closure").await)
    .await
    .unwrap();
    assert!(!approvals.is_empty(), "write-offs ran during the failures");
    assert!(approvals_seen.iter().all(|c| approvals.contains(c)));
    let offs: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("select data->>'closure_id', count(*) from events where event_type = '{ITEM_WRITTEN_OFF}' group by 1")))
        .fetch_all(&mut env.db("ledger").await)
        .await
        .unwrap();
    assert_eq!(offs.len(), approvals.len());
    assert!(offs.iter().all(|(c, n)| *n == 1 && approvals.contains(c)));
    let s = assert_summary_agrees_with_journal(env).await;
    assert_eq!(
        s["written_off_total"].as_u64().unwrap() as usize,
        approvals.len()
    );
    // Nothing is owed to NATS.
    for svc in ["intake", "ledger", "closure"] {
        let (cursor, head): (i64, i64) = sqlx::query_as("select (select position from relay_cursor), (select coalesce(max(position), 0) from events)")
            .fetch_one(&mut env.db(svc).await)
            .await
            .unwrap();
        assert_eq!(cursor, head, "{svc} published its whole log");
    }
    approvals
}

/// The summary agrees with the journal, and open = registered - written off in every street.
/// Returns the summary.
pub async fn assert_summary_agrees_with_journal(env: &TestEnv) -> Value {
    let s = crate::summary(env).await;
    let journal: Vec<(String, String, i64)> =
        sqlx::query_as("select street, kind, count(*) from journal group by 1, 2")
            .fetch_all(&mut env.db("ledger").await)
            .await
            .unwrap();
    for row in s["streets"].as_array().unwrap() {
        let street = row["street"].as_str().unwrap();
        let n = |kind: &str| {
            journal
                .iter()
                .find(|(s, k, _)| s == street && k == kind)
                .map(|r| r.2)
                .unwrap_or(0)
        };
        assert_eq!(
            row["registered_total"].as_i64(),
            Some(n("registration")),
            "{street}"
        );
        assert_eq!(
            row["written_off_total"].as_i64(),
            Some(n("write_off")),
            "{street}"
        );
        assert_eq!(
            row["open"].as_i64().unwrap(),
            n("registration") - n("write_off")
        );
    }
    s
}
