//! qingling-ledger: the dynamic ledger (动态台账): items, 上账, 签收, 销账, summary and journal.

pub mod app;
pub mod consumer;
pub mod domain;
pub mod http;
pub mod store;

use qingling_shared::runtime::{Runtime, ServiceSpec};
use qingling_shared::{JwtKeys, Orgs};

pub const SPEC: ServiceSpec = ServiceSpec {
    name: "ledger",
    addr_var: "QINGLING_LEDGER_ADDR",
    default_addr: "127.0.0.1:8082",
    migrations: &[(
        "0002_items",
        include_str!("../../../migrations/ledger/0002_items.sql"),
    )],
    listens_to: &["intake", "closure"],
};

pub async fn run() -> anyhow::Result<()> {
    let rt = Runtime::start(&SPEC).await?;
    let state = http::AppState {
        pool: rt.pool.clone(),
        keys: JwtKeys::new(&rt.config.jwt_secret),
        orgs: Orgs::load()?,
        relay_wake: rt.relay_wake.clone(),
    };
    let consumer = consumer::Events {
        relay_wake: rt.relay_wake.clone(),
    };
    rt.serve(&SPEC, http::router(state), consumer).await
}
