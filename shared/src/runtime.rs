//! Start-up, serving and graceful shutdown, the same for every service.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};

use crate::consumer::{Apply, Consumer};
use crate::db::{self, Migration};
use crate::relay::Relay;
use crate::{nats, Config};

/// What distinguishes one service from another at start-up.
pub struct ServiceSpec {
    /// `intake`, `ledger` or `closure`: the NATS subject segment, the schema and the durable name.
    pub name: &'static str,
    pub addr_var: &'static str,
    pub default_addr: &'static str,
    pub migrations: &'static [Migration],
    /// The services whose events this one consumes.
    pub listens_to: &'static [&'static str],
    /// What the service does, for its OpenAPI document.
    pub description: &'static str,
}

/// The connections and handles a running service holds.
#[derive(Clone)]
pub struct Runtime {
    pub service: &'static str,
    pub config: Config,
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    /// Poke after a commit that appended events, so the relay publishes at once.
    pub relay_wake: Arc<Notify>,
    /// What checks bearer tokens: the shared secret and/or the identity provider.
    pub keys: crate::JwtKeys,
    metrics: PrometheusHandle,
    stop_tx: Arc<watch::Sender<bool>>,
}

pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("QINGLING_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

impl Runtime {
    pub async fn start(spec: &ServiceSpec) -> anyhow::Result<Self> {
        let config = Config::from_env(spec.addr_var, spec.default_addr)?;
        if config.dev {
            tracing::warn!("QINGLING_DEV=1: using the fixed DEVELOPMENT JWT secret. Never run like this in production.");
        }
        let metrics = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("seconds".into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            )?
            .install_recorder()
            .context("cannot install the metrics recorder")?;
        crate::telemetry::describe();
        let pool = db::connect(&config.database_url, spec.name, 16).await?;
        db::migrate(&pool, spec.name, spec.migrations).await?;
        let nats = nats::connect(
            &config.nats_url,
            &format!("qingling-{}", spec.name),
            &nats::Credentials::from_env(spec.name),
            Duration::from_secs(5),
        )
        .await?;
        let js = nats::jetstream(nats.clone());
        if nats::is_connected(&nats) {
            nats::ensure_stream(&js, &config.nats_prefix, config.nats_replicas).await?;
        }
        let provider = match config.oidc.clone() {
            Some(c) => Some(crate::oidc::Oidc::start(c).await?),
            None => None,
        };
        let keys = crate::JwtKeys::from_parts(
            config.jwt_secret.as_deref(),
            config.max_token_ttl,
            provider,
        );
        Ok(Self {
            service: spec.name,
            keys,
            config,
            pool,
            nats,
            js,
            relay_wake: Arc::new(Notify::new()),
            metrics,
            stop_tx: Arc::new(watch::channel(false).0),
        })
    }

    /// Turns true when the service begins to stop; background tasks watch it.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }

    /// Serves `app` with the common routes until SIGTERM/SIGINT, running the relay and the
    /// consumer beside it; then finishes in-flight requests, publishes what is owed, exits.
    pub async fn serve<A: Apply>(
        self,
        spec: &ServiceSpec,
        (app, api): (Router, utoipa::openapi::OpenApi),
        handler: A,
    ) -> anyhow::Result<()> {
        let api = std::sync::Arc::new(crate::openapi::document(spec.name, spec.description, api));
        let (stop_tx, stop_rx) = (self.stop_tx.clone(), self.stopping());
        let relay = Relay {
            pool: self.pool.clone(),
            js: self.js.clone(),
            prefix: self.config.nats_prefix.clone(),
            service: self.service,
            wake: self.relay_wake.clone(),
        };
        // One relay per service across its instances; another takes over when its holder dies.
        let relay_task = tokio::spawn(crate::leader::lead(
            self.pool.clone(),
            "relay",
            stop_rx.clone(),
            move |stop| relay.clone().run(stop),
        ));
        let consumer = Consumer {
            pool: self.pool.clone(),
            js: self.js.clone(),
            prefix: self.config.nats_prefix.clone(),
            replicas: self.config.nats_replicas,
            durable: self.service.to_string(),
            sources: spec.listens_to.iter().map(|s| s.to_string()).collect(),
            handler: Arc::new(handler),
        };
        let consumer_task = tokio::spawn(consumer.run(stop_rx.clone()));
        tokio::spawn(crate::telemetry::watch_dependencies(
            self.pool.clone(),
            self.nats.clone(),
            stop_rx.clone(),
        ));

        let router = app
            .merge(self.common_routes())
            .route(
                "/openapi.json",
                get(move || {
                    let api = api.clone();
                    async move { crate::openapi::serve(&api) }
                }),
            )
            .fallback(crate::http::fallback)
            .layer(DefaultBodyLimit::max(crate::http::MAX_BODY))
            .layer(axum::middleware::from_fn(
                crate::http::problem_for_plain_errors,
            ))
            .layer(axum::middleware::from_fn(crate::http::limit_auth_failures))
            .layer(axum::middleware::from_fn(crate::http::security_headers))
            .layer(crate::console::cors()?);
        let router = router.route_layer(axum::middleware::from_fn(crate::http::track_metrics));
        let listener = tokio::net::TcpListener::bind(&self.config.listen_addr)
            .await
            .with_context(|| format!("cannot listen on {}", self.config.listen_addr))?;
        let addr = listener.local_addr()?;
        tracing::info!(service = self.service, %addr, "listening");
        // Tests and scripts read this line to find the port.
        println!("qingling-{} listening on http://{addr}", self.service);
        crate::server::serve(
            listener,
            router,
            crate::server::Limits::from_env()?,
            shutdown_signal(),
        )
        .await?;
        tracing::info!(
            service = self.service,
            "stopping: requests finished, publishing what is owed"
        );
        stop_tx.send_replace(true);
        consumer_task.await.ok();
        relay_task.await.ok();
        self.nats.flush().await.ok();
        self.pool.close().await;
        tracing::info!(service = self.service, "stopped");
        Ok(())
    }

    fn common_routes(&self) -> Router {
        let (pool, nats, handle) = (self.pool.clone(), self.nats.clone(), self.metrics.clone());
        Router::new()
            .route(
                "/healthz",
                get(move || {
                    let (pool, nats) = (pool.clone(), nats.clone());
                    async move { health(&pool, &nats).await }
                }),
            )
            .route(
                "/metrics",
                get(move || {
                    let handle = handle.clone();
                    async move {
                        (
                            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                            handle.render(),
                        )
                    }
                }),
            )
    }
}

async fn health(pool: &PgPool, nats: &async_nats::Client) -> impl IntoResponse {
    let db_ok = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("select 1").execute(pool),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let nats_ok = nats::is_connected(nats);
    let ok = db_ok && nats_ok;
    let checks =
        json!({"database": if db_ok {"ok"} else {"down"}, "nats": if nats_ok {"ok"} else {"down"}});
    if ok {
        (
            StatusCode::OK,
            Json(json!({"status": "ok", "checks": checks})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "degraded", "checks": checks})),
        )
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received");
}
