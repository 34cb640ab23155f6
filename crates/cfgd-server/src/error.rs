//! Errors as HTTP answers: `{"error": {"code", "message"}}` with the
//! status that says what happened; a schema violation (422) adds
//! `"failures": [{"pointer", "message"}]`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use cfgd::Error;

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

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match &e {
            Error::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Error::SchemaViolation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "schema_violation"),
            Error::InvalidSchema { .. } => (StatusCode::BAD_REQUEST, "invalid_schema"),
            Error::SchemaConflict { .. } => (StatusCode::CONFLICT, "schema_conflict"),
            Error::InvalidFlag { .. } => (StatusCode::BAD_REQUEST, "invalid_flag"),
            Error::InvalidPolicy { .. } => (StatusCode::BAD_REQUEST, "invalid_policy"),
            Error::Protected { .. } => (StatusCode::FORBIDDEN, "protected"),
            Error::SelfApproval { .. } => (StatusCode::FORBIDDEN, "self_approval"),
            Error::RequestState { .. } => (StatusCode::CONFLICT, "request_state"),
            Error::RequestMoved { .. } => (StatusCode::CONFLICT, "request_moved"),
            // This server lacks the key of a secret it holds: its operator's to fix.
            Error::Secret { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "secret"),
            e if e.is_invalid_input() => (StatusCode::BAD_REQUEST, "invalid_request"),
            Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Error::Conflict { .. } => (StatusCode::PRECONDITION_FAILED, "conflict"),
            Error::ReleaseMoved { .. } => (StatusCode::CONFLICT, "release_moved"),
            Error::CorruptValue { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "corrupt_value"),
            e if e.is_unreachable() => (StatusCode::SERVICE_UNAVAILABLE, "etcd_unavailable"),
            Error::Timeout { .. } => (StatusCode::SERVICE_UNAVAILABLE, "etcd_unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
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
        let mut error = ApiError::new(status, code, message);
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
