//! Server-Sent Events: `GET /v1/namespaces/{ns}/watch?prefix=` for values,
//! `…/watch?section=flags&prefix=` for flag definitions.
//!
//! Each change is one event: `id` is its revision, `event` is `put` or
//! `delete`, `data` is `{"name", "kind", "value", "revision", "resync"}`.
//! A client that reconnects with `Last-Event-ID` gets everything after that
//! revision (exactly, or as resync values when it is too far back). From
//! further back than the deletes cfgd still remembers, it gets a `reset`
//! event, then every current value: it must drop names not among them. A
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
use super::AppState;
use crate::Change;

fn event(change: &Change) -> Event {
    // Every stream of this change sends the same data, made once.
    Event::default()
        .id(change.revision().to_string())
        .event(change.kind().as_str())
        .data(change.to_json())
}

#[derive(serde::Deserialize)]
pub(super) struct WatchQuery {
    #[serde(default)]
    prefix: String,
    /// `config` (the default) or `flags`.
    section: Option<String>,
}

/// The revision a `Last-Event-ID` header names: digits only, as cfgd
/// sends them (no sign: the fuzzer found `-0` and `+5` taken as revisions).
pub(crate) fn last_event_id(header: &[u8]) -> Option<crate::Revision> {
    let text = std::str::from_utf8(header).ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

pub(super) async fn watch(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    Query(query): Query<WatchQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let permit = state.http_stream_permit(&headers)?;
    let resume = headers
        .get("last-event-id")
        .map(|v| {
            last_event_id(v.as_bytes())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a revision (a number)"))
        })
        .transpose()?;
    let prefix = query.prefix.as_str();
    let changes = match (query.section.as_deref(), resume) {
        (None | Some("config"), Some(revision)) => client.subscribe_from(prefix, revision)?,
        (None | Some("config"), None) => client.subscribe(prefix)?,
        (Some("flags"), Some(revision)) => client.subscribe_flags_from(prefix, revision)?,
        (Some("flags"), None) => client.subscribe_flags(prefix)?,
        (Some(other), _) => {
            return Err(ApiError::bad_request(format!(
                "section must be config or flags, not {other:?}"
            )))
        }
    };
    let mut shutdown = state.shutdown.subscribe();
    // Counts this stream in the gauge for as long as it is open.
    let open = SseClient::new(state.metrics.sse_clients.clone());
    // Resumed from too far back to be told every delete: the client must
    // drop what it holds and take the full set of values that follows.
    let reset = changes.is_reset().then(|| {
        Event::default()
            .event("reset")
            .data(r#"{"reason":"resumed from before the deletes cfgd still knows; the current values follow"}"#)
    });
    let stream = futures_util::stream::iter(reset)
        .chain(changes.map(|change| event(&change)))
        .map(move |event| {
            let _open = (&open, &permit);
            Ok::<_, Infallible>(event)
        })
        // End cleanly when the server shuts down.
        .take_until(async move {
            let _ = shutdown.wait_for(|ending| *ending).await;
        });
    let keep_alive = KeepAlive::new().interval(state.settings.heartbeat);
    let mut response = Sse::new(stream).keep_alive(keep_alive).into_response();
    // nginx and other proxies buffer a response unless told not to.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(response)
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
