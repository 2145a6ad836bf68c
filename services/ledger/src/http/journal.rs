//! 台账流水: the journal as JSON pages, CSV or an Excel workbook.

use super::*;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EntriesQuery {
    pub(super) district: Option<String>,
    pub(super) street: Option<String>,
    pub(super) after: Option<i64>,
    pub(super) limit: Option<i64>,
    pub(super) format: Option<String>,
}

/// 台账流水: registrations and write-offs in the order they happened, as JSON or CSV.
#[utoipa::path(get, path = "/v1/ledger/entries", tag = "ledger", security(("bearer" = [])),
    params(EntriesQuery),
    responses(
        (status = 200, description = "the journal (台账流水): a JSON page, or CSV (UTF-8 with BOM) or .xlsx by `format` or Accept", body = JournalPage),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
pub(super) async fn entries(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    QueryParams(q): QueryParams<EntriesQuery>,
) -> Result<Response, ApiError> {
    let district = readable_district(&s, &caller, q.district)?;
    let street = match caller.street_scope("read", q.street)? {
        Some(st) if caller.role != Role::Street && s.orgs.street(&district, &st).is_none() => {
            return Err(ApiError::invalid_field(
                "street",
                format!("{st:?} is not a street or township of {district}"),
            ))
        }
        st => st,
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or("");
    let wants_xlsx = q.format.as_deref() == Some("xlsx") || accept.contains("spreadsheetml");
    // A workbook is the whole journal (up to a sheet's worth); JSON and CSV page by `limit`.
    if q.limit.is_some_and(|l| l < 1) {
        return Err(ApiError::invalid_field(
            "limit",
            "must be at least 1 (it is capped at 1000)",
        ));
    }
    let limit = match (wants_xlsx, q.limit) {
        (true, None) => 1_000_000,
        (true, Some(l)) => l.clamp(1, 1_000_000),
        (false, l) => l.unwrap_or(100).clamp(1, 1000),
    };
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid_field("after", "must not be negative"));
    }
    let rows = store::journal_after(
        &mut *s.pool.acquire().await?,
        Some(&district),
        street.as_deref(),
        after,
        limit,
    )
    .await?;
    if wants_xlsx {
        let names: std::collections::HashMap<&str, &str> = s
            .orgs
            .district(&district)
            .map(|d| {
                d.streets
                    .iter()
                    .map(|st| (st.code.as_str(), st.name.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let bytes = crate::export::journal_xlsx(&rows, &names)
            .map_err(|e| anyhow::anyhow!("cannot write the workbook: {e}"))?;
        return Ok((
            [
                (
                    header::CONTENT_TYPE,
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                ),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"ledger-journal.xlsx\"",
                ),
            ],
            bytes,
        )
            .into_response());
    }
    let wants_csv = q.format.as_deref() == Some("csv") || accept.contains("text/csv");
    if wants_csv {
        let out = crate::export::journal_csv(&rows);
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response());
    }
    let next_after = if rows.len() as i64 == limit {
        rows.last().map(|r| r.position)
    } else {
        None
    };
    let entries = rows.into_iter().map(JournalEntry::from).collect();
    Ok(Json(JournalPage {
        entries,
        next_after,
    })
    .into_response())
}

/// A page of the journal, in log order; pass `next_after` as `after` for the next.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct JournalPage {
    entries: Vec<JournalEntry>,
    next_after: Option<i64>,
}

/// One line of the journal: a registration (上账, `kind` `registration`) carries `complaint_id`
/// (null for an item not from a complaint); a write-off (销账) carries `closure_id` (null for a
/// returned complaint) and `write_off_kind`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct JournalEntry {
    position: i64,
    kind: String,
    item_id: Uuid,
    district: String,
    street: String,
    category: String,
    point_id: Uuid,
    at: chrono::DateTime<Utc>,
    actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    complaint_id: Option<Option<Uuid>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    closure_id: Option<Option<Uuid>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    write_off_kind: Option<Option<String>>,
}

impl From<store::JournalRow> for JournalEntry {
    fn from(r: store::JournalRow) -> Self {
        let registration = r.kind == store::JOURNAL_REGISTRATION;
        JournalEntry {
            position: r.position,
            kind: r.kind,
            item_id: r.item_id,
            district: r.district,
            street: r.street,
            category: r.category,
            point_id: r.point_id,
            at: r.at,
            actor: r.actor,
            complaint_id: registration.then_some(r.complaint_id),
            closure_id: (!registration).then_some(r.closure_id),
            write_off_kind: (!registration).then_some(r.write_off_kind),
        }
    }
}
