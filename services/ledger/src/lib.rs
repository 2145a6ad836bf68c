//! qingling-ledger: the dynamic ledger (动态台账): items, 上账, 签收, 销账, summary and journal.

pub mod app;
pub mod consumer;
pub mod deadlines;
pub mod domain;
pub mod export;
pub mod http;
pub mod live;
pub mod log;
pub mod points;
pub mod projector;
pub mod replay;
pub mod store;
pub mod summary;

use qingling_shared::runtime::{Runtime, ServiceSpec};
use qingling_shared::{Catalog, Orgs};

pub const SPEC: ServiceSpec = ServiceSpec {
    name: "ledger",
    addr_var: "QINGLING_LEDGER_ADDR",
    default_addr: "127.0.0.1:8082",
    migrations: &[
        (
            "0002_items",
            include_str!("../../../migrations/ledger/0002_items.sql"),
        ),
        (
            "0003_journal_view",
            include_str!("../../../migrations/ledger/0003_journal_view.sql"),
        ),
        (
            "0004_open_complaints_index",
            include_str!("../../../migrations/ledger/0004_open_complaints_index.sql"),
        ),
        (
            "0005_street_tallies",
            include_str!("../../../migrations/ledger/0005_street_tallies.sql"),
        ),
        (
            "0006_points",
            include_str!("../../../migrations/ledger/0006_points.sql"),
        ),
        (
            "0007_log",
            include_str!("../../../migrations/ledger/0007_log.sql"),
        ),
    ],
    listens_to: &["intake", "closure"],
    description: "The dynamic ledger (动态台账): items, 上账, 签收, 销账, dynamic-zero summary, live stream, journal, import.",
};

pub async fn run() -> anyhow::Result<()> {
    let rt = Runtime::start(&SPEC).await?;
    let state = http::AppState {
        pool: rt.pool.clone(),
        keys: rt.keys.clone(),
        orgs: Orgs::load()?,
        catalog: Catalog::load()?,
        limits: rt.config.limits,
        relay_wake: rt.relay_wake.clone(),
        live: live::Live::new(rt.pool.clone(), Orgs::load()?),
        streams: Default::default(),
        log: std::sync::Arc::new(log::Log::from_env(rt.config.dev)?),
    };
    let (pool, the_log) = (rt.pool.clone(), state.log.clone());
    tokio::spawn(qingling_shared::leader::lead(
        rt.pool.clone(),
        "log",
        rt.stopping(),
        move |stop| log::run(pool.clone(), the_log.clone(), stop),
    ));
    tokio::spawn(state.live.clone().run(rt.stopping()));
    let tick = match std::env::var("QINGLING_DEADLINE_TICK") {
        Ok(v) if !v.is_empty() => humantime::parse_duration(&v)
            .map_err(|e| anyhow::anyhow!("QINGLING_DEADLINE_TICK={v:?}: {e}"))?,
        _ => std::time::Duration::from_secs(1),
    };
    let (pool, wake) = (rt.pool.clone(), rt.relay_wake.clone());
    tokio::spawn(qingling_shared::leader::lead(
        rt.pool.clone(),
        "deadlines",
        rt.stopping(),
        move |stop| deadlines::run(pool.clone(), wake.clone(), tick, stop),
    ));
    let consumer = consumer::Events {
        relay_wake: rt.relay_wake.clone(),
    };
    rt.serve(&SPEC, http::router(state), consumer).await
}

/// `qingling-ledger rebuild`.
pub async fn rebuild() -> anyhow::Result<()> {
    qingling_shared::rebuild::command::<_, consumer::Events>(
        SPEC.name,
        SPEC.migrations,
        projector::Projector,
        None,
    )
    .await
}
