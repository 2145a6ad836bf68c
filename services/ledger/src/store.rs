//! The ledger's SQL: the items projection, dynamic-zero marks, the journal (a view of the log),
//! and their queries.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use qingling_shared::Envelope;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{ItemEvent, PointState, Registered};

/// An item on the ledger (台账条目), as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Item)]
pub struct ItemRow {
    pub item_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub point_id: Uuid,
    /// community, building, basement, address (and rooms for imported items)
    #[schema(value_type = Object)]
    pub point: Value,
    pub description: String,
    /// complaint, inspection or import
    pub source: String,
    pub urgency: String,
    pub status: String,
    pub complaint_ids: Vec<Uuid>,
    pub registered_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub respond_by: Option<DateTime<Utc>>,
    pub resolve_by: Option<DateTime<Utc>>,
    pub overdue: Vec<String>,
    pub written_off_at: Option<DateTime<Utc>>,
    pub write_off_kind: Option<String>,
    pub closure_id: Option<Uuid>,
    pub rebound_of: Option<Uuid>,
    /// A requested or decided extension of resolve-by: until, reason, status.
    #[schema(value_type = Option<Object>)]
    pub extension: Option<Value>,
    /// Rooms (间) its write-off request says were cleared.
    pub rooms_cleared: Option<i32>,
    /// Partition area (m²) its write-off request says was removed.
    pub partition_area_m2: Option<f64>,
}

const ITEM_COLUMNS: &str = "item_id, district, street, category, point_id, point, description, source, urgency, status,
    complaint_ids, registered_at, acknowledged_at, respond_by, resolve_by, overdue, written_off_at, write_off_kind,
    closure_id, rebound_of, extension, rooms_cleared, partition_area_m2";

