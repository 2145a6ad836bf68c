//! The evidence routes (CONTRACT §9): a street uploads a photo of the cleared basement; the
//! original is kept, content-addressed by SHA-256, and a write-off request cites it by id.

use axum::body::Body;
use axum::extract::{Multipart, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use qingling_events::closure::{evidence_stream, ClosureEvent, Uploaded};
use qingling_events::Event;
use qingling_shared::store::{self as events, StoreError};
use qingling_shared::{ApiError, Caller, EventMeta, Role};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AppState;
use crate::domain::evidence::{is_whole, max_bytes, sniff};
use crate::domain::KEPT_EVIDENCE_PATH;
use crate::{projector, store};

/// What an upload answers (CONTRACT §9).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Kept {
    evidence_id: String,
    sha256: String,
    bytes: i64,
    content_type: String,
    received_at: DateTime<Utc>,
    uri: String,
}

impl From<store::EvidenceRow> for Kept {
    fn from(r: store::EvidenceRow) -> Self {
        Kept {
            evidence_id: r.sha256.clone(),
            uri: format!("{KEPT_EVIDENCE_PATH}{}", r.sha256),
            sha256: r.sha256,
            bytes: r.bytes,
            content_type: r.content_type,
            received_at: r.received_at,
        }
    }
}

/// At most this many parts in one upload: a photo and four fields.
const MAX_PARTS: usize = 8;

/// The parts of an upload.
#[derive(Default)]
struct Upload {
    file: Option<Vec<u8>>,
    item_id: Option<Uuid>,
    taken_at: Option<DateTime<Utc>>,
    lat: Option<f64>,
    long: Option<f64>,
}

async fn read_upload(mut form: Multipart) -> Result<Upload, ApiError> {
    let too_large = || ApiError::PayloadTooLarge;
    let mut up = Upload::default();
    let mut parts = 0;
    while let Some(field) = form.next_field().await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::BadRequest(format!("the upload is not well-formed multipart: {e}"))
        }
    })? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_PARTS} parts: one photo and its fields"
            )));
        }
        let name = field.name().unwrap_or_default().to_string();
        let data = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::BadRequest(format!("the upload was cut short: {e}"))
            }
        })?;
        let text = || String::from_utf8_lossy(&data).trim().to_string();
        let invalid = |what: &str| ApiError::invalid_field(&name, what.to_string());
        match name.as_str() {
            "file" if up.file.is_some() => {
                return Err(ApiError::BadRequest(
                    "one photo per upload: a second `file` part".into(),
                ))
            }
            "file" => up.file = Some(data.to_vec()),
            "item_id" => up.item_id = Some(text().parse().map_err(|_| invalid("must be a UUID"))?),
            "taken_at" => {
                up.taken_at = Some(text().parse().map_err(|_| invalid("must be RFC 3339"))?)
            }
            "lat" => {
                let v: f64 = text().parse().map_err(|_| invalid("must be a number"))?;
                if !(-90.0..=90.0).contains(&v) {
                    return Err(invalid("must be between -90 and 90"));
                }
                up.lat = Some(v);
            }
            "long" => {
                let v: f64 = text().parse().map_err(|_| invalid("must be a number"))?;
                if !(-180.0..=180.0).contains(&v) {
                    return Err(invalid("must be between -180 and 180"));
                }
                up.long = Some(v);
            }
            _ => {}
        }
    }
    Ok(up)
}

