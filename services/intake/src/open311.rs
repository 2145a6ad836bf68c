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

use crate::domain::{CallerInput, ComplaintInput, PointInput, Status};
use crate::http::{register_complaint, AppState};
use crate::open311_doc::*;
use crate::store::{self, PublicFilter, PublicRow};

/// The district a request without `jurisdiction_id` belongs to.
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
            doc: Doc,
            form: Result<Form<Vec<(String, String)>>, FormRejection>,
        ) -> Response {
            create_request(state, doc, form).await
        }
    };
}

macro_rules! open311_post_refused {
    ($name:ident, $path:literal) => {
        #[utoipa::path(post, path = $path, tag = "open311",
            responses((status = 405, description = "the service list takes no POST", body = Vec<Open311Error>)))]
        pub async fn $name(
            state: State<AppState>,
            doc: Doc,
            form: Result<Form<Vec<(String, String)>>, FormRejection>,
        ) -> Response {
            create_request(state, doc, form).await
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
    doc: Doc,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    doc.format.reply(post_request(&s, &doc.name, form).await)
}

// ---------------------------------------------------------------------------------------------
// The documents.

fn services(s: &AppState, p: &Params) -> Reply {
    p.jurisdiction(s)?;
    let list = s
        .catalog
        .doc()
        .categories
        .iter()
        .map(|c| {
            record(vec![
                ("service_code", leaf(&c.code)),
                ("service_name", leaf(&c.name)),
                ("description", leaf(&c.description)),
                ("metadata", leaf(true)),
                ("type", leaf("realtime")),
                ("keywords", leaf(format!("{},{}", c.name, c.group))),
                ("group", leaf(&c.group)),
            ])
        })
        .collect();
    Ok(Document::ok("services", Node::List(list)))
}

fn definition(s: &AppState, code: &str, p: &Params) -> Reply {
    let district = p.jurisdiction(s)?;
    if s.catalog.get(code).is_none() {
        return Err(Failure::not_found(format!("no service {code:?}")));
    }
    let streets = district
        .streets
        .iter()
        .map(|st| record(vec![("key", leaf(&st.code)), ("name", leaf(&st.name))]))
        .collect();
    let attribute = |order: i64, code: &str, datatype: &str, about: &str, description: &str| {
        vec![
            ("variable", leaf(true)),
            ("code", leaf(code)),
            ("datatype", leaf(datatype)),
            ("required", leaf(true)),
            ("datatype_description", leaf(about)),
            ("order", leaf(order)),
            ("description", leaf(description)),
        ]
    };
    let mut street = attribute(
        1,
        "street",
        "singlevaluelist",
        "街道或乡镇的代码(key)",
        &format!("所属街道(乡镇),{}", district.name),
    );
    street.push(("values", Node::List(streets)));
    let text = "文本,最长 200 字";
    let body = record(vec![
        ("service_code", leaf(code)),
        (
            "attributes",
            Node::List(vec![
                record(street),
                record(attribute(2, "community", "string", text, "小区名称")),
                record(attribute(3, "building", "string", text, "楼号")),
                record(attribute(4, "basement", "string", text, "地下室(如 B1)")),
            ]),
        ),
    ]);
    Ok(Document::ok("service_definition", body))
}

async fn requests(s: &AppState, p: &Params) -> Reply {
    let filter = p.filter(s, Utc::now())?;
    let rows = store::public_complaints(&mut *s.pool.acquire().await?, &filter).await?;
    let list = rows.iter().map(|r| service_request(s, r)).collect();
    Ok(Document::ok("service_requests", Node::List(list)))
}

async fn one_request(s: &AppState, id: &str) -> Reply {
    let not_found = || Failure::not_found(format!("no service request {id}"));
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let filter = PublicFilter {
        ids: Some(vec![id]),
        limit: 1,
        ..PublicFilter::default()
    };
    let rows = store::public_complaints(&mut *s.pool.acquire().await?, &filter).await?;
    let row = rows.first().ok_or_else(not_found)?;
    Ok(Document::ok(
        "service_requests",
        Node::List(vec![service_request(s, row)]),
    ))
}

