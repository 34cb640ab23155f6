//! `GET /openapi.json`: the REST API as an OpenAPI 3.1 document, built from
//! the handlers' `#[utoipa::path]` attributes and the body types of
//! `bodies` and the library, so that it says what the code does.
//!
//! Who may call an operation is not written on the handlers: [`ROUTES`]
//! says it once, for the router and for this document. [`FromRoutes`] sets
//! each operation's security requirement from its route's [`Access`], and
//! adds the answers every route of that access can give (401, 403, 429,
//! 503, 413, ...), so a route's description cannot forget one. The test in
//! `tests/openapi.rs` checks that the document's operations are exactly the
//! router's.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response as Answer, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{self, ContentBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::{Access, ROUTES};
use crate::auth::Scope;

/// The security scheme of bearer tokens, by name.
pub const BEARER: &str = "bearer";
/// The security scheme of the console's session cookie (after SSO).
pub const SESSION: &str = "session";
/// The security scheme of an OFREP event stream's ticket.
pub const TICKET: &str = "ticket";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cfgd",
        description = "Dynamic configuration and feature flags on etcd: config values, flags, \
                       schemas, releases, change requests, audit, live change streams (SSE) and \
                       OFREP evaluation. Errors are `{\"error\": {\"code\", \"message\"}}`. \
                       Tokens are bearer tokens scoped per namespace (read < write < secrets \
                       < admin): an operation's security requirement names the scope it takes. \
                       With [oidc], the console signs in with SSO (/oidc/login) and the API \
                       also takes the issuer's JWT access tokens.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    paths(
        openapi_json,
        crate::rest::healthz,
        crate::rest::readyz,
        crate::observe::metrics,
        crate::ui::redirect,
        crate::ui::index,
        crate::ui::file,
        crate::oidc::routes::info,
        crate::oidc::routes::login,
        crate::oidc::routes::callback,
        crate::oidc::routes::logout,
        crate::ui::whoami,
        crate::ui::namespaces,
        crate::rest::list_config,
        crate::layers::get_config,
        crate::rest::put_config,
        crate::rest::delete_config,
        crate::rest::get_history,
        crate::rest::rollback,
        crate::sse::watch,
        crate::diff::namespaces,
        crate::diff::document,
        crate::diff::revisions,
        crate::audit::list,
        crate::releases::list,
        crate::releases::publish,
        crate::releases::show,
        crate::releases::revert,
        crate::meta::get_meta,
        crate::meta::put_meta,
        crate::overlays::list,
        crate::overlays::put_settings,
        crate::overlays::abandon,
        crate::overlays::put_value,
        crate::overlays::put_flag,
        crate::overlays::promote,
        crate::requests::get_policy,
        crate::requests::put_policy,
        crate::ui::policy_of,
        crate::requests::list,
        crate::requests::create,
        crate::requests::show,
        crate::requests::step,
        crate::schedules::list,
        crate::schedules::create,
        crate::schedules::show,
        crate::schedules::cancel,
        crate::webhooks::list,
        crate::webhooks::add,
        crate::webhooks::show,
        crate::webhooks::remove,
        crate::webhooks::deliveries,
        crate::webhooks::replay,
        crate::webhooks::test,
        crate::schemas::list,
        crate::schemas::get,
        crate::schemas::put,
        crate::schemas::delete,
        crate::rest::flagd_document,
        crate::rest::list_flags,
        crate::rest::get_flag,
        crate::rest::put_flag,
        crate::rest::delete_flag,
        crate::ofrep::evaluate_one,
        crate::ofrep::evaluate_all,
        crate::ofrep::events,
    ),
    // Parameters name these by reference, which utoipa does not collect.
    components(schemas(
        crate::bodies::ErrorBody,
        crate::params::Star,
        cfgd::openapi::Namespace,
        cfgd::openapi::Name,
        cfgd::openapi::Prefix,
        cfgd::openapi::Pattern,
    )),
    modifiers(&FromRoutes),
    tags(
        (name = "config", description = "Config values: JSON under names, with revisions"),
        (name = "flags", description = "Feature flags, as flagd defines them"),
        (name = "schemas", description = "JSON Schemas that govern values"),
        (name = "governance", description = "Diffs, audit, releases, change requests, policy, settings"),
        (name = "webhooks", description = "Signed CloudEvents to receivers on every change, delivered by the elected replica"),
        (name = "overlays", description = "Overlays for gray releases: values that clients with matching labels see"),
        (name = "ofrep", description = "OpenFeature Remote Evaluation Protocol"),
        (name = "console", description = "The web console and the reads made for it"),
        (name = "sign-in", description = "Single sign-on with the [oidc] issuer: authorization code with PKCE, into a session cookie"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
struct Api;

/// The document, as served.
pub fn document() -> Document {
    Api::openapi()
}

/// Its JSON, made once.
fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .expect("the document serializes")
    })
}

#[utoipa::path(
    get, path = "/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = serde_json::Value))
)]
pub(crate) async fn openapi_json() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json(),
    )
        .into_response()
}

