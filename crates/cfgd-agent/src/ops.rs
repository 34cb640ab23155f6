//! What the agent tells operators: per-template status and Prometheus
//! metrics, served on the optional `listen` address as `/healthz`,
//! `/readyz` (ready once every template has rendered), `/status` and
//! `/metrics`.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State as Extract;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::source::{Feed, SourceStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TemplateLabel {
    template: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    template: String,
    /// `render`, `missing`, `secret_mode`, `check` or `write`.
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

/// One template, as `/status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TemplateStatus {
    /// The destination, or `env (template N)` for an environment-only one.
    pub template: String,
    /// Rendered (or found unchanged) at least once.
    pub rendered: bool,
    pub renders: u64,
    pub failures: u64,
    /// The last failure, until a render succeeds.
    pub last_error: Option<String>,
    /// Seconds since the epoch of the last success.
    pub last_success: Option<f64>,
    /// Names the last render waited for (`missing = "wait"`).
    pub waiting_for: Vec<String>,
    /// The last action that failed (the file was in place), until one
    /// succeeds.
    pub last_action_error: Option<String>,
}

/// Status and metrics, shared by every template.
pub struct Ops {
    registry: Registry,
    renders: Family<TemplateLabel, Counter>,
    writes: Family<TemplateLabel, Counter>,
    failures: Family<FailureLabels, Counter>,
    last_success: Family<TemplateLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    actions: Family<TemplateLabel, Counter>,
    action_failures: Family<TemplateLabel, Counter>,
    source_live: Family<SourceLabels, Gauge>,
    source_revision: Gauge,
    templates: Mutex<Vec<TemplateStatus>>,
    source: String,
    feed: Feed,
    ready: tokio::sync::watch::Sender<bool>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl Ops {
    pub fn new(names: Vec<String>, source: &str, feed: Feed) -> Arc<Ops> {
        let mut registry = Registry::with_prefix("cfgd_agent");
        let renders = Family::<TemplateLabel, Counter>::default();
        let writes = Family::<TemplateLabel, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let last_success = Family::default();
        let actions = Family::<TemplateLabel, Counter>::default();
        let action_failures = Family::<TemplateLabel, Counter>::default();
        let source_live = Family::<SourceLabels, Gauge>::default();
        let source_revision = Gauge::default();
        registry.register(
            "renders",
            "Renders that succeeded (written or unchanged)",
            renders.clone(),
        );
        registry.register("writes", "Renders that changed their file", writes.clone());
        registry.register(
            "render_failures",
            "Renders that failed, by reason; the old file stayed",
            failures.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When each template last rendered",
            last_success.clone(),
        );
        registry.register(
            "actions",
            "Actions run after a changed file",
            actions.clone(),
        );
        registry.register(
            "action_failures",
            "Actions that failed after a changed file (which stayed in place)",
            action_failures.clone(),
        );
        registry.register(
            "source_live",
            "1 while the source is followed live; 0 while it is starting or unreachable",
            source_live.clone(),
        );
        registry.register(
            "source_revision",
            "The newest revision read",
            source_revision.clone(),
        );
        let templates = names
            .into_iter()
            .map(|template| {
                // Every series exists from the start, at zero.
                let label = TemplateLabel {
                    template: template.clone(),
                };
                let _ = renders.get_or_create(&label);
                let _ = writes.get_or_create(&label);
                TemplateStatus {
                    template,
                    ..Default::default()
                }
            })
            .collect();
        Arc::new(Ops {
            registry,
            renders,
            writes,
            failures,
            last_success,
            actions,
            action_failures,
            source_live,
            source_revision,
            templates: Mutex::new(templates),
            source: source.to_owned(),
            feed,
            ready: tokio::sync::watch::channel(false).0,
        })
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut TemplateStatus)) {
        f(&mut self.templates.lock().unwrap()[index]);
    }

    fn label(&self, index: usize) -> TemplateLabel {
        TemplateLabel {
            template: self.templates.lock().unwrap()[index].template.clone(),
        }
    }

    pub fn rendered(&self, index: usize, wrote: bool) {
        let label = self.label(index);
        self.renders.get_or_create(&label).inc();
        if wrote {
            self.writes.get_or_create(&label).inc();
        }
        let at = now();
        self.last_success.get_or_create(&label).set(at);
        self.update(index, |t| {
            t.rendered = true;
            t.renders += 1;
            t.last_error = None;
            t.last_success = Some(at);
            t.waiting_for.clear();
        });
        if self.ready() {
            self.ready.send_replace(true);
        }
    }

    /// Turns true once every template has rendered.
    pub fn ready_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ready.subscribe()
    }

    pub fn failed(&self, index: usize, reason: &str, error: &str) {
        let template = self.label(index).template;
        self.failures
            .get_or_create(&FailureLabels {
                template,
                reason: reason.to_owned(),
            })
            .inc();
        self.update(index, |t| {
            t.failures += 1;
            t.last_error = Some(error.to_owned());
        });
    }

    pub fn waiting(&self, index: usize, names: Vec<String>) {
        self.update(index, |t| t.waiting_for = names);
    }

    pub fn acted(&self, index: usize) {
        self.actions.get_or_create(&self.label(index)).inc();
        self.update(index, |t| t.last_action_error = None);
    }

    pub fn action_failed(&self, index: usize, error: &str) {
        self.action_failures.get_or_create(&self.label(index)).inc();
        self.update(index, |t| t.last_action_error = Some(error.to_owned()));
    }

    /// Every template has rendered once.
    pub fn ready(&self) -> bool {
        self.templates.lock().unwrap().iter().all(|t| t.rendered)
    }

    pub fn templates(&self) -> Vec<TemplateStatus> {
        self.templates.lock().unwrap().clone()
    }

    fn status_json(&self) -> serde_json::Value {
        let source = match self.feed.status() {
            SourceStatus::Starting => serde_json::json!({"state": "starting"}),
            SourceStatus::Live { revision } => {
                serde_json::json!({"state": "live", "revision": revision})
            }
            SourceStatus::Unreachable {
                reason,
                since,
                revision,
                from_snapshot,
            } => serde_json::json!({
                "state": "unreachable",
                "reason": reason,
                "since": since.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default(),
                "revision": revision,
                "from_snapshot": from_snapshot,
            }),
        };
        serde_json::json!({
            "ready": self.ready(),
            "source": {"kind": self.source, "status": source},
            "templates": self.templates(),
        })
    }

    fn metrics_text(&self) -> String {
        let status = self.feed.status();
        let live = matches!(status, SourceStatus::Live { .. });
        self.source_live
            .get_or_create(&SourceLabels {
                source: self.source.clone(),
            })
            .set(live as i64);
        let revision = match status {
            SourceStatus::Live { revision } | SourceStatus::Unreachable { revision, .. } => {
                revision
            }
            SourceStatus::Starting => 0,
        };
        self.source_revision.set(revision);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writes to a String");
        text
    }
}

/// Serves `/healthz`, `/readyz`, `/status` and `/metrics` until the end.
pub async fn serve(listener: tokio::net::TcpListener, ops: Arc<Ops>) {
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(ops);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the ops listener stopped");
    }
}

async fn readyz(Extract(ops): Extract<Arc<Ops>>) -> Response {
    let code = match ops.ready() {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, axum::Json(ops.status_json())).into_response()
}

async fn status(Extract(ops): Extract<Arc<Ops>>) -> Response {
    axum::Json(ops.status_json()).into_response()
}

async fn metrics(Extract(ops): Extract<Arc<Ops>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ops.metrics_text(),
    )
        .into_response()
}
