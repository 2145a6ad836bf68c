//! What every intake route shares.

use std::sync::Arc;

use axum::extract::FromRef;
use qingling_shared::config::Limits;
use qingling_shared::{Catalog, JwtKeys, Orgs};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::registrar::Registrar;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub keys: JwtKeys,
    pub orgs: Orgs,
    pub catalog: Catalog,
    pub limits: Limits,
    pub relay_wake: Arc<Notify>,
    /// Writes registrations in groups (see [`crate::registrar`]).
    pub registrar: Registrar,
}

impl FromRef<AppState> for JwtKeys {
    fn from_ref(s: &AppState) -> Self {
        s.keys.clone()
    }
}
