//! [`ROUTES`]: every route the server answers, the access it takes and its
//! handler, the one table that [`app`] builds the router from. A route is
//! added here or not at all, so the route-walk test (every route without a
//! token gets 401, with too small a scope 403) covers each one.

// A child, so that the document can read the table without the table's
// file importing it back.
pub mod openapi;

use std::sync::Arc;

use axum::http::Method;
use axum::routing::{self, MethodRouter};
use axum::Router;

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

/// One route: method, path in axum's syntax, the access it takes, and its
/// handler.
#[derive(Clone, Copy)]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path, with `{ns}`-style captures.
    pub path: &'static str,
    /// What the caller must show.
    pub access: Access,
    handler: fn() -> MethodRouter<Arc<AppState>>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({:?})", self.method, self.path, self.access)
    }
}

const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    handler: fn() -> MethodRouter<Arc<AppState>>,
) -> Route {
    Route {
        method,
        path,
        access,
        handler,
    }
}

use routing::{delete, get, post, put};
use Access::{Namespace as Ns, Open, Ticket, Token};
use Scope::{Admin, Read, Write};

use crate::auth::Scope;
use crate::oidc::routes as oidc;
use crate::state::AppState;
use crate::{
    audit, diff, layers, meta, observe, ofrep, overlays, releases, requests, rest, schedules,
    schemas, sse, ui, webhooks,
};

