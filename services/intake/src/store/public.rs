//! What Open311 may show of complaints: no caller, no phone.

use super::*;

/// A complaint as Open311 shows it: no caller details.
#[derive(Debug, sqlx::FromRow)]
pub struct PublicRow {
    pub complaint_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub point_id: Uuid,
    pub point: Value,
    pub description: String,
    pub received_at: DateTime<Utc>,
    pub resolve_by: DateTime<Utc>,
    pub status: String,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// The latest event that touched the complaint, its own or the ledger's.
    pub updated_at: DateTime<Utc>,
}

/// Which complaints to list; `None` does not filter.
#[derive(Debug, Default)]
pub struct PublicFilter {
    pub ids: Option<Vec<Uuid>>,
    pub district: Option<String>,
    pub categories: Option<Vec<String>>,
    pub received_from: Option<DateTime<Utc>>,
    pub received_to: Option<DateTime<Utc>>,
    /// Only complaints whose status is (`true`) or is not (`false`) one of `closed_statuses`.
    pub closed: Option<bool>,
    pub closed_statuses: Vec<String>,
    pub limit: i64,
}

/// Complaints for Open311's `GET requests`, newest first.
pub async fn public_complaints(
    c: &mut PgConnection,
    f: &PublicFilter,
) -> sqlx::Result<Vec<PublicRow>> {
    sqlx::query_as(
        "select c.complaint_id, c.district, c.street, c.category, c.point_id, c.point, c.description,
                c.received_at, c.resolve_by, c.status, c.acknowledged_at,
                greatest(c.updated_at,
                         (select max(h.at) from complaint_history h where h.complaint_id = c.complaint_id),
                         (select max(e.occurred_at) from events e where e.stream = 'complaint-' || c.complaint_id)) as updated_at
         from complaints c
         where ($1::uuid[] is null or c.complaint_id = any($1))
           and ($2::text is null or c.district = $2)
           and ($3::text[] is null or c.category = any($3))
           and ($4::timestamptz is null or c.received_at >= $4)
           and ($5::timestamptz is null or c.received_at <= $5)
           and ($6::bool is null or (c.status = any($7)) = $6)
         order by c.received_at desc, c.complaint_id desc
         limit $8",
    )
    .bind(&f.ids)
    .bind(&f.district)
    .bind(&f.categories)
    .bind(f.received_from)
    .bind(f.received_to)
    .bind(f.closed)
    .bind(&f.closed_statuses)
    .bind(f.limit)
    .fetch_all(c)
    .await
}
