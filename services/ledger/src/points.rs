//! Points (点位) as the ledger knows them (CONTRACT §11): each point's counts, its file, and the
//! hot spots of a window as H3 cells. Computed from the items table when asked (no projection of
//! its own, so nothing more is written per event); GeoJSON per RFC 7946, longitude first.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

/// One point and its counts.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct PointRow {
    pub point_id: Uuid,
    pub district: String,
    /// The street of its latest item.
    pub street: String,
    /// The latest item's point (address parts, perhaps a location).
    #[serde(skip)]
    pub point: Value,
    /// The latest position given.
    #[serde(skip)]
    pub location: Option<Value>,
    pub open_items: i64,
    pub items_total: i64,
    pub complaints_total: i64,
    pub rebounds: i64,
    pub overdue: bool,
    pub last_registered_at: DateTime<Utc>,
    pub rooms_cleared: i64,
    pub partition_area_m2: f64,
}

/// Which points: of a district, maybe one street's, open ones or all, by recency or rebounds.
pub struct PointFilter {
    pub district: String,
    pub street: Option<String>,
    pub open_only: bool,
    /// Rank by rebounds (防止反弹), then by registrations, within the last `days`.
    pub by_rebounds: bool,
    pub days: i64,
    pub limit: i64,
}

const POINT_AGGREGATE: &str = "select point_id, district,
        (array_agg(street order by registered_at desc))[1] as street,
        (array_agg(point order by registered_at desc))[1] as point,
        (array_agg(point->'location' order by registered_at desc) filter (where point ? 'location'))[1] as location,
        count(*) filter (where status <> 'written_off') as open_items,
        count(*) as items_total,
        coalesce(sum(cardinality(complaint_ids)), 0)::bigint as complaints_total,
        count(rebound_of) as rebounds,
        coalesce(bool_or(status <> 'written_off' and cardinality(overdue) > 0), false) as overdue,
        max(registered_at) as last_registered_at,
        coalesce(sum(rooms_cleared) filter (where status = 'written_off' and write_off_kind = 'rectified'), 0)::bigint as rooms_cleared,
        coalesce(sum(partition_area_m2) filter (where status = 'written_off' and write_off_kind = 'rectified'), 0)::float8 as partition_area_m2
    from items";

pub async fn points(c: &mut PgConnection, f: &PointFilter) -> sqlx::Result<Vec<PointRow>> {
    let sql = format!(
        "select * from ({POINT_AGGREGATE} where district = $1 group by point_id, district) p
         where ($2::text is null or p.street = $2)
           and (not $3 or p.open_items > 0)
           and (not $4 or p.last_registered_at >= now() - make_interval(days => $5::int))
         order by case when $4 then p.rebounds end desc nulls last,
                  case when $4 then p.items_total end desc nulls last,
                  p.last_registered_at desc, p.point_id
         limit $6"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&f.district)
        .bind(&f.street)
        .bind(f.open_only)
        .bind(f.by_rebounds)
        .bind(f.days as i32)
        .bind(f.limit)
        .fetch_all(c)
        .await
}

pub async fn point(c: &mut PgConnection, point_id: Uuid) -> sqlx::Result<Option<PointRow>> {
    let sql = format!("{POINT_AGGREGATE} where point_id = $1 group by point_id, district");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(point_id)
        .fetch_optional(c)
        .await
}

/// An item in a point's file.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct PointItem {
    pub item_id: Uuid,
    pub category: String,
    pub status: String,
    pub street: String,
    pub registered_at: DateTime<Utc>,
    pub written_off_at: Option<DateTime<Utc>>,
    pub write_off_kind: Option<String>,
    pub complaint_ids: Vec<Uuid>,
    pub rebound_of: Option<Uuid>,
    pub rooms_cleared: Option<i32>,
    pub partition_area_m2: Option<f64>,
}

pub async fn point_items(c: &mut PgConnection, point_id: Uuid) -> sqlx::Result<Vec<PointItem>> {
    sqlx::query_as(
        "select item_id, category, status, street, registered_at, written_off_at, write_off_kind, complaint_ids,
                rebound_of, rooms_cleared, partition_area_m2
         from items where point_id = $1 order by registered_at, item_id",
    )
    .bind(point_id)
    .fetch_all(c)
    .await
}

