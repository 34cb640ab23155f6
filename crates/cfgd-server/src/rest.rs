//! REST over config values.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::Scope;
use super::conditional::{
    etag, if_match, is_conditional, put_precondition, revisions, would_hold, Section,
};
use super::error::ApiError;
use super::AppState;
use crate::bodies::{Checked, Item, Ready, Written};
use cfgd::Revision;

/// The first `n` bytes of `bytes` in lowercase hex: digests cut to ETags.
pub(super) fn hex(bytes: &[u8], n: usize) -> String {
    cfgd::secret::hex(&bytes[..n.min(bytes.len())])
}

/// `GET` of a config value or a flag: the value with its ETag, 304, or 404.
pub(super) async fn get_in(
    section: Section,
    state: &AppState,
    ns: &str,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(headers, ns, Scope::Read).await?;
    let entry = section
        .entry(&client, name)
        .await?
        .ok_or_else(|| not_found(section.key(&client, name)))?;
    if entry.secret {
        state.may_read_secrets(headers, ns, name).await?;
    }
    value_response(headers, &entry)
}

/// `DELETE` of a config value or a flag, with `If-Match`.
async fn delete_in(
    section: Section,
    state: &AppState,
    ns: &str,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(headers, ns, Scope::Write).await?;
    let expected = if_match(headers, &client, section, name).await?;
    let revision = section
        .delete(&client, name, expected)
        .await?
        .ok_or_else(|| not_found(section.key(&client, name)))?;
    Ok(written(name, revision))
}

/// A stored value with its ETag, or 304 when `If-None-Match` names it.
pub(super) fn value_response(
    headers: &HeaderMap,
    entry: &cfgd::Entry<serde_json::Value>,
) -> Result<Response, ApiError> {
    if let Some(tags) = revisions(headers, header::IF_NONE_MATCH)? {
        if tags.iter().any(|&t| t == 0 || t == entry.revision) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            response
                .headers_mut()
                .insert(header::ETAG, etag(entry.revision));
            return Ok(response);
        }
    }
    let body = serde_json::to_vec(&entry.value).expect("a JSON value serializes");
    Ok(json_response(StatusCode::OK, body, Some(entry.revision)))
}

/// The answer to a write or delete: `{"name", "revision"}` and the ETag.
pub(super) fn written(name: &str, revision: Revision) -> Response {
    let body = serde_json::to_vec(&Written {
        name: name.to_owned(),
        revision,
    })
    .expect("serializes");
    json_response(StatusCode::OK, body, Some(revision))
}

pub(super) fn not_found(key: Result<String, cfgd::Error>) -> cfgd::Error {
    cfgd::Error::NotFound {
        key: key.unwrap_or_default(),
        revision: None,
    }
}

pub(super) fn json_response(
    status: StatusCode,
    body: Vec<u8>,
    revision: Option<Revision>,
) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(revision) = revision {
        headers.insert(header::ETAG, etag(revision));
    }
    response
}

/// 200 with `body` as JSON.
pub(super) fn ok<T: serde::Serialize + ?Sized>(body: &T) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(body).expect("serializes"),
        None,
    )
}

#[utoipa::path(
    get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "The process is up", content_type = "text/plain", body = String))
)]
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 when etcd answers; 200 with `"source": "snapshot"` (or `"cache"`)
/// when it does not but namespaces are served from a snapshot (or from
/// what was loaded before etcd went away); 503 when there is nothing.
#[utoipa::path(
    get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: etcd answers, or values are served from a snapshot or the cache", body = crate::bodies::Ready),
        (status = 503, description = "Not ready: etcd does not answer and nothing was loaded", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let probe = async {
        let client = state
            .builder
            .clone()
            .live(false)
            .namespace("readyz")
            .connect()
            .await?;
        client.get::<serde_json::Value>("probe").await
    };
    let error = match probe.await {
        Ok(_) => {
            return ok(&Ready {
                status: "ready",
                source: "etcd",
                etcd: None,
                leader: state.workers.is_leader(),
            })
        }
        Err(e) => e,
    };
    let statuses: Vec<cfgd::Status> = state
        .clients
        .lock()
        .await
        .values()
        .map(|c| c.status())
        .collect();
    let source = if statuses
        .iter()
        .any(|s| matches!(s, cfgd::Status::Offline { .. }))
    {
        "snapshot"
    } else if statuses
        .iter()
        .any(|s| matches!(s, cfgd::Status::Reconnecting { revision, .. } if *revision > 0))
    {
        "cache"
    } else {
        return ApiError::from(error).into_response();
    };
    ok(&Ready {
        status: "ready",
        source,
        etcd: Some(error.to_string()),
        leader: state.workers.is_leader(),
    })
}

