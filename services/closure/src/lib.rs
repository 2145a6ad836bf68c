//! qingling-closure: write-off requests (销账申请) and their review.

pub mod blobs;
pub mod consumer;
pub mod domain;
pub mod http;
pub mod projector;
pub mod replay;
pub mod store;

use qingling_shared::runtime::{Runtime, ServiceSpec};
use qingling_shared::Orgs;

pub const SPEC: ServiceSpec = ServiceSpec {
    name: "closure",
    addr_var: "QINGLING_CLOSURE_ADDR",
    default_addr: "127.0.0.1:8083",
    migrations: &[
        (
            "0002_closures",
            include_str!("../../../migrations/closure/0002_closures.sql"),
        ),
        (
            "0003_evidence",
            include_str!("../../../migrations/closure/0003_evidence.sql"),
        ),
    ],
    listens_to: &["ledger"],
    description: "Write-off requests (销账申请) with the 三无一恢复 checklist and evidence, and their review.",
};

pub async fn run() -> anyhow::Result<()> {
    let rt = Runtime::start(&SPEC).await?;
    let state = http::AppState {
        pool: rt.pool.clone(),
        keys: rt.keys.clone(),
        orgs: Orgs::load()?,
        relay_wake: rt.relay_wake.clone(),
        blobs: blobs::Blobs::from_env()?,
    };
    tracing::info!(store = %state.blobs.describe(), "evidence store");
    rt.serve(&SPEC, http::router(state), consumer::LedgerEvents)
        .await
}

/// `qingling-closure rebuild`.
pub async fn rebuild() -> anyhow::Result<()> {
    qingling_shared::rebuild::command(
        SPEC.name,
        SPEC.migrations,
        projector::Projector,
        Some(consumer::LedgerEvents),
    )
    .await
}