/// The OpenAPI path of an axum path: `{*name}` captures are `{name}`.
pub fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// The operation of `method` in `item`.
pub fn operation_mut<'a>(
    item: &'a mut openapi::PathItem,
    method: &str,
) -> Option<&'a mut Operation> {
    match method {
        "GET" => item.get.as_mut(),
        "PUT" => item.put.as_mut(),
        "POST" => item.post.as_mut(),
        "DELETE" => item.delete.as_mut(),
        _ => None,
    }
}

/// An answer with the error body.
fn error(description: &str) -> Answer {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

fn retry_after(mut answer: Answer) -> Answer {
    answer.headers.insert(
        "Retry-After".into(),
        RefOr::T(
            openapi::HeaderBuilder::new()
                .schema(Some(<u64 as utoipa::PartialSchema>::schema()))
                .description(Some("Seconds to wait before trying again"))
                .build(),
        ),
    );
    answer
}

/// Adds `status` to `operation` unless its own description has it.
fn answer(operation: &mut Operation, status: &str, response: Answer) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert(RefOr::T(response));
}

/// What [`ROUTES`] says of each operation: its security, and the answers
/// its access implies.
struct FromRoutes;

impl Modify for FromRoutes {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of the server's settings, or a JWT access token of the \
                         [oidc] issuer (its groups claim mapped to scopes). The requirement's \
                         scopes name the scope it needs in the request's namespace; a higher \
                         one does too.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            SESSION,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::oidc::session::COOKIE,
                "The console's session after signing in with SSO (GET /oidc/login): \
                 HttpOnly, SameSite=Strict. A write with it also carries the session's \
                 X-Cfgd-Csrf header (from GET /v1/whoami), or is refused with 403.",
            ))),
        );
        components.add_security_scheme(
            TICKET,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "ticket",
                "The ticket a bulk OFREP evaluation's eventStreams URL carries \
                 (an EventSource sends no header)",
            ))),
        );
        for route in ROUTES {
            let path = openapi_path(route.path);
            // A route without a description is the test's to report.
            let Some(item) = doc.paths.paths.get_mut(&path) else {
                continue;
            };
            let Some(operation) = operation_mut(item, route.method) else {
                continue;
            };
            decorate(operation, route.access, route.method);
        }
    }
}

fn requirement(scheme: &str, scopes: &[&str]) -> openapi::security::SecurityRequirement {
    openapi::security::SecurityRequirement::new(scheme, scopes.iter().copied())
}

fn decorate(operation: &mut Operation, access: Access, method: &str) {
    let takes_body = operation.request_body.is_some();
    match access {
        // No requirement at all, not even the document's default.
        Access::Open => operation.security = Some(vec![]),
        Access::Token => {
            operation.security = Some(vec![requirement(BEARER, &[]), requirement(SESSION, &[])])
        }
        Access::Ticket => operation.security = Some(vec![requirement(TICKET, &[])]),
        Access::Namespace(scope) => {
            operation.security = Some(vec![
                requirement(BEARER, &[scope.as_str()]),
                requirement(SESSION, &[scope.as_str()]),
            ])
        }
    }
    if access == Access::Open {
        // Even an open route is refused when the server is full.
        answer(
            operation,
            "503",
            retry_after(error("The server holds as many connections as it allows")),
        );
        return;
    }
    answer(
        operation,
        "400",
        error("The request is malformed: a namespace, name, parameter, header or body that is not valid, or a flag definition or JSON Schema that breaks its rules (invalid_flag, invalid_schema)"),
    );
    if access == Access::Ticket {
        answer(operation, "403", error("Not a ticket for this namespace"));
    } else {
        answer(
            operation,
            "401",
            error("No bearer token, or one the server does not know"),
        );
        answer(
            operation,
            "403",
            error(
                "The caller lacks the scope in this namespace, the name is protected or secret, or a session cookie's write came without X-Cfgd-Csrf",
            ),
        );
    }
    let streams = operation
        .responses
        .responses
        .get("200")
        .and_then(|r| match r {
            RefOr::T(r) => Some(r.content.contains_key("text/event-stream")),
            RefOr::Ref(_) => None,
        })
        .unwrap_or(false);
    let writes = matches!(access, Access::Namespace(s) if s != Scope::Read) && method != "GET";
    if streams || writes {
        answer(
            operation,
            "429",
            retry_after(error(if streams {
                "The token holds as many streams as it may"
            } else {
                "The token writes faster than the server allows"
            })),
        );
    }
    answer(
        operation,
        "503",
        retry_after(error(
            "etcd does not answer, or the server holds as many streams as it allows",
        )),
    );
    if takes_body {
        answer(
            operation,
            "413",
            error("The body, or a value in it, is larger than the server allows"),
        );
    }
}

/// The router's routes and the document's operations, as `METHOD path`
/// (OpenAPI paths), each list sorted: what the test compares.
pub fn operations(doc: &Document) -> Vec<String> {
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        for (name, op) in [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
            ("HEAD", &item.head),
            ("OPTIONS", &item.options),
            ("TRACE", &item.trace),
        ] {
            if op.is_some() {
                out.push(format!("{name} {path}"));
            }
        }
    }
    out.sort();
    out
}

/// [`ROUTES`] as `METHOD path` with OpenAPI paths, sorted.
pub fn routes() -> Vec<String> {
    let mut out: Vec<String> = ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method, openapi_path(r.path)))
        .collect();
    out.sort();
    out
}
