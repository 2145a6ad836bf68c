//! Test harness: starts the real service binaries against a fresh database and a fresh NATS
//! subject prefix, so tests run in parallel without touching each other.

pub mod browser;
pub mod cluster;
pub mod moto;
pub mod oidc;
pub mod proxy;
pub mod rfc6962;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use qingling_shared::{Claims, JwtKeys, Role};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

pub const SECRET: &str = "qingling-test-secret-of-thirty-two-bytes";
pub const SERVICES: [&str; 3] = ["intake", "ledger", "closure"];

pub fn nats_url() -> String {
    std::env::var("QINGLING_TEST_NATS_URL")
        .or_else(|_| std::env::var("NATS_URL"))
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub fn pg_base() -> String {
    qingling_shared::db::test_server_url()
}

/// Every test environment's NATS subject prefix is this and 16 hex digits, so its stream is
/// `QINGLING_TEST_<16 hex digits>_EVENTS` (see [`is_test_stream`]).
pub const TEST_NATS_PREFIX: &str = "qingling_test_";

/// Whether `stream` is the stream of a test environment (and so may be swept), and not any other.
pub fn is_test_stream(stream: &str) -> bool {
    stream
        .strip_prefix(&TEST_NATS_PREFIX.to_uppercase())
        .and_then(|s| s.strip_suffix("_EVENTS"))
        .is_some_and(|id| {
            id.len() == 16
                && id
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
        })
}

/// Deletes the JetStream stream `stream` (and with it its durable consumers); nothing if there is
/// no such stream.
pub async fn delete_stream(nats_url: &str, stream: &str) -> anyhow::Result<()> {
    use async_nats::jetstream::{context::DeleteStreamErrorKind, ErrorCode};
    let nc = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(qingling_shared::nats::server_addrs(nats_url)?)
        .await?;
    let js = async_nats::jetstream::new(nc);
    match js.delete_stream(stream).await {
        Ok(_) => Ok(()),
        Err(e) => match e.kind() {
            DeleteStreamErrorKind::JetStream(j)
                if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(())
            }
            _ => Err(anyhow::anyhow!("cannot delete stream {stream}: {e}")),
        },
    }
}

/// The directory holding the built binaries (next to this test's own executable).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("deps dir");
    if dir.ends_with("deps") {
        dir.parent().unwrap().to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

pub struct Service {
    pub name: &'static str,
    pub url: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Service {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends a signal (e.g. "TERM", "KILL") to the process.
    pub fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            std::process::Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.to_string())
                .status()
                .ok();
        }
    }
}

pub struct TestEnv {
    /// Fixed listen addresses per service (so a restarted service keeps its URL), if chosen.
    pub fixed_addrs: Vec<(String, String)>,
    pub db_name: String,
    pub prefix: String,
    pub extra_env: Vec<(String, String)>,
    /// The NATS server(s) the services use, comma-separated.
    pub nats_url: String,
    /// Every running instance; several per service when scaled out.
    pub services: Vec<Service>,
    /// Send each request to a randomly chosen instance of the service (no load balancer).
    pub random_instances: bool,
    pub http: reqwest::Client,
    keys: JwtKeys,
}

impl TestEnv {
    pub async fn start() -> TestEnv {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[(&str, &str)]) -> TestEnv {
        let mut env = Self::new(extra);
        for name in SERVICES {
            let s = env.spawn(name).await;
            env.services.push(s);
        }
        env
    }

    /// An environment whose services are not started yet.
    pub fn new(extra: &[(&str, &str)]) -> TestEnv {
        let id = Uuid::now_v7().simple().to_string();
        // The verifiable log's signing key, its own per environment; checkpoints every 250 ms.
        let log_key = std::env::temp_dir().join(format!("qingling-test-{id}.logkey"));
        let (signer, _) = qingling_shared::tlog::generate_key("qingling.test/ledger");
        std::fs::write(&log_key, signer).unwrap();
        let mut env_vars = vec![
            (
                "QINGLING_LOG_KEY".to_string(),
                log_key.display().to_string(),
            ),
            (
                "QINGLING_LOG_ORIGIN".to_string(),
                "qingling.test/ledger".to_string(),
            ),
            (
                "QINGLING_LOG_CHECKPOINT_INTERVAL".to_string(),
                "250ms".to_string(),
            ),
        ];
        env_vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        TestEnv {
            fixed_addrs: vec![],
            db_name: format!("{}{id}", qingling_shared::db::TEST_DATABASE_PREFIX),
            prefix: format!("{TEST_NATS_PREFIX}{}", &id[id.len() - 16..]),
            extra_env: env_vars,
            nats_url: nats_url(),
            services: vec![],
            random_instances: false,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            keys: JwtKeys::new(SECRET.as_bytes()),
        }
    }

