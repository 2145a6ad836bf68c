//! The ledger's HTTP routes (CONTRACT §5).

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
use crate::domain::{DomainError, Item, ItemEvent, Registered};
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
}

impl FromRef<AppState> for JwtKeys {
    fn from_ref(s: &AppState) -> Self {
        s.keys.clone()
    }
}

pub fn router(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    OpenApiRouter::new()
        .routes(routes!(list_items, inspection_find))
        .routes(routes!(get_item))
        .routes(routes!(acknowledge))
        .routes(routes!(request_extension))
        .routes(routes!(approve_extension))
        .routes(routes!(reject_extension))
        .routes(routes!(import_item))
        .routes(routes!(summary))
        .routes(routes!(stream))
        .routes(routes!(dashboard))
        .routes(routes!(entries))
        .with_state(state)
        .split_for_parts()
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

fn item_json(r: &ItemRow) -> Value {
    serde_json::to_value(r).unwrap_or_default()
}

/// An item and its history.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ItemDetail {
    #[serde(flatten)]
    item: ItemRow,
    history: Vec<HistoryEntry>,
}

/// A page of the journal, in log order; pass `next_after` as `after` for the next.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct JournalPage {
    entries: Vec<store::JournalRow>,
    next_after: Option<i64>,
}

/// A page of items, oldest first; pass `next_cursor` as `cursor` for the next.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ItemPage {
    items: Vec<ItemRow>,
    next_cursor: Option<String>,
}

async fn item_detail(c: &mut sqlx::PgConnection, r: &ItemRow) -> Result<Value, ApiError> {
    let history: Vec<HistoryEntry> = events::read_stream(c, &app::stream_of(r.item_id))
        .await?
        .into_iter()
        .map(|e| HistoryEntry {
            event_type: e.event_type,
            at: e.occurred_at,
            actor: e.actor,
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

#[utoipa::path(get, path = "/v1/ledger/items/{id}", tag = "items", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "item id")),
    responses(
        (status = 200, description = "the item with its history", body = ItemDetail),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such item", body = qingling_shared::openapi::Problem)
    ))]
async fn get_item(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let row = visible_item(&s, &caller, id).await?;
    Ok(Json(
        item_detail(&mut *s.pool.acquire().await?, &row).await?,
    ))
}

/// Runs a street's command on its item, retrying when it loses a race with another writer of the
/// same item (the domain then decides again on the fresh state).
async fn item_command(
    s: &AppState,
    caller: &Caller,
    role: Role,
    id: Uuid,
    decide: impl Fn(&Item) -> Result<Vec<ItemEvent>, DomainError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[role])?;
    visible_item(s, caller, id).await?;
    let meta = EventMeta::from_request(&caller.sub, Uuid::now_v7());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = s.pool.begin().await?;
        match app::execute(&mut tx, id, &meta, &decide).await {
            Ok(_) => {
                tx.commit().await?;
                s.relay_wake.notify_one();
                break;
            }
            Err(CommandError::Store(StoreError::Conflict { .. })) if attempt < 5 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut c = s.pool.acquire().await?;
    let row = store::get_item(&mut c, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no item {id}")))?;
    Ok(Json(item_detail(&mut c, &row).await?))
}

#[utoipa::path(post, path = "/v1/ledger/items/{id}/acknowledge", tag = "items", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "item id")),
    responses(
        (status = 200, description = "acknowledged (签收)", body = ItemDetail),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such item", body = qingling_shared::openapi::Problem),
        (status = 409, description = "not allowed in the item's current state", body = qingling_shared::openapi::Problem)
    ))]
