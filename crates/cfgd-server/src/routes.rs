//! [`ROUTES`]: every route the server answers and the access it takes, the
//! one table that [`app`] builds the router from. A route is added here or
//! not at all: [`app`] refuses to build with a table row that has no
//! handler, and a handler without a row is never routed, so the route-walk
//! test (every route without a token gets 401, with too small a scope 403)
//! covers each one.

use std::sync::Arc;

use axum::http::Method;
use axum::routing::{self, MethodRouter};
use axum::Router;

use crate::*;

/// What a route asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: health, readiness, metrics and the console's files.
    Open,
    /// A valid bearer token, whatever its scopes.
    Token,
    /// A ticket from a bulk OFREP evaluation (an `EventSource` sends no
    /// header).
    Ticket,
    /// A token with at least this scope in the route's namespace.
    Namespace(Scope),
}

/// One route: method, path in axum's syntax, and the access it takes.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path, with `{ns}`-style captures.
    pub path: &'static str,
    /// What the caller must show.
    pub access: Access,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
    }
}

use Access::{Namespace as Ns, Open, Ticket, Token};
use Scope::{Admin, Read, Write};

/// Every route of the router.
pub const ROUTES: &[Route] = &[
    route("GET", "/healthz", Open),
    route("GET", "/readyz", Open),
    route("GET", "/metrics", Open),
    route("GET", "/ui", Open),
    route("GET", "/ui/", Open),
    route("GET", "/ui/{file}", Open),
    route("GET", "/v1/whoami", Token),
    route("GET", "/v1/namespaces", Token),
    route("GET", "/v1/namespaces/{ns}/config", Ns(Read)),
    route("GET", "/v1/namespaces/{ns}/config/{*name}", Ns(Read)),
    route("PUT", "/v1/namespaces/{ns}/config/{*name}", Ns(Write)),
    route("DELETE", "/v1/namespaces/{ns}/config/{*name}", Ns(Write)),
    route("GET", "/v1/namespaces/{ns}/history/{*name}", Ns(Read)),
    route("POST", "/v1/namespaces/{ns}/rollback/{*name}", Ns(Write)),
    route("GET", "/v1/namespaces/{ns}/watch", Ns(Read)),
    route("GET", "/v1/namespaces/{ns}/diff", Ns(Read)),
    route("POST", "/v1/namespaces/{ns}/diff", Ns(Read)),
    route("GET", "/v1/namespaces/{ns}/diff/{*name}", Ns(Read)),
    route("GET", "/v1/namespaces/{ns}/audit", Ns(Read)),
    route("GET", "/v1/namespaces/{ns}/releases", Ns(Read)),
    route("POST", "/v1/namespaces/{ns}/releases", Ns(Write)),
    route("GET", "/v1/namespaces/{ns}/releases/{id}", Ns(Read)),
    route(
        "POST",
        "/v1/namespaces/{ns}/releases/{id}/revert",
        Ns(Write),
    ),
    route("GET", "/v1/namespaces/{ns}/policy", Ns(Read)),
    route("PUT", "/v1/namespaces/{ns}/policy", Ns(Admin)),
    route("GET", "/v1/namespaces/{ns}/policy/{*name}", Ns(Read)),
    route("GET", "/v1/namespaces/{ns}/requests", Ns(Read)),
    route("POST", "/v1/namespaces/{ns}/requests", Ns(Write)),
    route("GET", "/v1/namespaces/{ns}/requests/{id}", Ns(Read)),
    route(
        "POST",
        "/v1/namespaces/{ns}/requests/{id}/{step}",
        Ns(Write),
    ),
    route("GET", "/v1/namespaces/{ns}/schemas", Ns(Read)),
    route("GET", "/v1/namespaces/{ns}/schemas/{*pattern}", Ns(Read)),
    route("PUT", "/v1/namespaces/{ns}/schemas/{*pattern}", Ns(Admin)),
    route(
        "DELETE",
        "/v1/namespaces/{ns}/schemas/{*pattern}",
        Ns(Admin),
    ),
    route("GET", "/v1/namespaces/{ns}/flagd.json", Ns(Read)),
    route("GET", "/v1/namespaces/{ns}/flags", Ns(Read)),
    route("GET", "/v1/namespaces/{ns}/flags/{name}", Ns(Read)),
    route("PUT", "/v1/namespaces/{ns}/flags/{name}", Ns(Write)),
    route("DELETE", "/v1/namespaces/{ns}/flags/{name}", Ns(Write)),
    // The namespace comes from X-Cfgd-Namespace, or the token's only one.
    route("POST", "/ofrep/v1/evaluate/flags/{key}", Ns(Read)),
    route("POST", "/ofrep/v1/evaluate/flags", Ns(Read)),
    route("GET", "/ofrep/v1/events", Ticket),
];

