//! intake's SQL: the complaint projection, history, callers and idempotency records.

use chrono::{DateTime, Utc};
use qingling_shared::Envelope;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Caller, Complaint, Dispatch, Status};

#[derive(Debug, sqlx::FromRow)]
pub struct ComplaintRow {
    pub complaint_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub urgency: String,
    pub point_id: Uuid,
    pub point: Value,
    pub description: String,
    pub received_at: DateTime<Utc>,
    pub dispatched_at: DateTime<Utc>,
    pub respond_by: DateTime<Utc>,
    pub resolve_by: DateTime<Utc>,
    pub status: String,
    pub item_id: Option<Uuid>,
    pub caller_name: Option<String>,
    pub caller_phone: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct HistoryRow {
    pub event_type: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub data: Value,
}

pub struct SavedResponse {
    pub request_hash: String,
    pub status: i32,
    pub response: Value,
}

/// Claims an idempotency key; false if it was already used (the first use is then committed,
/// since the insert waits for a concurrent holder of the key).
pub async fn claim_idempotency_key(
    c: &mut PgConnection,
    actor: &str,
    key: &str,
    request_hash: &str,
    status: i32,
    response: &Value,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "insert into idempotency (actor, key, request_hash, status, response) values ($1, $2, $3, $4, $5)
         on conflict (actor, key) do nothing",
    )
    .bind(actor)
    .bind(key)
    .bind(request_hash)
    .bind(status)
    .bind(response)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn saved_response(
    c: &mut PgConnection,
    actor: &str,
    key: &str,
) -> sqlx::Result<Option<SavedResponse>> {
    let row: Option<(String, i32, Value)> = sqlx::query_as(
        "select request_hash, status, response from idempotency where actor = $1 and key = $2",
    )
    .bind(actor)
    .bind(key)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|(request_hash, status, response)| SavedResponse {
        request_hash,
        status,
        response,
    }))
}

pub async fn insert_complaint(
    c: &mut PgConnection,
    id: Uuid,
    complaint: &Complaint,
    dispatch: &Dispatch,
    actor: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into complaints (complaint_id, district, street, category, urgency, point_id, point, description,
            received_at, dispatched_at, respond_by, resolve_by, status, item_id, created_by, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'dispatched', null, $13, $10)",
    )
    .bind(id)
    .bind(&complaint.district)
    .bind(&complaint.street)
    .bind(&complaint.category)
    .bind(serde_json::to_value(complaint.urgency).unwrap_or_default().as_str().unwrap_or("normal"))
    .bind(complaint.point_id)
    .bind(serde_json::to_value(&complaint.point).unwrap_or_default())
    .bind(&complaint.description)
    .bind(complaint.received_at)
    .bind(dispatch.dispatched_at)
    .bind(dispatch.respond_by)
    .bind(dispatch.resolve_by)
    .bind(actor)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn insert_caller(c: &mut PgConnection, id: Uuid, caller: &Caller) -> sqlx::Result<()> {
    sqlx::query("insert into callers (complaint_id, name, phone) values ($1, $2, $3)")
        .bind(id)
        .bind(&caller.name)
        .bind(&caller.phone)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn insert_history(
    c: &mut PgConnection,
    complaint_id: Uuid,
    ev: &Envelope,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into complaint_history (complaint_id, event_id, event_type, at, actor, data) values ($1, $2, $3, $4, $5, $6)
         on conflict do nothing",
    )
    .bind(complaint_id)
    .bind(ev.event_id)
    .bind(&ev.event_type)
    .bind(ev.occurred_at)
    .bind(&ev.actor)
    .bind(&ev.data)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn get_complaint(c: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ComplaintRow>> {
    sqlx::query_as(
        "select c.complaint_id, c.district, c.street, c.category, c.urgency, c.point_id, c.point, c.description,
                c.received_at, c.dispatched_at, c.respond_by, c.resolve_by, c.status, c.item_id,
                k.name as caller_name, k.phone as caller_phone
         from complaints c left join callers k using (complaint_id) where c.complaint_id = $1",
    )
    .bind(id)
    .fetch_optional(c)
    .await
}

pub async fn history(c: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<HistoryRow>> {
    sqlx::query_as("select event_type, at, actor, data from complaint_history where complaint_id = $1 order by at, event_id")
        .bind(id)
        .fetch_all(c)
        .await
}

/// The complaints an item carries, with their status, locked for update.
pub async fn complaints_for_update(
    c: &mut PgConnection,
    ids: &[Uuid],
    item_id: Option<Uuid>,
) -> sqlx::Result<Vec<(Uuid, Status)>> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "select complaint_id, status from complaints where complaint_id = any($1) or item_id = $2 order by complaint_id for update",
    )
    .bind(ids)
    .bind(item_id)
    .fetch_all(c)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, s)| Status::parse(&s).map(|s| (id, s)))
        .collect())
}

pub async fn set_status(
    c: &mut PgConnection,
    id: Uuid,
    status: Status,
    item_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("update complaints set status = $2, item_id = coalesce($3, item_id), updated_at = $4 where complaint_id = $1")
        .bind(id)
        .bind(status.as_str())
        .bind(item_id)
        .bind(at)
        .execute(c)
        .await?;
    Ok(())
}
