//! 响应率, 解决率, 满意率 per street and month.

use super::*;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct MetricsQuery {
    pub(super) district: Option<String>,
    pub(super) month: Option<String>,
}

#[utoipa::path(get, path = "/v1/metrics/streets", tag = "metrics", security(("bearer" = [])),
    params(MetricsQuery),
    responses(
        (status = 200, description = "响应率, 解决率, 满意率 per street for the month", body = StreetMetrics),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// Monthly 三率 per street, from the counters the event handlers keep.
pub(super) async fn street_metrics(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<MetricsQuery>,
) -> Result<Json<Value>, ApiError> {
    let (district, month) = district_and_month(&s, &caller, q)?;
    let d = s.orgs.district(&district).expect("checked");
    let counters = store::street_metrics(&mut *s.pool.acquire().await?, &district, &month).await?;
    let streets = d
        .streets
        .iter()
        .map(|st| {
            let c = counters
                .iter()
                .find(|(code, _)| *code == st.code)
                .map(|(_, c)| *c)
                .unwrap_or_default();
            let r = c.rates();
            StreetMonth {
                street: st.code.clone(),
                name: st.name.clone(),
                received: c.received,
                responded_on_time: c.responded_on_time,
                response_rate: r.response_rate,
                resolved: c.resolved,
                resolution_rate: r.resolution_rate,
                followed_up: c.followed_up,
                satisfaction_score: r.satisfaction_score,
                satisfaction_rate: r.satisfaction_rate,
                overdue: c.overdue,
                answers: Answers {
                    satisfied: c.satisfied,
                    basically_satisfied: c.basically_satisfied,
                    dissatisfied: c.dissatisfied,
                    unknown: c.unknown,
                },
            }
        })
        .collect();
    Ok(Json(
        serde_json::to_value(StreetMetrics {
            district,
            month,
            timezone: "Asia/Shanghai",
            streets,
        })
        .unwrap_or_default(),
    ))
}

/// The month's 三率 per street (CONTRACT §4), counted by the month (Beijing time) a complaint was
/// received, under the street that holds it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StreetMetrics {
    district: String,
    /// YYYY-MM
    month: String,
    timezone: &'static str,
    streets: Vec<StreetMonth>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StreetMonth {
    street: String,
    name: String,
    received: i64,
    responded_on_time: i64,
    /// 响应率: responded on time / received (null when none received).
    response_rate: Option<f64>,
    resolved: i64,
    /// 解决率: resolved / received.
    resolution_rate: Option<f64>,
    followed_up: i64,
    /// Mean of the known answers: 满意 5, 基本满意 3, 不满意 0.
    satisfaction_score: Option<f64>,
    /// 满意率: (satisfied + basically satisfied) / known answers.
    satisfaction_rate: Option<f64>,
    overdue: i64,
    answers: Answers,
}

/// Follow-up (回访) answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Answers {
    satisfied: i64,
    basically_satisfied: i64,
    dissatisfied: i64,
    unknown: i64,
}

/// The district (asked, or the caller's own) and month (asked, or this one) of a metrics query.
fn district_and_month(
    s: &AppState,
    caller: &Caller,
    q: MetricsQuery,
) -> Result<(String, String), ApiError> {
    caller.require(&[Role::District, Role::Reviewer, Role::Operator])?;
    let district = q
        .district
        .filter(|d| !d.is_empty())
        .or_else(|| (caller.org != "*").then(|| caller.org.clone()));
    let district = district.ok_or_else(|| ApiError::invalid_field("district", "is required"))?;
    s.orgs.district(&district).ok_or_else(|| {
        ApiError::invalid_field("district", format!("unknown district {district:?}"))
    })?;
    if !caller.covers_district(&district) {
        return Err(ApiError::Forbidden(format!(
            "{} {} may not read district {district}",
            caller.role.as_str(),
            caller.org
        )));
    }
    let month = q
        .month
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| domain::month_of(Utc::now()));
    let valid = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").is_ok()
        && month.len() == 7;
    if !valid {
        return Err(ApiError::invalid_field(
            "month",
            "must be a month like 2026-11",
        ));
    }
    Ok((district, month))
}

#[utoipa::path(get, path = "/v1/metrics/dispatch", tag = "metrics", security(("bearer" = [])),
    params(MetricsQuery),
    responses(
        (status = 200, description = "dispatches, calls routed by themselves, returns and accuracy for the month", body = store::routing::DispatchMetrics),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// 派单准确率: how many dispatches came back, overall and for calls that routed themselves, why,
/// and how long calls waited for their first dispatch (CONTRACT §11).
pub(super) async fn dispatch_metrics(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<MetricsQuery>,
) -> Result<Json<store::routing::DispatchMetrics>, ApiError> {
    let (district, month) = district_and_month(&s, &caller, q)?;
    Ok(Json(
        store::routing::dispatch_metrics(&mut *s.pool.acquire().await?, &district, &month).await?,
    ))
}
