//! 台账导入: items from a ledger the district kept before Qingling (Excel), one row per request,
//! registered with source `import`. A row's item id is derived from the row itself (district,
//! point, category, registered date), so importing the same file twice registers nothing new.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{NaiveDate, Utc};
use qingling_shared::http::JsonBody;
use qingling_shared::store::{self as events, StoreError};
use qingling_shared::{ApiError, Caller, EventMeta, FieldError, Role};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{self, CommandError};
use crate::domain::{ItemEvent, Registered};
use crate::http::AppState;
use crate::store;

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
pub async fn import_item(
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
    let mut part = |name: &str, v: Option<String>| {
        let v = v.map(|v| v.trim().to_string()).unwrap_or_default();
        if v.is_empty() || v.chars().count() > 200 {
            errors.push(FieldError::new(
                name,
                "is required (at most 200 characters)",
            ));
        }
        v
    };
    let (community, building, basement) = (
        part("community", row.community),
        part("building", row.building),
        part("basement", row.basement),
    );
    let registered_on = match row.registered_on.as_deref().map(str::trim) {
        Some(d) => match NaiveDate::parse_from_str(d, "%Y-%m-%d") {
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
    if let Some(open) = store::open_item_at(&mut tx, point_id, &category).await? {
        return Err(ApiError::Conflict {
            detail: format!("point {point_id} already has an open {category} item"),
            extra: Some(json!({"item_id": open})),
        });
    }
    let now = Utc::now();
    let within = |d: std::time::Duration| now + chrono::Duration::from_std(d).unwrap_or_default();
    let events = vec![ItemEvent::ItemRegistered(Registered {
        item_id,
        district,
        street,
        category: category.clone(),
        point_id,
        point: json!({"community": community, "building": building, "basement": basement,
                      "address": row.address, "rooms": row.rooms}),
        source: "import".into(),
        complaint_id: None,
        urgency: "normal".into(),
        description: format!("台账导入,原登记日期 {registered_on}"),
        respond_by: Some(within(s.limits.respond_within)),
        resolve_by: Some(within(s.limits.resolve_within)),
        rebound_of: None,
    })];
    let meta = EventMeta::from_request(&caller.sub, Uuid::now_v7());
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
