//! The web console, at `/ui/`: the files of `ui/` embedded in the binary
//! (`index.html`, `app.css`, and ES modules: `app.js` the router, which
//! imports the others), so `cfgd` serves it with nothing else deployed and
//! no request leaving for another origin. It holds no rule of its own: it
//! uses only the REST API (diffs from the `…/diff` routes), plus three
//! reads made for it:
//! - `GET /v1/whoami`: the token's name and scopes (`{"auth": false}` with
//!   `--no-auth`), so the console hides what the token may not do;
//! - `GET /v1/namespaces`: the namespaces the token may read, with how
//!   many values and flags each holds;
//! - `GET /v1/namespaces/{ns}/policy/{name}`: what the namespace's policy
//!   says of one name (`flags/{name}` for a flag): `{"name", "protected":
//!   the pattern that protects it or null, "secret": bool}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::auth::{Proof, Scope};
use super::error::ApiError;
use super::rest::ok;
use super::AppState;
use crate::bodies::{NamespaceSummary, PolicyOf, Whoami};

const INDEX: &str = include_str!("../ui/index.html");

const JS: &str = "text/javascript; charset=utf-8";

/// Every file under `/ui/` but the index: name, content type, body.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../ui/app.css"),
    ),
    ("app.js", JS, include_str!("../ui/app.js")),
    ("api.js", JS, include_str!("../ui/api.js")),
    ("dom.js", JS, include_str!("../ui/dom.js")),
    ("state.js", JS, include_str!("../ui/state.js")),
    ("live.js", JS, include_str!("../ui/live.js")),
    ("diff.js", JS, include_str!("../ui/diff.js")),
    ("signin.js", JS, include_str!("../ui/signin.js")),
    ("namespaces.js", JS, include_str!("../ui/namespaces.js")),
    ("config.js", JS, include_str!("../ui/config.js")),
    ("editor.js", JS, include_str!("../ui/editor.js")),
    ("history.js", JS, include_str!("../ui/history.js")),
    ("flags.js", JS, include_str!("../ui/flags.js")),
    ("flag.js", JS, include_str!("../ui/flag.js")),
    ("audit.js", JS, include_str!("../ui/audit.js")),
    ("releases.js", JS, include_str!("../ui/releases.js")),
    ("requests.js", JS, include_str!("../ui/requests.js")),
    ("schemas.js", JS, include_str!("../ui/schemas.js")),
    ("overlays.js", JS, include_str!("../ui/overlays.js")),
    ("workers.js", JS, include_str!("../ui/workers.js")),
];

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

#[utoipa::path(
    get, path = "/ui", tag = "console", operation_id = "consoleRedirect",
    responses((status = 308, description = "To /ui/", headers(("Location" = String))))
)]
pub(super) async fn redirect() -> Redirect {
    Redirect::permanent("/ui/")
}

#[utoipa::path(
    get, path = "/ui/", tag = "console", operation_id = "console",
    responses((status = 200, description = "The web console", content_type = "text/html", body = String))
)]
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

#[utoipa::path(
    get, path = "/ui/{file}", tag = "console", operation_id = "consoleFile",
    params(("file" = String, Path, description = "A file of the console: app.js, app.css, ...")),
    responses(
        (status = 200, description = "The file", content((String = "text/css"), (String = "text/javascript"))),
        (status = 404, description = "No such file", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn file(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, ..)| *name == file) {
        Some((_, content_type, body)) => asset(content_type, body),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

#[utoipa::path(
    get, path = "/v1/whoami", tag = "console", operation_id = "whoami",
    responses((status = 200, description = "The token and its scopes", body = crate::bodies::Whoami))
)]
pub(super) async fn whoami(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(caller) = state.signed_in(&headers).await? else {
        return Ok(ok(&Whoami {
            auth: false,
            name: crate::state::ANONYMOUS.to_owned(),
            scopes: None,
            via: None,
            csrf: None,
            groups: None,
            notice: None,
        }));
    };
    let sso = caller.proof != Proof::Token;
    // Told rather than left to wonder why every list is empty.
    let notice = (sso && caller.scopes.is_empty()).then(|| {
        format!(
            "signed in, but your groups ({}) give no access to any namespace: ask an administrator to map one of them in [oidc.groups]",
            if caller.groups.is_empty() { "none".to_owned() } else { caller.groups.join(", ") }
        )
    });
    Ok(ok(&Whoami {
        auth: true,
        scopes: Some(crate::oidc::scope_names(&caller.scopes)),
        via: Some(match caller.proof {
            Proof::Token => "token",
            Proof::Jwt => "jwt",
            Proof::Session { .. } => "session",
        }),
        csrf: match &caller.proof {
            Proof::Session { csrf } => Some(csrf.clone()),
            _ => None,
        },
        groups: sso.then(|| caller.groups.clone()),
        notice,
        name: caller.name,
    }))
}