/// The handler of one row of [`ROUTES`].
fn handler(method: &str, path: &str) -> MethodRouter<Arc<AppState>> {
    use routing::{delete, get, post, put};
    match (method, path) {
        ("GET", "/healthz") => get(|| async { "ok\n" }),
        ("GET", "/readyz") => get(rest::readyz),
        ("GET", "/metrics") => get(metrics::metrics),
        ("GET", "/ui") => get(ui::redirect),
        ("GET", "/ui/") => get(ui::index),
        ("GET", "/ui/{file}") => get(ui::file),
        ("GET", "/v1/whoami") => get(ui::whoami),
        ("GET", "/v1/namespaces") => get(ui::namespaces),
        ("GET", "/v1/namespaces/{ns}/config") => get(rest::list_config),
        ("GET", "/v1/namespaces/{ns}/config/{*name}") => get(rest::get_config),
        ("PUT", "/v1/namespaces/{ns}/config/{*name}") => put(rest::put_config),
        ("DELETE", "/v1/namespaces/{ns}/config/{*name}") => delete(rest::delete_config),
        ("GET", "/v1/namespaces/{ns}/history/{*name}") => get(rest::get_history),
        ("POST", "/v1/namespaces/{ns}/rollback/{*name}") => post(rest::rollback),
        ("GET", "/v1/namespaces/{ns}/watch") => get(sse::watch),
        ("GET", "/v1/namespaces/{ns}/diff") => get(diff::namespaces),
        ("POST", "/v1/namespaces/{ns}/diff") => post(diff::document),
        ("GET", "/v1/namespaces/{ns}/diff/{*name}") => get(diff::revisions),
        ("GET", "/v1/namespaces/{ns}/audit") => get(audit::list),
        ("GET", "/v1/namespaces/{ns}/releases") => get(releases::list),
        ("POST", "/v1/namespaces/{ns}/releases") => post(releases::publish),
        ("GET", "/v1/namespaces/{ns}/releases/{id}") => get(releases::show),
        ("POST", "/v1/namespaces/{ns}/releases/{id}/revert") => post(releases::revert),
        ("GET", "/v1/namespaces/{ns}/policy") => get(requests::get_policy),
        ("PUT", "/v1/namespaces/{ns}/policy") => put(requests::put_policy),
        ("GET", "/v1/namespaces/{ns}/policy/{*name}") => get(ui::policy_of),
        ("GET", "/v1/namespaces/{ns}/requests") => get(requests::list),
        ("POST", "/v1/namespaces/{ns}/requests") => post(requests::create),
        ("GET", "/v1/namespaces/{ns}/requests/{id}") => get(requests::show),
        ("POST", "/v1/namespaces/{ns}/requests/{id}/{step}") => post(requests::step),
        ("GET", "/v1/namespaces/{ns}/schemas") => get(schemas::list),
        ("GET", "/v1/namespaces/{ns}/schemas/{*pattern}") => get(schemas::get),
        ("PUT", "/v1/namespaces/{ns}/schemas/{*pattern}") => put(schemas::put),
        ("DELETE", "/v1/namespaces/{ns}/schemas/{*pattern}") => delete(schemas::delete),
        ("GET", "/v1/namespaces/{ns}/flagd.json") => get(rest::flagd_document),
        ("GET", "/v1/namespaces/{ns}/flags") => get(rest::list_flags),
        ("GET", "/v1/namespaces/{ns}/flags/{name}") => get(rest::get_flag),
        ("PUT", "/v1/namespaces/{ns}/flags/{name}") => put(rest::put_flag),
        ("DELETE", "/v1/namespaces/{ns}/flags/{name}") => delete(rest::delete_flag),
        ("POST", "/ofrep/v1/evaluate/flags/{key}") => post(ofrep::evaluate_one),
        ("POST", "/ofrep/v1/evaluate/flags") => post(ofrep::evaluate_all),
        ("GET", "/ofrep/v1/events") => get(ofrep::events),
        _ => panic!("{method} {path} is in ROUTES but has no handler"),
    }
}

/// The router, ready to serve: every row of [`ROUTES`] with its handler.
pub fn app(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        debug_assert!(route.method.parse::<Method>().is_ok(), "{route:?}");
        // Methods of one path merge into one method router.
        router = router.route(route.path, handler(route.method, route.path));
    }
    router
        // Every route reads its body whole: bound it (413 beyond).
        .layer(axum::extract::DefaultBodyLimit::max(
            state.settings.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}
