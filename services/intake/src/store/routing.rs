//! Routing (CONTRACT §11): the streets of known points, the community directory, and the dispatch
//! record the dispatch metrics are computed from.

use chrono::{DateTime, Utc};
use qingling_events::intake::{Dispatched, ReturnReason, RoutedBy};
use sqlx::PgConnection;
use uuid::Uuid;

/// The directory's key for a community: as people read it (NFKC, invisible characters and spaces
/// removed), so spellings of one community meet.
pub fn community_key(community: &str) -> String {
    qingling_shared::point::normalize(community)
}

/// The street of the point's latest item, as the ledger registered it.
pub async fn street_of_point(c: &mut PgConnection, point_id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("select street from point_streets where point_id = $1")
        .bind(point_id)
        .fetch_optional(c)
        .await
}

/// The street the community directory names.
pub async fn street_of_community(
    c: &mut PgConnection,
    district: &str,
    community: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "select street from community_directory where district = $1 and community = $2",
    )
    .bind(district)
    .bind(community_key(community))
    .fetch_optional(c)
    .await
}

/// A point the ledger registered an item at: (point, district, street, community, when).
pub type PointSeen<'a> = (Uuid, &'a str, &'a str, &'a str, DateTime<Utc>);

/// Items the ledger registered: their points' streets, and the directory learns the community
/// (an imported entry stays as imported).
pub async fn points_registered(c: &mut PgConnection, points: &[PointSeen<'_>]) -> sqlx::Result<()> {
    if points.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&PointSeen) -> String| points.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "insert into point_streets (point_id, district, street, registered_at)
         select distinct on (p) p, d, s, a from unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) as u(p, d, s, a)
         order by p, a desc
         on conflict (point_id) do update set street = excluded.street, district = excluded.district,
             registered_at = excluded.registered_at
         where point_streets.registered_at <= excluded.registered_at",
    )
    .bind(points.iter().map(|p| p.0).collect::<Vec<_>>())
    .bind(col(|p| p.1.to_string()))
    .bind(col(|p| p.2.to_string()))
    .bind(points.iter().map(|p| p.4).collect::<Vec<_>>())
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "insert into community_directory (district, community, street, source, updated_at)
         select distinct on (d, k) d, k, s, 'learnt', a
         from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) as u(d, k, s, a)
         where k <> ''
         order by d, k, a desc
         on conflict (district, community) do update set street = excluded.street, source = 'learnt',
             updated_at = excluded.updated_at
         where community_directory.source <> 'import'",
    )
    .bind(col(|p| p.1.to_string()))
    .bind(col(|p| community_key(p.3)))
    .bind(col(|p| p.2.to_string()))
    .bind(points.iter().map(|p| p.4).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(())
}

/// Entries of the directory, set by the district (they win over what is learnt).
pub async fn import_communities(
    c: &mut PgConnection,
    district: &str,
    entries: &[(String, String)],
) -> sqlx::Result<u64> {
    let r = sqlx::query(
        "insert into community_directory (district, community, street, source, updated_at)
         select $1, k, s, 'import', now() from unnest($2::text[], $3::text[]) as u(k, s)
         on conflict (district, community) do update set street = excluded.street, source = 'import',
             updated_at = now()",
    )
    .bind(district)
    .bind(entries.iter().map(|e| community_key(&e.0)).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.1.clone()).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(r.rows_affected())
}

/// Entries shipped with the project, for communities nobody has set or taught yet.
pub async fn seed_communities(
    c: &mut PgConnection,
    district: &str,
    entries: &[(String, String)],
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into community_directory (district, community, street, source)
         select $1, k, s, 'shipped' from unnest($2::text[], $3::text[]) as u(k, s)
         on conflict do nothing",
    )
    .bind(district)
    .bind(
        entries
            .iter()
            .map(|e| community_key(&e.0))
            .collect::<Vec<_>>(),
    )
    .bind(entries.iter().map(|e| e.1.clone()).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DirectoryEntry {
    pub community: String,
    pub street: String,
    /// shipped, import or learnt
    pub source: String,
    pub updated_at: DateTime<Utc>,
}

pub async fn communities(
    c: &mut PgConnection,
    district: &str,
) -> sqlx::Result<Vec<DirectoryEntry>> {
    sqlx::query_as(
        "select community, street, source, updated_at from community_directory where district = $1 order by community",
    )
    .bind(district)
    .fetch_all(c)
    .await
}

/// Dispatches, as they happen (the first of a complaint and every re-dispatch).
pub async fn record_dispatches(
    c: &mut PgConnection,
    rows: &[(Uuid, &Dispatched)],
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into dispatches (event_id, complaint_id, district, month, received_at, dispatched_at, street, routed_by, redispatch)
         select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::text[], $9::bool[])
         on conflict do nothing",
    )
    .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1.complaint_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1.district.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| crate::domain::month_of(r.1.dispatched_at)).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1.received_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1.dispatched_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1.street.clone()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.1.routed_by.unwrap_or(RoutedBy::Operator).as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.1.redispatch).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(())
}

