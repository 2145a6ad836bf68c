//! HTTP plumbing shared by the services: extractors whose rejections are problem+json, the
//! fallback, request metrics.

use std::time::Instant;

use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::{header, request::Parts, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{ApiError, FieldError};

/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON body: 415 unless `Content-Type` is JSON, 413 over 64 KiB, 400 when malformed or of the
/// wrong types, 422 when a required field is missing.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "the request body must be application/json".into(),
            ));
        }
        if let Some(charset) = charset_of(&req) {
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the request body must be UTF-8, not {charset}"
                )));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                // The body stopped arriving (the server's body timeout) or the client left.
                ApiError::RequestTimeout(format!("the request body did not arrive in time: {e}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON with the error classes of CONTRACT §3.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // One pass that also refuses a key given twice (it would silently keep the last).
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde::de::DeserializeSeed::deserialize(StrictValue, &mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            if e.to_string().contains("appears twice") {
                ApiError::BadRequest(format!("the body is ambiguous: {e}"))
            } else {
                ApiError::BadRequest(format!("the body is not well-formed JSON: {e}"))
            }
        })?;
    if let Some(path) = nul_at(&value, "") {
        // PostgreSQL text cannot hold U+0000.
        return Err(ApiError::invalid_field(
            if path.is_empty() { "." } else { &path },
            "must not contain the NUL character (U+0000)",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if let Some(rest) = inner.strip_prefix("missing field `") {
            let field = rest.trim_end_matches('`');
            let full = if path == "." || path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            ApiError::invalid(vec![FieldError::new(full, "is required")])
        } else {
            ApiError::BadRequest(format!("{path}: {inner}"))
        }
    })
}

/// The `charset` parameter of the request's `Content-Type`, if any.
fn charset_of(req: &Request) -> Option<String> {
    let ct = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// A JSON document as a `Value`, refusing an object that names a key twice.
struct StrictValue;

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = serde_json::Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<serde_json::Value, D::Error> {
        d.deserialize_any(StrictValue)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictValue {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, v: bool) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<serde_json::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<serde_json::Value, A::Error> {
        let mut items = vec![];
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            items.push(v);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<serde_json::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} appears twice"
                )));
            }
            let v = map.next_value_seed(StrictValue)?;
            out.insert(key, v);
        }
        Ok(serde_json::Value::Object(out))
    }
}

/// The path of the first string (or key) holding U+0000, if any.
fn nul_at(v: &serde_json::Value, path: &str) -> Option<String> {
    match v {
        serde_json::Value::String(s) if s.contains('\0') => Some(path.to_string()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_at(x, &format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, x)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                Some(p)
            } else {
                nul_at(x, &p)
            }
        }),
        _ => None,
    }
}

/// Query parameters with a problem+json 400 on failure.
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_from_str(q).map(QueryParams)
    }
}

fn serde_urlencoded_from_str<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| ApiError::BadRequest("bad query string".into()))?,
    )
    .map(|axum::extract::Query(t)| t)
    .map_err(|e| ApiError::BadRequest(format!("bad query parameters: {}", e.body_text())))
}

/// A UUID path segment; anything else is an unknown id (404).
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound("no such resource".into()))?;
        raw.parse()
            .map(PathId)
            .map_err(|_| ApiError::NotFound(format!("{raw} is not a known id")))
    }
}

pub async fn fallback() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// Turns the framework's own plain-text or empty error answers (405, a path or query that is not
/// UTF-8, …) into problem+json with the same status.
pub async fn problem_for_plain_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let plain = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return res;
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = res.headers().get(header::ALLOW).cloned();
        let mut problem =
            ApiError::MethodNotAllowed("method not allowed on this route".into()).into_response();
        if let Some(allow) = allow {
            problem.headers_mut().insert(header::ALLOW, allow);
        }
        return problem;
    }
    let detail = match axum::body::to_bytes(res.into_body(), 4096).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// Failed authentication per client address (CONTRACT §13): past [`MAX_AUTH_FAILURES`] in a
