//! Overlays over REST, for gray releases: list them, set one's settings and
//! values, promote it (one release) or abandon it. Reads take the client's
//! labels from `X-Cfgd-Labels` (see [`crate::labels`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::auth::Scope;
use super::error::ApiError;
use super::rest::{not_found, ok, written};
use super::AppState;
use crate::bodies::Published;

fn text(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/overlays", tag = "overlays", operation_id = "listOverlays",
    params(crate::params::NsPath),
    responses((status = 200, description = "The namespace's overlays, by name; values of secret names redacted", body = Vec<cfgd::OverlayEntry>))
)]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let policy = client.effective_policy().await?;
    let mut overlays = client.overlays().await?;
    for overlay in &mut overlays {
        for (name, value) in overlay.values.iter_mut() {
            if policy.is_secret(name) {
                *value = cfgd::policy::REDACTED.into();
            }
        }
    }
    Ok(ok(&overlays))
}

#[utoipa::path(
    put, path = "/v1/namespaces/{ns}/overlays/{overlay}", tag = "overlays", operation_id = "putOverlay",
    params(crate::params::OverlayPath),
    request_body(content = crate::bodies::OverlaySettings, content_type = "application/json"),
    responses((status = 200, description = "Stored", body = crate::bodies::Written,
        links(
            ("putOverlayValue" = (operation_id = "putOverlayValue", parameters(("ns" = "$request.path.ns"), ("overlay" = "$request.path.overlay")))),
            ("promoteOverlay" = (operation_id = "promoteOverlay", parameters(("ns" = "$request.path.ns"), ("overlay" = "$request.path.overlay")))),
            ("abandonOverlay" = (operation_id = "abandonOverlay", parameters(("ns" = "$request.path.ns"), ("overlay" = "$request.path.overlay")))),
        )))
)]
pub(super) async fn put_settings(
    State(state): State<Arc<AppState>>,
    Path((ns, overlay)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    let revision = client.set_overlay_json(&overlay, text(&body)?).await?;
    Ok(written(&overlay, revision))
}

#[utoipa::path(
    put, path = "/v1/namespaces/{ns}/overlays/{overlay}/config/{name}", tag = "overlays", operation_id = "putOverlayValue",
    params(crate::params::OverlayNamePath),
    request_body(content = serde_json::Value, description = "The value: any JSON; {\"$cfgd.unset\": true} hides the name from the overlay's clients", content_type = "application/json"),
    responses(
        (status = 200, description = "Stored", body = crate::bodies::Written),
        (status = 404, description = "No such overlay", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn put_value(
    State(state): State<Arc<AppState>>,
    Path((ns, overlay, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    put_in(&state, &ns, &headers, &name.clone(), |client| async move {
        let revision = client.set_in_overlay(&overlay, &name, text(&body)?).await?;
        Ok(revision)
    })
    .await
}

/// A `PUT` of one name in an overlay, by a caller who may write.
async fn put_in<F, Fut>(
    state: &AppState,
    ns: &str,
    headers: &HeaderMap,
    name: &str,
    write: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(cfgd::Client) -> Fut,
    Fut: std::future::Future<Output = Result<cfgd::Revision, ApiError>>,
{
    let client = state.authorized(headers, ns, Scope::Write).await?;
    Ok(written(name, write(client).await?))
}

#[utoipa::path(
    put, path = "/v1/namespaces/{ns}/overlays/{overlay}/flags/{name}", tag = "overlays", operation_id = "putOverlayFlag",
    params(crate::params::OverlayNamePath),
    request_body(content = serde_json::Value, description = "A flag definition in flagd's format, checked as PUT …/flags/{name} checks one; {\"$cfgd.unset\": true} hides the flag from the overlay's clients", content_type = "application/json"),
    responses(
        (status = 200, description = "Stored", body = crate::bodies::Written),
        (status = 404, description = "No such overlay", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn put_flag(
    State(state): State<Arc<AppState>>,
    Path((ns, overlay, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    put_in(&state, &ns, &headers, &name.clone(), |client| async move {
        let definition: serde_json::Value = serde_json::from_str(text(&body)?)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
        Ok(client
            .set_flag_in_overlay(&overlay, &name, &definition)
            .await?)
    })
    .await
}

#[utoipa::path(
    post, path = "/v1/namespaces/{ns}/overlays/{overlay}/promote", tag = "overlays", operation_id = "promoteOverlay",
    params(crate::params::OverlayPath),
    responses(
        (status = 200, description = "Promoted: the overlay's values written to the namespace's own layer and the overlay removed, as one release", body = crate::bodies::Published),
        (status = 404, description = "No such overlay", body = crate::bodies::ErrorBody),
        (status = 412, description = "A value moved while the release was being made", body = crate::bodies::ErrorBody),
        (status = 422, description = "A promoted value fails a schema where it reaches", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn promote(
    State(state): State<Arc<AppState>>,
    Path((ns, overlay)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    match client.promote_overlay(&overlay).await? {
        Some(release) => Ok(ok(&Published::from(release))),
        None => Err(missing(&client, &overlay)),
    }
}

#[utoipa::path(
    delete, path = "/v1/namespaces/{ns}/overlays/{overlay}", tag = "overlays", operation_id = "abandonOverlay",
    params(crate::params::OverlayPath),
    responses(
        (status = 200, description = "Abandoned: the overlay and its values removed, as one release", body = crate::bodies::Published),
        (status = 404, description = "No such overlay", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn abandon(
    State(state): State<Arc<AppState>>,
    Path((ns, overlay)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    match client.abandon_overlay(&overlay).await? {
        Some(release) => Ok(ok(&Published::from(release))),
        None => Err(missing(&client, &overlay)),
    }
}

fn missing(client: &cfgd::Client, overlay: &str) -> ApiError {
    let key = client
        .etcd_key("x")
        .map(|k| k.replace("/config/x", &format!("/overlays/{overlay}")));
    not_found(key).into()
}