    /// Starts the services on fixed free ports, so that a restarted service keeps its address.
    pub async fn start_on_fixed_ports(extra: &[(&str, &str)]) -> TestEnv {
        let mut env = Self::new(extra);
        for name in SERVICES {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            env.fixed_addrs
                .push((name.to_string(), format!("127.0.0.1:{port}")));
        }
        for name in SERVICES {
            let s = env.spawn(name).await;
            env.services.push(s);
        }
        env
    }

    /// Starts the services on fixed ports, each told all three addresses, as on one machine with
    /// the defaults: the ledger's console knows where intake and closure are, and they allow the
    /// console's origin by CORS.
    pub async fn start_for_console(extra: &[(&str, &str)]) -> TestEnv {
        let mut env = Self::for_console(extra);
        env.start_services().await;
        env
    }

    /// [`TestEnv::start_for_console`]'s environment, its addresses chosen, nothing started.
    pub fn for_console(extra: &[(&str, &str)]) -> TestEnv {
        let mut env = Self::new(extra);
        for name in SERVICES {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = format!("127.0.0.1:{port}");
            env.fixed_addrs.push((name.to_string(), addr.clone()));
            env.extra_env
                .push((format!("QINGLING_{}_ADDR", name.to_uppercase()), addr));
        }
        env
    }

    /// A service's address before it is started (environments with fixed addresses).
    pub fn fixed_url(&self, name: &str) -> String {
        let addr = self
            .fixed_addrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
            .expect("a fixed address");
        format!("http://{addr}")
    }

    /// Starts the three services (sequentially: the first creates the database).
    pub async fn start_services(&mut self) {
        for name in SERVICES {
            let s = self.spawn(name).await;
            self.services.push(s);
        }
    }

    pub fn database_url(&self) -> String {
        format!("{}/{}", pg_base(), self.db_name)
    }

    /// Starts one service binary and waits until it listens.
    pub async fn spawn(&self, name: &'static str) -> Service {
        self.spawn_with(name, &[]).await
    }

    /// Kills a running service (SIGKILL) and starts it again, with `overrides` in its environment.
    pub async fn restart(&mut self, name: &'static str, overrides: &[(&str, &str)]) {
        let s = self.svc_mut(name);
        s.child.kill().await.ok();
        let new = self.spawn_with(name, overrides).await;
        *self.svc_mut(name) = new;
    }