/// Brings the projections up to date with one appended item event (same transaction). A rebuild
/// does the same for the whole log at once ([`crate::replay`]).
pub async fn project(c: &mut PgConnection, env: &Envelope, ev: &ItemEvent) -> sqlx::Result<()> {
    let at = env.occurred_at;
    match ev {
        ItemEvent::ItemRegistered(r) => {
            sqlx::query(
                "insert into items (item_id, district, street, category, point_id, point, description, source, urgency, status,
                    complaint_ids, registered_at, respond_by, resolve_by, rebound_of, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'registered', $10, $11, $12, $13, $14, $11)",
            )
            .bind(r.item_id)
            .bind(&r.district)
            .bind(&r.street)
            .bind(&r.category)
            .bind(r.point_id)
            .bind(&r.point)
            .bind(&r.description)
            .bind(r.source.as_str())
            .bind(r.urgency.as_str())
            .bind(r.complaint_id.into_iter().collect::<Vec<_>>())
            .bind(at)
            .bind(r.respond_by)
            .bind(r.resolve_by)
            .bind(r.rebound_of)
            .execute(&mut *c)
            .await?;
            sqlx::query(
                "insert into zero_marks as z (district, street, category, open, zero_since) values ($1, $2, $3, 1, null), ($1, '', $3, 1, null)
                 on conflict (district, street, category) do update set open = z.open + 1, zero_since = null",
            )
            .bind(&r.district)
            .bind(&r.street)
            .bind(&r.category)
            .execute(&mut *c)
            .await?;
        }
        ItemEvent::ComplaintLinked {
            item_id,
            complaint_id,
        } => {
            sqlx::query("update items set complaint_ids = array_append(complaint_ids, $2), updated_at = $3 where item_id = $1")
                .bind(item_id)
                .bind(complaint_id)
                .bind(at)
                .execute(&mut *c)
                .await?;
        }
        ItemEvent::ComplaintUnlinked {
            item_id,
            complaint_id,
            ..
        } => {
            sqlx::query("update items set complaint_ids = array_remove(complaint_ids, $2), updated_at = $3 where item_id = $1")
                .bind(item_id)
                .bind(complaint_id)
                .bind(at)
                .execute(&mut *c)
                .await?;
        }
        ItemEvent::ItemAcknowledged { item_id, .. } => {
            sqlx::query("update items set status = 'acknowledged', acknowledged_at = $2, updated_at = $2 where item_id = $1")
                .bind(item_id)
                .bind(at)
                .execute(&mut *c)
                .await?;
        }
        ItemEvent::ItemClosurePending {
            item_id,
            closure_id,
            rooms_cleared,
            partition_area_m2,
            ..
        } => {
            sqlx::query(
                "update items set status = 'closure_pending', closure_id = $2, updated_at = $3,
                    rooms_cleared = $4, partition_area_m2 = $5 where item_id = $1",
            )
            .bind(item_id)
            .bind(closure_id)
            .bind(at)
            .bind(rooms_cleared)
            .bind(partition_area_m2)
            .execute(&mut *c)
            .await?;
        }
        ItemEvent::ItemClosureRejected { item_id, .. } => {
            sqlx::query("update items set status = 'acknowledged', closure_id = null, updated_at = $2 where item_id = $1")
                .bind(item_id)
                .bind(at)
                .execute(&mut *c)
                .await?;
        }
        ItemEvent::ItemOverdue { item_id, kind, .. } => {
            sqlx::query(
                "update items set overdue = array_append(overdue, $2), updated_at = $3
                 where item_id = $1 and not ($2 = any(overdue))",
            )
            .bind(item_id)
            .bind(kind.as_str())
            .bind(at)
            .execute(&mut *c)
            .await?;
        }
        ItemEvent::ExtensionRequested {
            item_id,
            until,
            reason,
            ..
        }
        | ItemEvent::ExtensionRejected {
            item_id,
            until,
            reason,
            ..
        } => {
            let status = if matches!(ev, ItemEvent::ExtensionRequested { .. }) {
                "pending"
            } else {
                "rejected"
            };
            sqlx::query("update items set extension = $2, updated_at = $3 where item_id = $1")
                .bind(item_id)
                .bind(serde_json::json!({"status": status, "until": until, "reason": reason}))
                .bind(at)
                .execute(&mut *c)
                .await?;
        }
        ItemEvent::ExtensionWithdrawn {
            item_id,
            until,
            reason,
            ..
        } => {
            sqlx::query("update items set extension = $2, updated_at = $3 where item_id = $1")
                .bind(item_id)
                .bind(serde_json::json!({"status": "withdrawn", "until": until, "reason": reason}))
                .bind(at)
                .execute(&mut *c)
                .await?;
        }
        // The item does not change: the complaint stays on it.
        ItemEvent::ComplaintReturnRefused { .. } => {}
        ItemEvent::ExtensionApproved {
            item_id,
            until,
            reason,
            ..
        } => {
            sqlx::query("update items set extension = $2, resolve_by = $3, updated_at = $4 where item_id = $1")
                .bind(item_id)
                .bind(serde_json::json!({"status": "approved", "until": until, "reason": reason}))
                .bind(until)
                .bind(at)
                .execute(&mut *c)
                .await?;
        }
        ItemEvent::ItemWrittenOff(w) => {
            sqlx::query(
                "update items set status = 'written_off', written_off_at = $2, write_off_kind = $3, closure_id = $4, updated_at = $2
                 where item_id = $1",
            )
            .bind(w.item_id)
            .bind(at)
            .bind(w.kind.as_str())
            .bind(w.closure_id)
            .execute(&mut *c)
            .await?;
            // Dynamic zero reached for the street, and perhaps the district, at this moment.
            sqlx::query(
                "update zero_marks set open = open - 1, zero_since = case when open = 1 then $4 else zero_since end
                 where district = $1 and category = $3 and street in ($2, '')",
            )
            .bind(&w.district)
            .bind(&w.street)
            .bind(&w.category)
            .bind(at)
            .execute(&mut *c)
            .await?;
        }
    }
    Ok(())
}