#[utoipa::path(
    get, path = "/v1/namespaces", tag = "console", operation_id = "listNamespaces",
    responses((status = 200, description = "The namespaces the caller may read, with counts", body = Vec<crate::bodies::NamespaceSummary>))
)]
pub(super) async fn namespaces(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.signed_in(&headers).await?;
    let probe = state
        .builder
        .clone()
        .live(false)
        .namespace("default")
        .connect()
        .await?;
    let mut names = probe.namespaces().await?;
    // A namespace a token names but that holds nothing yet is still its.
    if let Some(caller) = &caller {
        names.extend(caller.scopes.keys().filter(|ns| *ns != "*").cloned());
    }
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let scope = match &caller {
            None => Scope::Admin,
            Some(caller) => match caller.scope(&name) {
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
        out.push(NamespaceSummary {
            name,
            scope: scope.as_str(),
            values,
            flags,
        });
    }
    Ok(ok(&out))
}

/// `GET /v1/namespaces/{ns}/policy/{name}`: what the policy says of `name`
/// (a flag as `flags/{name}`), so that the console tells a protected name
/// without matching patterns itself. Read scope, as the policy's `GET`.
#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/policy/{name}", tag = "governance", operation_id = "policyOf",
    params(crate::params::NamePath),
    responses((status = 200, description = "What the policy says of the name (a flag as flags/{name})", body = crate::bodies::PolicyOf))
)]
pub(super) async fn policy_of(
    State(state): State<Arc<AppState>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    // The answer echoes the name: one that could never be stored is an
    // error, not "unprotected" (schemathesis sent U+0084).
    cfgd::validate_name(&name)?;
    let policy = client.effective_policy().await?;
    Ok(ok(&PolicyOf {
        protected: policy.protecting(&name).map(str::to_owned),
        secret: policy.is_secret(&name),
        name,
    }))
}

#[cfg(test)]
mod tests {
    use super::{FILES, INDEX};

    /// The console's files, as the browser asks for them: the index's, and
    /// each module's imports.
    fn referenced() -> Vec<String> {
        let mut out = Vec::new();
        let mut scan = |text: &str, open: &str| {
            for piece in text.split(open).skip(1) {
                if let Some(end) = piece.find('"') {
                    out.push(piece[..end].to_owned());
                }
            }
        };
        scan(INDEX, "href=\"/ui/");
        scan(INDEX, "src=\"/ui/");
        for (_, _, body) in FILES {
            scan(body, "from \"./");
            scan(body, "import \"./");
        }
        out
    }

    #[test]
    fn every_file_the_console_loads_is_served() {
        let referenced = referenced();
        assert!(referenced.len() > FILES.len(), "{referenced:?}");
        for file in &referenced {
            assert!(
                FILES.iter().any(|(name, ..)| name == file),
                "{file} is loaded by the console but not served: add it to FILES"
            );
        }
        for (name, ..) in FILES {
            assert!(
                referenced.iter().any(|file| file == name),
                "{name} is served but nothing loads it"
            );
        }
    }

    #[test]
    fn modules_are_javascript_and_no_file_is_over_400_lines() {
        for (name, content_type, body) in FILES {
            if name.ends_with(".js") {
                assert!(content_type.starts_with("text/javascript"), "{name}");
            }
            let lines = body.lines().count();
            assert!(lines <= 400, "{name} has {lines} lines; split it");
        }
        assert!(INDEX.lines().count() <= 400);
    }
}
