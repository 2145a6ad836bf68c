//! closure's HTTP routes (CONTRACT §6, and §9 in `evidence`).

mod evidence;

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::{Json, Router};
use qingling_shared::http::{JsonBody, PathId, QueryParams};
use qingling_shared::openapi::HistoryEntry;
use qingling_shared::store::{self as events, StoreError};
use qingling_shared::{ApiError, Caller, EventMeta, JwtKeys, Orgs, Role};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::Notify;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;
use uuid::Uuid;

use qingling_events::Event;

use crate::domain::{self, Closure, ClosureEvent, DomainError, RequestInput};
use crate::projector;
use crate::store::{self, ClosureRow};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub keys: JwtKeys,
    pub orgs: Orgs,
    pub relay_wake: Arc<Notify>,
    /// Where photos' bytes are kept.
    pub blobs: crate::blobs::Blobs,
}

impl FromRef<AppState> for JwtKeys {
    fn from_ref(s: &AppState) -> Self {
        s.keys.clone()
    }
}

pub fn router(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    OpenApiRouter::new()
        .routes(routes!(request, list))
        .routes(routes!(detail))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(
            routes!(evidence::upload).layer(axum::extract::DefaultBodyLimit::max(
                // The photo, and the multipart framing and fields around it.
                crate::domain::evidence::max_bytes() + 64 * 1024,
            )),
        )
        .routes(routes!(evidence::fetch))
        .with_state(state)
        .split_for_parts()
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Conflict(m) => ApiError::conflict(m),
            DomainError::Invalid { field, message } => ApiError::invalid_field(field, message),
        }
    }
}

use qingling_events::closure::stream as stream_of;

fn closure_json(r: &ClosureRow) -> Value {
    serde_json::to_value(r).unwrap_or_default()
}

/// A write-off request and its history.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ClosureDetail {
    #[serde(flatten)]
    closure: ClosureRow,
    history: Vec<HistoryEntry>,
}

/// A request just filed.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ClosureCreated {
    closure_id: Uuid,
    /// pending
    status: &'static str,
    item_id: Uuid,
}

/// Write-off requests, newest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ClosureList {
    closures: Vec<ClosureRow>,
}

#[utoipa::path(post, path = "/v1/closures", tag = "closures", security(("bearer" = [])),
    request_body = RequestInput,
    responses(
        (status = 201, description = "filed; pending review", body = ClosureCreated),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such item (or not yet known here)", body = qingling_shared::openapi::Problem),
        (status = 409, description = "the item is not acknowledged, or a request is pending or approved", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// 销账申请: a street asks to write off its acknowledged item.
async fn request(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(input): JsonBody<RequestInput>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(&[Role::Street])?;
    let mut input = input;
    resolve_kept_evidence(&s, &mut input).await?;
    let req = input.parse().map_err(ApiError::invalid)?;
    let mut tx = s.pool.begin().await?;
    let item = store::get_item(&mut tx, req.item_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no item {}", req.item_id)))?;
    caller.ensure_covers(&item.district, &item.street)?;
    if let Some(pending) = store::pending_for_item(&mut tx, item.item_id).await? {
        return Err(ApiError::Conflict {
            detail: format!(
                "item {} already has a pending write-off request",
                item.item_id
            ),
            extra: Some(json!({"closure_id": pending})),
        });
    }
    // An approval the ledger has not echoed yet: the item is being written off.
    if store::approved_for_item(&mut tx, item.item_id).await? {
        return Err(ApiError::conflict(format!(
            "item {} is being written off: a write-off request was approved",
            item.item_id
        )));
    }
    // closure_pending here can only be a rejection the ledger has not echoed yet.
    if !matches!(item.status.as_str(), "acknowledged" | "closure_pending") {
        return Err(ApiError::conflict(format!(
            "item {} is {}: only an acknowledged item can be written off",
            item.item_id, item.status
        )));
    }
    let id = Uuid::now_v7();
    // Project first (the unique index decides racing requests), write the event last.
    let mut new = events::prepare(
        &stream_of(id),
        0,
        &[
            domain::requested(id, &item.district, &item.street, &item.category, &req)
                .to_new_event(),
        ],
        &EventMeta::for_caller(&caller, Uuid::now_v7()),
    );
    for ev in &new {
        match projector::project(&mut tx, ev).await {
            Ok(()) => {}
            Err(e) if e.is::<projector::AlreadyPending>() => {
                return Err(ApiError::conflict(e.to_string()))
            }
            Err(e) => return Err(e.into()),
        }
    }
    events::write(&mut tx, &mut new).await?;
    tx.commit().await?;
    s.relay_wake.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::to_value(ClosureCreated {
                closure_id: id,
                status: "pending",
                item_id: item.item_id,
            })
            .unwrap_or_default(),
        ),
    ))
}

