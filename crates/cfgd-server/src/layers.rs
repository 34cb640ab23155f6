//! Reads across a namespace's layers over REST: `?layer=own` (the own layer
//! only) and `?explain=true` (each layer's value, the effective one, and
//! the namespace every field came from).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::auth::Scope;
use super::error::ApiError;
use super::rest::{json_response, not_found, value_response};
use super::AppState;
use crate::params::{LayerChoice, LayerQuery};

/// A read as a client with `labels` sees it: the overlays they select
/// laid over the effective value.
#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/config/{name}", tag = "config", operation_id = "getConfig",
    params(crate::params::NamePath, crate::params::ReadPreconditions, crate::params::LayerQuery, crate::params::LabelsHeader),
    responses(
        (status = 200, description = "The value (its effective value in a namespace that extends others; with explain, a LayersAnswer)", body = serde_json::Value, headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match"))),
        (status = 304, description = "Not modified: the value is still the one If-None-Match names", headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match"))),
        (status = 404, description = "No such name", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn get_config(
    State(state): State<Arc<AppState>>,
    Path((ns, name)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<crate::params::LayerQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if query.explain || query.layer == Some(crate::params::LayerChoice::Own) {
        return read(&state, &ns, &name, &headers, &query).await;
    }
    let labels = crate::labels::labels(&headers)?;
    if !labels.is_empty() {
        return labeled(&state, &ns, &name, &headers, &labels).await;
    }
    super::rest::get_in(
        super::conditional::Section::Config,
        &state,
        &ns,
        &name,
        &headers,
    )
    .await
}

pub(super) async fn labeled(
    state: &AppState,
    ns: &str,
    name: &str,
    headers: &HeaderMap,
    labels: &cfgd::overlays::Labels,
) -> Result<Response, ApiError> {
    let client = state.authorized(headers, ns, Scope::Read).await?;
    let entry = client
        .get_entry_labeled(name, labels)
        .await?
        .ok_or_else(|| not_found(client.etcd_key(name)))?;
    if entry.secret {
        state.may_read_secrets(headers, ns, name).await?;
    }
    value_response(headers, &entry)
}

pub(super) async fn read(
    state: &AppState,
    ns: &str,
    name: &str,
    headers: &HeaderMap,
    query: &LayerQuery,
) -> Result<Response, ApiError> {
    let client = state.authorized(headers, ns, Scope::Read).await?;
    if query.explain {
        let explained = client.explain(name).await?;
        // A secret anywhere in the line shows only to those who may read it.
        let policy = client.effective_policy().await?;
        if policy.is_secret(name) {
            state.may_read_secrets(headers, ns, name).await?;
        }
        if explained.value.is_none() && explained.layers.iter().all(|l| l.value.is_none()) {
            return Err(not_found(client.etcd_key(name)).into());
        }
        let body = serde_json::to_vec(&explained).expect("serializes");
        return Ok(json_response(StatusCode::OK, body, None));
    }
    debug_assert_eq!(query.layer, Some(LayerChoice::Own));
    let entry = client
        .get_own_entry(name)
        .await?
        .ok_or_else(|| not_found(client.etcd_key(name)))?;
    if entry.secret {
        state.may_read_secrets(headers, ns, name).await?;
    }
    value_response(headers, &entry)
}
