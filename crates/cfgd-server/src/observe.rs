//! The HTTP side of the server's metrics: the middleware that counts and
//! times every request, and `GET /metrics` in Prometheus' text format. The
//! metrics themselves live in `metrics`, below the state that holds them.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::*;
use crate::state::AppState;

/// Times every request, labelled by its route pattern (never the raw path,
/// which would make one series per key).
pub(super) async fn track(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    // axum refuses an over-long body itself, before any handler: count it
    // with the other limits. (OFREP contexts count as "context".)
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            != Some("application/json")
    {
        state.metrics.refused("body");
    }
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

#[utoipa::path(
    get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text)", content_type = "application/openmetrics-text", body = String))
)]
pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.metrics;
    for (namespace, client) in state.served().await {
        let label = Namespace { namespace };
        let stats = client.stats();
        let catch_up = |family: &Family<Namespace, Counter>, value: u64| {
            let counter = family.get_or_create(&label);
            counter.inc_by(value.saturating_sub(counter.get()));
        };
        catch_up(&m.cache_hits, stats.cache_hits);
        catch_up(&m.cache_misses, stats.cache_misses);
        catch_up(&m.resyncs, stats.resyncs);
        m.lag.get_or_create(&label).set(stats.lag_revisions);
        let up = matches!(client.status(), cfgd::Status::Connected { .. });
        m.connected.get_or_create(&label).set(i64::from(up));
    }
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &m.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