/// Evidence cited by `evidence_id` (a photo uploaded here) becomes a piece with its URI, hash,
/// size and type; an unknown id is 422.
async fn resolve_kept_evidence(s: &AppState, input: &mut RequestInput) -> Result<(), ApiError> {
    let Some(list) = input.evidence.as_mut() else {
        return Ok(());
    };
    let mut c = s.pool.acquire().await?;
    for (i, e) in list.iter_mut().enumerate() {
        let Some(id) = e
            .evidence_id
            .as_deref()
            .map(|id| id.trim().to_ascii_lowercase())
        else {
            continue;
        };
        let row = store::get_evidence(&mut c, &id).await?.ok_or_else(|| {
            ApiError::invalid_field(
                &format!("evidence[{i}].evidence_id"),
                format!("no uploaded evidence {id} (POST /v1/evidence first)"),
            )
        })?;
        e.kind = Some("photo".into());
        e.uri = Some(format!("{}{}", domain::KEPT_EVIDENCE_PATH, row.sha256));
        e.sha256 = Some(row.sha256);
        e.bytes = Some(row.bytes);
        e.content_type = Some(row.content_type);
    }
    Ok(())
}

async fn visible(s: &AppState, caller: &Caller, id: Uuid) -> Result<ClosureRow, ApiError> {
    let row = store::get_closure(&mut *s.pool.acquire().await?, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no write-off request {id}")))?;
    caller.ensure_covers(&row.district, &row.street)?;
    Ok(row)
}

#[utoipa::path(get, path = "/v1/closures/{id}", tag = "closures", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "write-off request id")),
    responses(
        (status = 200, description = "the request with its history", body = ClosureDetail),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such write-off request", body = qingling_shared::openapi::Problem)
    ))]
