//! The community directory that routes calls (CONTRACT §11): read it, and set entries by import.

use super::*;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DirectoryQuery {
    district: Option<String>,
}

/// The directory of a district.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Directory {
    district: String,
    communities: Vec<store::routing::DirectoryEntry>,
}

/// Entries to set: each community goes to its street.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct DirectoryImport {
    district: Option<String>,
    communities: Option<Vec<DirectoryImportEntry>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct DirectoryImportEntry {
    community: Option<String>,
    street: Option<String>,
}

fn own_district(caller: &Caller, asked: Option<String>) -> Result<String, ApiError> {
    let district = asked
        .filter(|d| !d.is_empty())
        .or_else(|| (caller.org != "*").then(|| caller.org.clone()))
        .ok_or_else(|| ApiError::invalid_field("district", "is required"))?;
    if !caller.covers_district(&district) {
        return Err(ApiError::Forbidden(format!(
            "{} {} may not use the directory of {district}",
            caller.role.as_str(),
            caller.org
        )));
    }
    Ok(district)
}

#[utoipa::path(get, path = "/v1/communities", tag = "directory", security(("bearer" = [])),
    params(DirectoryQuery),
    responses(
        (status = 200, description = "community → street, with where each entry came from", body = Directory),
        qingling_shared::openapi::AuthRefusals
    ))]
/// The community directory calls are routed by.
pub(super) async fn communities(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<DirectoryQuery>,
) -> Result<Json<Directory>, ApiError> {
    caller.require(&[Role::Operator, Role::District, Role::Reviewer])?;
    let district = own_district(&caller, q.district)?;
    let communities = store::routing::communities(&mut *s.pool.acquire().await?, &district).await?;
    Ok(Json(Directory {
        district,
        communities,
    }))
}

#[utoipa::path(post, path = "/v1/communities", tag = "directory", security(("bearer" = [])),
    request_body = DirectoryImport,
    responses(
        (status = 200, description = "the entries are set (an imported entry wins over a learnt one)", body = Object),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "an unknown street or an empty community", body = qingling_shared::openapi::Problem)
    ))]
/// The district sets entries of its directory (all or none).
pub(super) async fn import_communities(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<DirectoryImport>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::District, Role::Operator])?;
    let district = own_district(&caller, body.district)?;
    let entries = body
        .communities
        .ok_or_else(|| ApiError::invalid_field("communities", "is required"))?;
    if entries.len() > 10_000 {
        return Err(ApiError::invalid_field(
            "communities",
            "at most 10,000 at once",
        ));
    }
    let mut errors = vec![];
    let mut rows = vec![];
    for (i, e) in entries.into_iter().enumerate() {
        let community = e
            .community
            .map(|c| qingling_shared::point::clean(&c).trim().to_string())
            .unwrap_or_default();
        let street = e.street.unwrap_or_default();
        if community.is_empty() || community.chars().count() > 200 {
            errors.push(qingling_shared::FieldError::new(
                format!("communities[{i}].community"),
                "is required (at most 200 characters)",
            ));
        }
        if s.orgs.street(&district, &street).is_none() {
            errors.push(qingling_shared::FieldError::new(
                format!("communities[{i}].street"),
                format!("{street:?} is not a street or township of {district}"),
            ));
        }
        rows.push((community, street));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let n =
        store::routing::import_communities(&mut *s.pool.acquire().await?, &district, &rows).await?;
    Ok(Json(
        serde_json::json!({"district": district, "imported": n}),
    ))
}