/// minute, a further failure (401, or Open311's 403 for a missing or unknown `api_key`) is answered
/// 429 with `Retry-After` instead. A request that authenticates is never refused: the limit only
/// changes the answer to one that failed anyway.
pub async fn limit_auth_failures(req: Request, next: Next) -> Response {
    let ip = crate::server::peer(&req).map(|p| p.ip());
    let open311 = req.uri().path().starts_with("/open311/");
    // An Open311 key can be guessed: past the limit, a post is refused before its key is tried.
    if let Some(ip) = ip.filter(|_| open311 && req.method() == axum::http::Method::POST) {
        if let Some(retry_after) = AUTH_FAILURES.blocked(ip, Instant::now()) {
            return ApiError::TooManyRequests {
                detail: format!(
                    "more than {MAX_AUTH_FAILURES} failed sign-ins from this address in a minute"
                ),
                retry_after,
            }
            .into_response();
        }
    }
    let res = next.run(req).await;
    let failed = res.status() == StatusCode::UNAUTHORIZED
        || (open311 && res.status() == StatusCode::FORBIDDEN);
    match ip {
        Some(ip) if failed => match AUTH_FAILURES.record(ip, Instant::now()) {
            Some(retry_after) => ApiError::TooManyRequests {
                detail: format!(
                    "more than {MAX_AUTH_FAILURES} failed sign-ins from this address in a minute"
                ),
                retry_after,
            }
            .into_response(),
            None => res,
        },
        _ => res,
    }
}

/// Failed sign-ins one address may make in a minute.
pub const MAX_AUTH_FAILURES: usize = 30;

static AUTH_FAILURES: std::sync::LazyLock<FailureLog> = std::sync::LazyLock::new(Default::default);

/// Recent failures per address.
#[derive(Default)]
struct FailureLog(
    std::sync::Mutex<
        std::collections::HashMap<std::net::IpAddr, std::collections::VecDeque<Instant>>,
    >,
);

/// An IPv6 client holds a whole /64: count them as one address.
fn client_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        other => other,
    }
}

const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Addresses remembered at most; past it the old memories go, then all.
const MAX_ADDRESSES: usize = 100_000;

impl FailureLog {
    /// `Some(seconds to wait)` while `ip` is over the limit.
    fn blocked(&self, ip: std::net::IpAddr, now: Instant) -> Option<u64> {
        let log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let times = log.get(&client_key(ip))?;
        let recent: Vec<&Instant> = times
            .iter()
            .filter(|t| now.duration_since(**t) < WINDOW)
            .collect();
        (recent.len() >= MAX_AUTH_FAILURES)
            .then(|| (WINDOW - now.duration_since(*recent[0])).as_secs().max(1))
    }

    /// Records a failure at `now`; `Some(seconds to wait)` when it is one too many.
    fn record(&self, ip: std::net::IpAddr, now: Instant) -> Option<u64> {
        let ip = client_key(ip);
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= MAX_ADDRESSES {
            // Many addresses: forget those whose failures are all old, and if that is not
            // enough, everything (memory stays bounded; the count starts again).
            log.retain(|_, t| {
                t.back()
                    .is_some_and(|last| now.duration_since(*last) < WINDOW)
            });
            if log.len() >= MAX_ADDRESSES {
                log.clear();
            }
        }
        let times = log.entry(ip).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        times.push_back(now);
        if times.len() <= MAX_AUTH_FAILURES {
            return None;
        }
        times.pop_front();
        let oldest = *times.front().expect("more than the limit");
        Some((WINDOW - now.duration_since(oldest)).as_secs().max(1))
    }
}

/// The longest request target served (414 beyond, as problem+json).
pub const MAX_URI: usize = 8 * 1024;

/// The page policy: scripts only from this origin (none inline), no framing. The console's
/// differs only in `connect-src` and `img-src` (see [`console_policy`]).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The console's page policy: [`CONTENT_SECURITY_POLICY`], and it may call `services` and show
/// photos it fetched (blob URLs).
pub fn console_policy(services: &[&str]) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; connect-src 'self' {}; frame-ancestors 'none'; \
         base-uri 'none'; form-action 'self'",
        services.join(" ")
    )
}

