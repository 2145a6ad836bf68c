//! 动态清零 as it happens: the summary, its live stream (SSE) and the district's dashboard.

use super::*;
use sha2::Digest;
use std::collections::HashMap;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SummaryQuery {
    pub(super) district: Option<String>,
    pub(super) category: Option<String>,
}

#[utoipa::path(get, path = "/v1/ledger/summary", tag = "ledger", security(("bearer" = [])),
    params(SummaryQuery),
    responses(
        (status = 200, description = "open counts, totals, overdue and dynamic-zero marks per street", body = crate::summary::Summary),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// 动态清零: per street and for the district.
pub(super) async fn summary(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<SummaryQuery>,
) -> Result<Json<Value>, ApiError> {
    let district = readable_district(&s, &caller, q.district)?;
    let category = q
        .category
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_CATEGORY.into());
    known_category(&s, &category)?;
    let full = summary::compute(&s.pool, &s.orgs, &district, &category).await?;
    Ok(Json(visible_summary(&caller, &full)))
}

fn visible_summary(caller: &Caller, full: &Value) -> Value {
    match caller.role {
        Role::Street => summary::for_street(full, &caller.org),
        _ => full.clone(),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct StreamQuery {
    pub(super) district: Option<String>,
    pub(super) category: Option<String>,
    /// For browsers' EventSource, which cannot send an Authorization header.
    pub(super) access_token: Option<String>,
}

#[utoipa::path(get, path = "/v1/ledger/stream", tag = "ledger", security(("bearer" = [])),
    params(StreamQuery),
    responses(
        (status = 200, description = "text/event-stream of `summary` events", content_type = "text/event-stream"),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "invalid fields", body = qingling_shared::openapi::Problem)
    ))]
/// Server-Sent Events: `summary` on connect and within a second of every change; keep-alive
/// comments every 15 s so proxies keep idle streams open.
pub(super) async fn stream(
    State(s): State<AppState>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<StreamQuery>,
) -> Result<Sse<impl futures::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let (caller, token) = match (
        headers.contains_key(header::AUTHORIZATION),
        q.access_token.as_deref(),
    ) {
        (false, Some(token)) => (Caller::from_token(&s.keys, token).await?, token.to_string()),
        _ => (
            Caller::from_headers(&s.keys, &headers).await?,
            // The token itself, however the header spells "Bearer" and its spaces.
            headers
                .get(header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.trim().split_once(' '))
                .map(|(_, t)| t.trim().to_string())
                .unwrap_or_default(),
        ),
    };
    let district = readable_district(&s, &caller, q.district)?;
    let category = q
        .category
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_CATEGORY.into());
    known_category(&s, &category)?;
    let slot = s
        .streams
        .take(&token)
        .ok_or_else(|| ApiError::TooManyRequests {
            detail: format!("this token already holds {MAX_STREAMS_PER_TOKEN} live streams"),
            retry_after: 60,
        })?;
    // The stream ends when the token does; the client reconnects with a fresh one.
    let left = (caller.exp - chrono::Utc::now().timestamp()).max(0) as u64;
    let expiry = tokio::time::sleep(Duration::from_secs(left));
    let first = summary::compute(&s.pool, &s.orgs, &district, &category).await?;
    let rx = s.live.subscribe(&district, &category);
    let event =
        |v: &Value| Ok::<_, Infallible>(Event::default().event("summary").data(v.to_string()));
    let first = futures::stream::once(std::future::ready(event(&visible_summary(&caller, &first))));
    let updates = futures::stream::unfold(
        (rx, caller, slot),
        move |(mut rx, caller, slot)| async move {
            loop {
                rx.changed().await.ok()?;
                let latest = rx.borrow_and_update().clone();
                if let Some(v) = latest {
                    let out = event(&visible_summary(&caller, &v));
                    return Some((out, (rx, caller, slot)));
                }
            }
        },
    );
    let end = async {
        tokio::select! {
            () = expiry => {}
            () = qingling_shared::server::draining() => {}
        }
    };
    let events = futures::StreamExt::take_until(futures::StreamExt::chain(first, updates), end);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The most live streams one token may hold open at once (CONTRACT §13).
pub const MAX_STREAMS_PER_TOKEN: usize = 20;

/// The live streams open per token.
#[derive(Default)]
pub struct StreamSlots(std::sync::Mutex<HashMap<[u8; 32], usize>>);

/// One open stream's place; freed when the stream ends.
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    key: [u8; 32],
}

impl StreamSlots {
    fn take(self: &Arc<Self>, token: &str) -> Option<StreamSlot> {
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_default();
        if *n >= MAX_STREAMS_PER_TOKEN {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            slots: self.clone(),
            key,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The district dashboard: one self-contained page that asks for a token and follows the stream.
/// The district office's live dashboard (HTML; the token goes in the URL fragment).
#[utoipa::path(get, path = "/", tag = "ledger",
    responses((status = 200, description = "the dashboard page", content_type = "text/html")))]
pub(super) async fn dashboard() -> Response {
    let mut page = Html(include_str!("../../static/dashboard.html")).into_response();
    // The map may show a configured tile server's images.
    if let Some(origin) = super::points::tile_origin() {
        let policy = qingling_shared::http::CONTENT_SECURITY_POLICY.replace(
            "img-src 'self' data:",
            &format!("img-src 'self' data: {origin}"),
        );
        if let Ok(v) = header::HeaderValue::from_str(&policy) {
            page.headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    page
}

/// The dashboard's script, served apart: the page's Content-Security-Policy allows no inline
/// script.
#[utoipa::path(get, path = "/dashboard.js", tag = "ledger",
    responses((status = 200, description = "the dashboard's script", content_type = "text/javascript")))]
pub(super) async fn dashboard_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/dashboard.js"),
    )
}