pub async fn get_item(c: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ItemRow>> {
    let sql = format!("select {ITEM_COLUMNS} from items where item_id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(c)
        .await
}

/// The open item of a category at a point, if any.
pub async fn open_item_at(
    c: &mut PgConnection,
    point_id: Uuid,
    category: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("select item_id from items where point_id = $1 and category = $2 and status <> 'written_off'")
        .bind(point_id)
        .bind(category)
        .fetch_optional(c)
        .await
}

/// What the ledger knows of one (point, category), for [`crate::domain::at_point`].
pub async fn point_state(
    c: &mut PgConnection,
    point_id: Uuid,
    category: &str,
) -> sqlx::Result<PointState> {
    let key = (point_id, category.to_string());
    let mut states = point_states(c, std::slice::from_ref(&key)).await?;
    Ok(states.remove(&key).unwrap_or_default())
}

/// [`point_state`] for many points in one statement.
pub async fn point_states(
    c: &mut PgConnection,
    points: &[(Uuid, String)],
) -> sqlx::Result<HashMap<(Uuid, String), PointState>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        point_id: Uuid,
        category: String,
        open: Option<Uuid>,
        last: Option<Uuid>,
        written_off_at: Option<DateTime<Utc>>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "select p.point_id, p.category,
            (select item_id from items i where i.point_id = p.point_id and i.category = p.category
               and i.status <> 'written_off' limit 1) as open,
            w.item_id as last, w.written_off_at
         from unnest($1::uuid[], $2::text[]) as p(point_id, category)
         left join lateral (
             select item_id, written_off_at from items i where i.point_id = p.point_id and i.category = p.category
               and i.status = 'written_off' and i.write_off_kind in ('rectified', 'unfounded')
               and i.written_off_at is not null
             order by written_off_at desc limit 1) w on true",
    )
    .bind(points.iter().map(|(p, _)| *p).collect::<Vec<_>>())
    .bind(points.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>())
    .fetch_all(c)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let state = PointState {
                open: r.open,
                last_write_off: r.last.zip(r.written_off_at),
            };
            ((r.point_id, r.category), state)
        })
        .collect())
}

/// The projection of several `item_registered` at once, as [`project`] leaves each.
pub async fn project_registered(
    c: &mut PgConnection,
    items: &[(&Envelope, &Registered)],
) -> sqlx::Result<()> {
    let text =
        |f: fn(&Registered) -> &String| items.iter().map(|(_, r)| f(r).clone()).collect::<Vec<_>>();
    sqlx::query(
        "insert into items (item_id, district, street, category, point_id, point, description, source, urgency, status,
            complaint_ids, registered_at, respond_by, resolve_by, rebound_of, updated_at)
         select r.item_id, r.district, r.street, r.category, r.point_id, r.point, r.description, r.source, r.urgency,
            'registered', case when r.complaint_id is null then '{}'::uuid[] else array[r.complaint_id] end,
            r.at, r.respond_by, r.resolve_by, r.rebound_of, r.at
         from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::jsonb[], $7::text[], $8::text[],
                     $9::text[], $10::uuid[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::uuid[])
              as r(item_id, district, street, category, point_id, point, description, source, urgency, complaint_id,
                   at, respond_by, resolve_by, rebound_of)",
    )
    .bind(items.iter().map(|(_, r)| r.item_id).collect::<Vec<_>>())
    .bind(text(|r| &r.district))
    .bind(text(|r| &r.street))
    .bind(text(|r| &r.category))
    .bind(items.iter().map(|(_, r)| r.point_id).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, r)| r.point.clone()).collect::<Vec<_>>())
    .bind(text(|r| &r.description))
    .bind(items.iter().map(|(_, r)| r.source.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, r)| r.urgency.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, r)| r.complaint_id).collect::<Vec<_>>())
    .bind(items.iter().map(|(e, _)| e.occurred_at).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, r)| r.respond_by).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, r)| r.resolve_by).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, r)| r.rebound_of).collect::<Vec<_>>())
    .execute(&mut *c)
    .await?;
    // Each item opens its street's and its district's mark (street '').
    let mut marks: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
    for (_, r) in items {
        for street in [r.street.as_str(), ""] {
            *marks.entry((&r.district, street, &r.category)).or_default() += 1;
        }
    }
    let col = |i: usize| {
        marks
            .keys()
            .map(|k| [k.0, k.1, k.2][i].to_string())
            .collect::<Vec<_>>()
    };
    sqlx::query(
        "insert into zero_marks as z (district, street, category, open, zero_since)
         select d, s, k, n, null from unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) as m(d, s, k, n)
         on conflict (district, street, category) do update set open = z.open + excluded.open, zero_since = null",
    )
    .bind(col(0))
    .bind(col(1))
    .bind(col(2))
    .bind(marks.values().copied().collect::<Vec<_>>())
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub struct ItemFilter {
    pub district: Option<String>,
    pub street: Option<String>,
    /// `open`, `closure_pending` or `written_off`.
    pub status: Option<String>,
    pub category: Option<String>,
    pub before: Option<Uuid>,
    /// Only open items flagged overdue (督办).
    pub overdue: bool,
    /// Only open items whose extension request (延期申请) is in this state (`pending`).
    pub extension: Option<String>,
    pub limit: i64,
}