#[utoipa::path(post, path = "/v1/evidence", tag = "evidence", security(("bearer" = [])),
    request_body(content_type = "multipart/form-data", description = "`file` (the photo), and optional `item_id`, `taken_at`, `lat`, `long`"),
    responses(
        (status = 201, description = "kept", body = Kept),
        (status = 200, description = "the same bytes were uploaded before", body = Kept),
        (status = 400, description = "no file, an empty or cut-short one, or too many parts", body = qingling_shared::openapi::Problem),
        qingling_shared::openapi::AuthRefusals,
        (status = 413, description = "larger than QINGLING_EVIDENCE_MAX_BYTES", body = qingling_shared::openapi::Problem),
        (status = 415, description = "not a JPEG, PNG or WebP image", body = qingling_shared::openapi::Problem),
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// A street uploads a photo of the cleared basement.
pub async fn upload(
    State(s): State<AppState>,
    caller: Caller,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(StatusCode, Json<Kept>), ApiError> {
    caller.require(&[Role::Street])?;
    let district = s
        .orgs
        .district_of(&caller.org)
        .map(|d| d.code.clone())
        .ok_or_else(|| {
            ApiError::Forbidden(format!("{} is not a street of any district", caller.org))
        })?;
    let form = form.map_err(|e| {
        ApiError::UnsupportedMediaType(format!("the upload must be multipart/form-data: {e}"))
    })?;
    let up = read_upload(form).await?;
    let file = up
        .file
        .ok_or_else(|| ApiError::BadRequest("a `file` part is required".into()))?;
    if file.is_empty() {
        return Err(ApiError::BadRequest("the `file` part is empty".into()));
    }
    if file.len() > max_bytes() {
        return Err(ApiError::PayloadTooLarge);
    }
    let content_type = sniff(&file).ok_or_else(|| {
        ApiError::UnsupportedMediaType("the file is not a JPEG, PNG or WebP image".into())
    })?;
    if !is_whole(content_type, &file) {
        return Err(ApiError::BadRequest(format!(
            "the {content_type} image is cut short"
        )));
    }
    let sha256 = hex::encode(Sha256::digest(&file));
    if let Some(known) = store::get_evidence(&mut *s.pool.acquire().await?, &sha256).await? {
        return Ok((StatusCode::OK, Json(known.into())));
    }
    s.blobs.put_outside(&sha256, &file).await?;
    let mut tx = s.pool.begin().await?;
    let event = ClosureEvent::EvidenceUploaded(Uploaded {
        sha256: sha256.clone(),
        bytes: file.len() as i64,
        content_type: content_type.to_string(),
        district,
        street: caller.org.clone(),
        item_id: up.item_id,
        taken_at: up.taken_at,
        lat: up.lat,
        long: up.long,
    });
    s.blobs.put_inside(&mut tx, &sha256, &file).await?;
    let meta = EventMeta::for_caller(&caller, Uuid::now_v7());
    match events::append(
        &mut tx,
        &evidence_stream(&sha256),
        0,
        &[event.to_new_event()],
        &meta,
    )
    .await
    {
        Ok(stored) => {
            for ev in &stored {
                projector::project(&mut tx, ev).await?;
            }
        }
        // The same photo, uploaded at the same moment by another request: that one kept it.
        Err(StoreError::Conflict { .. }) => {
            drop(tx);
            let known = store::get_evidence(&mut *s.pool.acquire().await?, &sha256)
                .await?
                .ok_or_else(|| anyhow::anyhow!("evidence {sha256} vanished"))?;
            return Ok((StatusCode::OK, Json(known.into())));
        }
        Err(e) => return Err(e.into()),
    }
    let kept = store::get_evidence(&mut tx, &sha256)
        .await?
        .ok_or_else(|| anyhow::anyhow!("evidence {sha256} was not projected"))?;
    tx.commit().await?;
    s.relay_wake.notify_one();
    Ok((StatusCode::CREATED, Json(kept.into())))
}

#[utoipa::path(get, path = "/v1/evidence/{sha256}", tag = "evidence", security(("bearer" = [])),
    params(("sha256" = String, Path, description = "the photo's SHA-256, hex")),
    responses(
        (status = 200, description = "the photo, with its sniffed type", content_type = "image/*"),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such photo", body = qingling_shared::openapi::Problem)
    ))]
/// The photo: to the street that uploaded it, and to the reviewers and district office of a
/// district whose write-off request cites it.
pub async fn fetch(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Path(sha256): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Street, Role::Reviewer, Role::District])?;
    let sha256 = sha256.to_ascii_lowercase();
    let mut c = s.pool.acquire().await?;
    let row = store::get_evidence(&mut c, &sha256)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no evidence {sha256}")))?;
    let allowed = match caller.role {
        Role::Street => caller.org == row.street,
        _ => {
            caller.covers_district(&row.district)
                && store::cited_in_district(&mut c, &sha256, &row.district).await?
        }
    };
    if !allowed {
        return Err(ApiError::Forbidden(format!(
            "{} {} may not see evidence {sha256}",
            caller.role.as_str(),
            caller.org
        )));
    }
    let body = s
        .blobs
        .get(&mut c, &sha256)
        .await?
        .ok_or_else(|| anyhow::anyhow!("evidence {sha256} has no stored bytes"))?;
    Ok((
        [
            (header::CONTENT_TYPE, row.content_type),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
        ],
        Body::from(body),
    )
        .into_response())
}
