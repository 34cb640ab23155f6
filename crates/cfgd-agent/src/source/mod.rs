//! Where the values come from: the cfgd server ([`server`]) or etcd
//! through the library ([`etcd`]). Either keeps a [`Feed`] current: the
//! state every template renders from, and the source's status.

pub mod etcd;
mod http;
pub mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use cfgd::secret::Keyring;

use crate::state::{self, Shared, State};

/// How the source stands, as `/readyz`, the metrics and the logs say it.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceStatus {
    /// Not read yet.
    Starting,
    /// Following changes.
    Live { revision: i64 },
    /// Unreachable: values are the snapshot's (or, if it was reached
    /// before, the last read), and the agent keeps retrying.
    Unreachable {
        reason: String,
        since: SystemTime,
        revision: i64,
        from_snapshot: bool,
    },
}

/// What a source keeps current. Cheap to clone.
#[derive(Clone)]
pub struct Feed {
    state: Arc<watch::Sender<Option<Shared>>>,
    status: Arc<watch::Sender<SourceStatus>>,
    snapshot: Option<PathBuf>,
    namespace: String,
    keyring: Option<Arc<Keyring>>,
}

/// Retrying a source that cannot be reached: from 100 ms, doubling to 5 s.
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }
    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
    pub(crate) fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
}

impl Feed {
    pub fn new(namespace: &str, snapshot: Option<PathBuf>, keyring: Option<Arc<Keyring>>) -> Feed {
        Feed {
            state: Arc::new(watch::channel(None).0),
            status: Arc::new(watch::channel(SourceStatus::Starting).0),
            snapshot,
            namespace: namespace.to_owned(),
            keyring,
        }
    }

    /// The state, `None` until the source or the snapshot gave one.
    pub fn states(&self) -> watch::Receiver<Option<Shared>> {
        self.state.subscribe()
    }

    pub fn statuses(&self) -> watch::Receiver<SourceStatus> {
        self.status.subscribe()
    }

    pub fn status(&self) -> SourceStatus {
        self.status.borrow().clone()
    }

    /// A whole new state read from the source, which is live. Templates
    /// are woken only when it renders differently: a reconnect that read
    /// the same values is no change.
    pub(crate) fn publish(&self, state: State) {
        let revision = state.revision;
        // Live first: the snapshot writer sees the state as live.
        self.set_status(SourceStatus::Live { revision });
        self.state.send_if_modified(|now| {
            if now.as_ref().is_some_and(|n| n.same_content(&state)) {
                return false;
            }
            *now = Some(Arc::new(state));
            true
        });
    }

    fn set_status(&self, status: SourceStatus) {
        self.status.send_if_modified(|now| {
            let changed = std::mem::discriminant(now) != std::mem::discriminant(&status)
                || matches!((&*now, &status), (SourceStatus::Live { revision: a }, SourceStatus::Live { revision: b }) if a != b);
            if changed {
                *now = status;
            }
            changed
        });
    }

    /// The source cannot be reached (at start, or lost later): the files
    /// stay as they are; at start the snapshot, if any, is loaded for the
    /// templates to render.
    pub(crate) fn unreachable(&self, reason: String) {
        let was = self.status();
        if let SourceStatus::Unreachable { .. } = was {
            return;
        }
        let mut from_snapshot = false;
        let mut revision = match was {
            SourceStatus::Live { revision } => revision,
            _ => 0,
        };
        if self.state.borrow().is_none() {
            match self.load() {
                Some(Ok(state)) => {
                    from_snapshot = true;
                    revision = state.revision;
                    self.state.send_replace(Some(Arc::new(state)));
                }
                Some(Err(e)) => tracing::error!(error = %format!("{e:#}"), "snapshot not usable"),
                None => {}
            }
        }
        tracing::warn!(
            reason = %reason,
            revision,
            from_snapshot,
            "source unreachable: the files stay as they are; retrying"
        );
        self.set_status(SourceStatus::Unreachable {
            reason,
            since: SystemTime::now(),
            revision,
            from_snapshot,
        });
    }

    fn load(&self) -> Option<anyhow::Result<State>> {
        let path = self.snapshot.as_ref()?;
        if !path.exists() {
            return None;
        }
        Some(state::load_snapshot(
            path,
            &self.namespace,
            self.keyring.as_deref(),
        ))
    }

    /// Writes the snapshot after each state read live, off the source's
    /// task (a write and two fsyncs): a burst of changes is one write.
    pub fn keep_snapshot(&self) {
        let Some(path) = self.snapshot.clone() else {
            return;
        };
        let feed = self.clone();
        let mut states = self.states();
        tokio::spawn(async move {
            while states.changed().await.is_ok() {
                let state = states.borrow_and_update().clone();
                let Some(state) = state else { continue };
                if !matches!(feed.status(), SourceStatus::Live { .. }) {
                    continue;
                }
                let text = state::snapshot_text(&state, &feed.namespace, feed.keyring.as_deref());
                let target = crate::write::Target {
                    path: path.clone(),
                    mode: 0o600,
                    owner: None,
                    group: None,
                    in_place: false,
                };
                let written = tokio::task::spawn_blocking(move || {
                    crate::write::replace(&target, text.as_bytes())
                })
                .await;
                if let Ok(Err(e)) = written {
                    tracing::error!(error = %format!("{e:#}"), "snapshot not written");
                }
            }
        });
    }
}
