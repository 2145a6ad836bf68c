//! intake's HTTP routes (CONTRACT §4).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{SubsecRound, Utc};
use qingling_shared::http::{JsonBody, PathId, QueryParams};
use qingling_shared::openapi::HistoryEntry;
use qingling_shared::{store as events, ApiError, Caller, EventMeta, NewEvent, Role};
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

pub use crate::app::AppState;
pub use metrics::{Answers, StreetMetrics, StreetMonth};

mod callers;
mod metrics;
mod routing;
use crate::domain::{
    self, ComplaintEvent, ComplaintInput, Dispatched, RoutedBy, Satisfaction, Status, Urgency,
};
use crate::register::{self, ComplaintCreated};
use crate::{projector, store};
use qingling_events::Event;
use serde::Deserialize;

pub fn router(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    OpenApiRouter::new()
        .routes(routes!(create_complaint, list_complaints))
        .routes(routes!(preview_complaint))
        .routes(routes!(get_complaint))
        .routes(routes!(return_complaint))
        .routes(routes!(redispatch))
        .routes(routes!(follow_up))
        .routes(routes!(metrics::street_metrics))
        .routes(routes!(metrics::dispatch_metrics))
        .routes(routes!(routing::communities, routing::import_communities))
        .routes(routes!(orgs))
        .routes(routes!(catalog))
        .routes(routes!(callers::reveal_caller))
        .routes(routes!(callers::caller_reveals))
        .with_state(state)
        .split_for_parts()
}

const MAX_IDEMPOTENCY_KEY: usize = 200;

#[utoipa::path(post, path = "/v1/complaints", tag = "complaints", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key and body answer the first result again (200), never a second complaint")),
    request_body = ComplaintInput,
    responses(
        (status = 201, description = "registered and dispatched (派单) to its street", body = ComplaintCreated),
        (status = 200, description = "a repeat of an Idempotency-Key: the first answer", body = ComplaintCreated),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 415, description = "not application/json", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// 接诉: register a complaint and dispatch it to its street.
async fn create_complaint(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(input): JsonBody<ComplaintInput>,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII".into()))?
                .trim()
                .to_string();
            if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY {
                return Err(ApiError::invalid_field(
                    "Idempotency-Key",
                    format!("must be 1 to {MAX_IDEMPOTENCY_KEY} characters"),
                ));
            }
            Some(k)
        }
    };
    let done = register::register_complaint(&s, &caller, input, key).await?;
    let status = match done.replayed {
        false => StatusCode::CREATED,
        true => StatusCode::OK,
    };
    Ok((status, Json(done.created)).into_response())
}

#[utoipa::path(post, path = "/v1/complaints/preview", tag = "complaints", security(("bearer" = [])),
    request_body = ComplaintInput,
    responses(
        (status = 200, description = "what a registration would do; nothing is recorded", body = register::Preview),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 415, description = "not application/json", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// Before a call is registered: its point, its street, and the open item it would join.
async fn preview_complaint(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(input): JsonBody<ComplaintInput>,
) -> Result<Json<register::Preview>, ApiError> {
    Ok(Json(register::preview_complaint(&s, &caller, input).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The caller's full number (digits; spaces and dashes are ignored).
    phone: Option<String>,
    /// `returned` (awaiting re-dispatch) or `written_off` (awaiting 回访).
    status: Option<String>,
    /// At most this many (default 100, at most 500).
    limit: Option<i64>,
}

/// The operator's lists.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ComplaintList {
    complaints: Vec<ComplaintView>,
}

#[utoipa::path(get, path = "/v1/complaints", tag = "complaints", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "the complaints, newest first, phones masked", body = ComplaintList),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid or missing query", body = qingling_shared::openapi::Problem)
    ))]
