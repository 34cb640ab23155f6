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
use super::rest::ok;
use super::rest::written;
use super::AppState;

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/meta", tag = "governance", operation_id = "getMeta",
    params(crate::params::NsPath),
    responses((status = 200, description = "The namespace's settings, every default filled in", body = cfgd::meta::Meta))
)]
pub(super) async fn get_meta(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let meta = client.meta().await?;
    Ok(ok(&meta))
}

#[utoipa::path(
    put, path = "/v1/namespaces/{ns}/meta", tag = "governance", operation_id = "putMeta",
    params(crate::params::NsPath, crate::params::Message),
    request_body(content = cfgd::meta::Meta, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored", body = crate::bodies::Written, headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match"))),
        (status = 409, description = "extends cannot stand with what etcd holds: a missing namespace, itself, a cycle, more than 8 levels", body = crate::bodies::ErrorBody),
    )
)]
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