/// 签收.
async fn acknowledge(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    item_command(&s, &caller, Role::Street, id, |i| i.acknowledge(Utc::now())).await
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ExtensionBody {
    until: Option<chrono::DateTime<Utc>>,
    reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/ledger/items/{id}/extension", tag = "items", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "item id")),
    request_body = ExtensionBody,
    responses(
        (status = 200, description = "extension requested", body = ItemDetail),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such item", body = qingling_shared::openapi::Problem),
        (status = 409, description = "not allowed in the item's current state", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// 延期申请: the street asks once, before resolve-by, for a later date.
async fn request_extension(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<ExtensionBody>,
) -> Result<Json<Value>, ApiError> {
    // Microseconds, as stored: the deadline read back equals the one recorded.
    let until = body
        .until
        .ok_or_else(|| ApiError::invalid_field("until", "is required"))?
        .trunc_subsecs(6);
    let reason = body.reason.unwrap_or_default();
    item_command(&s, &caller, Role::Street, id, |i| {
        i.request_extension(until, &reason, Utc::now())
    })
    .await
}

#[utoipa::path(post, path = "/v1/ledger/items/{id}/extension/approve", tag = "items", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "item id")),
    responses(
        (status = 200, description = "extension approved; resolve-by moved", body = ItemDetail),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such item", body = qingling_shared::openapi::Problem),
        (status = 409, description = "not allowed in the item's current state", body = qingling_shared::openapi::Problem)
    ))]
async fn approve_extension(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    item_command(&s, &caller, Role::Reviewer, id, |i| i.approve_extension()).await
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ReasonBody {
    reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/ledger/items/{id}/extension/reject", tag = "items", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "item id")),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "extension rejected", body = ItemDetail),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such item", body = qingling_shared::openapi::Problem),
        (status = 409, description = "not allowed in the item's current state", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
async fn reject_extension(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let reason = body.reason.unwrap_or_default();
    item_command(&s, &caller, Role::Reviewer, id, |i| {
        i.reject_extension(&reason)
    })
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
struct FindBody {
    category: Option<String>,
    point: Option<FindPoint>,
    description: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct FindPoint {
    community: Option<String>,
    building: Option<String>,
    basement: Option<String>,
    address: Option<String>,
}

#[utoipa::path(post, path = "/v1/ledger/items", tag = "items", security(("bearer" = [])),
    request_body = FindBody,
    responses(
        (status = 201, description = "registered and acknowledged", body = ItemDetail),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 409, description = "the point already has an open item of the category (`item_id` names it)", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// 主动发现: an item the street found itself. It is registered and, being the street's own find,
/// taken on (acknowledged) at once; the resolve limit runs from now.
async fn inspection_find(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<FindBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(&[Role::Street])?;
    let district = s
        .orgs
        .district_of(&caller.org)
        .map(|d| d.code.clone())
        .ok_or_else(|| {
            ApiError::Forbidden(format!("{} is not a street of any district", caller.org))
        })?;
    let mut errors = vec![];
    let category = body.category.unwrap_or_default();
    if s.catalog.get(&category).is_none() {
        errors.push(FieldError::new(
            "category",
            format!("unknown category {category:?}"),
        ));
    }
    let point = body.point.unwrap_or(FindPoint {
        community: None,
        building: None,
        basement: None,
        address: None,
    });
    let mut part = |name: &str, v: Option<String>| {
        let v = v.map(|v| v.trim().to_string()).unwrap_or_default();
        if v.is_empty() || v.chars().count() > 200 {
            errors.push(FieldError::new(
                format!("point.{name}"),
                "is required (at most 200 characters)",
            ));
        }
        v
    };
    let (community, building, basement) = (
        part("community", point.community),
        part("building", point.building),
        part("basement", point.basement),
    );
    let description = body
        .description
        .unwrap_or_default()
        .trim()
        .chars()
        .take(2000)
        .collect::<String>();
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let point_id = qingling_shared::point::point_id(&district, &community, &building, &basement);
    let point_json = json!({"community": community, "building": building, "basement": basement, "address": point.address});
    let item_id = Uuid::now_v7();
    let now = Utc::now();
    let resolve_by = now
        + chrono::Duration::from_std(s.limits.resolve_within).unwrap_or(chrono::Duration::days(7));
    let meta = EventMeta::from_request(&caller.sub, Uuid::now_v7());
    let mut tx = s.pool.begin().await?;
    let existing = |id: Uuid| ApiError::Conflict {
        detail: format!("point {point_id} already has an open {category} item"),
        extra: Some(json!({"item_id": id})),
    };
    if let Some(open) = store::open_item_at(&mut tx, point_id, &category).await? {
        return Err(existing(open));
    }
    let rebound_of = store::recent_write_off_at(
        &mut tx,
        point_id,
        &category,
        now - chrono::Duration::days(crate::consumer::REBOUND_WINDOW_DAYS),
    )
    .await?;
    let events = vec![
        ItemEvent::ItemRegistered(Registered {
            item_id,
            district,
            street: caller.org.clone(),
            category: category.clone(),
            point_id,
            point: point_json,
            source: "inspection".into(),
            complaint_id: None,
            urgency: "normal".into(),
            description,
            respond_by: None,
            resolve_by: Some(resolve_by),
            rebound_of,
        }),
        ItemEvent::ItemAcknowledged {
            item_id,
            street: caller.org.clone(),
        },
    ];
    match app::record(&mut tx, item_id, 0, &events, &meta).await {
        Ok(_) => {}
        // A racing registration at the same point won the unique index.
        Err(CommandError::Store(StoreError::Database(sqlx::Error::Database(e))))
            if e.is_unique_violation() =>
        {
            drop(tx);
            let open =
                store::open_item_at(&mut *s.pool.acquire().await?, point_id, &category).await?;
            return Err(open.map(existing).unwrap_or_else(|| {
                ApiError::conflict("a racing registration at this point; retry")
            }));
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    s.relay_wake.notify_one();
    let mut c = s.pool.acquire().await?;
    let row = store::get_item(&mut c, item_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("item vanished"))?;
    Ok((StatusCode::CREATED, Json(item_detail(&mut c, &row).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    street: Option<String>,
    status: Option<String>,
    category: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
    overdue: Option<bool>,
}

#[utoipa::path(get, path = "/v1/ledger/items", tag = "items", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "a page of items", body = ItemPage),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
async fn list_items(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Street, Role::Reviewer, Role::District, Role::Operator])?;
    let district = home_district(&s, &caller);
    let street = match (&caller.role, q.street.filter(|x| !x.is_empty())) {
        (Role::Street, Some(st)) if st != caller.org => {
            return Err(ApiError::Forbidden(format!(
                "street {} may not list street {st}",
                caller.org
            )))
        }
        (Role::Street, _) => Some(caller.org.clone()),
        (_, Some(st)) if s.orgs.district_of(&st).is_none() => {
            return Err(ApiError::invalid_field(
                "street",
                format!("unknown street {st:?}"),
            ))
        }
        (_, Some(st)) => {
            let covered = match &district {
                Some(d) => s.orgs.street(d, &st).is_some(),
                None => s.orgs.district_of(&st).is_some(),
            };
            if !covered {
                return Err(ApiError::Forbidden(format!(
                    "street {st} is not in your district"
                )));
            }
            Some(st)
        }
        (_, None) => None,
    };
    let status = q.status.filter(|x| !x.is_empty());
    if let Some(st) = &status {
        if !["open", "closure_pending", "written_off"].contains(&st.as_str()) {
            return Err(ApiError::invalid_field(
                "status",
                "must be open, closure_pending or written_off",
            ));
        }
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            "must be between 1 and 500",
        ));
    }
    let before = match q.cursor.filter(|x| !x.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse::<Uuid>()
                .map_err(|_| ApiError::BadRequest("cursor is not one this API gave out".into()))?,
        ),
    };
    let filter = ItemFilter {
        district,
        street,
        status,
        category: match q.category.filter(|x| !x.is_empty()) {
            Some(c) => {
                known_category(&s, &c)?;
                Some(c)
            }
            None => None,
        },
        before,
        overdue: q.overdue.unwrap_or(false),
        limit,
    };
    let rows = store::list_items(&mut *s.pool.acquire().await?, &filter).await?;
    let next = if rows.len() as i64 == limit {
        rows.last().map(|r| r.item_id.to_string())
    } else {
        None
    };
    Ok(Json(
        json!({"items": rows.iter().map(item_json).collect::<Vec<_>>(), "next_cursor": next}),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SummaryQuery {
    district: Option<String>,
    category: Option<String>,
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

#[utoipa::path(get, path = "/v1/ledger/summary", tag = "ledger", security(("bearer" = [])),
    params(SummaryQuery),
    responses(
        (status = 200, description = "open counts, totals, overdue and dynamic-zero marks per street", body = crate::summary::Summary),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// 动态清零: per street and for the district.
async fn summary(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<SummaryQuery>,
) -> Result<Json<Value>, ApiError> {
    let district = readable_district(&s, &caller, q.district)?;
    let category = q
        .category
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_CATEGORY.into());
    known_category(&s, &category)?;
    let full = summary::compute(&s.pool, &s.orgs, &district, &category).await?;
    Ok(Json(visible_summary(&caller, &full)))
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

fn visible_summary(caller: &Caller, full: &Value) -> Value {
    match caller.role {
        Role::Street => summary::for_street(full, &caller.org),
        _ => full.clone(),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    district: Option<String>,
    category: Option<String>,
    /// For browsers' EventSource, which cannot send an Authorization header.
    access_token: Option<String>,
}

#[utoipa::path(get, path = "/v1/ledger/stream", tag = "ledger", security(("bearer" = [])),
    params(StreamQuery),
    responses(
        (status = 200, description = "text/event-stream of `summary` events", content_type = "text/event-stream"),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// Server-Sent Events: `summary` on connect and within a second of every change; keep-alive
/// comments every 15 s so proxies keep idle streams open.
async fn stream(
    State(s): State<AppState>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<StreamQuery>,
) -> Result<Sse<impl futures::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let caller = match (
        headers.contains_key(header::AUTHORIZATION),
        q.access_token.as_deref(),
    ) {
        (false, Some(token)) => Caller::from_token(&s.keys, token)?,
        _ => Caller::from_headers(&s.keys, &headers)?,
    };
    let district = readable_district(&s, &caller, q.district)?;
    let category = q
        .category
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_CATEGORY.into());
    let first = summary::compute(&s.pool, &s.orgs, &district, &category).await?;
    let rx = s.live.subscribe(&district, &category);
    let event =
        |v: &Value| Ok::<_, Infallible>(Event::default().event("summary").data(v.to_string()));
    let first = futures::stream::once(std::future::ready(event(&visible_summary(&caller, &first))));
    let updates = futures::stream::unfold((rx, caller), move |(mut rx, caller)| async move {
        loop {
            rx.changed().await.ok()?;
            let latest = rx.borrow_and_update().clone();
            if let Some(v) = latest {
                let out = event(&visible_summary(&caller, &v));
                return Some((out, (rx, caller)));
            }
        }
    });
    Ok(Sse::new(futures::StreamExt::chain(first, updates))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The district dashboard: one self-contained page that asks for a token and follows the stream.
/// The district office's live dashboard (HTML; the token goes in the URL fragment).
#[utoipa::path(get, path = "/", tag = "ledger",
    responses((status = 200, description = "the dashboard page", content_type = "text/html")))]
async fn dashboard() -> Html<&'static str> {
    Html(include_str!("../static/dashboard.html"))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EntriesQuery {
    district: Option<String>,
    street: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
    format: Option<String>,
}

const CSV_HEADER: [&str; 12] = [
    "position",
    "kind",
    "item_id",
    "district",
    "street",
    "category",
    "point_id",
    "at",
    "actor",
    "complaint_id",
    "closure_id",
    "write_off_kind",
];

/// 台账流水: registrations and write-offs in the order they happened, as JSON or CSV.
#[utoipa::path(get, path = "/v1/ledger/entries", tag = "ledger", security(("bearer" = [])),
    params(EntriesQuery),
    responses(
        (status = 200, description = "the journal (台账流水): a JSON page, or CSV (UTF-8 with BOM) or .xlsx by `format` or Accept", body = JournalPage),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
async fn entries(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    QueryParams(q): QueryParams<EntriesQuery>,
) -> Result<Response, ApiError> {
    let district = readable_district(&s, &caller, q.district)?;
    let street = match (caller.role, q.street.filter(|x| !x.is_empty())) {
        (Role::Street, Some(st)) if st != caller.org => {
            return Err(ApiError::Forbidden(format!(
                "street {} may not read street {st}",
                caller.org
            )))
        }
        (Role::Street, _) => Some(caller.org.clone()),
        (_, Some(st)) if s.orgs.street(&district, &st).is_none() => {
            return Err(ApiError::invalid_field(
                "street",
                format!("{st:?} is not a street or township of {district}"),
            ))
        }
        (_, st) => st,
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or("");
    let wants_xlsx = q.format.as_deref() == Some("xlsx") || accept.contains("spreadsheetml");
    // A workbook is the whole journal (up to a sheet's worth); JSON and CSV page by `limit`.
    if q.limit.is_some_and(|l| l < 1) {
        return Err(ApiError::invalid_field(
            "limit",
            "must be at least 1 (it is capped at 1000)",
        ));
    }
    let limit = match (wants_xlsx, q.limit) {
        (true, None) => 1_000_000,
        (true, Some(l)) => l.clamp(1, 1_000_000),
        (false, l) => l.unwrap_or(100).clamp(1, 1000),
    };
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid_field("after", "must not be negative"));
    }
    let rows = store::journal_after(
        &mut *s.pool.acquire().await?,
        Some(&district),
        street.as_deref(),
        after,
        limit,
    )
    .await?;
    if wants_xlsx {
        let names: std::collections::HashMap<&str, &str> = s
            .orgs
            .district(&district)
            .map(|d| {
                d.streets
                    .iter()
                    .map(|st| (st.code.as_str(), st.name.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let bytes = crate::export::journal_xlsx(&rows, &names)
            .map_err(|e| anyhow::anyhow!("cannot write the workbook: {e}"))?;
        return Ok((
            [
                (
                    header::CONTENT_TYPE,
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                ),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"ledger-journal.xlsx\"",
                ),
            ],
            bytes,
        )
            .into_response());
    }
    let wants_csv = q.format.as_deref() == Some("csv") || accept.contains("text/csv");
    if wants_csv {
        let mut out = String::from("\u{feff}");
        out.push_str(&CSV_HEADER.join(","));
        out.push_str("\r\n");
        let opt = |u: Option<Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
        for r in &rows {
            let cells = [
                r.position.to_string(),
                r.kind.clone(),
                r.item_id.to_string(),
                r.district.clone(),
                r.street.clone(),
                r.category.clone(),
                r.point_id.to_string(),
                r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                r.actor.clone(),
                opt(r.complaint_id),
                opt(r.closure_id),
                r.write_off_kind.clone().unwrap_or_default(),
            ];
            out.push_str(
                &cells
                    .iter()
                    .map(|c| csv_cell(c))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push_str("\r\n");
        }
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response());
    }
    let next_after = if rows.len() as i64 == limit {
        rows.last().map(|r| r.position)
    } else {
        None
    };
    let entries: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if r.kind == "registration" {
                v.as_object_mut()
                    .map(|o| (o.remove("closure_id"), o.remove("write_off_kind")));
            } else {
                v.as_object_mut().map(|o| o.remove("complaint_id"));
            }
            v
        })
        .collect();
    Ok(Json(json!({"entries": entries, "next_after": next_after})).into_response())
}

/// RFC 4180 quoting; a leading formula character is neutralised so a spreadsheet shows text.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

// ------------------------------------------------------------------------------------------------
// 台账导入: items from a ledger the district kept before Qingling (Excel), one row per request,
// registered with source `import`. A row's item id is derived from the row itself (district,
// point, category, registered date), so importing the same file twice registers nothing new.

/// Namespace of imported items' ids.
const IMPORT_NAMESPACE: Uuid = Uuid::from_u128(0x7169_6e67_6c69_6e67_2d69_6d70_6f72_7401);

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ImportRow {
    pub district: Option<String>,
    pub street: Option<String>,
    pub category: Option<String>,
    pub community: Option<String>,
    pub building: Option<String>,
    pub basement: Option<String>,
    pub address: Option<String>,
    pub rooms: Option<i64>,
    /// The date the old ledger registered it (登记日期), `YYYY-MM-DD`.
    pub registered_on: Option<String>,
}

/// The answer to an import: the row's item, and whether this request registered it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Imported {
    item_id: Uuid,
    imported: bool,
}

/// `POST /v1/ledger/imports` (role reviewer of the district): 201 with the new item, 200 with the
/// item a previous import of the same row registered, 409 when the point already has another open
/// item of the category.
#[utoipa::path(post, path = "/v1/ledger/imports", tag = "items", security(("bearer" = [])),
    request_body = ImportRow,
    responses(
        (status = 201, description = "registered with source `import`", body = Imported),
        (status = 200, description = "this row was imported before: nothing new", body = Imported),
        qingling_shared::openapi::AuthRefusals,
        (status = 409, description = "the point already has another open item (`item_id`)", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
pub async fn import_item(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(row): JsonBody<ImportRow>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(&[Role::Reviewer])?;
    let mut errors = vec![];
    let district = row.district.unwrap_or_else(|| caller.org.clone());
    let street = row.street.unwrap_or_default();
    if s.orgs.street(&district, &street).is_none() {
        errors.push(FieldError::new(
            "street",
            format!("{street:?} is not a street of {district}"),
        ));
    }
    let category = row
        .category
        .unwrap_or_else(|| "basement_illegal_residence".into());
    if s.catalog.get(&category).is_none() {
        errors.push(FieldError::new(
            "category",
            format!("unknown category {category:?}"),
        ));
    }
    let mut part = |name: &str, v: Option<String>| {
        let v = v.map(|v| v.trim().to_string()).unwrap_or_default();
        if v.is_empty() || v.chars().count() > 200 {
            errors.push(FieldError::new(
                name,
                "is required (at most 200 characters)",
            ));
        }
        v
    };
    let (community, building, basement) = (
        part("community", row.community),
        part("building", row.building),
        part("basement", row.basement),
    );
    let registered_on = match row.registered_on.as_deref().map(str::trim) {
        Some(d) => match NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(date) if date <= Utc::now().date_naive() => Some(date),
            Ok(_) => {
                errors.push(FieldError::new("registered_on", "is in the future"));
                None
            }
            Err(_) => {
                errors.push(FieldError::new(
                    "registered_on",
                    "must be a date YYYY-MM-DD",
                ));
                None
            }
        },
        None => {
            errors.push(FieldError::new("registered_on", "is required"));
            None
        }
    };
    if row.rooms.is_some_and(|r| !(0..=10_000).contains(&r)) {
        errors.push(FieldError::new("rooms", "must be between 0 and 10000"));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    caller.ensure_covers(&district, &street)?;
    let registered_on = registered_on.expect("validated");
    let point_id = qingling_shared::point::point_id(&district, &community, &building, &basement);
    let item_id = Uuid::new_v5(
        &IMPORT_NAMESPACE,
        format!("{district}|{point_id}|{category}|{registered_on}").as_bytes(),
    );
    let mut tx = s.pool.begin().await?;
    let already = |tx_item: Uuid| {
        (
            StatusCode::OK,
            Json(
                serde_json::to_value(Imported {
                    item_id: tx_item,
                    imported: false,
                })
                .unwrap_or_default(),
            ),
        )
    };
    if events::stream_version(&mut tx, &app::stream_of(item_id)).await? > 0 {
        return Ok(already(item_id));
    }
    if let Some(open) = store::open_item_at(&mut tx, point_id, &category).await? {
        return Err(ApiError::Conflict {
            detail: format!("point {point_id} already has an open {category} item"),
            extra: Some(json!({"item_id": open})),
        });
    }
    let now = Utc::now();
    let within = |d: std::time::Duration| now + chrono::Duration::from_std(d).unwrap_or_default();
    let events = vec![ItemEvent::ItemRegistered(Registered {
        item_id,
        district,
        street,
        category: category.clone(),
        point_id,
        point: json!({"community": community, "building": building, "basement": basement,
                      "address": row.address, "rooms": row.rooms}),
        source: "import".into(),
        complaint_id: None,
        urgency: "normal".into(),
        description: format!("台账导入,原登记日期 {registered_on}"),
        respond_by: Some(within(s.limits.respond_within)),
        resolve_by: Some(within(s.limits.resolve_within)),
        rebound_of: None,
    })];
    let meta = EventMeta::from_request(&caller.sub, Uuid::now_v7());
    match app::record(&mut tx, item_id, 0, &events, &meta).await {
        Ok(_) => {}
        // The same row imported concurrently: the other request registered it.
        Err(CommandError::Store(StoreError::Conflict { .. })) => return Ok(already(item_id)),
        Err(CommandError::Store(StoreError::Database(sqlx::Error::Database(e))))
            if e.is_unique_violation() =>
        {
            return Err(ApiError::conflict(
                "a racing registration at this point; retry",
            ))
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    s.relay_wake.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::to_value(Imported {
                item_id,
                imported: true,
            })
            .unwrap_or_default(),
        ),
    ))
}
