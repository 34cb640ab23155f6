//! Errors as HTTP answers: `{"error": {"code", "message"}}` with the
//! status that says what happened; a schema violation (422) adds
//! `"failures": [{"pointer", "message"}]`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

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
        let mut body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        if !self.failures.is_empty() {
            let failures: Vec<_> = self
                .failures
                .iter()
                .map(|f| serde_json::json!({"pointer": f.pointer, "message": f.message}))
                .collect();
            body["error"]["failures"] = failures.into();
        }
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