/// Every route of the router.
pub const ROUTES: &[Route] = &[
    route("GET", "/healthz", Open, || get(rest::healthz)),
    route("GET", "/openapi.json", Open, || get(openapi::openapi_json)),
    route("GET", "/readyz", Open, || get(rest::readyz)),
    route("GET", "/metrics", Open, || get(observe::metrics)),
    route("GET", "/ui", Open, || get(ui::redirect)),
    route("GET", "/ui/", Open, || get(ui::index)),
    route("GET", "/ui/{file}", Open, || get(ui::file)),
    route("GET", "/oidc", Open, || get(oidc::info)),
    route("GET", "/oidc/login", Open, || get(oidc::login)),
    route("GET", "/oidc/callback", Open, || get(oidc::callback)),
    route("POST", "/oidc/logout", Open, || post(oidc::logout)),
    route("GET", "/v1/whoami", Token, || get(ui::whoami)),
    route("GET", "/v1/namespaces", Token, || get(ui::namespaces)),
    route("GET", "/v1/namespaces/{ns}/config", Ns(Read), || {
        get(rest::list_config)
    }),
    route(
        "GET",
        "/v1/namespaces/{ns}/config/{*name}",
        Ns(Read),
        || get(layers::get_config),
    ),
    route(
        "PUT",
        "/v1/namespaces/{ns}/config/{*name}",
        Ns(Write),
        || put(rest::put_config),
    ),
    route(
        "DELETE",
        "/v1/namespaces/{ns}/config/{*name}",
        Ns(Write),
        || delete(rest::delete_config),
    ),
    route(
        "GET",
        "/v1/namespaces/{ns}/history/{*name}",
        Ns(Read),
        || get(rest::get_history),
    ),
    route(
        "POST",
        "/v1/namespaces/{ns}/rollback/{*name}",
        Ns(Write),
        || post(rest::rollback),
    ),
    route("GET", "/v1/namespaces/{ns}/watch", Ns(Read), || {
        get(sse::watch)
    }),
    route("GET", "/v1/namespaces/{ns}/diff", Ns(Read), || {
        get(diff::namespaces)
    }),
    route("POST", "/v1/namespaces/{ns}/diff", Ns(Read), || {
        post(diff::document)
    }),
    route("GET", "/v1/namespaces/{ns}/diff/{*name}", Ns(Read), || {
        get(diff::revisions)
    }),
    route("GET", "/v1/namespaces/{ns}/audit", Ns(Read), || {
        get(audit::list)
    }),
    route("GET", "/v1/namespaces/{ns}/releases", Ns(Read), || {
        get(releases::list)
    }),
    route("POST", "/v1/namespaces/{ns}/releases", Ns(Write), || {
        post(releases::publish)
    }),
    route("GET", "/v1/namespaces/{ns}/releases/{id}", Ns(Read), || {
        get(releases::show)
    }),
    route(
        "POST",
        "/v1/namespaces/{ns}/releases/{id}/revert",
        Ns(Write),
        || post(releases::revert),
    ),
    route("GET", "/v1/namespaces/{ns}/meta", Ns(Read), || {
        get(meta::get_meta)
    }),
    route("PUT", "/v1/namespaces/{ns}/meta", Ns(Admin), || {
        put(meta::put_meta)
    }),
    route("GET", "/v1/namespaces/{ns}/overlays", Ns(Read), || {
        get(overlays::list)
    }),
    route(
        "PUT",
        "/v1/namespaces/{ns}/overlays/{overlay}",
        Ns(Write),
        || put(overlays::put_settings),
    ),
    route(
        "DELETE",
        "/v1/namespaces/{ns}/overlays/{overlay}",
        Ns(Write),
        || delete(overlays::abandon),
    ),
    route(
        "PUT",
        "/v1/namespaces/{ns}/overlays/{overlay}/config/{*name}",
        Ns(Write),
        || put(overlays::put_value),
    ),
    route(
        "PUT",
        "/v1/namespaces/{ns}/overlays/{overlay}/flags/{*name}",
        Ns(Write),
        || put(overlays::put_flag),
    ),
    route(
        "POST",
        "/v1/namespaces/{ns}/overlays/{overlay}/promote",
        Ns(Write),
        || post(overlays::promote),
    ),
    route("GET", "/v1/namespaces/{ns}/policy", Ns(Read), || {
        get(requests::get_policy)
    }),
    route("PUT", "/v1/namespaces/{ns}/policy", Ns(Admin), || {
        put(requests::put_policy)
    }),
    route(
        "GET",
        "/v1/namespaces/{ns}/policy/{*name}",
        Ns(Read),
        || get(ui::policy_of),
    ),
    route("GET", "/v1/namespaces/{ns}/requests", Ns(Read), || {
        get(requests::list)
    }),
    route("POST", "/v1/namespaces/{ns}/requests", Ns(Write), || {
        post(requests::create)
    }),
    route("GET", "/v1/namespaces/{ns}/requests/{id}", Ns(Read), || {
        get(requests::show)
    }),
    route(
        "POST",
        "/v1/namespaces/{ns}/requests/{id}/{step}",
        Ns(Write),
        || post(requests::step),
    ),
    route("GET", "/v1/namespaces/{ns}/schedules", Ns(Read), || {
        get(schedules::list)
    }),
    route("POST", "/v1/namespaces/{ns}/schedules", Ns(Write), || {
        post(schedules::create)
    }),
    route(
        "GET",
        "/v1/namespaces/{ns}/schedules/{id}",
        Ns(Read),
        || get(schedules::show),
    ),
    route(
        "POST",
        "/v1/namespaces/{ns}/schedules/{id}/cancel",
        Ns(Write),
        || post(schedules::cancel),
    ),
    route("GET", "/v1/namespaces/{ns}/webhooks", Ns(Read), || {
        get(webhooks::list)
    }),
    route("POST", "/v1/namespaces/{ns}/webhooks", Ns(Admin), || {
        post(webhooks::add)
    }),
    route("GET", "/v1/namespaces/{ns}/webhooks/{id}", Ns(Read), || {
        get(webhooks::show)
    }),
    route(
        "DELETE",
        "/v1/namespaces/{ns}/webhooks/{id}",
        Ns(Admin),
        || delete(webhooks::remove),
    ),
    route(
        "GET",
        "/v1/namespaces/{ns}/webhooks/{id}/deliveries",
        Ns(Read),
        || get(webhooks::deliveries),
    ),
    route(
        "POST",
        "/v1/namespaces/{ns}/webhooks/{id}/replay",
        Ns(Admin),
        || post(webhooks::replay),
    ),
    route(
        "POST",
        "/v1/namespaces/{ns}/webhooks/{id}/test",
        Ns(Admin),
        || post(webhooks::test),
    ),
    route("GET", "/v1/namespaces/{ns}/schemas", Ns(Read), || {
        get(schemas::list)
    }),
    route(
        "GET",
        "/v1/namespaces/{ns}/schemas/{*pattern}",
        Ns(Read),
        || get(schemas::get),
    ),
    route(
        "PUT",
        "/v1/namespaces/{ns}/schemas/{*pattern}",
        Ns(Admin),
        || put(schemas::put),
    ),
    route(
        "DELETE",
        "/v1/namespaces/{ns}/schemas/{*pattern}",
        Ns(Admin),
        || delete(schemas::delete),
    ),
    route("GET", "/v1/namespaces/{ns}/flagd.json", Ns(Read), || {
        get(rest::flagd_document)
    }),
    route("GET", "/v1/namespaces/{ns}/flags", Ns(Read), || {
        get(rest::list_flags)
    }),
    route("GET", "/v1/namespaces/{ns}/flags/{name}", Ns(Read), || {
        get(rest::get_flag)
    }),
    route("PUT", "/v1/namespaces/{ns}/flags/{name}", Ns(Write), || {
        put(rest::put_flag)
    }),
    route(
        "DELETE",
        "/v1/namespaces/{ns}/flags/{name}",
        Ns(Write),
        || delete(rest::delete_flag),
    ),
    // The namespace comes from X-Cfgd-Namespace, or the token's only one.
    route("POST", "/ofrep/v1/evaluate/flags/{key}", Ns(Read), || {
        post(ofrep::evaluate_one)
    }),
    route("POST", "/ofrep/v1/evaluate/flags", Ns(Read), || {
        post(ofrep::evaluate_all)
    }),
    route("GET", "/ofrep/v1/events", Ticket, || get(ofrep::events)),
];

/// The router, ready to serve: every row of [`ROUTES`] with its handler.
pub fn app(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        debug_assert!(route.method.parse::<Method>().is_ok(), "{route:?}");
        // Methods of one path merge into one method router.
        router = router.route(route.path, (route.handler)());
    }
    router
        // Every route reads its body whole: bound it (413 beyond).
        .layer(axum::extract::DefaultBodyLimit::max(
            state.settings.max_body_bytes,
        ))
        // Before any handler: a cookie-signed write without its CSRF token
        // goes no further.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            oidc::csrf_guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::track,
        ))
        // Outside `track`, which tells axum's own 413 by its plain text.
        .layer(axum::middleware::from_fn(crate::error::json_errors))
        .with_state(state)
}
