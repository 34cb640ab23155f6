//! [`app`]: the router, every route with its handler.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

use crate::*;

/// The router, ready to serve.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ui", get(ui::redirect))
        .route("/ui/", get(ui::index))
        .route("/ui/{file}", get(ui::file))
        .route("/v1/whoami", get(ui::whoami))
        .route("/v1/namespaces", get(ui::namespaces))
        .route(
            "/v1/namespaces/{ns}/rollback/{*name}",
            axum::routing::post(rest::rollback),
        )
        .route("/readyz", get(rest::readyz))
        .route("/v1/namespaces/{ns}/config", get(rest::list_config))
        .route(
            "/v1/namespaces/{ns}/config/{*name}",
            get(rest::get_config)
                .put(rest::put_config)
                .delete(rest::delete_config),
        )
        .route(
            "/v1/namespaces/{ns}/history/{*name}",
            get(rest::get_history),
        )
        .route("/v1/namespaces/{ns}/watch", get(sse::watch))
        .route(
            "/v1/namespaces/{ns}/diff",
            get(diff::namespaces).post(diff::document),
        )
        .route("/v1/namespaces/{ns}/audit", get(audit::list))
        .route(
            "/v1/namespaces/{ns}/releases",
            get(releases::list).post(releases::publish),
        )
        .route("/v1/namespaces/{ns}/releases/{id}", get(releases::show))
        .route(
            "/v1/namespaces/{ns}/releases/{id}/revert",
            axum::routing::post(releases::revert),
        )
        .route(
            "/v1/namespaces/{ns}/policy",
            get(requests::get_policy).put(requests::put_policy),
        )
        .route(
            "/v1/namespaces/{ns}/requests",
            get(requests::list).post(requests::create),
        )
        .route("/v1/namespaces/{ns}/requests/{id}", get(requests::show))
        .route(
            "/v1/namespaces/{ns}/requests/{id}/{step}",
            axum::routing::post(requests::step),
        )
        .route("/v1/namespaces/{ns}/schemas", get(schemas::list))
        .route(
            "/v1/namespaces/{ns}/schemas/{*pattern}",
            get(schemas::get).put(schemas::put).delete(schemas::delete),
        )
        .route("/v1/namespaces/{ns}/flagd.json", get(rest::flagd_document))
        .route("/v1/namespaces/{ns}/flags", get(rest::list_flags))
        .route(
            "/v1/namespaces/{ns}/flags/{name}",
            get(rest::get_flag)
                .put(rest::put_flag)
                .delete(rest::delete_flag),
        )
        .route(
            "/ofrep/v1/evaluate/flags/{key}",
            axum::routing::post(ofrep::evaluate_one),
        )
        .route(
            "/ofrep/v1/evaluate/flags",
            axum::routing::post(ofrep::evaluate_all),
        )
        .route("/ofrep/v1/events", get(ofrep::events))
        .route("/metrics", get(metrics::metrics))
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
