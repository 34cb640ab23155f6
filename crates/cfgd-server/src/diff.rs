//! Diffs over REST, as `cfgctl diff` shows them:
//! - `POST /v1/namespaces/{ns}/diff` with a JSON object of name → value:
//!   what importing it would change;
//! - `GET /v1/namespaces/{ns}/diff?against=NS&prefix=P`: namespace `NS`
//!   (before) against `ns` (after), under the prefix.
//!
//! Both answer `[{"name", "differences": [{"op", "path", …}]}]` and need
//! read scope on every namespace they read.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::auth::Scope;
use super::error::ApiError;
use super::rest::json_response;
use super::AppState;

#[derive(serde::Deserialize)]
pub(super) struct AgainstQuery {
    against: Option<String>,
    #[serde(default)]
    prefix: String,
}

fn answer(diffs: &[cfgd::diff::NamedDiff]) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(diffs).expect("serializes"),
        None,
    )
}

pub(super) async fn document(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the body is not UTF-8 JSON"))?;
    Ok(answer(&client.diff_document(text).await?))
}

pub(super) async fn namespaces(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    Query(query): Query<AgainstQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let against = query.against.ok_or_else(|| {
        ApiError::bad_request("give ?against=NAMESPACE, or POST a document to compare")
    })?;
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let other = state.authorized(&headers, &against, Scope::Read).await?;
    Ok(answer(&client.diff_namespace(&other, &query.prefix).await?))
}
