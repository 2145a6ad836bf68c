//! The OpenAPI document every service serves at `GET /openapi.json`. Paths come from the
//! handlers' `#[utoipa::path]` annotations, registered through `utoipa_axum::routes!` together
//! with the routes themselves, so the document cannot list a route that is not served or miss one
//! that is. This module adds what all services share: the bearer scheme, the problem document,
//! and the common routes.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi};
use utoipa::{Modify, ToSchema};

/// An error answer (RFC 9457 problem document), `application/problem+json`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    /// `https://qingling.dev/problems/<slug>`: validation-failed, not-found, conflict, forbidden, …
    #[schema(example = "https://qingling.dev/problems/validation-failed")]
    r#type: String,
    #[schema(example = "Unprocessable Entity")]
    title: String,
    #[schema(example = 422)]
    status: u16,
    detail: String,
    /// Field errors of a 422.
    errors: Option<Vec<crate::FieldError>>,
}

/// The answers every `/v1` operation may give before it looks at the request: no valid token, or
/// a role or organisation that may not do this.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AuthRefusals {
    /// missing or invalid bearer token
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// role or organisation not allowed
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
}

/// One event of a complaint's, item's or write-off request's history, oldest first.
#[derive(serde::Serialize, ToSchema)]
pub struct HistoryEntry {
    pub event_type: String,
    pub at: chrono::DateTime<chrono::Utc>,
    /// Who caused it (a token's `sub`, or `system`).
    pub actor: String,
    /// The person's display name, where the identity provider gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// The event's version in its stream (items only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The event's data (CONTRACT §7).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// Adds the bearer-token scheme.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 JWT with claims sub, role (operator, street, reviewer, district), org, exp",
                    ))
                    .build(),
            ),
        );
    }
}

/// Liveness of the database and NATS connections.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "database and NATS reachable", body = serde_json::Value),
              (status = 503, description = "degraded: see `checks`", body = serde_json::Value)))]
#[allow(dead_code)]
fn healthz_doc() {}

/// Prometheus metrics: requests per route, events appended/published/consumed per type, relay and
/// consumer lag, open items per street.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
#[allow(dead_code)]
fn metrics_doc() {}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", body = serde_json::Value)))]
#[allow(dead_code)]
fn openapi_doc() {}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(healthz_doc, metrics_doc, openapi_doc),
    components(schemas(Problem, crate::FieldError, HistoryEntry)),
    modifiers(&BearerAuth)
)]
struct Common;

/// The service's document: its own paths and schemas, plus the shared parts.
pub fn document(service: &str, description: &str, own: OpenApi) -> OpenApi {
    let mut api = <Common as utoipa::OpenApi>::openapi();
    api.merge(own);
    api.info = InfoBuilder::new()
        .title(format!("qingling-{service}"))
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(description))
        .build();
    api
}

/// `GET /openapi.json`.
pub fn serve(api: &OpenApi) -> axum::response::Response {
    match api.to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => crate::ApiError::Internal(anyhow::anyhow!("openapi: {e}")).into_response(),
    }
}