/// One service request: the complaint as the public may see it, never the caller.
fn service_request(s: &AppState, r: &PublicRow) -> Node {
    let status = Status::parse(&r.status);
    let street = street_name(s, &r.district, &r.street);
    let service_name = s.catalog.get(&r.category).map_or(&r.category, |c| &c.name);
    let notes = match status {
        Some(Status::Dispatched) => format!("已派单至{street}"),
        Some(Status::Registered) if r.acknowledged_at.is_some() => {
            format!("{street}已签收,正在办理")
        }
        Some(Status::Registered) => format!("{street}已上账,待签收"),
        Some(Status::Returned) => format!("{street}已退单,待改派"),
        Some(Status::WrittenOff) => "已销账(办结)".to_string(),
        Some(Status::FollowedUp) => "已办结并回访".to_string(),
        None => "已受理".to_string(),
    };
    record(vec![
        ("service_request_id", leaf(r.complaint_id)),
        (
            "status",
            leaf(if is_closed(status) { "closed" } else { "open" }),
        ),
        ("status_notes", leaf(notes)),
        ("service_name", leaf(service_name)),
        ("service_code", leaf(&r.category)),
        ("description", leaf(&r.description)),
        ("agency_responsible", leaf(street)),
        ("service_notice", leaf(notice(street, r.resolve_by))),
        ("requested_datetime", leaf(r.received_at)),
        ("updated_datetime", leaf(r.updated_at)),
        ("expected_datetime", leaf(r.resolve_by)),
        ("address", leaf(address(&r.point))),
        ("address_id", leaf(r.point_id)),
        ("media_url", leaf(Value::Null)),
    ])
}

/// Registers the posted request as a complaint, as an operator named by the api key.
async fn post_request(
    s: &AppState,
    name: &str,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Reply {
    match name {
        "requests" => {}
        "services" => {
            return Err(Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "services are read-only; POST to requests",
            ))
        }
        other => return Err(Failure::no_resource(other)),
    }
    let Form(fields) = form.map_err(|r| {
        let status = match r.status() {
            s @ (StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::PAYLOAD_TOO_LARGE) => s,
            _ => StatusCode::BAD_REQUEST,
        };
        Failure::new(status, r.body_text())
    })?;
    let p = Params::new(fields)?;
    let caller = s.open311_keys.caller(p.get("api_key"))?;
    // The standard answers 404 for an unknown jurisdiction or service, 400 for the rest.
    let district = p.jurisdiction(s)?;
    let code = p
        .get("service_code")
        .ok_or_else(|| Failure::bad_request("service_code: is required"))?;
    if s.catalog.get(code).is_none() {
        return Err(Failure::not_found(format!("no service {code:?}")));
    }
    let (_, created) = register_complaint(s, &caller, p.complaint(&district.code), None).await?;
    let id = created["complaint_id"].as_str().unwrap_or_default();
    let street = created["street"].as_str().unwrap_or_default();
    let resolve_by = created["resolve_by"]
        .as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        .unwrap_or_else(Utc::now);
    let answer = record(vec![
        ("service_request_id", leaf(id)),
        (
            "service_notice",
            leaf(notice(street_name(s, &district.code, street), resolve_by)),
        ),
    ]);
    Ok(Document {
        status: StatusCode::CREATED,
        root: "service_requests",
        body: Node::List(vec![answer]),
    })
}

fn is_closed(status: Option<Status>) -> bool {
    status.is_some_and(|s| CLOSED.contains(&s))
}

fn street_name<'a>(s: &'a AppState, district: &str, street: &'a str) -> &'a str {
    s.orgs
        .street(district, street)
        .map_or(street, |st| &st.name)
}

/// What the citizen is told: who handles it, and by when (Beijing time).
fn notice(street: &str, resolve_by: DateTime<Utc>) -> String {
    let local = resolve_by + Duration::hours(8);
    format!(
        "已受理,由{street}办理,办结时限 {}(北京时间)",
        local.format("%Y-%m-%d %H:%M")
    )
}

