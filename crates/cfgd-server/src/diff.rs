//! Diffs over REST, as `cfgctl diff` shows them:
//! - `POST /v1/namespaces/{ns}/diff` with a JSON object of name → value:
//!   what importing it would change;
//! - `GET /v1/namespaces/{ns}/diff?against=NS&prefix=P`: namespace `NS`
//!   (before) against `ns` (after), under the prefix;
//! - `GET /v1/namespaces/{ns}/diff/{name}?from=R&to=R`: one name as it was
//!   at revision `from` (before) against revision `to` (after), or against
//!   its current value without `to`. Revision 0 is "no value yet". The
//!   ETag is the revision of the value compared as after, when there is
//!   one: the console's editor rebases a conflicting edit on it.
//!
//! All answer `[{"name", "differences": [{"op", "path", …}]}]` (`[]` when
//! nothing differs), with secrets' values redacted, and need read scope on
//! every namespace they read.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::auth::Scope;
use super::error::ApiError;
use super::rest::json_response;
use super::AppState;
use cfgd::Revision;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AgainstQuery {
    /// The namespace to compare with (before); read scope there too.
    #[param(required = true, value_type = cfgd::openapi::Namespace)]
    against: Option<String>,
    /// Only names that start with this.
    #[param(required = false, value_type = cfgd::openapi::Prefix)]
    #[serde(default)]
    prefix: String,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RevisionsQuery {
    /// The revision compared as before (0: no value yet).
    #[param(required = true, minimum = 0, value_type = i64)]
    from: Option<Revision>,
    /// The revision compared as after; the current value if absent.
    #[param(required = false, minimum = 0, value_type = i64)]
    to: Option<Revision>,
}

fn answer(diffs: &[cfgd::diff::NamedDiff]) -> Response {
    answer_at(diffs, None)
}

fn answer_at(diffs: &[cfgd::diff::NamedDiff], revision: Option<Revision>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(diffs).expect("serializes"),
        revision,
    )
}

#[utoipa::path(
    post, path = "/v1/namespaces/{ns}/diff", tag = "governance", operation_id = "diffDocument",
    params(crate::params::NsPath),
    request_body(content = crate::bodies::Values, description = "Name → value: what an import would write", content_type = "application/json"),
    responses((status = 200, description = "What importing it would change", body = Vec<cfgd::diff::NamedDiff>))
)]
pub(super) async fn document(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the body is not UTF-8 JSON"))?;
    Ok(answer(&client.diff_document(text).await?))
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/diff", tag = "governance", operation_id = "diffNamespaces",
    params(crate::params::NsPath, AgainstQuery),
    responses((status = 200, description = "Namespace `against` (before) against `ns` (after)", body = Vec<cfgd::diff::NamedDiff>))
)]
pub(super) async fn namespaces(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    Query(query): Query<AgainstQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let against = query.against.ok_or_else(|| {
        ApiError::bad_request("give ?against=NAMESPACE, or POST a document to compare")
    })?;
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let other = state.authorized(&headers, &against, Scope::Read).await?;
    Ok(answer(&client.diff_namespace(&other, &query.prefix).await?))
}

/// The value of `name` as of `revision`; none at 0 (etcd would read 0 as
/// "now").
async fn value_at(
    client: &cfgd::Client,
    name: &str,
    revision: Revision,
) -> Result<Option<cfgd::Entry<serde_json::Value>>, ApiError> {
    if revision == 0 {
        return Ok(None);
    }
    // Compacted or not yet written: 410 revision_unavailable, as a
    // rollback to it answers.
    Ok(client.get_entry_at(name, revision).await?)
}

/// `GET …/diff/{name}?from=R&to=R`: the history page's comparison of two
/// revisions, and the editor's "their change" after a conflict.
#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/diff/{name}", tag = "governance", operation_id = "diffRevisions",
    params(crate::params::NamePath, RevisionsQuery),
    responses(
        (status = 200, description = "The name at `from` (before) against `to` or its current value (after)", body = Vec<cfgd::diff::NamedDiff>, headers(("ETag" = String, description = "The revision compared as after, when there is one"))),
        (status = 410, description = "Compacted (etcd no longer holds that revision), or not yet written", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn revisions(
    State(state): State<Arc<AppState>>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<RevisionsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let from = query.from.ok_or_else(|| {
        ApiError::bad_request(
            "give ?from=REVISION (0: no value yet), and ?to=REVISION unless against the current value",
        )
    })?;
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    // Two revisions of 0 read nothing, which would let any name through.
    cfgd::validate_name(&name)?;
    // A malformed request is the caller's to fix whatever is stored: its 400
    // wins over a 410 that depends on what etcd still holds.
    if let Some(revision) = [Some(from), query.to]
        .into_iter()
        .flatten()
        .find(|&r| r < 0)
    {
        return Err(ApiError::bad_request(format!(
            "revision {revision}: give a revision from the name's history, or 0 for no value"
        )));
    }
    let before = value_at(&client, &name, from).await?;
    let after = match query.to {
        Some(to) => value_at(&client, &name, to).await?,
        None => client.get_entry(&name).await?,
    };
    let mut changes = cfgd::diff::diff_named([(
        name.as_str(),
        before.as_ref().map(|e| &e.value),
        after.as_ref().map(|e| &e.value),
    )]);
    let sealed = [&before, &after]
        .into_iter()
        .any(|e| e.as_ref().is_some_and(|e| e.secret));
    if sealed || client.effective_policy().await?.is_secret(&name) {
        for change in &mut changes {
            change.redact(cfgd::policy::REDACTED);
        }
    }
    let revision = after.map(|e| e.revision).filter(|r| *r > 0);
    Ok(answer_at(&changes, revision))
}
