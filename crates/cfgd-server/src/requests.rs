//! Change requests and the policy over REST:
//! - `GET /v1/namespaces/{ns}/policy` (read scope) and `PUT` (admin);
//! - `POST …/requests` with `{"config": {...}, "flags": {flagd document}}`
//!   opens one as the token (write scope; `X-Cfgd-Message` is its message);
//! - `GET …/requests?state=open&limit=N` lists them, `GET …/requests/{id}`
//!   shows one with what merging it would change now (read scope);
//! - `POST …/requests/{id}/approve`, `…/merge`, `…/rebase`, `…/close`
//!   (write scope). A token never approves its own request.
//!
//! Direct writes to protected names are refused by the library, and
//! answered 403 `protected`. The library logs each step, and puts it in
//! the audit trail.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::auth::Scope;
use super::error::ApiError;
use super::releases::{ok, Publish};
use super::rest::{json_response, written};
use super::AppState;
use cfgd::RequestState;

#[derive(serde::Deserialize)]
pub(super) struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn get_policy(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    Ok(ok(
        &serde_json::to_value(client.policy().await?).expect("serializes")
    ))
}

pub(super) async fn put_policy(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Admin).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the policy must be UTF-8 JSON"))?;
    let revision = client.set_policy_json(text).await?;
    Ok(written("policy", revision))
}

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    let (_, config, flags) = Publish::read(&body)?;
    let request = client.create_request(&config, flags.as_deref()).await?;
    let body = serde_json::to_vec(&request).expect("serializes");
    Ok(json_response(StatusCode::CREATED, body, None))
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let wanted = match query.state.as_deref() {
        None | Some("all") => None,
        Some(state) => Some(
            state
                .parse::<RequestState>()
                .map_err(|e| ApiError::bad_request(format!("?state: {e} (or all)")))?,
        ),
    };
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let requests = client.requests(wanted, limit).await?;
    Ok(ok(&serde_json::to_value(requests).expect("serializes")))
}

pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    Path((ns, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let review = client.review_request(&id).await?;
    let mut body = serde_json::to_value(&review.request).expect("serializes");
    body["changes"] = serde_json::to_value(&review.changes).expect("serializes");
    body["moved"] = json!(review.moved);
    Ok(ok(&body))
}

/// `POST …/requests/{id}/{step}`: approve, merge, rebase or close.
pub(super) async fn step(
    State(state): State<Arc<AppState>>,
    Path((ns, id, step)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    let body: Value = match step.as_str() {
        "approve" => serde_json::to_value(client.approve_request(&id).await?),
        "rebase" => serde_json::to_value(client.rebase_request(&id).await?),
        "close" => serde_json::to_value(client.close_request(&id).await?),
        "merge" => {
            let release = client.merge_request(&id).await?;
            Ok(json!({"release": release.id, "revision": release.revision, "changes": release.changes}))
        }
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no step {other:?}: approve, merge, rebase or close"),
            ))
        }
    }
    .expect("serializes");
    Ok(ok(&body))
}