/// The point's address as given, or its community, building and basement.
fn address(point: &Value) -> String {
    if let Some(a) = point["address"].as_str().filter(|a| !a.is_empty()) {
        return a.to_string();
    }
    ["community", "building", "basement"]
        .iter()
        .filter_map(|k| point[*k].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// Request parameters.

/// Query or form fields as sent. A value holding U+0000 is refused up front: PostgreSQL text
/// cannot store it.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(fields: Vec<(String, String)>) -> Result<Self, Failure> {
        if let Some((name, _)) = fields
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(Failure::bad_request(format!(
                "{name}: must not contain the NUL character"
            )));
        }
        Ok(Self(fields))
    }

    fn from_query(
        q: Result<Query<Vec<(String, String)>>, QueryRejection>,
    ) -> Result<Self, Failure> {
        let Query(fields) = q.map_err(|r| Failure::bad_request(r.body_text()))?;
        Self::new(fields)
    }

    /// The first non-blank value of `name`, trimmed.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .find(|v| !v.is_empty())
    }

    /// `jurisdiction_id`, a district code (default tongzhou); 404 when unknown, as the standard says.
    fn jurisdiction<'a>(
        &self,
        s: &'a AppState,
    ) -> Result<&'a qingling_shared::orgs::District, Failure> {
        let code = self.get("jurisdiction_id").unwrap_or(DEFAULT_JURISDICTION);
        s.orgs
            .district(code)
            .ok_or_else(|| Failure::not_found(format!("jurisdiction_id {code:?} not found")))
    }

    /// The complaint a posted request describes; [`ComplaintInput::parse`] checks it.
    fn complaint(&self, district: &str) -> ComplaintInput {
        let owned = |name: &str| self.get(name).map(str::to_string);
        let name = full_name(self.get("first_name"), self.get("last_name"));
        let phone = owned("phone");
        ComplaintInput {
            district: Some(district.to_string()),
            street: owned("attribute[street]"),
            category: owned("service_code"),
            urgency: Some("normal".into()),
            point: Some(PointInput {
                community: owned("attribute[community]"),
                building: owned("attribute[building]"),
                basement: owned("attribute[basement]"),
                address: owned("address_string"),
                point_id: None,
            }),
            caller: (name.is_some() || phone.is_some()).then_some(CallerInput { name, phone }),
            description: owned("description"),
            received_at: None,
        }
    }

    /// The filters of `GET requests`. `service_request_id` overrides every other one; without
    /// dates the last 90 days are listed, and a range may not span more than 90 days.
    fn filter(&self, s: &AppState, now: DateTime<Utc>) -> Result<PublicFilter, Failure> {
        let mut f = PublicFilter {
            closed_statuses: CLOSED.iter().map(|s| s.as_str().to_string()).collect(),
            limit: MAX_RESULTS,
            ..PublicFilter::default()
        };
        if let Some(ids) = self.get("service_request_id") {
            let ids: Vec<&str> = ids
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .collect();
            if ids.len() > MAX_RESULTS as usize {
                return Err(Failure::bad_request(format!(
                    "service_request_id: at most {MAX_RESULTS} ids"
                )));
            }
            // An id that is not a UUID names no request: it is simply not found.
            f.ids = Some(ids.iter().filter_map(|x| x.parse().ok()).collect());
            return Ok(f);
        }
        if self.get("jurisdiction_id").is_some() {
            f.district = Some(self.jurisdiction(s)?.code.clone());
        }
        if let Some(codes) = self.get("service_code") {
            let codes: Vec<String> = codes.split(',').map(|c| c.trim().to_string()).collect();
            if let Some(bad) = codes.iter().find(|c| s.catalog.get(c).is_none()) {
                return Err(Failure::bad_request(format!(
                    "service_code: unknown service {bad:?}"
                )));
            }
            f.categories = Some(codes);
        }
        f.closed = match self.get("status") {
            None => None,
            Some("open") => Some(false),
            Some("closed") => Some(true),
            Some(other) => {
                return Err(Failure::bad_request(format!(
                    "status: must be open or closed, not {other:?}"
                )))
            }
        };
        let window = Duration::days(WINDOW_DAYS);
        let (from, to) = match (self.date("start_date")?, self.date("end_date")?) {
            (None, None) => (now - window, None),
            (Some(a), None) => (a, Some(a + window)),
            (None, Some(b)) => (b - window, Some(b)),
            (Some(a), Some(b)) if b < a => {
                return Err(Failure::bad_request("end_date: is before start_date"))
            }
            (Some(a), Some(b)) if b - a > window => {
                return Err(Failure::bad_request(format!(
                    "start_date, end_date: may not span more than {WINDOW_DAYS} days"
                )))
            }
            (Some(a), Some(b)) => (a, Some(b)),
        };
        f.received_from = Some(from);
        f.received_to = to;
        Ok(f)
    }

    /// An RFC 3339 time. A `+` offset sent unencoded arrives as a space; it is read as `+`.
    fn date(&self, name: &str) -> Result<Option<DateTime<Utc>>, Failure> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        DateTime::parse_from_rfc3339(v)
            .or_else(|_| DateTime::parse_from_rfc3339(&v.replace(' ', "+")))
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                Failure::bad_request(format!(
                    "{name}: must be a time like 2026-11-28T08:00:00Z, not {v:?}"
                ))
            })
    }
}

