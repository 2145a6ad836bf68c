//! Points (点位) and the map (CONTRACT §11): the points as GeoJSON, a point's file, the hot spots
//! of a window as H3 cells, and the map's own files (Leaflet is bundled: no internet needed).

use super::*;
use crate::points::{self, PointFilter};

/// GeoJSON's media type (RFC 7946).
const GEO_JSON: &str = "application/geo+json";

fn geo_json(v: Value) -> Response {
    ([(header::CONTENT_TYPE, GEO_JSON)], Json(v)).into_response()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PointsQuery {
    district: Option<String>,
    street: Option<String>,
    /// `open` (default) or `all`
    status: Option<String>,
    /// `recent` (default) or `rebounds` (防止反弹: most rebounds, then most items, in the last `days`)
    order: Option<String>,
    /// The window of `order=rebounds` (default 365).
    days: Option<i64>,
    /// At most this many (default 1000, at most 10000).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/ledger/points", tag = "points", security(("bearer" = [])),
    params(PointsQuery),
    responses(
        (status = 200, description = "a GeoJSON FeatureCollection of points (longitude first; geometry null without a position)", content_type = "application/geo+json"),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// The points of a district (a street: its own), with their counts.
pub(super) async fn list_points(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<PointsQuery>,
) -> Result<Response, ApiError> {
    let district = readable_district(&s, &caller, q.district)?;
    let street = caller.street_scope("list the points of", q.street)?;
    let open_only = match q.status.as_deref().filter(|x| !x.is_empty()) {
        None | Some("open") => true,
        Some("all") => false,
        Some(_) => return Err(ApiError::invalid_field("status", "must be open or all")),
    };
    let by_rebounds = match q.order.as_deref().filter(|x| !x.is_empty()) {
        None | Some("recent") => false,
        Some("rebounds") => true,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "order",
                "must be recent or rebounds",
            ))
        }
    };
    let days = q.days.unwrap_or(365);
    if !(1..=3650).contains(&days) {
        return Err(ApiError::invalid_field("days", "must be 1 to 3650"));
    }
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be 1 to 10000"));
    }
    let rows = points::points(
        &mut *s.pool.acquire().await?,
        &PointFilter {
            district,
            street,
            // The rebound ranking looks at every point of the window, open or not.
            open_only: open_only && !by_rebounds,
            by_rebounds,
            days,
            limit,
        },
    )
    .await?;
    let body = serde_json::to_vec(&points::collection(&rows))
        .map_err(|e| anyhow::anyhow!("points do not serialise: {e}"))?;
    Ok(([(header::CONTENT_TYPE, GEO_JSON)], body).into_response())
}

#[utoipa::path(get, path = "/v1/ledger/points/{point_id}", tag = "points", security(("bearer" = [])),
    params(("point_id" = Uuid, Path, description = "the point's id")),
    responses(
        (status = 200, description = "the point's file: its counts, position and every item it had, oldest first", body = Object),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no item was ever at that point", body = qingling_shared::openapi::Problem)
    ))]
