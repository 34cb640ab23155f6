//! Releases over REST:
//! - `POST /v1/namespaces/{ns}/releases` with `{"config": {...}, "flags":
//!   {flagd document}, "dry_run": false}` publishes one (write scope;
//!   `X-Cfgd-Message` is its message);
//! - `GET …/releases` lists them, `GET …/releases/{id}` shows one with its
//!   diff (read scope);
//! - `POST …/releases/{id}/revert` reverts one (write scope).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use super::auth::Scope;
use super::error::ApiError;
use super::rest::ok;
use super::AppState;
use crate::bodies::{Publish, Published, ReleaseShown};

/// A release's body, or a change request's, read: the body, and the
/// config document and flagd document text the library takes.
pub(super) fn read_publish(body: &[u8]) -> Result<(Publish, String, Option<String>), ApiError> {
    let publish: Publish = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be {{\"config\": {{name: value}}, \"flags\": {{flagd document}}}}: {e}"
        ))
    })?;
    if publish
        .flags
        .as_ref()
        .is_some_and(|f| !f.contains_key("flags"))
    {
        return Err(ApiError::bad_request(
            "flags must be a flagd document, {\"flags\": {name: definition}}: it has no \"flags\"",
        ));
    }
    let config = Value::Object(publish.config.clone()).to_string();
    let flags = publish.flags.clone().map(|f| Value::Object(f).to_string());
    Ok((publish, config, flags))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// How many (20 unless given; at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[utoipa::path(
    post, path = "/v1/namespaces/{ns}/releases", tag = "governance", operation_id = "publishRelease",
    params(crate::params::NsPath, crate::params::Message),
    request_body(content = crate::bodies::Publish, content_type = "application/json"),
    responses(
        (status = 200, description = "Published in one transaction (with dry_run: what it would change)", body = crate::bodies::Published,
            links(
                ("showRelease" = (operation_id = "showRelease", parameters(("ns" = "$request.path.ns"), ("id" = "$response.body#/id")))),
                ("revertRelease" = (operation_id = "revertRelease", parameters(("ns" = "$request.path.ns"), ("id" = "$response.body#/id")))),
            )),
        (status = 412, description = "A name changed while the release was being made", body = crate::bodies::ErrorBody), (status = 422, description = "A value fails the schema that governs it", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn publish(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    let (body, config, flags) = read_publish(&body)?;
    let (plan, release) = client
        .apply(&config, flags.as_deref(), body.dry_run)
        .await?;
    Ok(ok(&match release {
        Some(release) => Published::from(release),
        None => Published {
            id: None,
            revision: None,
            changes: plan.changes,
        },
    }))
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/releases", tag = "governance", operation_id = "listReleases",
    params(crate::params::NsPath, ListQuery),
    responses((status = 200, description = "Releases, newest first", body = Vec<cfgd::audit::AuditRecord>))
)]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let limit = crate::params::limit(query.limit, 20)?;
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    Ok(ok(&client.releases(limit).await?))
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/releases/{id}", tag = "governance", operation_id = "showRelease",
    params(crate::params::IdPath),
    responses(
        (status = 200, description = "The release and what it changed", body = crate::bodies::ReleaseShown),
        (status = 404, description = "No such release", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    Path((ns, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let (record, changes) = client.release(&id).await?;
    Ok(ok(&ReleaseShown { record, changes }))
}

#[utoipa::path(
    post, path = "/v1/namespaces/{ns}/releases/{id}/revert", tag = "governance", operation_id = "revertRelease",
    params(crate::params::IdPath, crate::params::Message),
    responses(
        (status = 200, description = "Reverted: a new release that restores what it changed", body = crate::bodies::Published),
        (status = 404, description = "No such release", body = crate::bodies::ErrorBody), (status = 409, description = "A name it changed has changed since", body = crate::bodies::ErrorBody), (status = 410, description = "Compacted: etcd no longer holds the values before it", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn revert(
    State(state): State<Arc<AppState>>,
    Path((ns, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    Ok(ok(&Published::from(client.revert_release(&id).await?)))
}
