//! A three-node NATS cluster with JetStream on loopback, for the scale-out tests: real
//! nats-server processes that a test can kill and restart.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use uuid::Uuid;

/// The nats-server binary: `QINGLING_NATS_SERVER`, else the one `scripts/setup` installs, else
/// the first on PATH.
pub fn nats_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("QINGLING_NATS_SERVER") {
        return p.into();
    }
    let pinned = PathBuf::from("/opt/qingling-nats/bin/nats-server");
    if pinned.exists() {
        return pinned;
    }
    "nats-server".into()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Node {
    pub name: String,
    pub client_port: u16,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

pub struct NatsCluster {
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts three nodes and waits until JetStream can place a three-replica stream.
    pub async fn start() -> NatsCluster {
        let dir = std::env::temp_dir().join(format!("qingling-nats-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, c)| format!("\"nats-route://127.0.0.1:{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = vec![];
        for (i, (client, cluster)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let conf = dir.join(format!("{name}.conf"));
            std::fs::write(
                &conf,
                format!(
                    r#"server_name: "{name}"
listen: "127.0.0.1:{client}"
jetstream {{ store_dir: "{store}", max_memory_store: 256MB, max_file_store: 2GB }}
cluster {{ name: "qingling-test", listen: "127.0.0.1:{cluster}", routes: [{routes}] }}
"#,
                    store = dir.join(&name).display(),
                ),
            )
            .unwrap();
            nodes.push(Node {
                log: dir.join(format!("{name}.log")),
                name,
                client_port: *client,
                conf,
                child: None,
            });
        }
        let mut c = NatsCluster { dir, nodes };
        for i in 0..3 {
            c.start_node(i);
        }
        c.wait_ready().await;
        c
    }

    /// All three client URLs, comma-separated, as `NATS_URL` takes them.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(&node.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server (run scripts/setup to install it)");
        node.child = Some(child);
    }

    /// SIGKILLs node `i`: no goodbye to its peers or clients.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().await.ok();
        }
    }

    /// Starts node `i` again on its old ports and store; it catches up from its peers.
    pub async fn restart(&mut self, i: usize) {
        self.start_node(i);
        let addr = format!("127.0.0.1:{}", self.nodes[i].client_port);
        crate::eventually(
            &format!("nats node {} to listen again", self.nodes[i].name),
            Duration::from_secs(20),
            || async { tokio::net::TcpStream::connect(&addr).await.ok().map(drop) },
        )
        .await;
    }

    /// Waits until a three-replica stream can be created (the cluster has a JetStream leader).
    pub async fn wait_ready(&self) {
        let servers = qingling_shared::nats::server_addrs(&self.url()).unwrap();
        let probe = format!("PROBE_{}", Uuid::now_v7().simple());
        let ok = crate::eventually(
            "the NATS cluster to elect its JetStream leader",
            Duration::from_secs(60),
            || {
                let (servers, probe) = (servers.clone(), probe.clone());
                async move {
                    let nc = async_nats::connect(servers).await.ok()?;
                    let js = async_nats::jetstream::new(nc);
                    let created = js
                        .get_or_create_stream(async_nats::jetstream::stream::Config {
                            name: probe.clone(),
                            subjects: vec![format!("{}.>", probe.to_lowercase())],
                            num_replicas: 3,
                            ..Default::default()
                        })
                        .await;
                    if created.is_err() {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        return None;
                    }
                    js.delete_stream(&probe).await.ok();
                    Some(())
                }
            },
        )
        .await;
        ok
    }

    /// The server log of every node, for a failing test's message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "--- {} ---\n{}",
                    n.name,
                    std::fs::read_to_string(&n.log).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut() {
                c.start_kill().ok();
            }
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