/// 一点一档: a point's file.
pub(super) async fn point_file(
    State(s): State<AppState>,
    caller: Caller,
    PathId(point_id): PathId,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Street, Role::Reviewer, Role::District, Role::Operator])?;
    let mut c = s.pool.acquire().await?;
    let p = points::point(&mut c, point_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no point {point_id}")))?;
    caller.ensure_covers(&p.district, &p.street)?;
    let items = points::point_items(&mut c, point_id).await?;
    let mut file = points::properties(&p);
    file["location"] = p.location.clone().unwrap_or(Value::Null);
    file["items"] = json!(items);
    Ok(Json(file))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HotspotsQuery {
    district: Option<String>,
    /// The window (default 90 days).
    days: Option<i64>,
    /// H3 resolution, 5–10 (default 8: cells of about 0.7 km²).
    resolution: Option<u8>,
}

#[utoipa::path(get, path = "/v1/ledger/hotspots", tag = "points", security(("bearer" = [])),
    params(HotspotsQuery),
    responses(
        (status = 200, description = "a GeoJSON FeatureCollection of H3 cells (counter-clockwise rings) with their counts, most registrations first", content_type = "application/geo+json"),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// Where the window's registrations are: hexagonal cells with counts.
pub(super) async fn hotspots(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<HotspotsQuery>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::District, Role::Reviewer, Role::Operator])?;
    let district = readable_district(&s, &caller, q.district)?;
    let days = q.days.unwrap_or(90);
    if !(1..=3650).contains(&days) {
        return Err(ApiError::invalid_field("days", "must be 1 to 3650"));
    }
    let resolution = q
        .resolution
        .unwrap_or(8)
        .clamp(0, 15)
        .try_into()
        .ok()
        .filter(|_| (5..=10).contains(&q.resolution.unwrap_or(8)))
        .ok_or_else(|| ApiError::invalid_field("resolution", "must be 5 to 10"))?;
    let rows =
        points::located_registrations(&mut *s.pool.acquire().await?, &district, days).await?;
    let cells = points::hotspots(&rows, resolution);
    Ok(geo_json(json!({
        "type": "FeatureCollection",
        "features": cells.iter().map(|(c, n)| points::cell_feature(*c, n)).collect::<Vec<_>>(),
    })))
}

/// The map's settings: a tile server if the deployment has one, and the district's box.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MapConfig {
    /// `QINGLING_MAP_TILES` (`https://…/{z}/{x}/{y}.png`); none: a plain background, offline.
    tiles: Option<String>,
    attribution: Option<String>,
    /// `[min_long, min_lat, max_long, max_lat]`
    bbox: Option<[f64; 4]>,
}

/// The tile server's origin, for the dashboard's page policy (images from it).
pub(super) fn tile_origin() -> Option<String> {
    let tiles = std::env::var("QINGLING_MAP_TILES").ok()?;
    let (scheme, rest) = tiles.split_once("://")?;
    let host = rest.split('/').next()?;
    // A subdomain placeholder (`{s}.tile…`) stands for any subdomain.
    Some(format!("{scheme}://{}", host.replace("{s}", "*")))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct MapConfigQuery {
    district: Option<String>,
}

#[utoipa::path(get, path = "/map-config.json", tag = "points",
    params(MapConfigQuery),
    responses((status = 200, description = "the map's tile server (if any) and the district's box", body = MapConfig)))]
pub(super) async fn map_config(
    State(s): State<AppState>,
    QueryParams(q): QueryParams<MapConfigQuery>,
) -> Json<MapConfig> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    let district = q.district.unwrap_or_else(|| "tongzhou".into());
    Json(MapConfig {
        tiles: var("QINGLING_MAP_TILES"),
        attribution: var("QINGLING_MAP_ATTRIBUTION"),
        bbox: s.orgs.district(&district).and_then(|d| d.bbox),
    })
}

fn script(body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        body,
    )
        .into_response()
}

#[utoipa::path(get, path = "/map.js", tag = "points",
    responses((status = 200, description = "the dashboard's map", content_type = "text/javascript")))]
pub(super) async fn map_js() -> Response {
    script(include_str!("../../static/map.js"))
}

#[utoipa::path(get, path = "/vendor/leaflet.js", tag = "points",
    responses((status = 200, description = "Leaflet (BSD-2-Clause), bundled", content_type = "text/javascript")))]
pub(super) async fn leaflet_js() -> Response {
    script(include_str!("../../static/vendor/leaflet.js"))
}

#[utoipa::path(get, path = "/vendor/leaflet.css", tag = "points",
    responses((status = 200, description = "Leaflet's style sheet", content_type = "text/css")))]
pub(super) async fn leaflet_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/vendor/leaflet.css"),
    )
        .into_response()
}
