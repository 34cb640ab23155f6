//! The web console, at `/ui/`: three files embedded in the binary
//! (`ui/index.html`, `ui/app.js`, `ui/app.css`), so `cfgd` serves it with
//! nothing else deployed and no request leaving for another origin. It
//! uses only the REST API, plus two reads made for it:
//! - `GET /v1/whoami`: the token's name and scopes (`{"auth": false}` with
//!   `--no-auth`), so the console hides what the token may not do;
//! - `GET /v1/namespaces`: the namespaces the token may read, with how
//!   many values and flags each holds.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::auth::{self, Scope};
use super::error::ApiError;
use super::releases::ok;
use super::AppState;

const INDEX: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");

/// Only this origin, no inline script: the console talks to cfgd and
/// nothing else.
const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    // Same binary, same files: revalidate rather than keep stale ones
    // across an upgrade.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub(super) async fn redirect() -> Redirect {
    Redirect::permanent("/ui/")
}

pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub(super) async fn file(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => asset("text/javascript; charset=utf-8", APP_JS),
        "app.css" => asset("text/css; charset=utf-8", APP_CSS),
        _ => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Read => "read",
        Scope::Write => "write",
        Scope::Secrets => "secrets",
        Scope::Admin => "admin",
    }
}

pub(super) async fn whoami(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if state.settings.no_auth {
        return Ok(ok(&json!({"auth": false, "name": crate::state::ANONYMOUS})));
    }
    let token = auth::identify(&state.settings.tokens, &headers)?
        .ok_or_else(|| ApiError::unauthorized("missing bearer token (Authorization: Bearer …)"))?;
    let scopes: serde_json::Map<String, serde_json::Value> = token
        .scopes
        .iter()
        .map(|(ns, scope)| (ns.clone(), scope_name(*scope).into()))
        .collect();
    Ok(ok(
        &json!({"auth": true, "name": token.name, "scopes": scopes}),
    ))
}

pub(super) async fn namespaces(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = if state.settings.no_auth {
        None
    } else {
        Some(
            auth::identify(&state.settings.tokens, &headers)?.ok_or_else(|| {
                ApiError::unauthorized("missing bearer token (Authorization: Bearer …)")
            })?,
        )
    };
    let probe = state
        .builder
        .clone()
        .live(false)
        .namespace("default")
        .connect()
        .await?;
    let mut names = probe.namespaces().await?;
    // A namespace a token names but that holds nothing yet is still its.
    if let Some(token) = token {
        names.extend(token.scopes.keys().filter(|ns| *ns != "*").cloned());
    }
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let scope = match token {
            None => Scope::Admin,
            Some(token) => match token.scope(&name) {
                Some(scope) => scope,
                None => continue,
            },
        };
        let client = state
            .builder
            .clone()
            .live(false)
            .namespace(&name)
            .connect()
            .await?;
        let (values, flags) = client.counts().await?;
        out.push(
            json!({"name": name, "scope": scope_name(scope), "values": values, "flags": flags}),
        );
    }
    Ok(ok(&serde_json::Value::Array(out)))
}
