//! NATS connection, the JetStream stream, and the server-version guard.

use std::time::Duration;

use anyhow::{bail, Context};
use async_nats::jetstream;

/// The oldest server this code trusts: older ones lose streams on crash and mishandle
/// multi-filter consumers.
pub const MIN_SERVER: (u64, u64) = (2, 10);

pub fn stream_name(prefix: &str) -> String {
    format!("{}_EVENTS", prefix.to_uppercase().replace('-', "_"))
}

pub fn subject(prefix: &str, service: &str, event_type: &str) -> String {
    format!("{prefix}.{service}.{event_type}")
}

/// Connects in the background (retrying forever), so a service starts and serves while NATS is
/// down; waits up to `wait` for the first connection.
/// How a service proves who it is to the bus (CONTRACT §13).
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// A `.creds` file (`QINGLING_NATS_CREDS`).
    File(std::path::PathBuf),
    /// `QINGLING_NATS_USER` (default: the service's name) and `QINGLING_NATS_PASSWORD`.
    UserPassword(String, String),
    /// None configured: development and tests, on a server without authorization.
    None,
}

impl Credentials {
    pub fn from_env(service: &str) -> Credentials {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(path) = var("QINGLING_NATS_CREDS") {
            return Credentials::File(path.into());
        }
        match var("QINGLING_NATS_PASSWORD") {
            Some(p) => Credentials::UserPassword(
                var("QINGLING_NATS_USER").unwrap_or_else(|| service.to_string()),
                p,
            ),
            None => Credentials::None,
        }
    }
}

pub async fn connect(
    url: &str,
    name: &str,
    credentials: &Credentials,
    wait: Duration,
) -> anyhow::Result<async_nats::Client> {
    let options = match credentials {
        Credentials::File(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .with_context(|| format!("cannot read the NATS credentials {}", path.display()))?,
        Credentials::UserPassword(user, password) => {
            async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        Credentials::None => {
            tracing::warn!("connecting to NATS without credentials (none configured): any client of the bus could publish as this service");
            async_nats::ConnectOptions::new()
        }
    };
    // Replies come to an inbox of this service's own, which no other service may read.
    let client = options
        .custom_inbox_prefix(format!("_INBOX_{}", name.trim_start_matches("qingling-")))
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .event_callback(|ev| async move {
            match ev {
                async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                async_nats::Event::Connected => tracing::info!("NATS connected"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        })
        .connect(server_addrs(url)?)
        .await
        .with_context(|| format!("bad NATS_URL {url}"))?;
    let deadline = tokio::time::Instant::now() + wait;
    while !is_connected(&client) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if is_connected(&client) {
        check_version(&client)?;
    } else {
        tracing::warn!(url, "NATS is not reachable yet; events are kept in PostgreSQL and published when it returns");
    }
    Ok(client)
}

/// `NATS_URL` may list several servers of a cluster, comma-separated.
pub fn server_addrs(url: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .with_context(|| format!("bad NATS server address {u:?} in NATS_URL"))
        })
        .collect()
}

pub fn is_connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// Whether a server version string (`2.10.22`, `v2.15.1`) is at least [`MIN_SERVER`].
pub fn version_supported(v: &str) -> bool {
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse::<u64>().ok());
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= MIN_SERVER
}

/// Refuses a server older than 2.10.
pub fn check_version(client: &async_nats::Client) -> anyhow::Result<()> {
    let v = client.server_info().version;
    if !version_supported(&v) {
        bail!(
            "nats-server {v} is too old: Qingling needs {}.{} or newer (see scripts/services-up)",
            MIN_SERVER.0,
            MIN_SERVER.1
        );
    }
    Ok(())
}

/// Creates (or finds) the stream `<PREFIX>_EVENTS` capturing `<prefix>.>`.
pub async fn ensure_stream(
    js: &jetstream::Context,
    prefix: &str,
    replicas: usize,
) -> anyhow::Result<jetstream::stream::Stream> {
    let cfg = jetstream::stream::Config {
        name: stream_name(prefix),
        subjects: vec![format!("{prefix}.>")],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        num_replicas: replicas.max(1),
        ..Default::default()
    };
    js.get_or_create_stream(cfg).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot create JetStream stream {}: {e}",
            stream_name(prefix)
        )
    })
}

pub fn jetstream(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_servers_are_refused() {
        assert!(!version_supported("2.9.10"));
        assert!(!version_supported("2.2.0"));
        assert!(!version_supported(""));
        assert!(version_supported("2.10.0"));
        assert!(version_supported("v2.15.1"));
        assert!(version_supported("3.0.0-beta"));
    }

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(stream_name("qingling"), "QINGLING_EVENTS");
        assert_eq!(
            subject("qingling", "ledger", "thing_happened"),
            "qingling.ledger.thing_happened"
        );
    }
}
