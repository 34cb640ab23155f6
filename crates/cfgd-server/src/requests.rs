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

use super::auth::Scope;
use super::error::ApiError;
use super::releases::read_publish;
use super::rest::ok;
use super::rest::{json_response, written};
use super::AppState;
use crate::bodies::{Merged, Review, Stepped};
use cfgd::RequestState;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// `open`, `merged`, `closed` or `all` (the default).
    #[param(pattern = "^(open|merged|closed|all)$")]
    state: Option<String>,
    /// How many (50 unless given; at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/policy", tag = "governance", operation_id = "getPolicy",
    params(crate::params::NsPath),
    responses((status = 200, description = "The namespace policy", body = cfgd::policy::Policy))
)]
pub(super) async fn get_policy(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    Ok(ok(&client.policy().await?))
}

#[utoipa::path(
    put, path = "/v1/namespaces/{ns}/policy", tag = "governance", operation_id = "putPolicy",
    params(crate::params::NsPath, crate::params::Message),
    request_body(content = cfgd::policy::Policy, content_type = "application/json"),
    responses((status = 200, description = "Stored", body = crate::bodies::Written, headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match"))))
)]
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

#[utoipa::path(
    post, path = "/v1/namespaces/{ns}/requests", tag = "governance", operation_id = "createRequest",
    params(crate::params::NsPath, crate::params::Message),
    request_body(content = crate::bodies::Publish, content_type = "application/json"),
    responses(
        (status = 201, description = "Opened", body = cfgd::ChangeRequest,
            links(
                ("showRequest" = (operation_id = "showRequest", parameters(("ns" = "$request.path.ns"), ("id" = "$response.body#/id")))),
                ("stepRequest" = (operation_id = "stepRequest", parameters(("ns" = "$request.path.ns"), ("id" = "$response.body#/id")))),
            )),
        (status = 409, description = "It changes nothing: every value is already as it asks", body = crate::bodies::ErrorBody),
        (status = 422, description = "A value fails the schema that governs it", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    let (publish, config, flags) = read_publish(&body)?;
    // Opening a request writes nothing live already; a dry run here would
    // be taken for one and open a real request.
    if publish.dry_run {
        return Err(ApiError::bad_request(
            "a change request has no dry run: POST …/releases with dry_run shows what it would change",
        ));
    }
    let request = client.create_request(&config, flags.as_deref()).await?;
    let body = serde_json::to_vec(&request).expect("serializes");
    Ok(json_response(StatusCode::CREATED, body, None))
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/requests", tag = "governance", operation_id = "listRequests",
    params(crate::params::NsPath, ListQuery),
    responses((status = 200, description = "Change requests, newest first", body = Vec<cfgd::ChangeRequest>))
)]
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
    let limit = crate::params::limit(query.limit, 50)?;
    let requests = client.requests(wanted, limit).await?;
    Ok(ok(&requests))
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/requests/{id}", tag = "governance", operation_id = "showRequest",
    params(crate::params::IdPath),
    responses(
        (status = 200, description = "The request and what merging it would change now", body = crate::bodies::Review),
        (status = 404, description = "No such request", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    Path((ns, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let review = client.review_request(&id).await?;
    Ok(ok(&Review {
        request: review.request,
        changes: review.changes,
        moved: review.moved,
    }))
}

/// `POST …/requests/{id}/{step}`: approve, merge, rebase or close.
#[utoipa::path(
    post, path = "/v1/namespaces/{ns}/requests/{id}/{step}", tag = "governance", operation_id = "stepRequest",
    params(crate::params::StepPath, crate::params::Message),
    responses(
        (status = 200, description = "The request as it now is, or (merge) the release it became", body = crate::bodies::Stepped),
        (status = 404, description = "No such request, or no such step", body = crate::bodies::ErrorBody), (status = 409, description = "Not in a state for this step, or names moved since its base", body = crate::bodies::ErrorBody), (status = 412, description = "A name changed while merging", body = crate::bodies::ErrorBody),
        (status = 422, description = "Merge: a value fails a schema that changed since the request was opened", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn step(
    State(state): State<Arc<AppState>>,
    Path((ns, id, step)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    let body = match step.as_str() {
        "approve" => Stepped::Request(Box::new(client.approve_request(&id).await?)),
        "rebase" => Stepped::Request(Box::new(client.rebase_request(&id).await?)),
        "close" => Stepped::Request(Box::new(client.close_request(&id).await?)),
        "merge" => {
            let release = client.merge_request(&id).await?;
            Stepped::Merged(Merged {
                release: release.id,
                revision: release.revision,
                changes: release.changes,
            })
        }
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no step {other:?}: approve, merge, rebase or close"),
            ))
        }
    };
    Ok(ok(&body))
}
