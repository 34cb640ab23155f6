//! Errors as HTTP answers: `{"error": {"code", "message"}}` with the
//! status that says what happened; a schema violation (422) adds
//! `"failures": [{"pointer", "message"}]`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::bodies::{ErrorBody, ErrorDetail, Failure};
use cfgd::{Error, ErrorKind};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// For a schema violation: each failure, as pointer and message.
    failures: Vec<cfgd::SchemaFailure>,
    /// Seconds to wait before retrying (`Retry-After`), for a refusal that
    /// passes.
    retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            failures: Vec::new(),
            retry_after: None,
        }
    }

    /// The same error, telling the client to retry after `secs` seconds.
    pub(super) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub(super) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub(super) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong, in words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The HTTP status of each [`ErrorKind`]: the one table the server's error
/// answers come from (`cfgd::ErrorKind`'s docs show it).
pub fn http_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::Tls => StatusCode::BAD_REQUEST,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::SchemaViolation | ErrorKind::InvalidData => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::PRECONDITION_FAILED,
        ErrorKind::Moved | ErrorKind::WrongState | ErrorKind::SchemaConflict => {
            StatusCode::CONFLICT
        }
        ErrorKind::Refused => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable | ErrorKind::Timeout => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::RevisionUnavailable => StatusCode::GONE,
        // This server lacks a secret's key, or etcd refuses its user: the
        // operator's to fix, not the caller's.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = http_status(e.kind());
        if status.is_server_error() {
            tracing::warn!(error = %e, "request failed");
        }
        let message = match &e {
            // No forcing over HTTP: the way for a token is a request.
            Error::Protected { key, pattern } => format!(
                "{key} is protected by the namespace policy (pattern {pattern:?}): open a change request (POST /v1/namespaces/{{ns}}/requests)"
            ),
            e => e.to_string(),
        };
        let mut error = ApiError::new(status, e.code(), message);
        if let Error::SchemaViolation { failures, .. } = e {
            error.failures = failures;
        }
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                failures: self
                    .failures
                    .into_iter()
                    .map(|f| Failure {
                        pointer: f.pointer,
                        message: f.message,
                    })
                    .collect(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        response
    }
}

/// The error code of an answer made outside any handler (axum's own: no
/// route, wrong method, an extractor's refusal).
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    }
}

/// Every error answer in the one error body. Handlers make theirs with
/// [`ApiError`]; this catches axum's (plain text, or no body: an unknown
/// route, a method the route lacks, a query or path that does not parse,
/// a body over the limit), keeping status and headers (`Allow`).
pub(super) async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // axum's texts are one line; a longer body is not one of them.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let text = text.trim();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text.to_owned()
    };
    let error = ApiError::new(status, code_of(status), message).into_response();
    let (error_parts, body) = error.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        error_parts.headers[axum::http::header::CONTENT_TYPE].clone(),
    );
    Response::from_parts(parts, body)
}
