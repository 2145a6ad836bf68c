//! `qingling-bench`: measures the running system against this machine's own ceiling and prints the
//! figures as JSON (stdout) and a short summary (stderr). It starts the release services itself
//! on a fresh database and NATS prefix. `--smoke` runs a few hundred complaints (CI).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use qingling_shared::Role;
use qingling_tests::{complaint, rectified, TestEnv};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;

mod history;
mod measure;
mod points_log;
mod rebuild;

use measure::*;
use rebuild::*;

const STREETS: [&str; 22] = [
    "zhongcang",
    "xinhua",
    "beiyuan",
    "yuqiao",
    "luyuan",
    "tongyun",
    "wenjing",
    "jiukeshu",
    "linheli",
    "yangzhuang",
    "luyi",
    "songzhuang",
    "zhangjiawan",
    "huoxian",
    "majuqiao",
    "xiji",
    "taihu",
    "yongledian",
    "lucheng",
    "liyuan",
    "yongshun",
    "yujiawu",
];

struct Args {
    complaints: usize,
    concurrency: usize,
    writeoffs: usize,
    rebuild_events: usize,
    verify_entries: usize,
    /// Instances of every service; clients pick one at random per request.
    instances: usize,
    /// Run against a three-node NATS cluster (started here) with three-replica streams.
    nats_cluster: bool,
    rebuild_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        complaints: 20_000,
        concurrency: 32,
        writeoffs: 2_000,
        rebuild_events: 1_000_000,
        verify_entries: 1_000_000,
        instances: 1,
        nats_cluster: false,
        rebuild_only: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut num = || {
            it.next()
                .and_then(|v| v.replace('_', "").parse::<usize>().ok())
                .expect("a number")
        };
        match flag.as_str() {
            "--complaints" | "-n" => a.complaints = num(),
            "--concurrency" | "-c" => a.concurrency = num(),
            "--writeoffs" | "-m" => a.writeoffs = num(),
            "--rebuild-events" => a.rebuild_events = num(),
            "--verify-entries" => a.verify_entries = num(),
            "--instances" => a.instances = num().max(1),
            "--nats-cluster" => a.nats_cluster = true,
            // Only the rebuilds of a generated history (their JSON alone).
            "--rebuild-only" => a.rebuild_only = true,
            "--smoke" => {
                a = Args {
                    complaints: 300,
                    concurrency: 8,
                    writeoffs: 40,
                    rebuild_events: 20_000,
                    verify_entries: 2_000,
                    ..a
                }
            }
            other => {
                eprintln!("usage: qingling-bench [--complaints N] [--concurrency C] [--writeoffs M] [--rebuild-events E] [--verify-entries V] [--instances K] [--nats-cluster] [--smoke] [--rebuild-only] (unknown {other})");
                std::process::exit(2);
            }
        }
    }
    a
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args();
    if a.rebuild_only {
        let figures = rebuild_generated(a.rebuild_events as u64).await?;
        let report = json!({ "rebuild_of_generated_history": figures });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let replicas = if a.nats_cluster { "3" } else { "1" };
    let mut env = TestEnv::new(&[("RUST_LOG", "warn"), ("QINGLING_NATS_REPLICAS", replicas)]);
    let cluster = if a.nats_cluster {
        let c = qingling_tests::cluster::NatsCluster::start().await;
        env.nats_url = c.url();
        Some(c)
    } else {
        None
    };
    env.http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency * 2)
        .timeout(Duration::from_secs(60))
        .build()?;
    env.random_instances = a.instances > 1;
    env.start_instances(a.instances).await;
    let env = Arc::new(env);
    let (op, dist, rv) = (
        env.token(Role::Operator, "tongzhou"),
        env.token(Role::District, "tongzhou"),
        env.token(Role::Reviewer, "tongzhou"),
    );
    let pids: Vec<(&str, u32)> = env
        .services
        .iter()
        .map(|s| (s.name, s.pid().unwrap()))
        .collect();
    eprintln!(
        "qingling-bench: {} complaints at concurrency {}, {} write-offs, rebuild of {} events; {} instance(s) of each service; NATS {}",
        a.complaints, a.concurrency, a.writeoffs, a.rebuild_events, a.instances,
        if a.nats_cluster { "three-node cluster, 3 replicas" } else { "single server" }
    );

    // 1. The ceiling, measured in this run at the same concurrency.
    let ceiling = ceiling(&env.database_url(), a.concurrency, 3.0).await?;
    eprintln!("  ceiling: {ceiling:.0} single-row commits/s");

    // 2. End-to-end registration throughput: POSTed until the ledger shows them all.
    let next = Arc::new(AtomicUsize::new(0));
    let post_latency = Arc::new(Mutex::new(Vec::with_capacity(a.complaints)));
    let (events0, wal0, _, db0) = footprint(&env).await?;
    let busy0 = machine_busy_ticks();
    let proc0: Vec<u64> = pids.iter().map(|(_, p)| process_ticks(*p)).collect();
    let started = Instant::now();
    let workers: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let (env, op, next, lat, n) = (
                env.clone(),
                op.clone(),
                next.clone(),
                post_latency.clone(),
                a.complaints,
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let t = Instant::now();
                    let (status, v) = env
                        .post("intake", "/v1/complaints", &op, &body(i, "压测"))
                        .await;
                    assert_eq!(status, reqwest::StatusCode::CREATED, "{v}");
                    lat.lock().unwrap().push(t.elapsed());
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    let posted_in = started.elapsed();
    while registered_total(&env, &dist).await < a.complaints as i64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e2e = started.elapsed();
    let throughput = a.complaints as f64 / e2e.as_secs_f64();
    // What the registrations cost: events, CPU, WAL and disk.
    tokio::time::sleep(Duration::from_millis(500)).await; // the last consumers' acks
    let tck = clock_ticks_per_second();
    let busy = (machine_busy_ticks() - busy0) as f64 / tck;
    let mut service_cpu: HashMap<&str, f64> = HashMap::new();
    for ((name, pid), t0) in pids.iter().zip(&proc0) {
        *service_cpu.entry(name).or_default() += (process_ticks(*pid) - t0) as f64 / tck;
    }
    let (events1, wal1, log_bytes, db1) = footprint(&env).await?;
    let events = (events1 - events0) as f64;
    let cost = json!({
        "events_appended": events,
        "events_per_complaint": (events / a.complaints as f64 * 100.0).round() / 100.0,
        "machine_busy_cpu_seconds": (busy * 10.0).round() / 10.0,
        "events_per_busy_cpu_second": (events / busy).round(),
        "complaints_per_busy_cpu_second": (a.complaints as f64 / busy).round(),
        "service_cpu_seconds": service_cpu.iter().map(|(s, v)| (s.to_string(), json!((v * 10.0).round() / 10.0))).collect::<serde_json::Map<_, _>>(),
        "wal_bytes_per_complaint": ((wal1 - wal0) as f64 / a.complaints as f64).round(),
        "wal_bytes_per_second": ((wal1 - wal0) as f64 / e2e.as_secs_f64()).round(),
        "log_bytes_per_event": (log_bytes as f64 / events1.max(1) as f64).round(),
        "database_bytes_per_complaint": ((db1 - db0) as f64 / a.complaints as f64).round(),
    });
    eprintln!("  cost: {cost}");
    let full_load_post = percentiles(std::mem::take(&mut *post_latency.lock().unwrap()));
    eprintln!("  registration: {throughput:.0} complaints/s end to end ({:.2} of the ceiling); POSTs done in {posted_in:?}", throughput / ceiling);

    // intake and closure may still be following the ledger's backlog: let every consumer catch
    // up, so the latency below is that of a system at half load, not of one still digesting.
    let settled = Instant::now();
    consumers_idle(&env, Duration::from_secs(120)).await?;
    let settled = settled.elapsed();
    eprintln!(
        "  every consumer caught up {settled:.1?} after the ledger showed all {}",
        a.complaints
    );

    // 3. Latency at about half that load: POST, and accepted → visible on the SSE stream.
    let rate = (throughput / 2.0).max(5.0);
    let count = (rate * 5.0).round() as usize;
    let base = registered_total(&env, &dist).await;
    let sse = env
        .http
        .get(env.url("ledger", "/v1/ledger/stream?district=tongzhou"))
        .bearer_auth(&dist)
        .send()
        .await?;
    let seen: Arc<Mutex<Vec<(Instant, i64)>>> = Arc::new(Mutex::new(vec![]));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (seen, done) = (seen.clone(), done.clone());
        tokio::spawn(async move {
            let mut body = sse.bytes_stream();
            let mut buf = String::new();
            while !done.load(Ordering::Relaxed) {
                let Ok(Some(Ok(chunk))) =
                    tokio::time::timeout(Duration::from_millis(200), body.next()).await
                else {
                    continue;
                };
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) {
                        if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                            seen.lock().unwrap().push((
                                Instant::now(),
                                v["registered_total"].as_i64().unwrap_or(0),
                            ));
                        }
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepted: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::new(Mutex::new(vec![]));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut ticker = tokio::time::interval(interval);
    let mut sends = vec![];
    for k in 0..count {
        ticker.tick().await;
        let (env, op, accepted) = (env.clone(), op.clone(), accepted.clone());
        sends.push(tokio::spawn(async move {
            let t = Instant::now();
            let (status, _) = env
                .post(
                    "intake",
                    "/v1/complaints",
                    &op,
                    &body(1_000_000 + k, "延迟"),
                )
                .await;
            assert_eq!(status, reqwest::StatusCode::CREATED);
            accepted.lock().unwrap().push((Instant::now(), t.elapsed()));
        }));
    }
    for s in sends {
        s.await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while registered_total(&env, &dist).await < base + count as i64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    done.store(true, Ordering::Relaxed);
    reader.await?;
    let mut acc = accepted.lock().unwrap().clone();
    acc.sort_by_key(|(at, _)| *at);
    let half_post = percentiles(acc.iter().map(|(_, d)| *d).collect());
    let seen = seen.lock().unwrap().clone();
    // The k-th accepted complaint is visible once the stream shows base + k + 1 registrations.
    let visible: Vec<Duration> = acc
        .iter()
        .enumerate()
        .filter_map(|(k, (at, _))| {
            seen.iter()
                .find(|(_, n)| *n > base + k as i64)
                .map(|(t, _)| t.saturating_duration_since(*at))
        })
        .collect();
    let visible = percentiles(visible);
    eprintln!("  at {rate:.0}/s: POST {half_post}; accepted → visible on the stream {visible}");

    // 4. The write-off path: acknowledge, request, approve.
    let mut items = vec![];
    let mut cursor: Option<String> = None;
    while items.len() < a.writeoffs {
        let q = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let (_, page) = env
            .get(
                "ledger",
                &format!("/v1/ledger/items?status=open&limit=500{q}"),
                &dist,
            )
            .await;
        let got = page["items"].as_array().cloned().unwrap_or_default();
        items.extend(got.into_iter().map(|i| {
            (
                i["item_id"].as_str().unwrap().to_string(),
                i["street"].as_str().unwrap().to_string(),
            )
        }));
        cursor = page["next_cursor"].as_str().map(String::from);
        if cursor.is_none() {
            break;
        }
    }
    items.truncate(a.writeoffs);
    let queue = Arc::new(Mutex::new(items));
    let retried = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let (env, queue, rv, retried) =
                (env.clone(), queue.clone(), rv.clone(), retried.clone());
            tokio::spawn(async move {
                let mut n = 0;
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some((item, street)) = next else { break };
                    let st = env.token(Role::Street, &street);
                    loop {
                        let (status, v) = env
                            .post(
                                "ledger",
                                &format!("/v1/ledger/items/{item}/acknowledge"),
                                &st,
                                &json!({}),
                            )
                            .await;
                        match status {
                            reqwest::StatusCode::OK => break,
                            reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                                retried.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            other => panic!("acknowledge answered {other}: {v}"),
                        }
                    }
                    // 409 until closure has learned of the acknowledgement (tens of ms).
                    let given_up = Instant::now() + Duration::from_secs(60);
                    let closure = loop {
                        let (status, v) = env
                            .post("closure", "/v1/closures", &st, &rectified(&item))
                            .await;
                        if status == reqwest::StatusCode::CREATED {
                            break v["closure_id"].as_str().unwrap().to_string();
                        }
                        assert!(
                            Instant::now() < given_up,
                            "write-off request still {status}: {v}"
                        );
                        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                            retried.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    };
                    // 503 means "try again" (a lock queue or a full pool): a client retries.
                    let status = loop {
                        let (status, _) = env
                            .post(
                                "closure",
                                &format!("/v1/closures/{closure}/approve"),
                                &rv,
                                &json!({}),
                            )
                            .await;
                        if status != reqwest::StatusCode::SERVICE_UNAVAILABLE {
                            break status;
                        }
                        retried.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    };
                    assert_eq!(status, reqwest::StatusCode::OK);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut wrote = 0;
    for w in workers {
        wrote += w.await?;
    }
    let target_off = wrote as i64;
    loop {
        let (_, s) = env
            .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
            .await;
        if s["written_off_total"].as_i64().unwrap_or(0) >= target_off {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let writeoff_rate = wrote as f64 / started.elapsed().as_secs_f64();
    let retried = retried.load(Ordering::Relaxed);
    eprintln!("  write-off path: {writeoff_rate:.0} items/s ({wrote} items, {retried} requests retried after 503)");

    // 6 (before the rebuild's own process): memory at the end of the load and after it settles.
    // The largest instance of each service.
    let mut peak: HashMap<&str, u64> = HashMap::new();
    for (s, p) in &pids {
        let e = peak.entry(s).or_default();
        *e = (*e).max(rss_kib(*p, "VmHWM:"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut after: HashMap<&str, u64> = HashMap::new();
    for (s, p) in &pids {
        let e = after.entry(s).or_default();
        *e = (*e).max(rss_kib(*p, "VmRSS:"));
    }

    // 5c. The map's queries and the verifiable log over this run's history (after the memory
    // figures above, which are the load's; the ledger's memory after these queries is apart).
    let points = points_log::map_queries(&env, &dist).await?;
    let log = points_log::log_costs(&env, &env.database_url()).await?;
    let ledger_after_map = pids
        .iter()
        .filter(|(s, _)| *s == "ledger")
        .map(|(_, p)| rss_kib(*p, "VmRSS:"))
        .max()
        .unwrap_or(0);
    eprintln!(
        "  ledger RSS after the map's queries: {:.1} MiB",
        ledger_after_map as f64 / 1024.0
    );

    // 5a. Every service's projections rebuilt from the history this run wrote: its own log and the
    // foreign events it applied. The services stop first (a rebuild holds their tables).
    for (_, pid) in &pids {
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .ok();
    }
    for (_, pid) in &pids {
        let gone = Instant::now() + Duration::from_secs(20);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < gone {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut run_rebuilds = serde_json::Map::new();
    for service in ["intake", "ledger", "closure"] {
        let stats = rebuild_service(service, &env.database_url()).await?;
        eprintln!(
            "  rebuild of this run's {service}: {:.0} events/s ({} own + {} applied foreign events in {:.1} s)",
            stats["events_per_second"].as_f64().unwrap_or(0.0),
            stats["own_events"],
            stats["foreign_events"],
            stats["seconds"].as_f64().unwrap_or(0.0)
        );
        run_rebuilds.insert(service.into(), stats);
    }

    // 5b. Every service's rebuild of a generated history of `rebuild_events` events.
    let rebuild = if a.rebuild_events > 0 {
        rebuild_generated(a.rebuild_events as u64).await?
    } else {
        Value::Null
    };

    // 5d. qingling-admin verify over a generated export.
    let verify = points_log::verify_export(a.verify_entries).await?;

    let mib = |k: u64| (k as f64 / 1024.0 * 10.0).round() / 10.0;
    let report = json!({
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "parameters": {"complaints": a.complaints, "concurrency": a.concurrency, "writeoffs": a.writeoffs, "rebuild_events": a.rebuild_events,
                       "instances": a.instances, "nats": if a.nats_cluster { "cluster of 3, replicas 3" } else { "single server" }},
        "ceiling_commits_per_second": ceiling.round(),
        "registration": {"complaints_per_second": throughput.round(), "ratio_to_ceiling": (throughput / ceiling * 100.0).round() / 100.0,
                         "seconds": e2e.as_secs_f64(), "post_latency_full_load": full_load_post, "cost": cost,
                         "all_consumers_caught_up_seconds_later": settled.as_secs_f64()},
        "half_load": {"rate_per_second": rate.round(), "post_latency": half_post, "registration_to_visible": visible},
        "writeoff": {"items_per_second": writeoff_rate.round(), "items": wrote, "requests_retried_after_503": retried},
        "rebuild_of_generated_history": rebuild,
        "rebuild_of_this_run": run_rebuilds,
        "map": points,
        "ledger_rss_mib_after_map_queries": (ledger_after_map as f64 / 1024.0 * 10.0).round() / 10.0,
        "log": log,
        "verify_export": verify,
        "memory_mib": {
            "peak": peak.iter().map(|(s, k)| (s.to_string(), json!(mib(*k)))).collect::<serde_json::Map<_, _>>(),
            "after": after.iter().map(|(s, k)| (s.to_string(), json!(mib(*k)))).collect::<serde_json::Map<_, _>>(),
        },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!(
        "  memory (MiB) peak / after: intake {} / {}, ledger {} / {}, closure {} / {}",
        mib(peak["intake"]),
        mib(after["intake"]),
        mib(peak["ledger"]),
        mib(after["ledger"]),
        mib(peak["closure"]),
        mib(after["closure"])
    );
    if let Ok(env) = Arc::try_unwrap(env) {
        env.cleanup().await;
    }
    drop(cluster);
    Ok(())
}
