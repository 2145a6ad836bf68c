//! intake's SQL: the complaint projection, history, callers and idempotency records.

use chrono::{DateTime, Utc};
use qingling_shared::Envelope;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

mod lists;
mod metrics;
mod public;
pub mod routing;

pub use lists::{
    complaints_by_phone, complaints_in_status, item_closed, items_opened, open_item_at,
};
pub use metrics::{street_metrics, update_metrics};
pub use public::{public_complaints, PublicFilter, PublicRow};

use crate::domain::{
    month_of, Caller, Counters, Dispatch, Dispatched, MetricFlags, Received, Satisfaction, Status,
};

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
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub satisfaction: Option<String>,
    /// Returned, and the ledger has not yet taken or refused the return.
    pub return_pending: bool,
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

/// `complaint_received`: the complaint's row, not yet dispatched (the dispatch follows in the same
/// append).
pub async fn insert_received(
    c: &mut PgConnection,
    r: &Received,
    actor: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into complaints (complaint_id, district, street, category, urgency, point_id, point, description,
            received_at, dispatched_at, respond_by, resolve_by, status, item_id, created_by, updated_at, month, counted)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9, $9, 'received', null, $10, $11, $12, false)",
    )
    .bind(r.complaint_id)
    .bind(&r.district)
    .bind(&r.street)
    .bind(&r.category)
    .bind(r.urgency.as_str())
    .bind(r.point_id)
    .bind(&r.point)
    .bind(&r.description)
    .bind(r.received_at)
    .bind(actor)
    .bind(at)
    .bind(month_of(r.received_at))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// A new complaint's data, its dispatch, and who took the call.
pub type NewComplaint<'a> = (&'a Received, &'a Dispatched, &'a str);

/// Several new complaints at once, as `complaint_received` then `complaint_dispatched` leave
/// them (see [`crate::projector::project_registrations`]): dispatched, counted for their street.
pub async fn insert_dispatched(
    c: &mut PgConnection,
    rows: &[NewComplaint<'_>],
) -> sqlx::Result<()> {
    let col = |f: &dyn Fn(&NewComplaint) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let at = |f: &dyn Fn(&NewComplaint) -> DateTime<Utc>| rows.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "insert into complaints (complaint_id, district, street, category, urgency, point_id, point, description,
            received_at, dispatched_at, respond_by, resolve_by, status, item_id, created_by, updated_at, month, counted)
         select r.id, r.district, r.street, r.category, r.urgency, r.point_id, r.point, r.description,
            r.received_at, r.dispatched_at, r.respond_by, r.resolve_by, 'dispatched', null, r.actor, r.dispatched_at, r.month, true
         from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::jsonb[], $8::text[],
                     $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::text[], $14::text[])
              as r(id, district, street, category, urgency, point_id, point, description,
                   received_at, dispatched_at, respond_by, resolve_by, actor, month)",
    )
    .bind(rows.iter().map(|(r, ..)| r.complaint_id).collect::<Vec<_>>())
    .bind(col(&|(r, ..)| r.district.clone()))
    .bind(col(&|(_, d, _)| d.street.clone()))
    .bind(col(&|(r, ..)| r.category.clone()))
    .bind(col(&|(r, ..)| r.urgency.as_str().to_string()))
    .bind(rows.iter().map(|(r, ..)| r.point_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|(r, ..)| r.point.clone()).collect::<Vec<_>>())
    .bind(col(&|(r, ..)| r.description.clone()))
    .bind(at(&|(r, ..)| r.received_at))
    .bind(at(&|(_, d, _)| d.dispatched_at))
    .bind(at(&|(_, d, _)| d.respond_by))
    .bind(at(&|(_, d, _)| d.resolve_by))
    .bind(col(&|(.., actor)| actor.to_string()))
    .bind(col(&|(r, ..)| month_of(r.received_at)))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Adds `n` received complaints to each (district, month, street) counter.