/// 退单 of the complaint's latest dispatch. A call routed wrong (`not_our_area`, routed by its point
/// or its community) unteaches what routed it.
pub async fn record_return(
    c: &mut PgConnection,
    complaint_id: Uuid,
    street: &str,
    reason: ReturnReason,
) -> sqlx::Result<()> {
    let routed: Option<(String, String, Uuid, String)> = sqlx::query_as(
        "update dispatches d set returned = true, reason_code = $2
         from complaints c
         where d.event_id = (select event_id from dispatches where complaint_id = $1 order by dispatched_at desc limit 1)
           and c.complaint_id = d.complaint_id
         returning d.routed_by, d.district, c.point_id, coalesce(c.point->>'community', '')",
    )
    .bind(complaint_id)
    .bind(reason.as_str())
    .fetch_optional(&mut *c)
    .await?;
    let Some((routed_by, district, point_id, community)) = routed else {
        return Ok(());
    };
    if reason != ReturnReason::NotOurArea || routed_by == RoutedBy::Operator.as_str() {
        return Ok(());
    }
    sqlx::query("delete from point_streets where point_id = $1 and street = $2")
        .bind(point_id)
        .bind(street)
        .execute(&mut *c)
        .await?;
    sqlx::query(
        "delete from community_directory where district = $1 and community = $2 and street = $3",
    )
    .bind(&district)
    .bind(community_key(&community))
    .bind(street)
    .execute(c)
    .await?;
    Ok(())
}

/// One month's dispatch metrics (CONTRACT §11).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DispatchMetrics {
    pub district: String,
    pub month: String,
    pub dispatched: i64,
    pub auto_routed: i64,
    pub returned: i64,
    pub returned_auto_routed: i64,
    /// 1 − returned / dispatched; null without dispatches.
    pub accuracy: Option<f64>,
    /// The same for the calls that routed themselves.
    pub auto_accuracy: Option<f64>,
    /// From receipt to the first dispatch.
    pub median_seconds_to_dispatch: Option<f64>,
    #[schema(value_type = Object)]
    pub by_reason: serde_json::Map<String, serde_json::Value>,
}

pub async fn dispatch_metrics(
    c: &mut PgConnection,
    district: &str,
    month: &str,
) -> sqlx::Result<DispatchMetrics> {
    let (dispatched, auto_routed, returned, returned_auto, median): (i64, i64, i64, i64, Option<f64>) =
        sqlx::query_as(
            "select count(*),
                    count(*) filter (where routed_by <> 'operator'),
                    count(*) filter (where returned),
                    count(*) filter (where returned and routed_by <> 'operator'),
                    (percentile_cont(0.5) within group (order by extract(epoch from dispatched_at - received_at))
                        filter (where not redispatch))::float8
             from dispatches where district = $1 and month = $2",
        )
        .bind(district)
        .bind(month)
        .fetch_one(&mut *c)
        .await?;
    let reasons: Vec<(String, i64)> = sqlx::query_as(
        "select reason_code, count(*) from dispatches where district = $1 and month = $2 and returned
         group by reason_code",
    )
    .bind(district)
    .bind(month)
    .fetch_all(c)
    .await?;
    let mut by_reason = serde_json::Map::new();
    for r in ReturnReason::ALL {
        by_reason.insert(r.as_str().into(), 0.into());
    }
    for (code, n) in reasons {
        by_reason.insert(code, n.into());
    }
    let rate = |bad: i64, all: i64| (all > 0).then(|| 1.0 - bad as f64 / all as f64);
    Ok(DispatchMetrics {
        district: district.into(),
        month: month.into(),
        dispatched,
        auto_routed,
        returned,
        returned_auto_routed: returned_auto,
        accuracy: rate(returned, dispatched),
        auto_accuracy: rate(returned_auto, auto_routed),
        median_seconds_to_dispatch: median,
        by_reason,
    })
}
