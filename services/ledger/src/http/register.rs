//! Items that do not come from a complaint: a street's own find (主动发现) and rows of a ledger
//! kept before Qingling (台账导入).

use super::*;
use crate::domain::{at_point, AtPoint, Source};
use qingling_events::intake::Urgency;

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct FindBody {
    pub(super) category: Option<String>,
    pub(super) point: Option<FindPoint>,
    pub(super) description: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct FindPoint {
    pub(super) community: Option<String>,
    pub(super) building: Option<String>,
    pub(super) basement: Option<String>,
    pub(super) address: Option<String>,
    /// WGS-84 position (CONTRACT §11).
    pub(super) location: Option<qingling_shared::point::LocationInput>,
}

#[utoipa::path(post, path = "/v1/ledger/items", tag = "items", security(("bearer" = [])),
    request_body = FindBody,
    responses(
        (status = 201, description = "registered and acknowledged", body = ItemDetail),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 409, description = "the point already has an open item of the category (`item_id` names it)", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// 主动发现: an item the street found itself. It is registered and, being the street's own find,
/// taken on (acknowledged) at once; the resolve limit runs from now.
pub(super) async fn inspection_find(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<FindBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(&[Role::Street])?;
    let district = s
        .orgs
        .district_of(&caller.org)
        .map(|d| d.code.clone())
        .ok_or_else(|| {
            ApiError::Forbidden(format!("{} is not a street of any district", caller.org))
        })?;
    let mut errors = vec![];
    let category = body.category.unwrap_or_default();
    if s.catalog.get(&category).is_none() {
        errors.push(FieldError::new(
            "category",
            format!("unknown category {category:?}"),
        ));
    }
    let point = body.point.unwrap_or(FindPoint {
        community: None,
        building: None,
        basement: None,
        address: None,
        location: None,
    });
    let (community, building, basement) = (
        point_part(&mut errors, "point.community", point.community),
        point_part(&mut errors, "point.building", point.building),
        point_part(&mut errors, "point.basement", point.basement),
    );
    let location = checked_location(&s, &district, "point.location", point.location, &mut errors);
    let description = body
        .description
        .unwrap_or_default()
        .trim()
        .chars()
        .take(2000)
        .collect::<String>();
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let point_id = qingling_shared::point::point_id(&district, &community, &building, &basement);
    let mut point_json = json!({"community": community, "building": building, "basement": basement, "address": point.address});
    if let Some(l) = location {
        point_json["location"] = json!(l);
    }
    let item_id = Uuid::now_v7();
    let now = Utc::now();
    let resolve_by = now
        + chrono::Duration::from_std(s.limits.resolve_within).unwrap_or(chrono::Duration::days(7));
    let meta = EventMeta::for_caller(&caller, Uuid::now_v7());
    let mut tx = s.pool.begin().await?;
    let existing = |id: Uuid| already_open(point_id, &category, id);
    let state = store::point_state(&mut tx, point_id, &category).await?;
    let rebound_of = match at_point(&state, Source::Inspection, now) {
        AtPoint::Open(open) => return Err(existing(open)),
        AtPoint::Register { rebound_of } => rebound_of,
    };
    let events = vec![
        ItemEvent::ItemRegistered(Registered {
            item_id,
            district,
            street: caller.org.clone(),
            category: category.clone(),
            point_id,
            point: point_json,
            source: Source::Inspection,
            complaint_id: None,
            urgency: Urgency::Normal,
            description,
            respond_by: None,
            resolve_by: Some(resolve_by),
            rebound_of,
        }),
        ItemEvent::ItemAcknowledged {
            item_id,
            street: caller.org.clone(),
        },
    ];
    match app::record(&mut tx, item_id, 0, &events, &meta).await {
        Ok(_) => {}
        // A racing registration at the same point won the unique index.
        Err(CommandError::Store(StoreError::Database(sqlx::Error::Database(e))))
            if e.is_unique_violation() =>
        {
            drop(tx);
            let open =
                store::open_item_at(&mut *s.pool.acquire().await?, point_id, &category).await?;
            return Err(open.map(existing).unwrap_or_else(|| {
                ApiError::conflict("a racing registration at this point; retry")
            }));
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    s.relay_wake.notify_one();
    let mut c = s.pool.acquire().await?;
    let row = store::get_item(&mut c, item_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("item vanished"))?;
    Ok((StatusCode::CREATED, Json(item_detail(&mut c, &row).await?)))
}

// ------------------------------------------------------------------------------------------------
// 台账导入: items from a ledger the district kept before Qingling (Excel), one row per request,
// registered with source `import`. A row's item id is derived from the row itself (district,
// point, category, registered date), so importing the same file twice registers nothing new.

/// Namespace of imported items' ids.
const IMPORT_NAMESPACE: Uuid = Uuid::from_u128(0x7169_6e67_6c69_6e67_2d69_6d70_6f72_7401);

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ImportRow {
    pub district: Option<String>,
    pub street: Option<String>,
    pub category: Option<String>,
    pub community: Option<String>,
    pub building: Option<String>,
    pub basement: Option<String>,
    pub address: Option<String>,
    pub rooms: Option<i64>,
    /// WGS-84 position, decimal degrees (both or neither).
    #[schema(value_type = Option<f64>)]
    pub lat: Option<Value>,
    #[schema(value_type = Option<f64>)]
    pub long: Option<Value>,
    /// The date the old ledger registered it (登记日期), `YYYY-MM-DD`.
    pub registered_on: Option<String>,
}

/// The answer to an import: the row's item, and whether this request registered it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Imported {
    item_id: Uuid,
    imported: bool,
}

/// `POST /v1/ledger/imports` (role reviewer of the district): 201 with the new item, 200 with the
/// item a previous import of the same row registered, 409 when the point already has another open
/// item of the category.
#[utoipa::path(post, path = "/v1/ledger/imports", tag = "items", security(("bearer" = [])),
    request_body = ImportRow,
    responses(
        (status = 201, description = "registered with source `import`", body = Imported),
        (status = 200, description = "this row was imported before: nothing new", body = Imported),
        qingling_shared::openapi::AuthRefusals,
        (status = 409, description = "the point already has another open item (`item_id`)", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
pub(super) async fn import_item(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(row): JsonBody<ImportRow>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(&[Role::Reviewer])?;
    let mut errors = vec![];
    let district = row.district.unwrap_or_else(|| caller.org.clone());
    let street = row.street.unwrap_or_default();
    if s.orgs.street(&district, &street).is_none() {
        errors.push(FieldError::new(
            "street",
            format!("{street:?} is not a street of {district}"),
        ));
    }
    let category = row
        .category
        .unwrap_or_else(|| "basement_illegal_residence".into());
    if s.catalog.get(&category).is_none() {
        errors.push(FieldError::new(
            "category",
            format!("unknown category {category:?}"),
        ));
    }
    let (community, building, basement) = (
        point_part(&mut errors, "community", row.community),
        point_part(&mut errors, "building", row.building),
        point_part(&mut errors, "basement", row.basement),
    );
    let registered_on = match row.registered_on.as_deref().map(str::trim) {
        Some(d) => match NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            // The old ledgers are this century's; a year such as -9999 is a typing slip.
            Ok(date) if date < NaiveDate::from_ymd_opt(2000, 1, 1).expect("a date") => {
                errors.push(FieldError::new("registered_on", "is before 2000"));
                None
            }
            Ok(date) if date <= Utc::now().date_naive() => Some(date),
            Ok(_) => {
                errors.push(FieldError::new("registered_on", "is in the future"));
                None
            }
            Err(_) => {
                errors.push(FieldError::new(
                    "registered_on",
                    "must be a date YYYY-MM-DD",
                ));
                None
            }
        },
        None => {
            errors.push(FieldError::new("registered_on", "is required"));
            None
        }
    };
    let location = match (row.lat.clone(), row.long.clone()) {
        (None, None) => None,
        (lat, long) => checked_location(
            &s,
            &district,
            "lat",
            Some(qingling_shared::point::LocationInput { lat, long }),
            &mut errors,
        ),
    };
    if row.rooms.is_some_and(|r| !(0..=10_000).contains(&r)) {
        errors.push(FieldError::new("rooms", "must be between 0 and 10000"));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    caller.ensure_covers(&district, &street)?;
    let registered_on = registered_on.expect("validated");
    let point_id = qingling_shared::point::point_id(&district, &community, &building, &basement);
    let item_id = Uuid::new_v5(
        &IMPORT_NAMESPACE,
        format!("{district}|{point_id}|{category}|{registered_on}").as_bytes(),
    );
    let mut tx = s.pool.begin().await?;
    let already = |tx_item: Uuid| {
        (
            StatusCode::OK,
            Json(
                serde_json::to_value(Imported {
                    item_id: tx_item,
                    imported: false,
                })
                .unwrap_or_default(),
            ),
        )
    };
    if events::stream_version(&mut tx, &app::stream_of(item_id)).await? > 0 {
        return Ok(already(item_id));
    }
    let now = Utc::now();
    let state = store::point_state(&mut tx, point_id, &category).await?;
    let rebound_of = match at_point(&state, Source::Import, now) {
        AtPoint::Open(open) => return Err(already_open(point_id, &category, open)),
        AtPoint::Register { rebound_of } => rebound_of,
    };
    let within = |d: std::time::Duration| now + chrono::Duration::from_std(d).unwrap_or_default();
    let events = vec![ItemEvent::ItemRegistered(Registered {
        item_id,
        district,
        street,
        category: category.clone(),
        point_id,
        point: {
            let mut p = json!({"community": community, "building": building, "basement": basement,
                      "address": row.address, "rooms": row.rooms});
            if let Some(l) = location {
                p["location"] = json!(l);
            }
            p
        },
        source: Source::Import,
        complaint_id: None,
        urgency: Urgency::Normal,
        description: format!("台账导入,原登记日期 {registered_on}"),
        respond_by: Some(within(s.limits.respond_within)),
        resolve_by: Some(within(s.limits.resolve_within)),
        rebound_of,
    })];
    let meta = EventMeta::for_caller(&caller, Uuid::now_v7());
    match app::record(&mut tx, item_id, 0, &events, &meta).await {
        Ok(_) => {}
        // The same row imported concurrently: the other request registered it.
        Err(CommandError::Store(StoreError::Conflict { .. })) => return Ok(already(item_id)),
        Err(CommandError::Store(StoreError::Database(sqlx::Error::Database(e))))
            if e.is_unique_violation() =>
        {
            return Err(ApiError::conflict(
                "a racing registration at this point; retry",
            ))
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    s.relay_wake.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::to_value(Imported {
                item_id,
                imported: true,
            })
            .unwrap_or_default(),
        ),
    ))
}

/// A position, checked against the district's box; an error goes on `field`.
fn checked_location(
    s: &AppState,
    district: &str,
    field: &str,
    input: Option<qingling_shared::point::LocationInput>,
    errors: &mut Vec<FieldError>,
) -> Option<qingling_shared::point::Location> {
    let bbox = s.orgs.district(district).and_then(|d| d.bbox);
    match input?.check(bbox) {
        Ok(l) => Some(l),
        Err(m) => {
            errors.push(FieldError::new(field, m));
            None
        }
    }
}

/// One part of a point's address (community, building, basement): required, at most 200
/// characters, trimmed.
fn point_part(errors: &mut Vec<FieldError>, field: &str, v: Option<String>) -> String {
    let v = v
        .map(|v| qingling_shared::point::clean(&v).trim().to_string())
        .unwrap_or_default();
    if v.is_empty() || v.chars().count() > 200 {
        errors.push(FieldError::new(
            field,
            "is required (at most 200 characters)",
        ));
    }
    v
}

/// 409 naming the open item that already holds the point's problem.
fn already_open(point_id: Uuid, category: &str, open: Uuid) -> ApiError {
    ApiError::Conflict {
        detail: format!("point {point_id} already has an open {category} item"),
        extra: Some(json!({"item_id": open})),
    }
}
