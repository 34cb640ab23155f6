//! Server-Sent Events: `GET /v1/namespaces/{ns}/watch?prefix=`.
//!
//! Each change is one event: `id` is its revision, `event` is `put` or
//! `delete`, `data` is `{"name", "kind", "value", "revision", "resync"}`.
//! A client that reconnects with `Last-Event-ID` gets everything after that
//! revision (exactly, or as resync values when it is too far back). A
//! client that cannot keep up is caught up the same way, so no client makes
//! the server hold more than a bounded buffer.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::auth::Scope;
use super::error::ApiError;
use super::rest::ListQuery;
use super::AppState;
use crate::{Change, ChangeKind};

fn event(change: &Change) -> Event {
    let kind = match change.kind() {
        ChangeKind::Put => "put",
        ChangeKind::Delete => "delete",
    };
    // Every stream of this change sends the same data: made once.
    let data = change.data.sse_data.get_or_init(|| {
        let value = match change.raw() {
            Some(raw) => serde_json::from_slice(raw).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(raw).into_owned())
            }),
            None => serde_json::Value::Null,
        };
        serde_json::json!({
            "name": change.name(),
            "kind": kind,
            "value": value,
            "revision": change.revision(),
            "resync": change.is_resync(),
        })
        .to_string()
    });
    Event::default()
        .id(change.revision().to_string())
        .event(kind)
        .data(data)
}

pub(super) async fn watch(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let resume = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<crate::Revision>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a revision (a number)"))
        })
        .transpose()?;
    let changes = match resume {
        Some(revision) => client.subscribe_from(query.prefix(), revision)?,
        None => client.subscribe(query.prefix())?,
    };
    let mut shutdown = state.shutdown.subscribe();
    // Counts this stream in the gauge for as long as it is open.
    let open = SseClient::new(state.metrics.sse_clients.clone());
    let stream = changes
        .map(move |change| {
            let _open = &open;
            Ok::<_, Infallible>(event(&change))
        })
        // End cleanly when the server shuts down.
        .take_until(async move {
            let _ = shutdown.wait_for(|ending| *ending).await;
        });
    let keep_alive = KeepAlive::new().interval(state.settings.heartbeat);
    Ok(Sse::new(stream).keep_alive(keep_alive).into_response())
}

struct SseClient(prometheus_client::metrics::gauge::Gauge);

impl SseClient {
    fn new(gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        SseClient(gauge)
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.0.dec();
    }
}