async fn detail(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Street, Role::Reviewer, Role::District])?;
    let row = visible(&s, &caller, id).await?;
    let history: Vec<HistoryEntry> =
        events::read_stream(&mut *s.pool.acquire().await?, &stream_of(id))
            .await?
            .into_iter()
            .map(|e| HistoryEntry {
                event_type: e.event_type,
                at: e.occurred_at,
                actor: e.actor,
                actor_name: e.actor_name,
                version: None,
                data: e.data,
            })
            .collect();
    Ok(Json(
        serde_json::to_value(ClosureDetail {
            closure: row,
            history,
        })
        .unwrap_or_default(),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    status: Option<String>,
    street: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/closures", tag = "closures", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "requests, newest first", body = ClosureList),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
async fn list(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Street, Role::Reviewer, Role::District])?;
    let status = q.status.filter(|x| !x.is_empty());
    if let Some(st) = &status {
        if !["pending", "approved", "rejected"].contains(&st.as_str()) {
            return Err(ApiError::invalid_field(
                "status",
                "must be pending, approved or rejected",
            ));
        }
    }
    let (district, street) = match (caller.role, q.street.filter(|x| !x.is_empty())) {
        (Role::Street, Some(st)) if st != caller.org => {
            return Err(ApiError::Forbidden(format!(
                "street {} may not list street {st}",
                caller.org
            )))
        }
        (Role::Street, _) => (None, Some(caller.org.clone())),
        (_, Some(st)) if s.orgs.street(&caller.org, &st).is_none() => {
            return Err(ApiError::Forbidden(format!(
                "street {st} is not in district {}",
                caller.org
            )))
        }
        (_, st) => (Some(caller.org.clone()), st),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let rows = store::list_closures(
        &mut *s.pool.acquire().await?,
        district.as_deref(),
        street.as_deref(),
        status.as_deref(),
        limit,
    )
    .await?;
    Ok(Json(
        serde_json::to_value(ClosureList { closures: rows }).unwrap_or_default(),
    ))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct ReviewBody {
    note: Option<String>,
    reason: Option<String>,
}

/// Approve or reject: load the request's events, decide, append at the version read. Of two
/// racing reviews one appends; the other reloads, finds it no longer pending, and gets 409.
async fn review(
    s: &AppState,
    caller: &Caller,
    id: Uuid,
    body: ReviewBody,
    approve: bool,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Reviewer])?;
    let _row = visible(s, caller, id).await?;
    let meta = EventMeta::for_caller(caller, Uuid::now_v7());
    let note = body
        .note
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let reason = body.reason.unwrap_or_default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = s.pool.begin().await?;
        let history = events::read_stream(&mut tx, &stream_of(id)).await?;
        // A newer release's types, in a mixed deployment, do not decide the review.
        let mut typed = Vec::with_capacity(history.len());
        for e in &history {
            typed.extend(ClosureEvent::from_envelope(e)?);
        }
        let closure = Closure::from_events(&typed)
            .ok_or_else(|| anyhow::anyhow!("write-off request {id} has no events"))?;
        let new: Vec<_> = if approve {
            closure.approve(&caller.sub, note.as_deref())?
        } else {
            closure.reject(&caller.sub, &reason)?
        }
        .iter()
        .map(Event::to_new_event)
        .collect();
        let appended =
            match events::append(&mut tx, &stream_of(id), closure.version, &new, &meta).await {
                Ok(a) => a,
                Err(StoreError::Conflict { .. }) if attempt < 5 => continue,
                Err(e) => return Err(e.into()),
            };
        for ev in &appended {
            projector::project(&mut tx, ev).await?;
        }
        // The answer is read in the same transaction: once committed, nothing can fail it.
        let row = store::get_closure(&mut tx, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("write-off request {id} vanished"))?;
        tx.commit().await?;
        s.relay_wake.notify_one();
        return Ok(Json(closure_json(&row)));
    }
}

#[utoipa::path(post, path = "/v1/closures/{id}/approve", tag = "closures", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "write-off request id")),
    request_body(content = Option<ReviewBody>, description = "optional `{\"note\": …}`"),
    responses(
        (status = 200, description = "approved: the ledger writes the item off (销账)", body = ClosureRow),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such write-off request", body = qingling_shared::openapi::Problem),
        (status = 409, description = "no longer pending (reviewed already)", body = qingling_shared::openapi::Problem)
    ))]
/// The body is optional here (`{"note": …}`); when present it must be JSON.
async fn approve(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    req: axum::extract::Request,
) -> Result<Json<Value>, ApiError> {
    let h = req.headers();
    let empty = match h.get(axum::http::header::CONTENT_LENGTH) {
        Some(len) => len == "0",
        None => h.get(axum::http::header::TRANSFER_ENCODING).is_none(),
    };
    let body = if empty {
        ReviewBody::default()
    } else {
        <JsonBody<ReviewBody> as axum::extract::FromRequest<AppState>>::from_request(req, &s)
            .await?
            .0
    };
    review(&s, &caller, id, body, true).await
}

#[utoipa::path(post, path = "/v1/closures/{id}/reject", tag = "closures", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "write-off request id")),
    request_body = ReviewBody,
    responses(
        (status = 200, description = "rejected with a reason; the street may file again", body = ClosureRow),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such write-off request", body = qingling_shared::openapi::Problem),
        (status = 409, description = "no longer pending (reviewed already)", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
async fn reject(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<ReviewBody>,
) -> Result<Json<Value>, ApiError> {
    review(&s, &caller, id, body, false).await
}