    pub async fn spawn_with(&self, name: &'static str, overrides: &[(&str, &str)]) -> Service {
        let bin = bin_dir().join(format!("qingling-{name}"));
        assert!(
            bin.exists(),
            "{} is not built: run `cargo build --workspace --bins` first",
            bin.display()
        );
        let log = std::env::temp_dir().join(format!(
            "{}-{name}-{}.log",
            self.db_name,
            Uuid::now_v7().simple()
        ));
        let mut cmd = Command::new(&bin);
        cmd.env("DATABASE_URL", self.database_url())
            .env("NATS_URL", &self.nats_url)
            .env("QINGLING_NATS_PREFIX", &self.prefix)
            .env("QINGLING_JWT_SECRET", SECRET)
            .env_remove("QINGLING_DEV")
            .env(
                format!("QINGLING_{}_ADDR", name.to_uppercase()),
                self.fixed_addrs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, a)| a.as_str())
                    .unwrap_or("127.0.0.1:0"),
            )
            .env(
                "RUST_LOG",
                std::env::var("QINGLING_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        for (k, v) in overrides {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn service");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.split("listening on ").nth(1) {
                    return Some(url.trim().to_string());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "qingling-{name} did not start; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Service {
            name,
            url,
            child,
            log,
        }
    }

    pub fn svc(&self, name: &str) -> &Service {
        self.services
            .iter()
            .find(|s| s.name == name)
            .expect("service")
    }

    pub fn svc_mut(&mut self, name: &str) -> &mut Service {
        self.services
            .iter_mut()
            .find(|s| s.name == name)
            .expect("service")
    }

    /// The running instances of a service.
    pub fn instances(&self, name: &str) -> Vec<&Service> {
        self.services.iter().filter(|s| s.name == name).collect()
    }

    /// Starts `n` instances of every service (the first of each creates its schema).
    pub async fn start_instances(&mut self, n: usize) {
        for name in SERVICES {
            for _ in 0..n {
                let s = self.spawn(name).await;
                self.services.push(s);
            }
        }
    }

    pub fn url(&self, name: &str, path: &str) -> String {
        let base = if self.random_instances {
            let all = self.instances(name);
            all[random_below(all.len())].url.clone()
        } else {
            self.svc(name).url.clone()
        };
        format!("{base}{path}")
    }

    pub fn token(&self, role: Role, org: &str) -> String {
        self.token_with(
            role,
            org,
            &format!("{}-{org}", role.as_str()),
            chrono::Utc::now().timestamp() + 3600,
        )
    }

    pub fn token_with(&self, role: Role, org: &str, sub: &str, exp: i64) -> String {
        self.keys.mint(&Claims::new(sub, role, org, exp))
    }

    pub async fn get(&self, svc: &str, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(self.url(svc, path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        read(r).await
    }

    pub async fn post(
        &self,
        svc: &str,
        path: &str,
        token: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url(svc, path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request");
        read(r).await
    }

    /// A connection to one service's schema of the test database.
    pub async fn db(&self, schema: &str) -> PgConnection {
        let opts: PgConnectOptions = self.database_url().parse().unwrap();
        opts.options([("search_path", schema)])
            .connect()
            .await
            .expect("connect to test database")
    }

    pub async fn count_events(&self, schema: &str) -> i64 {
        sqlx::query_scalar("select count(*) from events")
            .fetch_one(&mut self.db(schema).await)
            .await
            .unwrap()
    }

    pub async fn nats(&self) -> async_nats::Client {
        async_nats::connect(qingling_shared::nats::server_addrs(&self.nats_url).unwrap())
            .await
            .expect("connect to NATS")
    }

    pub fn stream_name(&self) -> String {
        qingling_shared::nats::stream_name(&self.prefix)
    }

    /// Stops the services and removes the database and the JetStream stream (as dropping the
    /// environment does, but waiting for the services to exit).
    pub async fn cleanup(mut self) {
        for s in &mut self.services {
            s.child.kill().await.ok();
        }
    }
}

/// However a test ends (passed, or failed and unwinding), its services are killed and its
/// database, JetStream stream and durable consumers are removed.
impl Drop for TestEnv {
    fn drop(&mut self) {
        for s in &mut self.services {
            s.child.start_kill().ok();
        }
        // Killed processes create nothing more (no stream behind the deletion's back).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        for s in &mut self.services {
            while matches!(s.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let (nats_url, stream) = (self.nats_url.clone(), self.stream_name());
        let (server, db) = (pg_base(), self.db_name.clone());
        let done = qingling_shared::db::run_apart(async move {
            let stream =
                tokio::time::timeout(Duration::from_secs(10), delete_stream(&nats_url, &stream))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("NATS did not answer")));
            let db = qingling_shared::db::drop_database(&server, &db).await;
            Ok([stream.err(), db.err()])
        });
        for e in done.map_or_else(|e| vec![e], |errs| errs.into_iter().flatten().collect()) {
            eprintln!("test environment {}: clean-up: {e:#}", self.db_name);
        }
    }
}

/// A number in `0..n`, different from call to call (for picking instances; not cryptographic).
pub fn random_below(n: usize) -> usize {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ seed;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % n.max(1) as u64) as usize
}

pub async fn read(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls `f` until it yields `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn complaint(street: &str, community: &str, building: &str, basement: &str) -> Value {
    serde_json::json!({
        "district": "tongzhou", "street": street, "category": "basement_illegal_residence", "urgency": "normal",
        "point": {"community": community, "building": building, "basement": basement,
                  "address": format!("通州区{community}{building}号楼地下")},
        "caller": {"name": "张先生", "phone": "13800000000"},
        "description": "地下室有人居住,隔断很多",
    })
}

pub fn rectified(item_id: &str) -> Value {
    serde_json::json!({
        "item_id": item_id, "outcome": "rectified",
        "checklist": {"no_illegal_residents": true, "no_garbage_or_unsafe_partitions": true, "no_illegal_use": true, "layout_restored": true},
        "rooms_cleared": 7, "partition_area_m2": 120.5,
        "evidence": [{"kind": "photo", "uri": "s3://bucket/after.jpg", "sha256": "a".repeat(64)}],
        "note": "已清理",
    })
}
