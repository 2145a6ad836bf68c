//! qingling-intake: complaints (接诉), dispatch (派单), follow-up (回访).

pub mod consumer;
pub mod domain;
pub mod http;
pub mod open311;
mod open311_doc;
pub mod projector;
pub mod registrar;
pub mod store;

use qingling_shared::runtime::{Runtime, ServiceSpec};
use qingling_shared::{Catalog, JwtKeys, Orgs};

pub const SPEC: ServiceSpec = ServiceSpec {
    name: "intake",
    addr_var: "QINGLING_INTAKE_ADDR",
    default_addr: "127.0.0.1:8081",
    migrations: &[(
        "0002_complaints",
        include_str!("../../../migrations/intake/0002_complaints.sql"),
    )],
    listens_to: &["ledger"],
    description: "Complaints (接诉), dispatch (派单), returns, follow-up (回访), monthly street metrics, and Open311 GeoReport v2.",
};

pub async fn run() -> anyhow::Result<()> {
    let rt = Runtime::start(&SPEC).await?;
    let state = http::AppState {
        pool: rt.pool.clone(),
        keys: JwtKeys::new(&rt.config.jwt_secret),
        orgs: Orgs::load()?,
        catalog: Catalog::load()?,
        limits: rt.config.limits,
        relay_wake: rt.relay_wake.clone(),
        registrar: registrar::Registrar::start(rt.pool.clone(), rt.relay_wake.clone()),
        open311_keys: open311::ApiKeys::from_env()?,
    };
    rt.serve(&SPEC, http::router(state), consumer::LedgerEvents)
        .await
}

/// `qingling-intake rebuild`.
pub async fn rebuild() -> anyhow::Result<()> {
    qingling_shared::rebuild::command(
        SPEC.name,
        SPEC.migrations,
        projector::Projector,
        Some(consumer::LedgerEvents),
    )
    .await
}