/// `?dry_run=true` on a `PUT`: check everything a write would (name, JSON,
/// size, schema or flag rules), write nothing. What the console's editors
/// ask as one types.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PutQuery {
    /// Check everything a write would, write nothing.
    #[serde(default)]
    dry_run: bool,
}

/// The answer to a `?dry_run=true` write that would succeed.
pub(super) fn checked(name: &str) -> Response {
    ok(&Checked {
        name: name.to_owned(),
        dry_run: true,
    })
}

#[utoipa::path(
    put, path = "/v1/namespaces/{ns}/config/{name}", tag = "config", operation_id = "putConfig",
    params(crate::params::NamePath, crate::params::WritePreconditions, PutQuery),
    request_body(content = serde_json::Value, description = "The value: any JSON", content_type = "application/json"),
    responses(
        (status = 200, description = "Written (or, with dry_run, checked and not written)", body = crate::bodies::WriteAnswer, headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match")),
            links(
                ("getConfig" = (operation_id = "getConfig", parameters(("ns" = "$request.path.ns"), ("name" = "$request.path.name")))),
                ("getHistory" = (operation_id = "getHistory", parameters(("ns" = "$request.path.ns"), ("name" = "$request.path.name")))),
                ("deleteConfig" = (operation_id = "deleteConfig", parameters(("ns" = "$request.path.ns"), ("name" = "$request.path.name")))),
            )),
        (status = 412, description = "The precondition failed: the value is at another revision, or exists (If-None-Match: *)", body = crate::bodies::ErrorBody), (status = 422, description = "The value fails the namespace schema that governs its name", body = crate::bodies::ErrorBody), (status = 409, description = "A schema's stored values conflict", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn put_config(
    State(state): State<Arc<AppState>>,
    Path((ns, name)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<PutQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
    // The body first, cfgd's choice: a bad one is 400 or 422 whatever the
    // preconditions would say, so a caller fixes the request before
    // racing for a revision. A plain write checks it as it writes, once.
    if query.dry_run || is_conditional(&headers) {
        client.check_json(&name, text).await?;
    }
    let expected = put_precondition(&headers, &client, Section::Config, &name).await?;
    if query.dry_run {
        would_hold(Section::Config, &client, &name, expected).await?;
        return Ok(checked(&name));
    }
    let revision = match expected {
        None => client.set_json(&name, text).await?,
        Some(expected) => client.set_json_if(&name, text, expected).await?,
    };
    Ok(written(&name, revision))
}

#[utoipa::path(
    delete, path = "/v1/namespaces/{ns}/config/{name}", tag = "config", operation_id = "deleteConfig",
    params(crate::params::NamePath, crate::params::DeletePreconditions),
    responses(
        (status = 200, description = "Deleted", body = crate::bodies::Written, headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match"))),
        (status = 404, description = "No such name", body = crate::bodies::ErrorBody), (status = 412, description = "The value is at another revision than If-Match names", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn delete_config(
    State(state): State<Arc<AppState>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete_in(Section::Config, &state, &ns, &name, &headers).await
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only names that start with this.
    #[param(required = false, value_type = cfgd::openapi::Prefix)]
    #[serde(default)]
    prefix: String,
}

/// Entries as a JSON array; a secret's value shows as `"<redacted>"` with
/// `"secret":true` (only `GET` of the one name shows it, to a token with
/// the secrets scope).
pub(super) fn entries_json(entries: Vec<cfgd::Entry<serde_json::Value>>) -> Vec<u8> {
    let items: Vec<Item> = entries
        .into_iter()
        .map(|e| Item {
            name: e.name,
            value: if e.secret {
                cfgd::policy::REDACTED.into()
            } else {
                e.value
            },
            revision: e.revision,
            version: e.version,
            secret: e.secret,
        })
        .collect();
    serde_json::to_vec(&items).expect("serializes")
}

/// A list's answer, with `X-Cfgd-Revision`: the revision the client had
/// applied before it listed, so that every change after it is either in
/// the list or replayed by a watch resumed from it.
fn listed(body: Vec<u8>, revision: Revision) -> Response {
    let mut response = json_response(StatusCode::OK, body, None);
    response
        .headers_mut()
        .insert("x-cfgd-revision", HeaderValue::from(revision));
    response
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/config", tag = "config", operation_id = "listConfig",
    params(crate::params::LabelsHeader, crate::params::NsPath, ListQuery),
    responses(
        (status = 200, description = "The values under the prefix, by name (with `X-Cfgd-Labels`, the overlays they select laid over them)", body = Vec<crate::bodies::Item>, headers(("X-Cfgd-Revision" = i64, description = "A revision the list holds everything up to: resume the watch from it (Last-Event-ID) to miss nothing"))),
    )
)]
pub(super) async fn list_config(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    axum::extract::Query(query): axum::extract::Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let client = crate::labels::labelled(client, &ns, &headers).await?;
    let revision = client.status().revision();
    let entries = client.list::<serde_json::Value>(&query.prefix).await?;
    Ok(listed(entries_json(entries), revision))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// How many (100 unless given).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// `GET /v1/namespaces/{ns}/history/{name}?limit=N`: earlier values of a
/// name, newest first. Beside `config/` rather than under it, so that no
/// name (`jobs/history`, say) is taken for the route.
#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/history/{name}", tag = "config", operation_id = "getHistory",
    params(crate::params::NamePath, HistoryQuery),
    responses(
        (status = 200, description = "Earlier values of the name, newest first", body = Vec<crate::bodies::Item>),
        (status = 404, description = "The name has no history", body = crate::bodies::ErrorBody), (status = 410, description = "Compacted: etcd no longer holds the revisions", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn get_history(
    State(state): State<Arc<AppState>>,
    Path((ns, name)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<HistoryQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let limit = crate::params::limit(query.limit, 100)?;
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let history = client.history(&name, limit).await?;
    if history.is_empty() {
        return Err(not_found(client.etcd_key(&name)).into());
    }
    Ok(json_response(StatusCode::OK, entries_json(history), None))
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/flags", tag = "flags", operation_id = "listFlags",
    params(crate::params::LabelsHeader, crate::params::NsPath),
    responses(
        (status = 200, description = "Every flag definition, by name (with `X-Cfgd-Labels`, the overlays they select laid over them)", body = Vec<crate::bodies::Item>, headers(("X-Cfgd-Revision" = i64, description = "A revision the list holds everything up to: resume the flags' watch from it (Last-Event-ID) to miss nothing"))),
    )
)]
pub(super) async fn list_flags(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let client = crate::labels::labelled(client, &ns, &headers).await?;
    let revision = client.status().revision();
    Ok(listed(entries_json(client.list_flags().await?), revision))
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/flags/{name}", tag = "flags", operation_id = "getFlag",
    params(crate::params::NamePath, crate::params::ReadPreconditions),
    responses(
        (status = 200, description = "The flag definition (flagd's flag object)", body = serde_json::Value, headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match"))),
        (status = 304, description = "Not modified", headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match"))),
        (status = 404, description = "No such flag", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn get_flag(
    State(state): State<Arc<AppState>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    get_in(Section::Flags, &state, &ns, &name, &headers).await
}

#[utoipa::path(
    put, path = "/v1/namespaces/{ns}/flags/{name}", tag = "flags", operation_id = "putFlag",
    params(crate::params::NamePath, crate::params::WritePreconditions, PutQuery),
    request_body(content = crate::bodies::FlagDefinition, description = "A flagd flag: state, variants, defaultVariant, targeting", content_type = "application/json"),
    responses(
        (status = 200, description = "Written (or, with dry_run, checked and not written)", body = crate::bodies::WriteAnswer, headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match")),
            links(
                ("getFlag" = (operation_id = "getFlag", parameters(("ns" = "$request.path.ns"), ("name" = "$request.path.name")))),
                ("deleteFlag" = (operation_id = "deleteFlag", parameters(("ns" = "$request.path.ns"), ("name" = "$request.path.name")))),
            )),
        (status = 412, description = "The precondition failed", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn put_flag(
    State(state): State<Arc<AppState>>,
    Path((ns, name)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<PutQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    let key = client.flag_etcd_key(&name)?;
    let definition: serde_json::Value =
        serde_json::from_slice(&body).map_err(|cause| cfgd::Error::InvalidJson { key, cause })?;
    // The body first, as for a config value (and, the same, only when
    // something else could answer before the write checks it).
    if query.dry_run || is_conditional(&headers) {
        client.check_flag(&name, &definition).await?;
    }
    let expected = put_precondition(&headers, &client, Section::Flags, &name).await?;
    if query.dry_run {
        would_hold(Section::Flags, &client, &name, expected).await?;
        return Ok(checked(&name));
    }
    let revision = match expected {
        None => client.set_flag(&name, &definition).await?,
        Some(expected) => client.set_flag_if(&name, &definition, expected).await?,
    };
    Ok(written(&name, revision))
}

#[utoipa::path(
    delete, path = "/v1/namespaces/{ns}/flags/{name}", tag = "flags", operation_id = "deleteFlag",
    params(crate::params::NamePath, crate::params::DeletePreconditions),
    responses(
        (status = 200, description = "Deleted", body = crate::bodies::Written, headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match"))),
        (status = 404, description = "No such flag", body = crate::bodies::ErrorBody), (status = 412, description = "The flag is at another revision than If-Match names", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn delete_flag(
    State(state): State<Arc<AppState>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete_in(Section::Flags, &state, &ns, &name, &headers).await
}

/// `POST /v1/namespaces/{ns}/rollback/{name}` with `{"revision": N}`:
/// writes the value of revision N again, as a new revision.
#[utoipa::path(
    post, path = "/v1/namespaces/{ns}/rollback/{name}", tag = "config", operation_id = "rollback",
    params(crate::params::NamePath, crate::params::Message),
    request_body(content = crate::bodies::Rollback, content_type = "application/json"),
    responses(
        (status = 200, description = "The value of that revision, written again as a new one", body = crate::bodies::Written, headers(("ETag" = String, description = "The revision, quoted: give it to If-Match or If-None-Match"))),
        (status = 404, description = "The name has no value at that revision", body = crate::bodies::ErrorBody), (status = 410, description = "Compacted (etcd no longer holds that revision), or not yet written", body = crate::bodies::ErrorBody), (status = 422, description = "The old value fails today's schema", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn rollback(
    State(state): State<Arc<AppState>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    let crate::bodies::Rollback { revision } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body must be {{\"revision\": N}}: {e}")))?;
    let written_at = client.rollback(&name, revision).await?;
    Ok(written(&name, written_at))
}

/// `GET /v1/namespaces/{ns}/flagd.json`: the namespace's flags as one flagd
/// document, so that a stock flagd can use cfgd as an `http` sync source.
/// Its ETag is a digest of the document; `If-None-Match` with it answers 304.
#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/flagd.json", tag = "flags", operation_id = "getFlagdDocument",
    params(crate::params::NsPath, crate::params::DocumentPreconditions),
    responses(
        (status = 200, description = "Every flag as one flagd document, for a stock flagd's http sync", body = crate::bodies::FlagdDocument, headers(("ETag" = String, description = "A digest of the document"))),
        (status = 304, description = "Not modified", headers(("ETag" = String))),
    )
)]
pub(super) async fn flagd_document(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use sha2::Digest;
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let document = client.flag_document()?;
    let digest = sha2::Sha256::digest(document.as_bytes());
    let tag = hex(&digest, 12);
    let etag = HeaderValue::from_str(&format!("\"{tag}\"")).expect("hex is a valid header");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag)
        });
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        json_response(StatusCode::OK, document.into_bytes(), None)
    };
    response.headers_mut().insert(header::ETAG, etag);
    Ok(response)
}