/// `[long, lat]` of a stored location, if it is one.
fn position(location: Option<&Value>) -> Option<(f64, f64)> {
    let l = location?;
    Some((l.get("long")?.as_f64()?, l.get("lat")?.as_f64()?))
}

/// The properties a point shows on the map and in its file.
pub fn properties(p: &PointRow) -> Value {
    let part = |k: &str| p.point.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "point_id": p.point_id, "district": p.district, "street": p.street,
        "community": part("community"), "building": part("building"), "basement": part("basement"),
        "address": part("address"),
        "open_items": p.open_items, "items_total": p.items_total, "complaints_total": p.complaints_total,
        "rebounds": p.rebounds, "overdue": p.overdue, "last_registered_at": p.last_registered_at,
        "rooms_cleared": p.rooms_cleared, "partition_area_m2": p.partition_area_m2,
    })
}

/// A point as a GeoJSON Feature (RFC 7946): `[long, lat]`, or a null geometry without a position.
/// Serialised straight from the row (a district's thousands of points, without a JSON tree).
#[derive(Serialize)]
pub struct Feature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: Uuid,
    geometry: Option<PointGeometry>,
    properties: Properties<'a>,
}

#[derive(Serialize)]
pub struct PointGeometry {
    #[serde(rename = "type")]
    kind: &'static str,
    coordinates: [f64; 2],
}

#[derive(Serialize)]
pub struct Properties<'a> {
    point_id: Uuid,
    district: &'a str,
    street: &'a str,
    community: Option<&'a Value>,
    building: Option<&'a Value>,
    basement: Option<&'a Value>,
    address: Option<&'a Value>,
    open_items: i64,
    items_total: i64,
    complaints_total: i64,
    rebounds: i64,
    overdue: bool,
    last_registered_at: DateTime<Utc>,
    rooms_cleared: i64,
    partition_area_m2: f64,
}

pub fn feature(p: &PointRow) -> Feature<'_> {
    Feature {
        kind: "Feature",
        id: p.point_id,
        geometry: position(p.location.as_ref()).map(|(long, lat)| PointGeometry {
            kind: "Point",
            coordinates: [long, lat],
        }),
        properties: Properties {
            point_id: p.point_id,
            district: &p.district,
            street: &p.street,
            community: p.point.get("community"),
            building: p.point.get("building"),
            basement: p.point.get("basement"),
            address: p.point.get("address"),
            open_items: p.open_items,
            items_total: p.items_total,
            complaints_total: p.complaints_total,
            rebounds: p.rebounds,
            overdue: p.overdue,
            last_registered_at: p.last_registered_at,
            rooms_cleared: p.rooms_cleared,
            partition_area_m2: p.partition_area_m2,
        },
    }
}

/// A FeatureCollection of points.
#[derive(Serialize)]
pub struct Features<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    features: Vec<Feature<'a>>,
}

pub fn collection(rows: &[PointRow]) -> Features<'_> {
    Features {
        kind: "FeatureCollection",
        features: rows.iter().map(feature).collect(),
    }
}

/// What a hot-spot cell counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CellCounts {
    pub registrations: i64,
    pub open: i64,
    pub rebounds: i64,
    pub points: i64,
}

/// The registrations of the last `days` with a position: (point, location, open, rebound).
pub async fn located_registrations(
    c: &mut PgConnection,
    district: &str,
    days: i64,
) -> sqlx::Result<Vec<(Uuid, Value, bool, bool)>> {
    sqlx::query_as(
        "select point_id, point->'location', status <> 'written_off', rebound_of is not null
         from items
         where district = $1 and registered_at >= now() - make_interval(days => $2::int) and point ? 'location'",
    )
    .bind(district)
    .bind(days as i32)
    .fetch_all(c)
    .await
}