/// 张 + 先生 → 张先生, John + Smith → John Smith: a Chinese name puts the family name first, unspaced.
fn full_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    let cjk = |s: &str| {
        s.chars().any(|c| {
            matches!(c, '\u{3400}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}' | '\u{20000}'..='\u{3134F}')
        })
    };
    match (first, last) {
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => Some(one.to_string()),
        (Some(f), Some(l)) if cjk(f) || cjk(l) => Some(format!("{l}{f}")),
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Api keys.

/// Open311 api keys (`QINGLING_OPEN311_KEYS`, `key=sub,…`): each acts as a hotline operator for
/// every district (org `*`) named `sub`. Kept as SHA-256 digests, so a lookup's timing tells
/// nothing about the keys.
#[derive(Clone, Default)]
pub struct ApiKeys(Arc<HashMap<[u8; 32], String>>);

impl ApiKeys {
    pub fn from_env() -> anyhow::Result<Self> {
        let raw = std::env::var("QINGLING_OPEN311_KEYS").unwrap_or_default();
        let keys = Self::parse(&raw).map_err(|e| anyhow::anyhow!("QINGLING_OPEN311_KEYS: {e}"))?;
        if keys.0.is_empty() {
            tracing::info!("no Open311 api keys configured: Open311 POST requests is refused");
        } else {
            tracing::info!(keys = keys.0.len(), "Open311 api keys loaded");
        }
        Ok(keys)
    }

    /// Parses `key=sub` pairs, comma-separated. A key may itself end in `=` (base64).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut keys = HashMap::new();
        let entries = raw.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (i, entry) in entries.enumerate() {
            let (key, sub) = entry
                .rsplit_once('=')
                .map(|(k, s)| (k.trim(), s.trim()))
                .filter(|(k, s)| !k.is_empty() && !s.is_empty())
                .ok_or_else(|| format!("entry {} is not key=sub", i + 1))?;
            if keys.insert(digest(key), sub.to_string()).is_some() {
                return Err(format!("entry {} repeats a key", i + 1));
            }
        }
        Ok(Self(Arc::new(keys)))
    }

    /// The operator an api key stands for; 403 for a missing or unknown key.
    fn caller(&self, key: Option<&str>) -> Result<Caller, Failure> {
        let forbidden = |d: &str| Failure::new(StatusCode::FORBIDDEN, d);
        if self.0.is_empty() {
            return Err(forbidden(
                "this server accepts no service requests: no api keys are configured",
            ));
        }
        let key = key.ok_or_else(|| forbidden("api_key: is required"))?;
        let sub = self
            .0
            .get(&digest(key))
            .ok_or_else(|| forbidden("api_key: is not valid"))?;
        Ok(Caller {
            sub: sub.clone(),
            role: Role::Operator,
            org: "*".into(),
        })
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

// ---------------------------------------------------------------------------------------------
// Formats, documents and errors.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// A path segment `<name>.<json|xml>`; any other suffix is 404.
#[derive(Debug, PartialEq, Eq)]
pub struct Doc {
    pub name: String,
    pub format: Format,
}

impl Doc {
    pub fn parse(segment: &str) -> Option<Doc> {
        let (name, suffix) = segment.rsplit_once('.')?;
        let format = match suffix {
            "json" => Format::Json,
            "xml" => Format::Xml,
            _ => return None,
        };
        (!name.is_empty()).then(|| Doc {
            name: name.to_string(),
            format,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Doc {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        // `{file}` routes name the segment; the fixed ones (`services.json`, …) are the last one.
        let segment = match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(s)) => Some(s),
            Err(_) => parts.uri.path().rsplit('/').next().map(String::from),
        };
        segment.and_then(|s| Doc::parse(&s)).ok_or_else(|| {
            Format::Json.reply(Err(Failure::not_found(
                "no such Open311 resource: paths end in .json or .xml",
            )))
        })
    }
}

/// A document to send: its status, its XML root element and its body.
struct Document {
    status: StatusCode,
    root: &'static str,
    body: Node,
}

impl Document {
    fn ok(root: &'static str, body: Node) -> Self {
        Self {
            status: StatusCode::OK,
            root,
            body,
        }
    }
}

type Reply = Result<Document, Failure>;

impl Format {
    fn reply(self, reply: Reply) -> Response {
        let doc = reply.unwrap_or_else(Failure::document);
        match self {
            Format::Json => (doc.status, axum::Json(doc.body)).into_response(),
            Format::Xml => (
                doc.status,
                [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
                xml::document(doc.root, &doc.body),
            )
                .into_response(),
        }
    }
}

/// An Open311 error answer: the HTTP status and one description per problem.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    descriptions: Vec<String>,
}

impl Failure {
    fn new(status: StatusCode, description: impl Into<String>) -> Self {
        Self {
            status,
            descriptions: vec![description.into()],
        }
    }

    fn not_found(description: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, description)
    }

    fn no_resource(name: &str) -> Self {
        Self::not_found(format!("there is no Open311 resource {name:?}"))
    }

    fn bad_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, description)
    }

    fn document(self) -> Document {
        let code = self.status.as_u16();
        let errors = self
            .descriptions
            .into_iter()
            .map(|d| record(vec![("code", leaf(code)), ("description", leaf(d))]))
            .collect();
        Document {
            status: self.status,
            root: "errors",
            body: Node::List(errors),
        }
    }
}

