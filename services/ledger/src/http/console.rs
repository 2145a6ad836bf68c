//! The work console (CONTRACT §10): one page for operators, streets, reviewers and the district,
//! calling the three services' APIs with the user's token.

use std::sync::LazyLock;

use super::*;

/// Where the console calls intake and closure, read once.
static SERVICES: LazyLock<(String, String)> = LazyLock::new(qingling_shared::console::service_urls);

/// The console's services, for its script.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ConsoleConfig {
    /// intake's base URL
    intake: String,
    /// closure's base URL
    closure: String,
    /// The identity provider people sign in with (authorization code + PKCE), if one is trusted.
    oidc: Option<ConsoleOidc>,
}

/// What the console needs to sign people in.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ConsoleOidc {
    issuer: String,
    client_id: String,
    scope: String,
    /// The resource indicator to ask tokens for, if the provider wants one.
    resource: Option<String>,
}

#[utoipa::path(get, path = "/console/", tag = "console",
    responses((status = 200, description = "the work console", content_type = "text/html")))]
/// The console page; its policy lets it call intake and closure and show fetched photos.
pub(super) async fn page(State(s): State<AppState>) -> impl IntoResponse {
    let (intake, closure) = &*SERVICES;
    let issuer = s.keys.provider().map(|p| p.config.issuer_origin());
    let mut connect = vec![intake.as_str(), closure.as_str()];
    connect.extend(issuer.as_deref());
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            qingling_shared::http::console_policy(&connect),
        )],
        Html(include_str!("../../static/console.html")),
    )
}

#[utoipa::path(get, path = "/console", tag = "console",
    responses((status = 308, description = "to /console/")))]
/// The console's address without its slash.
pub(super) async fn bare() -> impl IntoResponse {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, "/console/")],
    )
}

#[utoipa::path(get, path = "/console/console.js", tag = "console",
    responses((status = 200, description = "the console's script", content_type = "text/javascript")))]
pub(super) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/console.js"),
    )
}

#[utoipa::path(get, path = "/console/config.json", tag = "console",
    responses((status = 200, description = "the services the console calls", body = ConsoleConfig)))]
pub(super) async fn config(State(s): State<AppState>) -> Json<ConsoleConfig> {
    let (intake, closure) = SERVICES.clone();
    let oidc = s.keys.provider().map(|p| ConsoleOidc {
        issuer: p.config.issuer.clone(),
        client_id: p.config.client_id.clone(),
        scope: p.config.scope.clone(),
        resource: p.config.resource.clone(),
    });
    Json(ConsoleConfig {
        intake,
        closure,
        oidc,
    })
}
