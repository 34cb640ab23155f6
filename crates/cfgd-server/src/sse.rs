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
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Bytes, HttpBody};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use hyper::body::Frame;
use tokio::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{Stream, StreamExt};

use super::auth::Scope;
use super::error::ApiError;
use super::AppState;
use cfgd::Change;

/// A change as an SSE event: `id`, `event` and one `data` line (compact
/// JSON has no line break).
fn event(change: &Change) -> Bytes {
    format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        change.revision(),
        change.kind().as_str(),
        change.to_json()
    )
    .into()
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct WatchQuery {
    /// Only names that start with this.
    #[param(required = false, value_type = cfgd::openapi::Prefix)]
    #[serde(default)]
    prefix: String,
    /// `config` (the default) or `flags`.
    #[param(pattern = "^(config|flags)$")]
    section: Option<String>,
}

/// The revision a `Last-Event-ID` header names: digits only, as cfgd
/// sends them (no sign: the fuzzer found `-0` and `+5` taken as revisions).
pub(crate) fn last_event_id(header: &[u8]) -> Option<cfgd::Revision> {
    let text = std::str::from_utf8(header).ok()?.trim();
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/watch", tag = "config", operation_id = "watch",
    params(crate::params::LabelsHeader, crate::params::NsPath, WatchQuery, crate::params::LastEventId),
    responses(
        (status = 200, description = "Every change under the prefix, as it happens: `id` its revision, `event` put, delete or reset, `data` `{\"name\", \"kind\", \"value\", \"revision\", \"resync\"}`", content_type = "text/event-stream", body = crate::bodies::ChangeEvent),
    )
)]
pub(super) async fn watch(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    Query(query): Query<WatchQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let client = crate::labels::labelled(client, &ns, &headers).await?;
    let permit = state.http_stream_permit(&headers).await?;
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
    // Counts this stream in the gauge for as long as it is open.
    let open = SseClient::new(state.metrics.sse_clients.clone());
    // Resumed from too far back to be told every delete: the client must
    // drop what it holds and take the full set of values that follows.
    let reset = changes.is_reset().then(|| {
        Bytes::from_static(b"event: reset\ndata: {\"reason\":\"resumed from before the deletes cfgd still knows; the current values follow\"}\n\n")
    });
    let events = futures_util::stream::iter(reset)
        .chain(changes.map(|change| change.encoded(event)))
        .map(move |event| {
            let _open = (&open, &permit);
            event
        });
    Ok(EventStream::response(events, &state))
}

/// An event stream's body: events made elsewhere (a change's once, for
/// every stream that sends it), a comment line after `heartbeat` with
/// nothing sent, and its end when the server shuts down.
///
/// Not axum's `Sse`: with ten thousand streams each change is sent ten
/// thousand times, and its per-event work showed in the profile (building
/// each event per stream, resetting a timer, and taking the shutdown
/// signal's lock on every poll). Here an event is a shared `Bytes`, the
/// timer is reset only when it fires, and the shutdown signal is read
/// with one atomic load.
pub(super) struct EventStream<S> {
    events: S,
    heartbeat: Pin<Box<tokio::time::Sleep>>,
    every: Duration,
    last_sent: Instant,
    ending: Ending,
}

impl<S> EventStream<S>
where
    S: Stream<Item = Bytes> + Unpin + Send + 'static,
{
    /// The `text/event-stream` response that sends `events`.
    pub(super) fn response(events: S, state: &AppState) -> Response {
        let every = state.settings.heartbeat;
        let body = EventStream {
            events,
            heartbeat: Box::pin(tokio::time::sleep(every)),
            every,
            last_sent: Instant::now(),
            ending: Ending::new(state.shutdown.subscribe()),
        };
        let mut response = Response::new(axum::body::Body::new(body));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // nginx and other proxies buffer a response unless told not to.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

impl<S: Stream<Item = Bytes> + Unpin> HttpBody for EventStream<S> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.ending.poll(cx) {
            return Poll::Ready(None);
        }
        match this.events.poll_next_unpin(cx) {
            Poll::Ready(Some(event)) => {
                this.last_sent = Instant::now();
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        loop {
            ready!(this.heartbeat.as_mut().poll(cx));
            let now = Instant::now();
            let due = this.last_sent + this.every;
            if due > now {
                // An event went out since the timer was set.
                this.heartbeat.as_mut().reset(due);
                continue;
            }
            this.last_sent = now;
            this.heartbeat.as_mut().reset(now + this.every);
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b":\n\n")))));
        }
    }
}

/// The server's shutdown, as a stream sees it.
struct Ending {
    signal: tokio::sync::watch::Receiver<bool>,
    /// Polled once, so that shutdown wakes the stream's task (one task
    /// polls a body all its life); not again, as each poll takes the
    /// signal's lock.
    wake: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    registered: bool,
}

impl Ending {
    fn new(signal: tokio::sync::watch::Receiver<bool>) -> Self {
        let mut waiting = signal.clone();
        Ending {
            signal,
            wake: Box::pin(async move {
                let _ = waiting.wait_for(|ending| *ending).await;
            }),
            registered: false,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        // The signal only ever changes to true, or goes away with the server.
        if self.signal.has_changed().unwrap_or(true) {
            return true;
        }
        if !self.registered {
            if self.wake.as_mut().poll(cx).is_ready() {
                return true;
            }
            self.registered = true;
        }
        false
    }
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
