//! intake's HTTP routes (CONTRACT §4).

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{SubsecRound, Utc};
use qingling_shared::config::Limits;
use qingling_shared::http::{JsonBody, PathId};
use qingling_shared::{store as events, ApiError, Caller, Catalog, EventMeta, JwtKeys, Orgs, Role};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::domain::{self, ComplaintInput};
use crate::store;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub keys: JwtKeys,
    pub orgs: Orgs,
    pub catalog: Catalog,
    pub limits: Limits,
    pub relay_wake: Arc<Notify>,
}

impl FromRef<AppState> for JwtKeys {
    fn from_ref(s: &AppState) -> Self {
        s.keys.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/complaints", post(create_complaint))
        .route("/v1/complaints/{id}", get(get_complaint))
        .route("/v1/orgs", get(orgs))
        .route("/v1/catalog", get(catalog))
        .with_state(state)
}

const MAX_IDEMPOTENCY_KEY: usize = 200;

/// 接诉: register a complaint and dispatch it to its street.
async fn create_complaint(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(input): JsonBody<ComplaintInput>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Operator])?;
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
    let request_hash = hex::encode(Sha256::digest(
        serde_json::to_vec(&input).unwrap_or_default(),
    ));
    // Microseconds, as PostgreSQL keeps them: the answer matches later reads.
    let now = Utc::now().trunc_subsecs(6);
    let complaint = input
        .parse(&s.orgs, &s.catalog, now)
        .map_err(ApiError::invalid)?;
    caller.ensure_covers(&complaint.district, &complaint.street)?;

    if let Some(key) = &key {
        if let Some(saved) =
            store::saved_response(&mut *s.pool.acquire().await?, &caller.sub, key).await?
        {
            return replay(saved, &request_hash);
        }
    }

    let id = Uuid::now_v7();
    let (new_events, dispatch) = domain::register(id, &complaint, &s.limits, now);
    let body = json!({
        "complaint_id": id, "status": "dispatched", "district": complaint.district, "street": complaint.street,
        "point_id": complaint.point_id, "respond_by": dispatch.respond_by, "resolve_by": dispatch.resolve_by,
    });
    let mut tx = s.pool.begin().await?;
    if let Some(key) = &key {
        if !store::claim_idempotency_key(&mut tx, &caller.sub, key, &request_hash, 201, &body)
            .await?
        {
            drop(tx);
            let saved =
                store::saved_response(&mut *s.pool.acquire().await?, &caller.sub, key).await?;
            return replay(
                saved.ok_or_else(|| anyhow::anyhow!("idempotency record vanished"))?,
                &request_hash,
            );
        }
    }
    store::insert_complaint(&mut tx, id, &complaint, &dispatch, &caller.sub).await?;
    if let Some(c) = &complaint.caller {
        store::insert_caller(&mut tx, id, c).await?;
    }
    let appended = events::append(
        &mut tx,
        &format!("complaint-{id}"),
        0,
        &new_events,
        &EventMeta::from_request(&caller.sub, Uuid::now_v7()),
    )
    .await?;
    for ev in &appended {
        store::insert_history(&mut tx, id, ev).await?;
    }
    tx.commit().await?;
    s.relay_wake.notify_one();
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn replay(saved: store::SavedResponse, request_hash: &str) -> Result<Response, ApiError> {
    if saved.request_hash != request_hash {
        return Err(ApiError::invalid_field(
            "Idempotency-Key",
            "was already used with a different request body",
        ));
    }
    // A replay answers 200: the complaint exists already.
    let _ = saved.status;
    Ok((StatusCode::OK, Json(saved.response)).into_response())
}

async fn get_complaint(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Operator, Role::Street])?;
    let mut c = s.pool.acquire().await?;
    let row = store::get_complaint(&mut c, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no complaint {id}")))?;
    caller.ensure_covers(&row.district, &row.street)?;
    let history: Vec<Value> = store::history(&mut c, id)
        .await?
        .into_iter()
        .map(|h| json!({"event_type": h.event_type, "at": h.at, "actor": h.actor, "data": h.data}))
        .collect();
    let caller_json = match (&row.caller_name, &row.caller_phone) {
        (None, None) => Value::Null,
        (name, phone) => json!({"name": name, "phone": phone.as_deref().map(domain::mask_phone)}),
    };
    Ok(Json(json!({
        "complaint_id": row.complaint_id, "status": row.status, "district": row.district, "street": row.street,
        "category": row.category, "urgency": row.urgency, "point_id": row.point_id, "point": row.point,
        "caller": caller_json, "description": row.description, "received_at": row.received_at,
        "dispatched_at": row.dispatched_at, "respond_by": row.respond_by, "resolve_by": row.resolve_by,
        "item_id": row.item_id, "history": history,
    })))
}

async fn orgs(State(s): State<AppState>, _caller: Caller) -> Json<Value> {
    Json(serde_json::to_value(s.orgs.directory()).unwrap_or_default())
}

async fn catalog(State(s): State<AppState>, _caller: Caller) -> Json<Value> {
    Json(serde_json::to_value(s.catalog.doc()).unwrap_or_default())
}
