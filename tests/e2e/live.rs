//! The district's live view: the SSE summary stream, the dashboard page, the journal in Excel.

use std::time::{Duration, Instant};

use futures::StreamExt;
use qingling_shared::Role;
use qingling_tests::{complaint, eventually, rectified, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{register, request_closure, WAIT};

/// An open SSE connection, yielding `summary` events.
struct SummaryStream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SummaryStream {
    async fn open(
        env: &TestEnv,
        http: &reqwest::Client,
        query: &str,
        bearer: Option<&str>,
    ) -> Result<SummaryStream, StatusCode> {
        let mut req = http.get(env.url("ledger", &format!("/v1/ledger/stream?{query}")));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        if r.status() != StatusCode::OK {
            return Err(r.status());
        }
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Ok(SummaryStream {
            body: Box::pin(r.bytes_stream()),
            buf: String::new(),
        })
    }

    /// The next `summary` event's data.
    async fn next(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let is_summary = frame
                    .lines()
                    .any(|l| l == "event: summary" || l == "event:summary");
                let data: Vec<&str> = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if is_summary && !data.is_empty() {
                    return serde_json::from_str(&data.join("\n")).ok();
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??
                .ok()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Waits for a summary satisfying `f`.
    async fn until(&mut self, within: Duration, f: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let v = self.next(deadline - Instant::now()).await?;
            if f(&v) {
                return Some(v);
            }
        }
        None
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn the_stream_sends_the_summary_on_connect_and_within_a_second_of_a_change() {
    let env = TestEnv::start().await;
    let dist = env.token(Role::District, "tongzhou");
    let mut stream = SummaryStream::open(&env, &env.http, "district=tongzhou", Some(&dist))
        .await
        .unwrap();
    let first = stream
        .next(Duration::from_secs(5))
        .await
        .expect("a summary on connect");
    assert_eq!(
        (
            first["open"].as_i64(),
            first["streets"].as_array().unwrap().len()
        ),
        (Some(0), 22)
    );

    let op = env.token(Role::Operator, "tongzhou");
    let (status, _) = env
        .post(
            "intake",
            "/v1/complaints",
            &op,
            &complaint("jiukeshu", "直播小区", "1", "B1"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // The moment the ledger has it, the stream must follow within a second.
    let on_ledger = eventually("the item on the ledger", WAIT, || async {
        let (_, s) = env
            .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
            .await;
        (s["open"] == 1).then(Instant::now)
    })
    .await;
    let updated = stream
        .until(Duration::from_secs(5), |s| s["open"] == 1)
        .await
        .expect("an updated summary");
    let lag = on_ledger.elapsed();
    assert!(
        lag < Duration::from_secs(1),
        "the stream followed {lag:?} after the change"
    );
    assert_eq!(crate::street_row(&updated, "jiukeshu")["open"], 1);

    // A browser's EventSource passes the token in the query; a bad one is refused.
    let mut by_query = SummaryStream::open(
        &env,
        &env.http,
        &format!("district=tongzhou&access_token={dist}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        by_query.next(Duration::from_secs(5)).await.unwrap()["open"],
        1
    );
    assert_eq!(
        SummaryStream::open(
            &env,
            &env.http,
            "district=tongzhou&access_token=forged",
            None
        )
        .await
        .err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        SummaryStream::open(&env, &env.http, "district=tongzhou", None)
            .await
            .err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    let street = env.token(Role::Street, "jiukeshu");
    let mut own = SummaryStream::open(&env, &env.http, "district=tongzhou", Some(&street))
        .await
        .unwrap();
    assert_eq!(
        own.next(Duration::from_secs(5)).await.unwrap()["streets"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "a street sees its own row"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn hundreds_of_watchers_follow_one_ledger() {
    const WATCHERS: usize = 500;
    let env = TestEnv::start().await;
    let dist = env.token(Role::District, "tongzhou");
    let pid = env.svc("ledger").pid().unwrap();
    let before = rss_kib(pid);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut streams = Vec::with_capacity(WATCHERS);
    // One token each: a token holds at most 20 streams (CONTRACT §13).
    let exp = chrono::Utc::now().timestamp() + 3600;
    for n in 0..WATCHERS {
        let token = env.token_with(Role::District, "tongzhou", &format!("watcher-{n}"), exp);
        let mut s = SummaryStream::open(&env, &http, "district=tongzhou", Some(&token))
            .await
            .unwrap();
        s.next(Duration::from_secs(10))
            .await
            .expect("a summary on connect");
        streams.push(s);
    }
    let held = rss_kib(pid);
    let started = Instant::now();
    let (_, item) = register(&env, &complaint("yongshun", "观众小区", "2", "B1")).await;
    let registered_in = started.elapsed();
    let results = futures::future::join_all(
        streams
            .iter_mut()
            .map(|s| s.until(Duration::from_secs(10), |v| v["open"] == 1)),
    )
    .await;
    let got = results.iter().filter(|r| r.is_some()).count();
    assert_eq!(got, WATCHERS, "every watcher got the change");
    println!(
        "{WATCHERS} streams: ledger RSS {before} KiB -> {held} KiB ({:.1} KiB per stream); registration took {registered_in:?} with them open",
        (held.saturating_sub(before)) as f64 / WATCHERS as f64
    );
    // Watchers that go away cost nothing.
    drop(streams);
    let (status, _) = env
        .get("ledger", &format!("/v1/ledger/items/{item}"), &dist)
        .await;
    assert_eq!(status, StatusCode::OK);
    env.cleanup().await;
}

#[tokio::test]
async fn the_dashboard_page_is_served_by_the_ledger() {
    let env = TestEnv::start().await;
    let r = env.http.get(env.url("ledger", "/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(page.contains("动态清零"));
    env.cleanup().await;
}

#[tokio::test]
async fn the_journal_opens_in_excel_with_the_same_rows() {
    use calamine::{Data, DataType, Reader, Xlsx};
    let env = TestEnv::start().await;
    let dist = env.token(Role::District, "tongzhou");
    let (_, item) = register(&env, &complaint("jiukeshu", "表格小区", "1", "B1")).await;
    register(&env, &complaint("xinhua", "表格小区", "2", "B1")).await;
    env.post(
        "ledger",
        &format!("/v1/ledger/items/{item}/acknowledge"),
        &env.token(Role::Street, "jiukeshu"),
        &json!({}),
    )
    .await;
    let closure = request_closure(&env, "jiukeshu", &rectified(&item)).await;
    env.post(
        "closure",
        &format!("/v1/closures/{closure}/approve"),
        &env.token(Role::Reviewer, "tongzhou"),
        &json!({}),
    )
    .await;
    crate::item_status(&env, &item, "written_off").await;
    let (_, journal) = env
        .get("ledger", "/v1/ledger/entries?district=tongzhou", &dist)
        .await;
    let entries = journal["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 3);

    for (query, accept) in [
        ("?district=tongzhou&format=xlsx", "*/*"),
        (
            "?district=tongzhou",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
    ] {
        let r = env
            .http
            .get(env.url("ledger", &format!("/v1/ledger/entries{query}")))
            .bearer_auth(&dist)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["content-type"],
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        );
        let bytes = r.bytes().await.unwrap();
        let mut book: Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(bytes.to_vec())).unwrap();
        let sheet = book.worksheet_range("台账流水").unwrap();
        let rows: Vec<_> = sheet.rows().collect();
        assert_eq!(rows.len(), entries.len() + 1);
        assert!(
            rows[0][1].to_string().contains("类型") && rows[0][1].to_string().contains("kind"),
            "bilingual headers"
        );
        for (row, e) in rows[1..].iter().zip(&entries) {
            assert_eq!(row[0].to_string(), e["position"].to_string());
            assert_eq!(row[1].to_string(), e["kind"].as_str().unwrap());
            assert_eq!(row[2].to_string(), e["item_id"].as_str().unwrap());
            assert_eq!(row[4].to_string(), e["street"].as_str().unwrap());
            assert!(
                matches!(row[8], Data::DateTime(_)),
                "the time is a real date: {:?}",
                row[8]
            );
            let at: chrono::DateTime<chrono::Utc> = e["at"].as_str().unwrap().parse().unwrap();
            let shown = row[8].as_datetime().unwrap();
            let beijing = (at + chrono::Duration::hours(8)).naive_utc();
            assert!(
                (shown - beijing).num_milliseconds().abs() < 1000,
                "{shown} vs {beijing}"
            );
            assert_eq!(
                row[10].to_string(),
                e["complaint_id"].as_str().unwrap_or("")
            );
            assert_eq!(row[11].to_string(), e["closure_id"].as_str().unwrap_or(""));
            assert_eq!(
                row[12].to_string(),
                e["write_off_kind"].as_str().unwrap_or("")
            );
        }
        assert_eq!(rows[2][5].to_string(), "新华街道");
    }
    // The CSV opens in Excel with its Chinese intact: UTF-8 with a byte-order mark.
    let csv = env
        .http
        .get(env.url("ledger", "/v1/ledger/entries?district=tongzhou&format=csv"))
        .bearer_auth(&dist)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&csv[..3], b"\xEF\xBB\xBF");
    env.cleanup().await;
}

/// The page in a real browser: headless Chromium follows a registration and a write-off live.
#[tokio::test]
async fn the_dashboard_follows_the_ledger_live_in_chromium() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    let script = root.join("browser/dashboard.mjs");
    assert!(
        root.join("browser/node_modules/playwright-core").exists() && std::path::Path::new(&chromium()).exists(),
        "the browser test needs Chromium and playwright-core: run `bash scripts/test`, which installs them"
    );
    let env = TestEnv::start().await;
    let artifacts = root.parent().unwrap().join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("LEDGER_URL", &env.svc("ledger").url)
        .env("INTAKE_URL", &env.svc("intake").url)
        .env("CLOSURE_URL", &env.svc("closure").url)
        .env("TOKEN_DISTRICT", env.token(Role::District, "tongzhou"))
        .env("TOKEN_OPERATOR", env.token(Role::Operator, "tongzhou"))
        .env("TOKEN_STREET", env.token(Role::Street, "jiukeshu"))
        .env("TOKEN_REVIEWER", env.token(Role::Reviewer, "tongzhou"))
        .env("CHROMIUM", chromium())
        .env("SCREENSHOT", &shot)
        .output()
        .await
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shot.exists(), "a screenshot is saved");
    env.cleanup().await;
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}
