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
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::auth::Scope;
use super::error::ApiError;
use super::rest::json_response;
use super::AppState;

/// A release's body, and a change request's: values, flags, and (for a
/// release) whether to only show what it would change.
#[derive(serde::Deserialize)]
pub(super) struct Publish {
    #[serde(default)]
    config: serde_json::Map<String, Value>,
    flags: Option<Value>,
    #[serde(default)]
    dry_run: bool,
}

impl Publish {
    /// The body read, as the config document and flagd document text the
    /// library takes.
    pub(super) fn read(body: &[u8]) -> Result<(Self, String, Option<String>), ApiError> {
        let publish: Publish = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body must be {{\"config\": {{name: value}}, \"flags\": {{flagd document}}}}: {e}"
            ))
        })?;
        let config = Value::Object(publish.config.clone()).to_string();
        let flags = publish.flags.as_ref().map(Value::to_string);
        Ok((publish, config, flags))
    }
}

#[derive(serde::Deserialize)]
pub(super) struct ListQuery {
    limit: Option<usize>,
}

pub(super) fn ok(body: &Value) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(body).expect("serializes"),
        None,
    )
}

fn record_json(record: &cfgd::audit::AuditRecord) -> Value {
    serde_json::to_value(record).expect("serializes")
}

pub(super) async fn publish(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    let (body, config, flags) = Publish::read(&body)?;
    let (plan, release) = client
        .apply(&config, flags.as_deref(), body.dry_run)
        .await?;
    Ok(ok(&match release {
        Some(r) => json!({"id": r.id, "revision": r.revision, "changes": r.changes}),
        None => json!({"id": null, "revision": null, "changes": plan.changes}),
    }))
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(20).clamp(1, 1000);
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let records: Vec<Value> = client
        .releases(limit)
        .await?
        .iter()
        .map(record_json)
        .collect();
    Ok(ok(&Value::Array(records)))
}

pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    Path((ns, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let (record, changes) = client.release(&id).await?;
    let mut body = record_json(&record);
    body["changes"] = serde_json::to_value(changes).expect("serializes");
    Ok(ok(&body))
}

pub(super) async fn revert(
    State(state): State<Arc<AppState>>,
    Path((ns, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    let release = client.revert_release(&id).await?;
    Ok(ok(
        &json!({"id": release.id, "revision": release.revision, "changes": release.changes}),
    ))
}
