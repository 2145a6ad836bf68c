//! qingling-intake: complaints (接诉), dispatch (派单), follow-up (回访).

pub mod app;
pub mod consumer;
pub mod domain;
pub mod http;
pub mod open311;

pub mod projector;
pub mod register;
pub mod registrar;
pub mod replay;
pub mod store;

use qingling_shared::runtime::{Runtime, ServiceSpec};
use qingling_shared::{Catalog, Orgs};

pub const SPEC: ServiceSpec = ServiceSpec {
    name: "intake",
    addr_var: "QINGLING_INTAKE_ADDR",
    default_addr: "127.0.0.1:8081",
    migrations: &[
        (
            "0002_complaints",
            include_str!("../../../migrations/intake/0002_complaints.sql"),
        ),
        (
            "0003_return_pending",
            include_str!("../../../migrations/intake/0003_return_pending.sql"),
        ),
        (
            "0004_caller_reveals",
            include_str!("../../../migrations/intake/0004_caller_reveals.sql"),
        ),
        (
            "0005_operator_lookups",
            include_str!("../../../migrations/intake/0005_operator_lookups.sql"),
        ),
        (
            "0006_routing",
            include_str!("../../../migrations/intake/0006_routing.sql"),
        ),
        (
            "0007_history_from_the_log",
            include_str!("../../../migrations/intake/0007_history_from_the_log.sql"),
        ),
    ],
    listens_to: &["ledger"],
    description: "Complaints (接诉), dispatch (派单), returns, follow-up (回访), monthly street metrics, and Open311 GeoReport v2.",
};

pub async fn run() -> anyhow::Result<()> {
    let rt = Runtime::start(&SPEC).await?;
    let state = app::AppState {
        pool: rt.pool.clone(),
        keys: rt.keys.clone(),
        orgs: Orgs::load()?,
        catalog: Catalog::load()?,
        limits: rt.config.limits,
        relay_wake: rt.relay_wake.clone(),
        registrar: registrar::Registrar::start(rt.pool.clone(), rt.relay_wake.clone()),
    };
    seed_communities(&state).await?;
    let open311 = open311::Open311State {
        app: state.clone(),
        keys: open311::ApiKeys::from_env()?,
    };
    rt.serve(&SPEC, router(state, open311), consumer::LedgerEvents)
        .await
}

/// The community directory's shipped entries (`shared/data/communities.json`), for communities
/// not yet set or learnt.
async fn seed_communities(s: &app::AppState) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Seed {
        districts: std::collections::BTreeMap<String, Vec<Entry>>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        community: String,
        street: String,
    }
    let seed: Seed = serde_json::from_str(include_str!("../../../shared/data/communities.json"))?;
    let mut c = s.pool.acquire().await?;
    for (district, entries) in seed.districts {
        let rows: Vec<(String, String)> = entries
            .into_iter()
            .filter(|e| s.orgs.street(&district, &e.street).is_some())
            .map(|e| (e.community, e.street))
            .collect();
        store::routing::seed_communities(&mut c, &district, &rows).await?;
    }
    Ok(())
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

/// intake's routes: the JSON API (CONTRACT §4) and Open311 (§8).
pub fn router(
    state: app::AppState,
    open311: open311::Open311State,
) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (api, mut doc) = http::router(state);
    let (open311, open311_doc) = open311::router(open311);
    doc.merge(open311_doc);
    (api.merge(open311), doc)
}
