//! One error type for every HTTP-facing failure, written out as `application/problem+json`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};

use crate::store::StoreError;

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request conflicts with the current state; `extra` is merged into the body.
    #[error("{detail}")]
    Conflict {
        detail: String,
        extra: Option<Value>,
    },
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    UriTooLong(String),
    #[error("the request body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{detail}")]
    Unprocessable {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    Unavailable(String),
    /// Too many tries (failed sign-ins from one address, streams of one token): retry after
    /// `retry_after` seconds.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict {
            detail: detail.into(),
            extra: None,
        }
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self::Unprocessable { detail, errors }
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad-request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed(_) => "method-not-allowed",
            Self::Conflict { .. } => "conflict",
            Self::PayloadTooLarge => "payload-too-large",
            Self::RequestTimeout(_) => "request-timeout",
            Self::UriTooLong(_) => "uri-too-long",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::Unprocessable { .. } => "validation-failed",
            Self::Unavailable(_) => "service-unavailable",
            Self::TooManyRequests { .. } => "too-many-requests",
            Self::Internal(_) => "internal-error",
        }
    }

    /// The problem document (RFC 9457).
    pub fn body(&self) -> Value {
        let status = self.status();
        let detail = match self {
            // Internals are logged, never shown.
            Self::Internal(_) => "an unexpected error occurred; it has been logged".to_string(),
            other => other.to_string(),
        };
        let mut body = json!({
            "type": format!("https://qingling.dev/problems/{}", self.slug()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
        });
        match self {
            Self::Unprocessable { errors, .. } => body["errors"] = json!(errors),
            Self::Conflict {
                extra: Some(Value::Object(extra)),
                ..
            } => {
                for (k, v) in extra {
                    body[k] = v.clone();
                }
            }
            _ => {}
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(e) => tracing::error!(error = ?e, "internal error"),
            Self::Unavailable(e) => tracing::warn!(error = %e, "dependency unavailable"),
            _ => {}
        }
        let mut res = (self.status(), axum::Json(self.body())).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            "application/problem+json".parse().unwrap(),
        );
        if let Self::TooManyRequests { retry_after, .. } = &self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, (*retry_after).into());
        }
        res
    }
}

/// True for errors that mean "the database is not reachable", as opposed to a bad query.
///
/// A deadlock or serialization failure (a rebuild holding the tables, say) also answers 503: the
/// transaction was rolled back whole and the request may simply be retried.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    ) || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08") || c == "40P01" || c == "40001" || c == "55P03"))
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            Self::Unavailable("the database is unavailable; try again shortly".into())
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { stream, expected, actual } => {
                Self::conflict(format!("{stream} changed concurrently (expected version {expected}, found {actual}); reload and retry"))
            }
            StoreError::Database(e) => e.into(),
            StoreError::Corrupt(e) => Self::Internal(e),
        }
    }
}
