//! Items and the street's and reviewer's commands on them: read, list, 签收, 延期.

use super::*;

/// A page of items, oldest first; pass `next_cursor` as `cursor` for the next.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ItemPage {
    items: Vec<ItemRow>,
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/ledger/items/{id}", tag = "items", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "item id")),
    responses(
        (status = 200, description = "the item with its history", body = ItemDetail),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such item", body = qingling_shared::openapi::Problem)
    ))]
pub(super) async fn get_item(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let row = visible_item(&s, &caller, id).await?;
    Ok(Json(
        item_detail(&mut *s.pool.acquire().await?, &row).await?,
    ))
}

/// Runs a street's command on its item, retrying when it loses a race with another writer of the
/// same item (the domain then decides again on the fresh state).
pub(super) async fn item_command(
    s: &AppState,
    caller: &Caller,
    role: Role,
    id: Uuid,
    decide: impl Fn(&Item) -> Result<Vec<ItemEvent>, DomainError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[role])?;
    visible_item(s, caller, id).await?;
    let meta = EventMeta::for_caller(caller, Uuid::now_v7());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = s.pool.begin().await?;
        match app::execute(&mut tx, id, &meta, &decide).await {
            Ok(_) => {
                tx.commit().await?;
                s.relay_wake.notify_one();
                break;
            }
            Err(CommandError::Store(StoreError::Conflict { .. })) if attempt < 5 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut c = s.pool.acquire().await?;
    let row = store::get_item(&mut c, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no item {id}")))?;
    Ok(Json(item_detail(&mut c, &row).await?))
}

#[utoipa::path(post, path = "/v1/ledger/items/{id}/acknowledge", tag = "items", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "item id")),
    responses(
        (status = 200, description = "acknowledged (签收)", body = ItemDetail),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such item", body = qingling_shared::openapi::Problem),
        (status = 409, description = "not allowed in the item's current state", body = qingling_shared::openapi::Problem)
    ))]
/// 签收.
pub(super) async fn acknowledge(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    item_command(&s, &caller, Role::Street, id, |i| i.acknowledge(Utc::now())).await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct ExtensionBody {
    pub(super) until: Option<chrono::DateTime<Utc>>,
    pub(super) reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/ledger/items/{id}/extension", tag = "items", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "item id")),
    request_body = ExtensionBody,
    responses(
        (status = 200, description = "extension requested", body = ItemDetail),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such item", body = qingling_shared::openapi::Problem),
        (status = 409, description = "not allowed in the item's current state", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// 延期申请: the street asks once, before resolve-by, for a later date.
pub(super) async fn request_extension(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<ExtensionBody>,
) -> Result<Json<Value>, ApiError> {
    // Microseconds, as stored: the deadline read back equals the one recorded.
    let until = body
        .until
        .ok_or_else(|| ApiError::invalid_field("until", "is required"))?
        .trunc_subsecs(6);
    let reason = body.reason.unwrap_or_default();
    item_command(&s, &caller, Role::Street, id, |i| {
        i.request_extension(until, &reason, Utc::now())
    })
    .await
}

#[utoipa::path(post, path = "/v1/ledger/items/{id}/extension/approve", tag = "items", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "item id")),
    responses(
        (status = 200, description = "extension approved; resolve-by moved", body = ItemDetail),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such item", body = qingling_shared::openapi::Problem),
        (status = 409, description = "not allowed in the item's current state", body = qingling_shared::openapi::Problem)
    ))]
pub(super) async fn approve_extension(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    item_command(&s, &caller, Role::Reviewer, id, |i| i.approve_extension()).await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct ReasonBody {
    pub(super) reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/ledger/items/{id}/extension/reject", tag = "items", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "item id")),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "extension rejected", body = ItemDetail),
        (status = 400, description = "malformed request", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such item", body = qingling_shared::openapi::Problem),
        (status = 409, description = "not allowed in the item's current state", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
pub(super) async fn reject_extension(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let reason = body.reason.unwrap_or_default();
    item_command(&s, &caller, Role::Reviewer, id, |i| {
        i.reject_extension(&reason)
    })
    .await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    pub(super) street: Option<String>,
    pub(super) status: Option<String>,
    pub(super) category: Option<String>,
    pub(super) limit: Option<i64>,
    pub(super) cursor: Option<String>,
    pub(super) overdue: Option<bool>,
    /// `pending`: open items awaiting a reviewer's word on an extension (延期申请).
    pub(super) extension: Option<String>,
}

#[utoipa::path(get, path = "/v1/ledger/items", tag = "items", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "a page of items", body = ItemPage),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
pub(super) async fn list_items(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<ItemPage>, ApiError> {
    caller.require(&[Role::Street, Role::Reviewer, Role::District, Role::Operator])?;
    let district = home_district(&s, &caller);
    let street = match caller.street_scope("list", q.street)? {
        Some(st) if caller.role == Role::Street => Some(st),
        Some(st) if s.orgs.district_of(&st).is_none() => {
            return Err(ApiError::invalid_field(
                "street",
                format!("unknown street {st:?}"),
            ))
        }
        Some(st) => {
            let covered = match &district {
                Some(d) => s.orgs.street(d, &st).is_some(),
                None => s.orgs.district_of(&st).is_some(),
            };
            if !covered {
                return Err(ApiError::Forbidden(format!(
                    "street {st} is not in your district"
                )));
            }
            Some(st)
        }
        None => None,
    };
    let extension = q.extension.filter(|x| !x.is_empty());
    if extension.as_deref().is_some_and(|e| e != "pending") {
        return Err(ApiError::invalid_field("extension", "must be pending"));
    }
    let status = q.status.filter(|x| !x.is_empty());
    if let Some(st) = &status {
        if !["open", "closure_pending", "written_off"].contains(&st.as_str()) {
            return Err(ApiError::invalid_field(
                "status",
                "must be open, closure_pending or written_off",
            ));
        }
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            "must be between 1 and 500",
        ));
    }
    let before = match q.cursor.filter(|x| !x.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse::<Uuid>()
                .map_err(|_| ApiError::BadRequest("cursor is not one this API gave out".into()))?,
        ),
    };
    let filter = ItemFilter {
        district,
        street,
        status,
        category: match q.category.filter(|x| !x.is_empty()) {
            Some(c) => {
                known_category(&s, &c)?;
                Some(c)
            }
            None => None,
        },
        before,
        overdue: q.overdue.unwrap_or(false),
        extension,
        limit,
    };
    let rows = store::list_items(&mut *s.pool.acquire().await?, &filter).await?;
    let next = if rows.len() as i64 == limit {
        rows.last().map(|r| r.item_id.to_string())
    } else {
        None
    };
    Ok(Json(ItemPage {
        items: rows,
        next_cursor: next,
    }))
}
