//! The ledger's HTTP routes (CONTRACT §5), by resource: items and their commands, registrations
//! that do not come from a complaint, the journal and its exports, and the live view.

mod console;
mod items;
mod journal;
mod live;
mod log;
mod points;
mod register;

pub use items::ItemPage;
pub use journal::{JournalEntry, JournalPage};
pub use register::{ImportRow, Imported};

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, StatusCode};
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use chrono::{NaiveDate, SubsecRound, Utc};
use qingling_shared::config::Limits;
use qingling_shared::http::{JsonBody, PathId, QueryParams};
use qingling_shared::openapi::HistoryEntry;
use qingling_shared::store::{self as events, StoreError};
use qingling_shared::{ApiError, Caller, Catalog, EventMeta, FieldError, JwtKeys, Orgs, Role};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::Notify;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::app::{self, CommandError};
use crate::domain::{DomainError, Item, ItemEvent, Registered, REBOUND_WINDOW_DAYS};
use crate::live::Live;
use crate::store::{self, ItemFilter, ItemRow};
use crate::summary;

pub const DEFAULT_CATEGORY: &str = "basement_illegal_residence";

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub keys: JwtKeys,
    pub orgs: Orgs,
    pub catalog: Catalog,
    pub limits: Limits,
    pub relay_wake: Arc<Notify>,
    pub live: Arc<Live>,
    /// Live streams open per token.
    pub streams: Arc<live::StreamSlots>,
    /// The verifiable log's keys and settings.
    pub log: Arc<crate::log::Log>,
}

impl FromRef<AppState> for JwtKeys {
    fn from_ref(s: &AppState) -> Self {
        s.keys.clone()
    }
}

pub fn router(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, mut api) = OpenApiRouter::new()
        .routes(routes!(items::list_items, register::inspection_find))
        .routes(routes!(items::get_item))
        .routes(routes!(items::acknowledge))
        .routes(routes!(items::request_extension))
        .routes(routes!(items::approve_extension))
        .routes(routes!(items::reject_extension))
        .routes(routes!(register::import_item))
        .routes(routes!(live::summary))
        .routes(routes!(live::stream))
        .routes(routes!(live::dashboard))
        .routes(routes!(live::dashboard_js))
        .routes(routes!(journal::entries))
        .routes(routes!(log::checkpoint))
        .routes(routes!(log::key))
        .routes(routes!(log::entries))
        .routes(routes!(log::inclusion))
        .routes(routes!(log::consistency))
        .routes(routes!(log::receipt))
        .routes(routes!(log::tiles_checkpoint))
        .routes(routes!(log::tile))
        .routes(routes!(points::list_points))
        .routes(routes!(points::point_file))
        .routes(routes!(points::hotspots))
        .routes(routes!(points::map_config))
        .routes(routes!(points::map_js))
        .routes(routes!(points::leaflet_js))
        .routes(routes!(points::leaflet_css))
        .routes(routes!(console::page))
        .routes(routes!(console::bare))
        .routes(routes!(console::script))
        .routes(routes!(console::config))
        .with_state(state)
        .split_for_parts();
    describe_rebounds(&mut api);
    (router, api)
}

/// The rebound window in the OpenAPI text comes from the one constant the rule uses.
fn describe_rebounds(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{schema::Schema, RefOr};
    let tally = api
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("Tally"));
    if let Some(RefOr::T(Schema::Object(tally))) = tally {
        if let Some(RefOr::T(Schema::Object(rebounds))) = tally.properties.get_mut("rebounds") {
            rebounds.description = Some(format!(
                "Items registered again within {REBOUND_WINDOW_DAYS} days of a write-off at the \
                 same point (防止反弹)."
            ));
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::NotFound(id) => ApiError::NotFound(format!("no item {id}")),
            CommandError::Domain(DomainError::Conflict(m)) => ApiError::conflict(m),
            CommandError::Domain(DomainError::Invalid { field, message }) => {
                ApiError::invalid_field(field, message)
            }
            CommandError::Store(e) => e.into(),
            CommandError::Other(e) => ApiError::Internal(e),
        }
    }
}

/// The district a caller works in, when the request does not name one.
fn home_district(s: &AppState, caller: &Caller) -> Option<String> {
    match caller.role {
        Role::Street => s.orgs.district_of(&caller.org).map(|d| d.code.clone()),
        _ if caller.org == "*" => None,
        _ => Some(caller.org.clone()),
    }
}

/// An item and its history.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ItemDetail {
    #[serde(flatten)]
    item: ItemRow,
    history: Vec<HistoryEntry>,
}

async fn item_detail(c: &mut sqlx::PgConnection, r: &ItemRow) -> Result<Value, ApiError> {
    let history: Vec<HistoryEntry> = events::read_stream(c, &app::stream_of(r.item_id))
        .await?
        .into_iter()
        .map(|e| HistoryEntry {
            event_type: e.event_type,
            at: e.occurred_at,
            actor: e.actor,
            actor_name: e.actor_name,
            version: Some(e.version),
            data: e.data,
        })
        .collect();
    Ok(serde_json::to_value(ItemDetail {
        item: r.clone(),
        history,
    })
    .unwrap_or_default())
}

/// Finds an item the caller may see (404 unknown, 403 another's).
async fn visible_item(s: &AppState, caller: &Caller, id: Uuid) -> Result<ItemRow, ApiError> {
    caller.require(&[Role::Street, Role::Reviewer, Role::District, Role::Operator])?;
    let row = store::get_item(&mut *s.pool.acquire().await?, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no item {id}")))?;
    caller.ensure_covers(&row.district, &row.street)?;
    Ok(row)
}

/// Resolves the district a read concerns and checks the caller may read it.
fn readable_district(
    s: &AppState,
    caller: &Caller,
    asked: Option<String>,
) -> Result<String, ApiError> {
    caller.require(&[Role::District, Role::Reviewer, Role::Operator, Role::Street])?;
    let district = asked
        .filter(|d| !d.is_empty())
        .or_else(|| home_district(s, caller))
        .ok_or_else(|| ApiError::invalid_field("district", "is required"))?;
    if s.orgs.district(&district).is_none() {
        return Err(ApiError::invalid_field(
            "district",
            format!("unknown district {district:?}"),
        ));
    }
    let ok = match caller.role {
        Role::Street => s.orgs.street(&district, &caller.org).is_some(),
        _ => caller.covers_district(&district),
    };
    if !ok {
        return Err(ApiError::Forbidden(format!(
            "{} {} may not read district {district}",
            caller.role.as_str(),
            caller.org
        )));
    }
    Ok(district)
}

fn known_category(s: &AppState, category: &str) -> Result<(), ApiError> {
    match s.catalog.get(category) {
        Some(_) => Ok(()),
        None => Err(ApiError::invalid_field(
            "category",
            format!("unknown category {category:?} (see GET /v1/catalog)"),
        )),
    }
}