/// The one mapping from intake's errors. Validation failures are 400 in Open311, one entry per
/// field, named as the form names it.
impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unprocessable { errors, .. } => Failure {
                status: StatusCode::BAD_REQUEST,
                descriptions: errors
                    .iter()
                    .map(|e| format!("{}: {}", form_field(&e.field), e.message))
                    .collect(),
            },
            other => {
                match &other {
                    ApiError::Internal(err) => tracing::error!(error = ?err, "internal error"),
                    ApiError::Unavailable(d) => {
                        tracing::warn!(error = %d, "dependency unavailable")
                    }
                    _ => {}
                }
                // The problem document's detail: internals are never shown.
                let detail = other.body()["detail"].as_str().unwrap_or("").to_string();
                Failure::new(other.status(), detail)
            }
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(e).into()
    }
}

/// The form field a [`ComplaintInput`] field comes from.
fn form_field(field: &str) -> &str {
    match field {
        "district" => "jurisdiction_id",
        "category" => "service_code",
        "street" => "attribute[street]",
        "point" | "point.community" => "attribute[community]",
        "point.building" => "attribute[building]",
        "point.basement" => "attribute[basement]",
        "point.address" => "address_string",
        "caller.name" => "first_name",
        "caller.phone" => "phone",
        other => other,
    }
}

