//! The operator's look-ups (CONTRACT §10): a caller's complaints by phone, the returned ones, the
//! written-off ones awaiting 回访, and the ledger's open items by point.

use sqlx::PgConnection;
use uuid::Uuid;

use super::ComplaintRow;

const ROW: &str = "select c.complaint_id, c.district, c.street, c.category, c.urgency, c.point_id, c.point, c.description,
        c.received_at, c.dispatched_at, c.respond_by, c.resolve_by, c.status, c.item_id,
        k.name as caller_name, k.phone as caller_phone, c.acknowledged_at, c.satisfaction,
        c.return_pending
 from complaints c left join callers k using (complaint_id)";

/// A caller's complaints in `district` (`*`: all), newest first. Numbers match by their digits,
/// whatever spaces, dashes or brackets either side wrote.
pub async fn complaints_by_phone(
    c: &mut PgConnection,
    district: &str,
    digits: &str,
    limit: i64,
) -> sqlx::Result<Vec<ComplaintRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{ROW} where regexp_replace(k.phone, '[^0-9]', '', 'g') = $1 and ($2 = '*' or c.district = $2)
         order by c.received_at desc, c.complaint_id desc limit $3"
    )))
    .bind(digits)
    .bind(district)
    .bind(limit)
    .fetch_all(c)
    .await
}

/// Complaints of `district` (`*`: all) in `status`, newest first.
pub async fn complaints_in_status(
    c: &mut PgConnection,
    district: &str,
    status: &str,
    limit: i64,
) -> sqlx::Result<Vec<ComplaintRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{ROW} where c.status = $1 and ($2 = '*' or c.district = $2)
         order by c.received_at desc, c.complaint_id desc limit $3"
    )))
    .bind(status)
    .bind(district)
    .bind(limit)
    .fetch_all(c)
    .await
}

/// The open item at a point, for a category, as the ledger's events told intake.
pub async fn open_item_at(
    c: &mut PgConnection,
    point_id: Uuid,
    category: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("select item_id from open_items where point_id = $1 and category = $2")
        .bind(point_id)
        .bind(category)
        .fetch_optional(c)
        .await
}

/// Items registered on the ledger (`item_id`, `point_id`, `category`): open at their points.
pub async fn items_opened(c: &mut PgConnection, items: &[(Uuid, Uuid, &str)]) -> sqlx::Result<()> {
    sqlx::query(
        "insert into open_items (item_id, point_id, category)
         select * from unnest($1::uuid[], $2::uuid[], $3::text[])
         on conflict (point_id, category) do update set item_id = excluded.item_id",
    )
    .bind(items.iter().map(|i| i.0).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.1).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.2).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(())
}

/// An item written off: its point is free again.
pub async fn item_closed(c: &mut PgConnection, item_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("delete from open_items where item_id = $1")
        .bind(item_id)
        .execute(c)
        .await?;
    Ok(())
}
