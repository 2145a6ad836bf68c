//! Open311 GeoReport v2 (CONTRACT §8): the public, token-free face of 接诉 for civic apps.
//!
//! A *service* is a category of the catalog, a *service request* is a complaint. Every document is
//! served as JSON or XML by the path's suffix, and every error as the standard's list of
//! `{code, description}`. Posting a request registers a complaint exactly like
//! `POST /v1/complaints` ([`register_complaint`]); reading one never shows the caller.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use chrono::{DateTime, Duration, Utc};
use qingling_shared::{ApiError, Caller, Role};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::app::AppState;
use crate::domain::{CallerInput, ComplaintInput, PointInput, Status};
use crate::register::register_complaint;
use crate::store::{self, PublicFilter, PublicRow};
use axum::extract::FromRef;
use doc::*;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The district a request without `jurisdiction_id` belongs to.
/// Open311's routes: intake's state and the api keys that may post.
#[derive(Clone)]
pub struct Open311State {
    pub app: AppState,
    /// `QINGLING_OPEN311_KEYS`.
    pub keys: ApiKeys,
}

impl FromRef<Open311State> for AppState {
    fn from_ref(s: &Open311State) -> Self {
        s.app.clone()
    }
}

impl FromRef<Open311State> for ApiKeys {
    fn from_ref(s: &Open311State) -> Self {
        s.keys.clone()
    }
}

/// Open311 GeoReport v2 (CONTRACT §8). Segments are `<name>.<json|xml>`: the handlers split off
/// the format, as axum cannot route on a suffix.
pub fn router(state: Open311State) -> (axum::Router, utoipa::openapi::OpenApi) {
    OpenApiRouter::new()
        .routes(routes!(services_json, post_services_json))
        .routes(routes!(services_xml, post_services_xml))
        .routes(routes!(requests_json, post_requests_json))
        .routes(routes!(requests_xml, post_requests_xml))
        .routes(routes!(collection, create_request))
        .routes(routes!(service_definition))
        .routes(routes!(request))
        .routes(routes!(request_alias))
        .route_layer(axum::middleware::from_fn(strict_form))
        .with_state(state)
        .split_for_parts()
}

/// Posted form fields must be UTF-8 once percent-decoded: invalid encodings are refused (400),
/// not stored as replacement characters.
async fn strict_form(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let format = if req.uri().path().ends_with(".xml") {
        Format::Xml
    } else {
        Format::Json
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, qingling_shared::http::MAX_BODY).await {
        Ok(b) => b,
        // Over the limit, or the body stopped arriving (the server's body deadline).
        Err(e) if e.to_string().contains("length limit") => {
            return format.reply(Err(Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the form is larger than 64 KiB",
            )))
        }
        Err(_) => {
            return format.reply(Err(Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                "the form did not arrive in time",
            )))
        }
    };
    if let Some(field) = field_not_utf8(&bytes) {
        return format.reply(Err(Failure::bad_request(format!(
            "{field}: is not UTF-8 once percent-decoded"
        ))));
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// The first form field (its name, as far as it decodes) whose name or value is not UTF-8.
fn field_not_utf8(form: &[u8]) -> Option<String> {
    fn decode(s: &[u8]) -> Option<String> {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'+' => out.push(b' '),
                // A `%` not followed by two hex digits stays a `%`, as form decoders read it.
                b'%' if i + 2 < s.len()
                    && s[i + 1].is_ascii_hexdigit()
                    && s[i + 2].is_ascii_hexdigit() =>
                {
                    let hex = std::str::from_utf8(&s[i + 1..i + 3]).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }
    form.split(|b| *b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(n) => (&pair[..n], &pair[n + 1..]),
            None => (pair, &pair[..0]),
        };
        match (decode(k), decode(v)) {
            (Some(_), Some(_)) => None,
            (Some(k), None) => Some(k),
            (None, _) => Some(String::from_utf8_lossy(k).into_owned()),
        }
    })
}

const DEFAULT_JURISDICTION: &str = "tongzhou";
/// The standard's default window and largest answer for `GET requests`.
const WINDOW_DAYS: i64 = 90;
const MAX_RESULTS: i64 = 1000;
/// A complaint is `closed` for Open311 once its item was written off (销账).
const CLOSED: [Status; 2] = [Status::WrittenOff, Status::FollowedUp];

