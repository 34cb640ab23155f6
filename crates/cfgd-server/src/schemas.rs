//! JSON Schemas over REST: `GET /v1/namespaces/{ns}/schemas`, and `GET`,
//! `PUT` (`?force=true` to store one that stored values fail,
//! `?dry_run=true` to check one and store nothing) and `DELETE`
//! on `…/schemas/{pattern}`. Reading needs read scope; changing a schema
//! changes what everyone may write, so it needs admin.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::auth::Scope;
use super::error::ApiError;
use super::rest::{entries_json, json_response, not_found, written};
use super::AppState;

#[derive(serde::Deserialize)]
pub(super) struct PutQuery {
    #[serde(default)]
    force: bool,
    /// Check the schema (and the stored values it would govern), store
    /// nothing.
    #[serde(default)]
    dry_run: bool,
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let schemas = client.list_schemas().await?;
    Ok(json_response(StatusCode::OK, entries_json(schemas), None))
}

pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    Path((ns, pattern)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let entry = client
        .get_schema(&pattern)
        .await?
        .ok_or_else(|| not_found(client.schema_etcd_key(&pattern)))?;
    let body = serde_json::to_vec(&entry.value).expect("serializes");
    Ok(json_response(StatusCode::OK, body, Some(entry.revision)))
}

pub(super) async fn put(
    State(state): State<Arc<AppState>>,
    Path((ns, pattern)): Path<(String, String)>,
    Query(query): Query<PutQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Admin).await?;
    let key = client.schema_etcd_key(&pattern)?;
    let schema: serde_json::Value =
        serde_json::from_slice(&body).map_err(|cause| cfgd::Error::InvalidJson { key, cause })?;
    if query.dry_run {
        client.check_schema(&pattern, &schema).await?;
        let body = serde_json::to_vec(&serde_json::json!({"name": pattern, "dry_run": true}))
            .expect("serializes");
        return Ok(json_response(StatusCode::OK, body, None));
    }
    let revision = client.set_schema(&pattern, &schema, query.force).await?;
    Ok(written(&pattern, revision))
}

pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    Path((ns, pattern)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Admin).await?;
    let revision = client
        .delete_schema(&pattern)
        .await?
        .ok_or_else(|| not_found(client.schema_etcd_key(&pattern)))?;
    Ok(written(&pattern, revision))
}
