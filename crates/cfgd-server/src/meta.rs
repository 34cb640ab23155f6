//! A namespace's settings over REST: `GET /v1/namespaces/{ns}/meta` (read
//! scope) answers them with every default filled in; `PUT` (admin scope)
//! stores a JSON object of known fields, and refuses anything else with 400
//! naming the field, writing nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::auth::Scope;
use super::error::ApiError;
use super::releases::ok;
use super::rest::written;
use super::AppState;

pub(super) async fn get_meta(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let meta = client.meta().await?;
    Ok(ok(&serde_json::to_value(meta).expect("serializes")))
}

pub(super) async fn put_meta(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Admin).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the settings must be UTF-8 JSON"))?;
    let revision = client.set_meta_json(text).await?;
    Ok(written("meta", revision))
}