/// Security headers (CONTRACT §13): `nosniff` on every answer; `Cache-Control: no-store` on API
/// answers (they may carry personal data) unless they say otherwise; on HTML pages a policy with
/// no inline script and no framing. An over-long request target is 414.
pub async fn security_headers(req: Request, next: Next) -> Response {
    if req.uri().to_string().len() > MAX_URI {
        return ApiError::UriTooLong(format!("the request target is longer than {MAX_URI} bytes"))
            .into_response();
    }
    let path = req.uri().path();
    let api = path.starts_with("/v1/") || path.starts_with("/open311/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    if api && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    let html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    // A page that calls other origins (the console) brings its own policy.
    if html && !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    if html {
        h.insert(
            header::X_FRAME_OPTIONS,
            header::HeaderValue::from_static("DENY"),
        );
        h.insert(
            header::REFERRER_POLICY,
            header::HeaderValue::from_static("no-referrer"),
        );
    }
    res
}

pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// Request count and latency per route, and one access-log line per request, carrying the
/// correlation id: the client's `X-Correlation-Id` (a UUID) or a new one, echoed in the answer and
/// stamped on every event the request causes. Never logs headers or bodies (tokens, phones).
pub async fn track_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let correlation_id = req
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
        .unwrap_or_else(Uuid::now_v7);
    let span = tracing::info_span!("request", %correlation_id, %method, %route);
    let mut res = crate::event::CORRELATION_ID
        .scope(
            correlation_id,
            tracing::Instrument::instrument(next.run(req), span.clone()),
        )
        .await;
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            target: "qingling::access",
            status,
            ms = (elapsed.as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
            "request"
        )
    });
    if let Ok(v) = correlation_id.to_string().parse() {
        res.headers_mut().insert(CORRELATION_HEADER, v);
    }
    metrics::counter!("qingling_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("qingling_http_request_duration_seconds", "method" => method, "route" => route).record(elapsed.as_secs_f64());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        n: i32,
        inner: Inner,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        s: String,
    }

    #[test]
    fn json_errors_have_the_contract_classes() {
        assert!(matches!(
            parse_json::<Body>(b"{not json"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(
            matches!(parse_json::<Body>(br#"{"n":"x","inner":{"s":"a"}}"#), Err(ApiError::BadRequest(m)) if m.contains('n'))
        );
        match parse_json::<Body>(br#"{"n":1,"inner":{}}"#) {
            Err(ApiError::Unprocessable { errors, .. }) => assert_eq!(errors[0].field, "inner.s"),
            other => panic!("{other:?}"),
        }
        assert!(parse_json::<Body>(br#"{"n":1,"inner":{"s":"a"}}"#).is_ok());
        assert!(matches!(
            parse_json::<Body>(br#"{"n":1,"inner":{"s":"a","s":"b"}}"#),
            Err(ApiError::BadRequest(m)) if m.contains("twice")
        ));
        match parse_json::<Body>(br#"{"n":1,"inner":{"s":"a\u0000b"}}"#) {
            Err(ApiError::Unprocessable { errors, .. }) => assert_eq!(errors[0].field, "inner.s"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failures_past_the_limit_in_a_minute_are_refused_and_forgotten_after_it() {
        let log = FailureLog::default();
        let (a, b): (std::net::IpAddr, std::net::IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for n in 0..MAX_AUTH_FAILURES {
            assert_eq!(
                log.record(a, t0 + std::time::Duration::from_millis(n as u64)),
                None
            );
        }
        let wait = log.record(a, t0 + std::time::Duration::from_secs(1));
        assert!(wait.is_some_and(|s| (58..=60).contains(&s)), "{wait:?}");
        assert_eq!(log.record(b, t0), None, "another address is not affected");
        assert!(log
            .blocked(a, t0 + std::time::Duration::from_secs(2))
            .is_some());
        assert!(log.blocked(b, t0).is_none());
        let (v6a, v6b): (std::net::IpAddr, std::net::IpAddr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::ffff:2".parse().unwrap(),
        );
        assert_eq!(client_key(v6a), client_key(v6b), "one /64 is one client");
        assert_eq!(
            log.record(a, t0 + std::time::Duration::from_secs(62)),
            None,
            "a minute later the count starts again"
        );
    }
}
