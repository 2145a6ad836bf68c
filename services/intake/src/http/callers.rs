//! 先行联系: a street that must call the citizen back reveals the number, deliberately and on the
//! record; the district sees who revealed what.

use super::*;

/// The caller, in full.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RevealedCaller {
    name: Option<String>,
    phone: Option<String>,
}

#[utoipa::path(post, path = "/v1/complaints/{id}/caller", tag = "complaints", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "complaint id")),
    responses(
        (status = 200, description = "the caller's name and number; the reveal is recorded", body = RevealedCaller),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such complaint, or it has no caller", body = qingling_shared::openapi::Problem),
        (status = 409, description = "the street no longer holds the complaint", body = qingling_shared::openapi::Problem)
    ))]
/// Reveals the caller to the street the complaint is dispatched to, and records who did and when.
pub(super) async fn reveal_caller(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<RevealedCaller>, ApiError> {
    caller.require(&[Role::Street])?;
    let row = append(&s, &caller, id, |row| {
        if row.caller_name.is_none() && row.caller_phone.is_none() {
            return Err(ApiError::NotFound(format!("complaint {id} has no caller")));
        }
        if status_of(row) == Status::Returned {
            return Err(ApiError::conflict(
                "the complaint was returned: the street no longer holds it",
            ));
        }
        Ok(vec![ComplaintEvent::CallerRevealed {
            complaint_id: id,
            street: row.street.clone(),
        }])
    })
    .await?;
    Ok(Json(RevealedCaller {
        name: row.caller_name,
        phone: row.caller_phone,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RevealsQuery {
    district: Option<String>,
    /// `YYYY-MM` (Asia/Shanghai); this month by default.
    month: Option<String>,
}

/// The reveals of a district's month.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Reveals {
    district: String,
    month: String,
    reveals: Vec<store::Reveal>,
}

#[utoipa::path(get, path = "/v1/caller-reveals", tag = "complaints", security(("bearer" = [])),
    params(RevealsQuery),
    responses(
        (status = 200, description = "who revealed which caller, and when", body = Reveals),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// For the district office: every reveal of a caller's number in a month.
pub(super) async fn caller_reveals(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<RevealsQuery>,
) -> Result<Json<Reveals>, ApiError> {
    caller.require(&[Role::District, Role::Reviewer])?;
    let district = q
        .district
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| caller.org.clone());
    if s.orgs.district(&district).is_none() {
        return Err(ApiError::invalid_field(
            "district",
            format!("unknown district {district:?}"),
        ));
    }
    if !caller.covers_district(&district) {
        return Err(ApiError::Forbidden(format!(
            "{} {} may not read district {district}",
            caller.role.as_str(),
            caller.org
        )));
    }
    let month = match q.month.filter(|m| !m.is_empty()) {
        Some(m) if chrono::NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d").is_ok() => m,
        Some(_) => return Err(ApiError::invalid_field("month", "must be YYYY-MM")),
        None => domain::month_of(Utc::now()),
    };
    let reveals = store::reveals(&mut *s.pool.acquire().await?, &district, &month).await?;
    Ok(Json(Reveals {
        district,
        month,
        reveals,
    }))
}