/// A caller's earlier complaints (`phone`), or the operator's work lists (`status`).
async fn list_complaints(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<ComplaintList>, ApiError> {
    caller.require(&[Role::Operator])?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be 1 to 500"));
    }
    let mut c = s.pool.acquire().await?;
    let rows = match (q.phone.as_deref(), q.status.as_deref()) {
        (Some(phone), None) => {
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            if digits.len() < 3 || phone.len() > 40 {
                return Err(ApiError::invalid_field(
                    "phone",
                    "must be a telephone number",
                ));
            }
            store::complaints_by_phone(&mut c, &caller.org, &digits, limit).await?
        }
        (None, Some(status @ ("returned" | "written_off"))) => {
            store::complaints_in_status(&mut c, &caller.org, status, limit).await?
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid_field(
                "status",
                "must be returned or written_off",
            ))
        }
        _ => {
            return Err(ApiError::invalid_field(
                "phone",
                "give either phone (a caller's complaints) or status (returned, written_off)",
            ))
        }
    };
    Ok(Json(ComplaintList {
        complaints: rows.into_iter().map(|r| view(r, &caller, None)).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/complaints/{id}", tag = "complaints", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "complaint id")),
    responses(
        (status = 200, description = "the complaint, its status and history; the caller's phone masked", body = ComplaintView),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such complaint", body = qingling_shared::openapi::Problem)
    ))]
async fn get_complaint(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Operator, Role::Street])?;
    let row = store::get_complaint(&mut *s.pool.acquire().await?, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no complaint {id}")))?;
    caller.ensure_covers(&row.district, &row.street)?;
    complaint_json(&s, id, &caller).await
}

/// The complaint as `viewer` may see it: the phone masked for all, the name for streets too.
async fn complaint_json(s: &AppState, id: Uuid, viewer: &Caller) -> Result<Json<Value>, ApiError> {
    let mut c = s.pool.acquire().await?;
    let row = store::get_complaint(&mut c, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no complaint {id}")))?;
    let history = store::history(&mut c, id)
        .await?
        .into_iter()
        .map(|h| HistoryEntry {
            event_type: h.event_type,
            at: h.at,
            actor: h.actor,
            actor_name: None,
            version: None,
            data: h.data,
        })
        .collect();
    Ok(Json(
        serde_json::to_value(view(row, viewer, Some(history))).unwrap_or_default(),
    ))
}

/// A complaint row as `viewer` may see it.
fn view(
    row: store::ComplaintRow,
    viewer: &Caller,
    history: Option<Vec<HistoryEntry>>,
) -> ComplaintView {
    let caller = match (&row.caller_name, &row.caller_phone) {
        (None, None) => None,
        (name, phone) => Some(CallerView {
            name: match viewer.role {
                Role::Operator => name.clone(),
                _ => name.as_deref().map(domain::mask_name),
            },
            phone: phone.as_deref().map(domain::mask_phone),
        }),
    };
    ComplaintView {
        complaint_id: row.complaint_id,
        status: row.status,
        district: row.district,
        street: row.street,
        category: row.category,
        urgency: row.urgency,
        point_id: row.point_id,
        point: row.point,
        caller,
        description: row.description,
        received_at: row.received_at,
        dispatched_at: row.dispatched_at,
        respond_by: row.respond_by,
        resolve_by: row.resolve_by,
        item_id: row.item_id,
        acknowledged_at: row.acknowledged_at,
        satisfaction: row.satisfaction,
        history,
    }
}

/// A complaint (诉求), its status and history. The caller's phone is masked.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ComplaintView {
    complaint_id: Uuid,
    /// received, dispatched, registered, acknowledged, written_off, returned
    status: String,
    district: String,
    street: String,
    category: String,
    urgency: String,
    point_id: Uuid,
    #[schema(value_type = Object)]
    point: Value,
    caller: Option<CallerView>,
    description: String,
    received_at: chrono::DateTime<Utc>,
    dispatched_at: chrono::DateTime<Utc>,
    respond_by: chrono::DateTime<Utc>,
    resolve_by: chrono::DateTime<Utc>,
    /// The ledger item it is on, once registered there.
    item_id: Option<Uuid>,
    acknowledged_at: Option<chrono::DateTime<Utc>>,
    /// The follow-up (回访) answer.
    satisfaction: Option<String>,
    /// Every event that touched it (on `GET /v1/complaints/{id}`; lists leave it out).
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<HistoryEntry>>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CallerView {
    name: Option<String>,
    /// Masked: `*******0000` (the street may reveal it: `POST /v1/complaints/{id}/caller`).
    phone: Option<String>,
}

#[utoipa::path(get, path = "/v1/orgs", tag = "directory", security(("bearer" = [])),
    responses(
        (status = 200, description = "districts and their streets/townships", body = qingling_shared::orgs::Directory),
        (status = 401, description = "missing or invalid bearer token", body = qingling_shared::openapi::Problem)
    ))]