pub async fn add_received(
    c: &mut PgConnection,
    counts: &[((String, String, String), i64)],
) -> sqlx::Result<()> {
    let col = |i: usize| {
        counts
            .iter()
            .map(|((d, m, s), _)| [d, m, s][i].clone())
            .collect::<Vec<_>>()
    };
    sqlx::query(
        "insert into street_metrics as m (district, month, street, received)
         select * from unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
         on conflict (district, month, street) do update set received = m.received + excluded.received",
    )
    .bind(col(0))
    .bind(col(1))
    .bind(col(2))
    .bind(counts.iter().map(|(_, n)| *n).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(())
}

/// The ledger's events in several complaints' histories at once (the events themselves are in the
/// inbox; intake's own are read from its log).
pub async fn insert_histories(
    c: &mut PgConnection,
    entries: &[(Uuid, &Envelope)],
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into complaint_history (complaint_id, event_id, at)
         select * from unnest($1::uuid[], $2::uuid[], $3::timestamptz[])
         on conflict do nothing",
    )
    .bind(entries.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(entries.iter().map(|(_, e)| e.event_id).collect::<Vec<_>>())
    .bind(
        entries
            .iter()
            .map(|(_, e)| e.occurred_at)
            .collect::<Vec<_>>(),
    )
    .execute(c)
    .await?;
    Ok(())
}

/// Several callers at once.
pub async fn insert_callers(c: &mut PgConnection, callers: &[(Uuid, &Caller)]) -> sqlx::Result<()> {
    sqlx::query(
        "insert into callers (complaint_id, name, phone) select * from unnest($1::uuid[], $2::text[], $3::text[])",
    )
    .bind(callers.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(callers.iter().map(|(_, c)| c.name.clone()).collect::<Vec<_>>())
    .bind(callers.iter().map(|(_, c)| c.phone.clone()).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(())
}

/// An `Idempotency-Key` to claim, with the first answer to save under it.
pub struct Claim<'a> {
    pub actor: &'a str,
    pub key: &'a str,
    pub request_hash: &'a str,
    pub response: &'a Value,
}

/// Claims idempotency keys (distinct within the call); answers those claimed. A key already used
/// is not (its first use is then committed: the insert waits for a concurrent holder of the key).
pub async fn claim_idempotency_keys(
    c: &mut PgConnection,
    claims: &[Claim<'_>],
    status: i32,
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "insert into idempotency (actor, key, request_hash, status, response)
         select a, k, h, $4, r from unnest($1::text[], $2::text[], $3::text[], $5::jsonb[]) with ordinality as x(a, k, h, r, n)
         order by n
         on conflict (actor, key) do nothing
         returning actor, key",
    )
    .bind(claims.iter().map(|c| c.actor.to_string()).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.key.to_string()).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.request_hash.to_string()).collect::<Vec<_>>())
    .bind(status)
    .bind(claims.iter().map(|c| c.response.clone()).collect::<Vec<_>>())
    .fetch_all(c)
    .await
}

pub async fn insert_history(
    c: &mut PgConnection,
    complaint_id: Uuid,
    ev: &Envelope,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into complaint_history (complaint_id, event_id, at) values ($1, $2, $3) on conflict do nothing",
    )
    .bind(complaint_id)
    .bind(ev.event_id)
    .bind(ev.occurred_at)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn get_complaint(c: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ComplaintRow>> {
    sqlx::query_as(
        "select c.complaint_id, c.district, c.street, c.category, c.urgency, c.point_id, c.point, c.description,
                c.received_at, c.dispatched_at, c.respond_by, c.resolve_by, c.status, c.item_id,
                k.name as caller_name, k.phone as caller_phone, c.acknowledged_at, c.satisfaction,
                c.return_pending
         from complaints c left join callers k using (complaint_id) where c.complaint_id = $1",
    )
    .bind(id)
    .fetch_optional(c)
    .await
}

/// 一案一档: the complaint's own stream in the log and the ledger's events about it, in time order.
pub async fn history(c: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<HistoryRow>> {
    sqlx::query_as(
        "select event_type, at, actor, data from (
            select event_type, occurred_at as at, actor, data, event_id from events where stream = $2
            union all
            select i.envelope->>'event_type', h.at, i.envelope->>'actor', i.envelope->'data', h.event_id
            from complaint_history h join inbox i using (event_id) where h.complaint_id = $1
         ) h order by at, event_id",
    )
    .bind(id)
    .bind(qingling_events::intake::stream(id))
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

/// [`set_status`] for several complaints (each once) in one statement.
pub async fn set_statuses(
    c: &mut PgConnection,
    changes: &[(Uuid, Status, Option<Uuid>, DateTime<Utc>)],
) -> sqlx::Result<()> {
    sqlx::query(
        "update complaints c set status = u.status, item_id = coalesce(u.item_id, c.item_id), updated_at = u.at
         from unnest($1::uuid[], $2::text[], $3::uuid[], $4::timestamptz[]) as u(id, status, item_id, at)
         where c.complaint_id = u.id",
    )
    .bind(changes.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.1.as_str()).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.2).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.3).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(())
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

/// Locks a complaint row for a command on it.
/// Whether a complaint of `street` in `district` was already placed at `point_id`.
pub async fn point_of_street(
    c: &mut PgConnection,
    point_id: Uuid,
    district: &str,
    street: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "select exists (select 1 from complaints where point_id = $1 and district = $2 and street = $3)",
    )
    .bind(point_id)
    .bind(district)
    .bind(street)
    .fetch_one(c)
    .await
}