/// A document in the standard's shape, written as JSON or XML with its fields in order.
#[derive(Debug, Clone)]
enum Node {
    Leaf(Value),
    Record(Vec<(&'static str, Node)>),
    List(Vec<Node>),
}

fn leaf(v: impl Serialize) -> Node {
    Node::Leaf(serde_json::to_value(v).unwrap_or(Value::Null))
}

fn record(fields: Vec<(&'static str, Node)>) -> Node {
    Node::Record(fields)
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Leaf(v) => v.serialize(s),
            Node::List(items) => items.serialize(s),
            Node::Record(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// A small XML writer for the standard's documents: a record's fields become child elements, a
/// list repeats its item element (`services` → `service`, …), null is an empty element.
mod xml {
    use super::Node;
    use serde_json::Value;

    pub fn document(root: &str, body: &Node) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        element(&mut out, root, body);
        out.push('\n');
        out
    }

    /// The element name of a list's items, as in the standard's examples.
    fn item_name(list: &str) -> &'static str {
        match list {
            "services" => "service",
            "attributes" => "attribute",
            "values" => "value",
            "service_requests" => "request",
            "errors" => "error",
            _ => "item",
        }
    }

    fn element(out: &mut String, name: &str, node: &Node) {
        if matches!(node, Node::Leaf(Value::Null)) {
            out.push_str(&format!("<{name}/>"));
            return;
        }
        out.push_str(&format!("<{name}>"));
        match node {
            Node::Leaf(Value::String(s)) => escape(out, s),
            Node::Leaf(v) => escape(out, &v.to_string()),
            Node::Record(fields) => fields.iter().for_each(|(k, v)| element(out, k, v)),
            Node::List(items) => {
                let item = item_name(name);
                items.iter().for_each(|v| element(out, item, v));
            }
        }
        out.push_str(&format!("</{name}>"));
    }

    /// Escapes markup; characters XML 1.0 cannot carry at all become U+FFFD.
    fn escape(out: &mut String, text: &str) {
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&apos;"),
                '\t' | '\n' | '\r' => out.push(c),
                c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_name_a_document_and_its_format() {
        let doc = |name: &str, format| {
            Some(Doc {
                name: name.into(),
                format,
            })
        };
        assert_eq!(Doc::parse("services.json"), doc("services", Format::Json));
        assert_eq!(Doc::parse("a.b.xml"), doc("a.b", Format::Xml));
        assert_eq!(Doc::parse("services.csv"), None);
        assert_eq!(Doc::parse("services"), None);
        assert_eq!(Doc::parse(".json"), None);
    }

    #[test]
    fn keys_parse_as_key_sub_pairs() {
        let keys = ApiKeys::parse(" key-abc=civic-app , b64key===other ,").unwrap();
        assert_eq!(keys.caller(Some("key-abc")).unwrap().sub, "civic-app");
        let c = keys.caller(Some("b64key==")).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.role, c.org.as_str()),
            ("other", Role::Operator, "*")
        );
        assert_eq!(
            keys.caller(Some("nope")).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(keys.caller(None).unwrap_err().status, StatusCode::FORBIDDEN);
        assert!(ApiKeys::parse("").unwrap().caller(Some("x")).is_err());
        assert!(ApiKeys::parse("novalue").is_err());
        assert!(ApiKeys::parse("k=a,k=b").is_err());
    }

    #[test]
    fn names_join_by_their_script() {
        assert_eq!(
            full_name(Some("先生"), Some("张")).as_deref(),
            Some("张先生")
        );
        assert_eq!(
            full_name(Some("John"), Some("Smith")).as_deref(),
            Some("John Smith")
        );
        assert_eq!(full_name(None, Some("张")).as_deref(), Some("张"));
        assert_eq!(full_name(None, None), None);
    }

    #[test]
    fn xml_is_escaped_and_lists_name_their_items() {
        let body = Node::List(vec![record(vec![
            ("code", leaf(400)),
            ("description", leaf("a < b & \"c\"\u{1}")),
            ("media_url", leaf(Value::Null)),
        ])]);
        assert_eq!(
            xml::document("errors", &body),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<errors><error><code>400</code>\
             <description>a &lt; b &amp; &quot;c&quot;\u{FFFD}</description><media_url/></error></errors>\n"
        );
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"[{"code":400,"description":"a < b & \"c\"\u0001","media_url":null}]"#
        );
    }
}