/// Newest first (item ids are UUIDv7, so id order is registration order).
pub async fn list_items(c: &mut PgConnection, f: &ItemFilter) -> sqlx::Result<Vec<ItemRow>> {
    let sql = format!(
        "select {ITEM_COLUMNS} from items
         where ($1::text is null or district = $1) and ($2::text is null or street = $2)
           and ($3::text is null or category = $3)
           and ($4::text is null or ($4 = 'open' and status <> 'written_off') or status = $4)
           and ($5::uuid is null or item_id < $5)
           and (not $7 or (status <> 'written_off' and cardinality(overdue) > 0))
           and ($8::text is null or (status <> 'written_off' and extension->>'status' = $8))
         order by item_id desc limit $6"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&f.district)
        .bind(&f.street)
        .bind(&f.category)
        .bind(&f.status)
        .bind(f.before)
        .bind(f.limit)
        .bind(f.overdue)
        .bind(&f.extension)
        .fetch_all(c)
        .await
}

#[derive(Debug, Default, Clone, sqlx::FromRow)]
pub struct StreetCounts {
    pub street: String,
    pub registered_total: i64,
    pub written_off_total: i64,
    pub acknowledged: i64,
    pub closure_pending: i64,
    pub overdue: i64,
    /// Items registered as a rebound (反弹) of an earlier write-off at the point.
    pub rebounds: i64,
}

/// Counts per street from one snapshot, so `open = registered_total - written_off_total` holds.
pub async fn street_counts(
    c: &mut PgConnection,
    district: &str,
    category: &str,
) -> sqlx::Result<Vec<StreetCounts>> {
    sqlx::query_as(
        "select street, registered_total, written_off_total, acknowledged, closure_pending, overdue, rebounds
         from street_tallies where district = $1 and category = $2",
    )
    .bind(district)
    .bind(category)
    .fetch_all(c)
    .await
}

/// Dynamic-zero marks of a district's streets; the district's own mark has street `''`.
pub async fn zero_marks(
    c: &mut PgConnection,
    district: &str,
    category: &str,
) -> sqlx::Result<Vec<(String, Option<DateTime<Utc>>)>> {
    sqlx::query_as(
        "select street, zero_since from zero_marks where district = $1 and category = $2",
    )
    .bind(district)
    .bind(category)
    .fetch_all(c)
    .await
}

/// The `kind` of a journal line that registers an item; the other is `write_off`.
pub const JOURNAL_REGISTRATION: &str = "registration";

/// One line of the journal (台账流水): a registration (上账) or a write-off (销账). A registration
/// has no `closure_id` or `write_off_kind`; a write-off has no `complaint_id`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JournalRow {
    pub position: i64,
    pub kind: String,
    pub item_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub point_id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub complaint_id: Option<Uuid>,
    pub closure_id: Option<Uuid>,
    pub write_off_kind: Option<String>,
}

pub async fn journal_after(
    c: &mut PgConnection,
    district: Option<&str>,
    street: Option<&str>,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<JournalRow>> {
    sqlx::query_as(
        "select position, kind, item_id, district, street, category, point_id, at, actor, complaint_id, closure_id, write_off_kind
         from journal where position > $1 and ($2::text is null or district = $2) and ($3::text is null or street = $3)
         order by position limit $4",
    )
    .bind(after)
    .bind(district)
    .bind(street)
    .bind(limit)
    .fetch_all(c)
    .await
}

/// Open items with a passed limit not yet flagged.
pub async fn items_past_deadline(
    c: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "select item_id from items where status = 'registered' and respond_by < $1 and not ('respond' = any(overdue))
         union
         select item_id from items where status <> 'written_off' and resolve_by < $1 and not ('resolve' = any(overdue))
         limit $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(c)
    .await
}

/// The open item carrying a complaint.
pub async fn open_item_of_complaint(
    c: &mut PgConnection,
    complaint_id: Uuid,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar(
        "select item_id from items where $1 = any(complaint_ids) and status <> 'written_off'",
    )
    .bind(complaint_id)
    .fetch_optional(c)
    .await
}
