//! Webhooks over REST (the elected worker delivers them, see `workers`):
//! - `POST /v1/namespaces/{ns}/webhooks` with `{"url", "events", "prefix",
//!   "format", "secret"}` adds one and answers its id and secret (admin);
//! - `GET …/webhooks`, `GET …/webhooks/{id}`, `GET …/{id}/deliveries`
//!   (read); `DELETE …/webhooks/{id}`, `POST …/{id}/replay?from=REV`,
//!   `POST …/{id}/test` (admin).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Scope;
use super::error::ApiError;
use super::rest::ok;
use super::AppState;

/// `POST …/webhooks`' answer: the only time the secret is shown.
#[derive(Serialize, ToSchema)]
pub(crate) struct Added {
    /// The new webhook's id.
    id: String,
    /// Its signing secret, `whsec_…`: keep it, it is not shown again.
    secret: String,
    /// The definition stored.
    webhook: cfgd::webhooks::Webhook,
}

#[utoipa::path(
    post, path = "/v1/namespaces/{ns}/webhooks", tag = "webhooks", operation_id = "addWebhook",
    params(crate::params::NsPath),
    request_body(content = cfgd::webhooks::WebhookSpec, content_type = "application/json"),
    responses(
        (status = 200, description = "Added; deliveries start with the next change", body = Added),
        (status = 400, description = "A bad URL, event type or format, or a receiver on loopback", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn add(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Admin).await?;
    let spec: cfgd::webhooks::WebhookSpec = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be {{\"url\", \"events\": [...], \"prefix\", \"format\", \"secret\"}}: {e}"
        ))
    })?;
    let (webhook, secret) = client
        .add_webhook(&spec, state.settings.webhooks.allow_loopback)
        .await?;
    Ok(ok(&Added {
        id: webhook.id.clone(),
        secret,
        webhook,
    }))
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/webhooks", tag = "webhooks", operation_id = "listWebhooks",
    params(crate::params::NsPath),
    responses((status = 200, description = "The namespace's webhooks, oldest first", body = Vec<cfgd::webhooks::Webhook>))
)]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    Ok(ok(&client.webhooks().await?))
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/webhooks/{id}", tag = "webhooks", operation_id = "showWebhook",
    params(crate::params::IdPath),
    responses(
        (status = 200, description = "The webhook, its cursor and the events it gave up on", body = cfgd::webhooks::WebhookShown),
        (status = 404, description = "No such webhook", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    Path((ns, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    Ok(ok(&client.webhook(&id).await?))
}

#[utoipa::path(
    delete, path = "/v1/namespaces/{ns}/webhooks/{id}", tag = "webhooks", operation_id = "removeWebhook",
    params(crate::params::IdPath),
    responses(
        (status = 204, description = "Removed; deliveries to it stop"),
        (status = 404, description = "No such webhook", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn remove(
    State(state): State<Arc<AppState>>,
    Path((ns, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Admin).await?;
    client.remove_webhook(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/webhooks/{id}/deliveries", tag = "webhooks", operation_id = "webhookDeliveries",
    params(crate::params::IdPath),
    responses(
        (status = 200, description = "The last 100 attempts, newest first", body = Vec<cfgd::webhooks::Attempt>),
        (status = 404, description = "No such webhook", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn deliveries(
    State(state): State<Arc<AppState>>,
    Path((ns, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    Ok(ok(&client.webhook_deliveries(&id).await?))
}

/// `?from=` as documented; the handler reads it after the token is
/// checked (an extractor's refusal would come first).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct ReplayQuery {
    /// Deliver again every change from this revision on.
    #[param(minimum = 1)]
    from: i64,
}

#[derive(Deserialize)]
pub(super) struct ReplayArgs {
    from: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/namespaces/{ns}/webhooks/{id}/replay", tag = "webhooks", operation_id = "replayWebhook",
    params(crate::params::IdPath, ReplayQuery),
    responses(
        (status = 204, description = "The worker delivers again from that revision"),
        (status = 404, description = "No such webhook", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn replay(
    State(state): State<Arc<AppState>>,
    Path((ns, id)): Path<(String, String)>,
    Query(query): Query<ReplayArgs>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Admin).await?;
    let from = query
        .from
        .as_deref()
        .and_then(|f| f.parse::<i64>().ok())
        .ok_or_else(|| {
            ApiError::bad_request("?from=REVISION is needed: the first revision to deliver again")
        })?;
    client.replay_webhook(&id, from).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post, path = "/v1/namespaces/{ns}/webhooks/{id}/test", tag = "webhooks", operation_id = "testWebhook",
    params(crate::params::IdPath),
    responses(
        (status = 200, description = "The attempt: what the receiver answered", body = cfgd::webhooks::Attempt),
        (status = 404, description = "No such webhook", body = crate::bodies::ErrorBody),
        (status = 504, description = "No elected worker sent it within 10 s", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn test(
    State(state): State<Arc<AppState>>,
    Path((ns, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Admin).await?;
    Ok(ok(&client
        .test_webhook(&id, Duration::from_secs(10))
        .await?))
}
