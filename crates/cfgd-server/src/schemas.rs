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
use super::rest::{checked, entries_json, json_response, not_found, written};
use super::AppState;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PutQuery {
    /// Store it even though stored values fail it.
    #[serde(default)]
    force: bool,
    /// Check the schema (and the stored values it would govern), store
    /// nothing.
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/schemas", tag = "schemas", operation_id = "listSchemas",
    params(crate::params::NsPath),
    responses((status = 200, description = "Every schema, by pattern", body = Vec<crate::bodies::Item>))
)]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let schemas = client.list_schemas().await?;
    Ok(json_response(StatusCode::OK, entries_json(schemas), None))
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/schemas/{pattern}", tag = "schemas", operation_id = "getSchema",
    params(crate::params::PatternPath),
    responses(
        (status = 200, description = "The JSON Schema (draft 2020-12)", body = serde_json::Value, headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match"))),
        (status = 404, description = "No schema for this pattern", body = crate::bodies::ErrorBody),
    )
)]
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

#[utoipa::path(
    put, path = "/v1/namespaces/{ns}/schemas/{pattern}", tag = "schemas", operation_id = "putSchema",
    params(crate::params::PatternPath, PutQuery, crate::params::Message),
    request_body(content = crate::bodies::SchemaDocument, description = "A JSON Schema, draft 2020-12", content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (or, with dry_run, checked and not stored)", body = crate::bodies::WriteAnswer, headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match")),
            links(("getSchema" = (operation_id = "getSchema", parameters(("ns" = "$request.path.ns"), ("pattern" = "$request.path.pattern")))))),
        (status = 409, description = "Stored values fail it (store it anyway with force=true)", body = crate::bodies::ErrorBody),
    )
)]
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
        return Ok(checked(&pattern));
    }
    let revision = client.set_schema(&pattern, &schema, query.force).await?;
    Ok(written(&pattern, revision))
}

#[utoipa::path(
    delete, path = "/v1/namespaces/{ns}/schemas/{pattern}", tag = "schemas", operation_id = "deleteSchema",
    params(crate::params::PatternPath, crate::params::Message),
    responses(
        (status = 200, description = "Deleted", body = crate::bodies::Written, headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match"))),
        (status = 404, description = "No schema for this pattern", body = crate::bodies::ErrorBody),
    )
)]
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