// ---------------------------------------------------------------------------------------------
// Handlers: each parses its path segment's format and hands the rest to a function returning a
// `Reply`, which the format then writes out.

#[utoipa::path(get, path = "/open311/v2/{file}", tag = "open311",
    params(("file" = String, Path, description = "any other NAME.json or NAME.xml")),
    responses((status = 404, description = "no such Open311 resource", body = Vec<Open311Error>)))]
/// `GET services.{json,xml}` and `GET requests.{json,xml}`.
pub async fn collection(
    State(s): State<AppState>,
    doc: Doc,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let reply = async {
        let p = Params::from_query(query)?;
        match doc.name.as_str() {
            "services" => services(&s, &p),
            "requests" => requests(&s, &p).await,
            other => Err(Failure::no_resource(other)),
        }
    };
    doc.format.reply(reply.await)
}

#[utoipa::path(get, path = "/open311/v2/services/{file}", tag = "open311",
    params(("file" = String, Path, description = "SERVICE_CODE.json or SERVICE_CODE.xml"),
           ("jurisdiction_id" = Option<String>, Query, description = "the district (default tongzhou)")),
    responses(
        (status = 200, description = "service definition: attributes street (singlevaluelist), community, building, basement", body = Open311ServiceDefinition),
        (status = 404, description = "unknown resource, service, request or format", body = Vec<Open311Error>)
    ))]
/// `GET services/{service_code}.{json,xml}`: the attributes a request of the service needs.
pub async fn service_definition(
    State(s): State<AppState>,
    doc: Doc,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let reply = Params::from_query(query).and_then(|p| definition(&s, &doc.name, &p));
    doc.format.reply(reply)
}

#[utoipa::path(get, path = "/open311/v2/requests/{file}", tag = "open311",
    params(("file" = String, Path, description = "SERVICE_REQUEST_ID.json or SERVICE_REQUEST_ID.xml")),
    responses(
        (status = 200, description = "a one-element request list (no caller details)", body = Vec<Open311Request>),
        (status = 404, description = "unknown resource, service, request or format", body = Vec<Open311Error>)
    ))]
/// `GET requests/{id}.{json,xml}` (also `request/{id}`, as some clients call it): a one-element list.
pub async fn request(State(s): State<AppState>, doc: Doc) -> Response {
    doc.format.reply(one_request(&s, &doc.name).await)
}

/// GeoReport v2 filters of `GET requests`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RequestFilters {
    /// The district (default tongzhou).
    jurisdiction_id: Option<String>,
    /// Comma-separated ids; overrides the other filters.
    service_request_id: Option<String>,
    /// A category.
    service_code: Option<String>,
    /// Received at or after (ISO 8601); alone, the 90 days from it.
    start_date: Option<String>,
    /// Received before (ISO 8601); at most 90 days after start_date.
    end_date: Option<String>,
    /// open or closed
    status: Option<String>,
}

/// `jurisdiction_id` of the service list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct Jurisdiction {
    /// The district (default tongzhou).
    jurisdiction_id: Option<String>,
}

/// The form of `POST requests` (application/x-www-form-urlencoded).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RequestForm {
    /// A key of `QINGLING_OPEN311_KEYS`.
    api_key: String,
    /// The district (default tongzhou).
    jurisdiction_id: Option<String>,
    service_code: String,
    /// A street's code (see the service definition).
    #[schema(rename = "attribute[street]")]
    attribute_street: String,
    #[schema(rename = "attribute[community]")]
    attribute_community: String,
    #[schema(rename = "attribute[building]")]
    attribute_building: String,
    #[schema(rename = "attribute[basement]")]
    attribute_basement: String,
    address_string: Option<String>,
    /// Accepted, not kept.
    lat: Option<f64>,
    /// Accepted, not kept.
    long: Option<f64>,
    description: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    /// Accepted, not kept.
    email: Option<String>,
}

