//! closure's SQL: what it knows of items, and the write-off requests.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{ClosureStatus, Requested};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ItemView {
    pub item_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub status: String,
}

/// A write-off request (销账申请), as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Closure)]
pub struct ClosureRow {
    pub closure_id: Uuid,
    pub item_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    /// rectified, unfounded or …
    pub outcome: String,
    /// The 三无一恢复 checklist: four booleans.
    #[schema(value_type = Object)]
    pub checklist: Value,
    pub rooms_cleared: Option<i32>,
    pub partition_area_m2: Option<f64>,
    /// Photos and documents: kind, uri, sha256.
    #[schema(value_type = Vec<Object>)]
    pub evidence: Value,
    pub note: String,
    pub status: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub review_note: Option<String>,
    pub reject_reason: Option<String>,
}

const CLOSURE_COLUMNS: &str = "closure_id, item_id, district, street, category, outcome, checklist, rooms_cleared, partition_area_m2,
    evidence, note, status, requested_by, requested_at, reviewed_by, reviewed_at, review_note, reject_reason";

pub async fn get_item(c: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ItemView>> {
    sqlx::query_as(
        "select item_id, district, street, category, status from items where item_id = $1",
    )
    .bind(id)
    .fetch_optional(c)
    .await
}

pub async fn learn_item(
    c: &mut PgConnection,
    id: Uuid,
    district: &str,
    street: &str,
    category: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into items (item_id, district, street, category, status, updated_at) values ($1, $2, $3, $4, 'registered', $5)
         on conflict (item_id) do nothing",
    )
    .bind(id)
    .bind(district)
    .bind(street)
    .bind(category)
    .bind(at)
    .execute(c)
    .await?;
    Ok(())
}

/// [`learn_item`] for several items in one statement.
pub async fn learn_items(
    c: &mut PgConnection,
    items: &[(Uuid, &str, &str, &str, DateTime<Utc>)],
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into items (item_id, district, street, category, status, updated_at)
         select i, d, s, k, 'registered', at from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) as x(i, d, s, k, at)
         on conflict (item_id) do nothing",
    )
    .bind(items.iter().map(|i| i.0).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.1).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.2).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.3).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.4).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(())
}

pub async fn set_item_status(
    c: &mut PgConnection,
    id: Uuid,
    status: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("update items set status = $2, updated_at = $3 where item_id = $1")
        .bind(id)
        .bind(status)
        .bind(at)
        .execute(c)
        .await?;
    Ok(())
}

/// Records a new pending request; `false` if the item already has one (the unique index decides
/// between racing requests).
pub async fn insert_requested(
    c: &mut PgConnection,
    r: &Requested,
    by: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let res = sqlx::query(
        "insert into closures (closure_id, item_id, district, street, category, outcome, checklist, rooms_cleared, partition_area_m2,
            evidence, note, status, requested_by, requested_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $13)",
    )
    .bind(r.closure_id)
    .bind(r.item_id)
    .bind(&r.district)
    .bind(&r.street)
    .bind(&r.category)
    .bind(r.outcome.as_str())
    .bind(sqlx::types::Json(&r.checklist))
    .bind(r.rooms_cleared)
    .bind(r.partition_area_m2)
    .bind(sqlx::types::Json(&r.evidence))
    .bind(&r.note)
    .bind(by)
    .bind(at)
    .execute(c)
    .await;
    match res {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a request for the item was already approved (its write-off may still be on its way).
pub async fn approved_for_item(c: &mut PgConnection, item_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "select exists (select 1 from closures where item_id = $1 and status = 'approved')",
    )
    .bind(item_id)
    .fetch_one(c)
    .await
}

pub async fn pending_for_item(c: &mut PgConnection, item_id: Uuid) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("select closure_id from closures where item_id = $1 and status = 'pending'")
        .bind(item_id)
        .fetch_optional(c)
        .await
}

pub async fn review(
    c: &mut PgConnection,
    id: Uuid,
    status: ClosureStatus,
    by: &str,
    at: DateTime<Utc>,
    note: Option<&str>,
    reason: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "update closures set status = $2, reviewed_by = $3, reviewed_at = $4, review_note = $5, reject_reason = $6 where closure_id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(by)
    .bind(at)
    .bind(note)
    .bind(reason)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn get_closure(c: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ClosureRow>> {
    let sql = format!("select {CLOSURE_COLUMNS} from closures where closure_id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(c)
        .await
}

pub async fn list_closures(
    c: &mut PgConnection,
    district: Option<&str>,
    street: Option<&str>,
    status: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<ClosureRow>> {
    let sql = format!(
        "select {CLOSURE_COLUMNS} from closures
         where ($1::text is null or district = $1) and ($2::text is null or street = $2) and ($3::text is null or status = $3)
         order by closure_id desc limit $4"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(district)
        .bind(street)
        .bind(status)
        .bind(limit)
        .fetch_all(c)
        .await
}

/// The projection of `evidence_uploaded`.
pub async fn insert_evidence(
    c: &mut PgConnection,
    u: &qingling_events::closure::Uploaded,
    by: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into evidence (sha256, bytes, content_type, district, street, item_id, uploaded_by, received_at, taken_at, lat, long)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) on conflict (sha256) do nothing",
    )
    .bind(&u.sha256)
    .bind(u.bytes)
    .bind(&u.content_type)
    .bind(&u.district)
    .bind(&u.street)
    .bind(u.item_id)
    .bind(by)
    .bind(at)
    .bind(u.taken_at)
    .bind(u.lat)
    .bind(u.long)
    .execute(c)
    .await?;
    Ok(())
}

/// A kept photo's record.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EvidenceRow {
    pub sha256: String,
    pub bytes: i64,
    pub content_type: String,
    pub district: String,
    pub street: String,
    pub received_at: DateTime<Utc>,
}

pub async fn get_evidence(c: &mut PgConnection, sha256: &str) -> sqlx::Result<Option<EvidenceRow>> {
    sqlx::query_as(
        "select sha256, bytes, content_type, district, street, received_at from evidence where sha256 = $1",
    )
    .bind(sha256)
    .fetch_optional(c)
    .await
}

/// Keeps a photo's bytes (once per content).
pub async fn put_blob(c: &mut PgConnection, sha256: &str, body: &[u8]) -> sqlx::Result<()> {
    sqlx::query(
        "insert into evidence_blobs (sha256, body) values ($1, $2) on conflict (sha256) do nothing",
    )
    .bind(sha256)
    .bind(body)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn get_blob(c: &mut PgConnection, sha256: &str) -> sqlx::Result<Option<Vec<u8>>> {
    sqlx::query_scalar("select body from evidence_blobs where sha256 = $1")
        .bind(sha256)
        .fetch_optional(c)
        .await
}

/// Whether a write-off request of `district` cites the photo.
pub async fn cited_in_district(
    c: &mut PgConnection,
    sha256: &str,
    district: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "select exists (select 1 from closures where district = $2
           and evidence @> jsonb_build_array(jsonb_build_object('sha256', $1::text)))",
    )
    .bind(sha256)
    .bind(district)
    .fetch_one(c)
    .await
}