/// Registrations grouped into the H3 cells of `resolution`, most registrations first.
pub fn hotspots(
    rows: &[(Uuid, Value, bool, bool)],
    resolution: h3o::Resolution,
) -> Vec<(h3o::CellIndex, CellCounts)> {
    use std::collections::{HashMap, HashSet};
    let mut cells: HashMap<h3o::CellIndex, (CellCounts, HashSet<Uuid>)> = HashMap::new();
    for (point_id, location, open, rebound) in rows {
        let Some((long, lat)) = position(Some(location)) else {
            continue;
        };
        let Ok(ll) = h3o::LatLng::new(lat, long) else {
            continue;
        };
        let (counts, points) = cells.entry(ll.to_cell(resolution)).or_default();
        counts.registrations += 1;
        counts.open += i64::from(*open);
        counts.rebounds += i64::from(*rebound);
        points.insert(*point_id);
    }
    let mut out: Vec<_> = cells
        .into_iter()
        .map(|(cell, (mut counts, points))| {
            counts.points = points.len() as i64;
            (cell, counts)
        })
        .collect();
    out.sort_by(|a, b| {
        b.1.registrations
            .cmp(&a.1.registrations)
            .then(u64::from(a.0).cmp(&u64::from(b.0)))
    });
    out
}

/// A cell as a GeoJSON Polygon: one closed ring, counter-clockwise (RFC 7946 §3.1.6).
pub fn cell_feature(cell: h3o::CellIndex, counts: &CellCounts) -> Value {
    let mut ring: Vec<[f64; 2]> = cell.boundary().iter().map(|v| [v.lng(), v.lat()]).collect();
    if signed_area(&ring) < 0.0 {
        ring.reverse();
    }
    if let Some(first) = ring.first().copied() {
        ring.push(first);
    }
    json!({
        "type": "Feature", "id": cell.to_string(),
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"cell": cell.to_string(), "registrations": counts.registrations,
                       "open": counts.open, "rebounds": counts.rebounds, "points": counts.points},
    })
}

/// Twice the signed area of a ring in the (long, lat) plane: positive when counter-clockwise.
pub fn signed_area(ring: &[[f64; 2]]) -> f64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_closed_counter_clockwise_rings_around_their_registrations() {
        let res = h3o::Resolution::try_from(8).unwrap();
        let p = |n: u128, lat: f64, long: f64, open: bool, rebound: bool| {
            (
                Uuid::from_u128(n),
                json!({"lat": lat, "long": long}),
                open,
                rebound,
            )
        };
        let rows = vec![
            p(1, 39.9053, 116.6568, true, false),
            p(1, 39.9053, 116.6568, false, true),
            p(2, 39.90531, 116.65681, true, false),
            p(3, 39.80, 116.55, false, false),
            (Uuid::from_u128(4), json!({"lat": "x"}), true, false),
        ];
        let cells = hotspots(&rows, res);
        assert_eq!(cells.len(), 2);
        assert_eq!(
            cells[0].1,
            CellCounts {
                registrations: 3,
                open: 2,
                rebounds: 1,
                points: 2
            }
        );
        assert_eq!(cells[1].1.registrations, 1);
        for (cell, counts) in &cells {
            let f = cell_feature(*cell, counts);
            let ring: Vec<[f64; 2]> =
                serde_json::from_value(f["geometry"]["coordinates"][0].clone()).unwrap();
            assert!(ring.len() >= 7, "a hexagon, closed");
            assert_eq!(ring.first(), ring.last());
            assert!(
                signed_area(&ring[..ring.len() - 1]) > 0.0,
                "counter-clockwise"
            );
            // Longitude first: Tongzhou's longitudes are ~116, latitudes ~39.
            assert!(ring.iter().all(|[long, lat]| *long > 100.0 && *lat < 50.0));
        }
        // The registration's position lies inside its cell's box.
        let f = cell_feature(cells[0].0, &cells[0].1);
        let ring: Vec<[f64; 2]> =
            serde_json::from_value(f["geometry"]["coordinates"][0].clone()).unwrap();
        let (min_x, max_x) = ring
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p[0]), b.max(p[0])));
        assert!((min_x..=max_x).contains(&116.6568));
    }
}