macro_rules! open311_collection {
    ($name:ident, $path:literal, $what:literal, $body:ty, $params:ty) => {
        #[utoipa::path(get, path = $path, tag = "open311", params($params),
            responses((status = 200, description = $what, body = $body),
                      (status = 400, description = "a bad filter", body = Vec<Open311Error>),
                      (status = 404, description = "unknown jurisdiction", body = Vec<Open311Error>)))]
        pub async fn $name(
            state: State<AppState>,
            doc: Doc,
            query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        ) -> Response {
            collection(state, doc, query).await
        }
    };
}

open311_collection!(
    services_json,
    "/open311/v2/services.json",
    "the services (one per category)",
    Vec<Open311Service>,
    Jurisdiction
);
open311_collection!(
    services_xml,
    "/open311/v2/services.xml",
    "the services, as XML",
    Vec<Open311Service>,
    Jurisdiction
);
open311_collection!(
    requests_json,
    "/open311/v2/requests.json",
    "requests, newest first, at most 1000 (default: the last 90 days)",
    Vec<Open311Request>,
    RequestFilters
);
open311_collection!(
    requests_xml,
    "/open311/v2/requests.xml",
    "requests, as XML",
    Vec<Open311Request>,
    RequestFilters
);

macro_rules! open311_post {
    ($name:ident, $path:literal) => {
        #[utoipa::path(post, path = $path, tag = "open311",
            request_body(content = RequestForm, content_type = "application/x-www-form-urlencoded"),
            responses((status = 201, description = "registered as a complaint", body = Vec<Open311Created>),
                      (status = 400, description = "invalid fields, one error each", body = Vec<Open311Error>),
                      (status = 403, description = "missing or unknown api_key", body = Vec<Open311Error>),
                      (status = 404, description = "unknown service or jurisdiction", body = Vec<Open311Error>)))]
        pub async fn $name(
            state: State<AppState>,
            keys: State<ApiKeys>,
            doc: Doc,
            form: Result<Form<Vec<(String, String)>>, FormRejection>,
        ) -> Response {
            create_request(state, keys, doc, form).await
        }
    };
}

macro_rules! open311_post_refused {
    ($name:ident, $path:literal) => {
        #[utoipa::path(post, path = $path, tag = "open311",
            responses((status = 405, description = "the service list takes no POST", body = Vec<Open311Error>)))]
        pub async fn $name(
            state: State<AppState>,
            keys: State<ApiKeys>,
            doc: Doc,
            form: Result<Form<Vec<(String, String)>>, FormRejection>,
        ) -> Response {
            create_request(state, keys, doc, form).await
        }
    };
}

open311_post_refused!(post_services_json, "/open311/v2/services.json");
open311_post_refused!(post_services_xml, "/open311/v2/services.xml");
open311_post!(post_requests_json, "/open311/v2/requests.json");
open311_post!(post_requests_xml, "/open311/v2/requests.xml");

/// `GET request/{id}.{json,xml}`: the same as `requests/{id}`, for clients that call it so.
#[utoipa::path(get, path = "/open311/v2/request/{file}", tag = "open311",
    params(("file" = String, Path, description = "SERVICE_REQUEST_ID.json or SERVICE_REQUEST_ID.xml")),
    responses(
        (status = 200, description = "a one-element request list", body = Vec<Open311Request>),
        (status = 404, description = "unknown request or format", body = Vec<Open311Error>)
    ))]
pub async fn request_alias(state: State<AppState>, doc: Doc) -> Response {
    request(state, doc).await
}

#[utoipa::path(post, path = "/open311/v2/{file}", tag = "open311",
    params(("file" = String, Path, description = "any other NAME.json or NAME.xml")),
    responses((status = 404, description = "no such Open311 resource", body = Vec<Open311Error>),
              (status = 405, description = "services.json and services.xml take no POST", body = Vec<Open311Error>)))]
/// `POST requests.{json,xml}`, form-encoded.
pub async fn create_request(
    State(s): State<AppState>,
    State(keys): State<ApiKeys>,
    doc: Doc,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    doc.format
        .reply(post_request(&s, &keys, &doc.name, form).await)
}

mod doc;
mod documents;
mod format;
mod keys;
mod params;
#[cfg(test)]
mod tests;

use documents::*;
use format::*;
pub use format::{Doc, Format};
pub use keys::ApiKeys;
use params::*;