/// A reveal of a caller's number, for the district's list.
pub async fn record_reveal(
    c: &mut PgConnection,
    ev: &Envelope,
    complaint_id: Uuid,
    street: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into caller_reveals (event_id, complaint_id, district, street, revealed_by, at, month)
         select $1, $2, district, $3, $4, $5, $6 from complaints where complaint_id = $2
         on conflict (event_id) do nothing",
    )
    .bind(ev.event_id)
    .bind(complaint_id)
    .bind(street)
    .bind(&ev.actor)
    .bind(ev.occurred_at)
    .bind(month_of(ev.occurred_at))
    .execute(c)
    .await?;
    Ok(())
}

/// One reveal, as the district sees it.
#[derive(Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Reveal {
    pub complaint_id: Uuid,
    pub street: String,
    /// Who saw the number (the token's `sub`).
    pub revealed_by: String,
    pub at: DateTime<Utc>,
}

/// The reveals of a district's month, oldest first.
pub async fn reveals(
    c: &mut PgConnection,
    district: &str,
    month: &str,
) -> sqlx::Result<Vec<Reveal>> {
    sqlx::query_as(
        "select complaint_id, street, revealed_by, at from caller_reveals
         where district = $1 and month = $2 order by at, event_id",
    )
    .bind(district)
    .bind(month)
    .fetch_all(c)
    .await
}

/// Marks a return as waiting for the ledger's word (true) or answered (false).
pub async fn set_return_pending(c: &mut PgConnection, id: Uuid, pending: bool) -> sqlx::Result<()> {
    sqlx::query("update complaints set return_pending = $2 where complaint_id = $1")
        .bind(id)
        .bind(pending)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn lock_complaint(c: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ComplaintRow>> {
    sqlx::query("select 1 from complaints where complaint_id = $1 for update")
        .bind(id)
        .execute(&mut *c)
        .await?;
    get_complaint(c, id).await
}

/// A returned complaint goes back to the operator; a re-dispatch gives it a new street and limits.
pub async fn redispatch(
    c: &mut PgConnection,
    id: Uuid,
    street: &str,
    d: &Dispatch,
) -> sqlx::Result<()> {
    update_metrics(c, id, Some(street), |f| {
        *f = MetricFlags {
            counted: true,
            ..Default::default()
        }
    })
    .await?;
    sqlx::query(
        "update complaints set status = 'dispatched', item_id = null, acknowledged_at = null,
            dispatched_at = $2, respond_by = $3, resolve_by = $4, updated_at = $2 where complaint_id = $1",
    )
    .bind(id)
    .bind(d.dispatched_at)
    .bind(d.respond_by)
    .bind(d.resolve_by)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn set_acknowledged(
    c: &mut PgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    let respond_by: DateTime<Utc> = sqlx::query_scalar(
        "update complaints set acknowledged_at = $2 where complaint_id = $1 returning respond_by",
    )
    .bind(id)
    .bind(at)
    .fetch_one(&mut *c)
    .await?;
    update_metrics(c, id, None, |f| f.responded_on_time = at <= respond_by).await
}

/// When an item's earlier complaints were acknowledged (a repeat complaint joins a taken-on item).
pub async fn item_acknowledged_at(
    c: &mut PgConnection,
    item_id: Uuid,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar("select min(acknowledged_at) from complaints where item_id = $1")
        .bind(item_id)
        .fetch_one(c)
        .await
}