async fn orgs(State(s): State<AppState>, _caller: Caller) -> Json<Value> {
    Json(serde_json::to_value(s.orgs.directory()).unwrap_or_default())
}

#[utoipa::path(get, path = "/v1/catalog", tag = "directory", security(("bearer" = [])),
    responses(
        (status = 200, description = "complaint categories", body = qingling_shared::orgs::CatalogDoc),
        (status = 401, description = "missing or invalid bearer token", body = qingling_shared::openapi::Problem)
    ))]
async fn catalog(State(s): State<AppState>, _caller: Caller) -> Json<Value> {
    Json(serde_json::to_value(s.catalog.doc()).unwrap_or_default())
}

/// Runs a command on one complaint and answers with the complaint as the caller may see it.
async fn complaint_command(
    s: &AppState,
    caller: &Caller,
    id: Uuid,
    check: impl FnOnce(&store::ComplaintRow) -> Result<Vec<ComplaintEvent>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    append(s, caller, id, check).await?;
    complaint_json(s, id, caller).await
}

/// Locks a complaint's row, checks, appends at the stream's version and projects the new
/// events, all in one transaction; returns the row as it was checked.
async fn append(
    s: &AppState,
    caller: &Caller,
    id: Uuid,
    check: impl FnOnce(&store::ComplaintRow) -> Result<Vec<ComplaintEvent>, ApiError>,
) -> Result<store::ComplaintRow, ApiError> {
    let mut tx = s.pool.begin().await?;
    let row = store::lock_complaint(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no complaint {id}")))?;
    caller.ensure_covers(&row.district, &row.street)?;
    let new: Vec<NewEvent> = check(&row)?.iter().map(Event::to_new_event).collect();
    let stream = qingling_events::intake::stream(id);
    let version = events::stream_version(&mut tx, &stream).await?;
    let mut prepared = events::prepare(
        &stream,
        version,
        &new,
        &EventMeta::for_caller(caller, Uuid::now_v7()),
    );
    for ev in &prepared {
        projector::project(&mut tx, ev).await?;
    }
    events::write(&mut tx, &mut prepared).await?;
    tx.commit().await?;
    s.relay_wake.notify_one();
    Ok(row)
}

fn status_of(row: &store::ComplaintRow) -> Status {
    Status::parse(&row.status).unwrap_or(Status::Dispatched)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ReturnBody {
    reason: Option<String>,
    /// not_our_area, duplicate, not_a_basement or other (the default)
    reason_code: Option<String>,
}

#[utoipa::path(post, path = "/v1/complaints/{id}/return", tag = "complaints", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "complaint id")),
    request_body = ReturnBody,
    responses(
        (status = 202, description = "returned to the operator, subject to the ledger's word: a return that reaches an item already acknowledged is refused, and the complaint's status and history then show it", body = ComplaintView),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such complaint", body = qingling_shared::openapi::Problem),
        (status = 409, description = "not allowed in the complaint's current state", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// 退单: the street sends back a complaint that is not its own, before acknowledging it. 202: the
/// ledger, which owns the item, has the last word.
async fn return_complaint(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<ReturnBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(&[Role::Street])?;
    let reason = body
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    let reason = reason.ok_or_else(|| ApiError::invalid_field("reason", "a reason is required"))?;
    let reason_code = match body.reason_code.as_deref().map(str::trim) {
        None | Some("") => domain::ReturnReason::Other,
        Some(code) => domain::ReturnReason::parse(code).ok_or_else(|| {
            ApiError::invalid_field(
                "reason_code",
                "must be not_our_area, duplicate, not_a_basement or other",
            )
        })?,
    };
    if reason.chars().count() > 2000 {
        return Err(ApiError::invalid_field(
            "reason",
            "is longer than 2000 characters",
        ));
    }
    complaint_command(&s, &caller, id, |row| {
        domain::can_return(status_of(row), row.acknowledged_at.is_some())
            .map_err(ApiError::conflict)?;
        Ok(vec![ComplaintEvent::ComplaintReturned {
            complaint_id: id,
            street: row.street.clone(),
            reason,
            reason_code: Some(reason_code),
        }])
    })
    .await
    .map(|answer| (StatusCode::ACCEPTED, answer))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct DispatchBody {
    street: Option<String>,
}

#[utoipa::path(post, path = "/v1/complaints/{id}/dispatch", tag = "complaints", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "complaint id")),
    request_body = DispatchBody,
    responses(
        (status = 200, description = "dispatched to the new street", body = ComplaintView),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such complaint", body = qingling_shared::openapi::Problem),
        (status = 409, description = "not allowed in the complaint's current state", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// Re-dispatch (改派) a returned complaint to another street; it is registered there afresh.
async fn redispatch(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<DispatchBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Operator])?;
    let street = body
        .street
        .map(|x| x.trim().to_string())
        .unwrap_or_default();
    let now = Utc::now().trunc_subsecs(6);
    let orgs = s.orgs.clone();
    let limits = s.limits;
    complaint_command(&s, &caller, id, |row| {
        if street.is_empty() {
            return Err(ApiError::invalid_field("street", "is required"));
        }
        if orgs.street(&row.district, &street).is_none() {
            return Err(ApiError::invalid_field(
                "street",
                format!("{street:?} is not a street or township of {}", row.district),
            ));
        }
        if status_of(row) != Status::Returned {
            return Err(ApiError::conflict(format!(
                "the complaint is {}; only a returned complaint can be re-dispatched",
                row.status
            )));
        }
        if row.return_pending {
            return Err(ApiError::conflict(
                "the ledger has not yet taken the return (it refuses one that reaches an item \
                 already acknowledged); try again shortly",
            ));
        }
        let urgency = Urgency::parse(&row.urgency).unwrap_or_default();
        let (respond_by, resolve_by) = domain::deadlines(&limits, urgency, now);
        Ok(vec![ComplaintEvent::ComplaintDispatched(Dispatched {
            complaint_id: id,
            district: row.district.clone(),
            street,
            category: row.category.clone(),
            urgency,
            point_id: row.point_id,
            point: row.point.clone(),
            description: row.description.clone(),
            received_at: row.received_at,
            dispatched_at: now,
            respond_by,
            resolve_by,
            redispatch: true,
            routed_by: Some(RoutedBy::Operator),
        })])
    })
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
struct FollowUpBody {
    satisfaction: Option<String>,
    note: Option<String>,
}

#[utoipa::path(post, path = "/v1/complaints/{id}/follow-up", tag = "complaints", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "complaint id")),
    request_body = FollowUpBody,
    responses(
        (status = 200, description = "satisfaction recorded", body = ComplaintView),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such complaint", body = qingling_shared::openapi::Problem),
        (status = 409, description = "not allowed in the complaint's current state", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// 回访: the operator calls the citizen back after the write-off, once.
async fn follow_up(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<FollowUpBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Operator])?;
    let answer = body
        .satisfaction
        .as_deref()
        .and_then(Satisfaction::parse)
        .ok_or_else(|| {
            ApiError::invalid_field(
                "satisfaction",
                "must be satisfied, basically_satisfied, dissatisfied or unknown",
            )
        })?;
    let note = body
        .note
        .map(|n| n.trim().chars().take(2000).collect::<String>())
        .unwrap_or_default();
    complaint_command(&s, &caller, id, |row| {
        domain::can_follow_up(status_of(row)).map_err(ApiError::conflict)?;
        Ok(vec![ComplaintEvent::FollowUpRecorded {
            complaint_id: id,
            satisfaction: answer,
            note,
        }])
    })
    .await
}
