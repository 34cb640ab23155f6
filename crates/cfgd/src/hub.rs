//! The hub: one etcd watch per connection, shared by every namespace
//! attached to it, and the background task that keeps it standing.
//!
//! The task reads the namespaces that need it, watches from the last
//! revision handed out, and on any failure (a lost connection, a silent
//! stream, compaction) resumes or reads again. Each batch of events goes to
//! the namespaces it concerns ([`LiveNamespace::deliver`]).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{Event, GetOptions, WatchOptions};
use tokio::sync::{watch, Notify};

use crate::error::etcd_message;
use crate::etcd::Connection;
use crate::key;
use crate::mirror::Read;
use crate::namespace::LiveNamespace;
use crate::types::{Revision, Status};

/// How often an idle watch asks etcd for a progress answer.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Silence after which a watch stream is taken for dead and reopened.
const DEAD_AFTER: Duration = Duration::from_secs(6);
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// The one etcd watch of a connection, shared by every namespace attached to
/// it. It covers the first namespace's keys only, so that an etcd user
/// limited to one namespace can run a client, and the whole root once a
/// second namespace is attached: one etcd watcher per process, however many
/// namespaces and subscribers it serves.
pub(crate) struct Hub {
    state: std::sync::Mutex<HubState>,
    /// Woken when a namespace is attached or needs reading, and when the
    /// prefix widens.
    wake: Notify,
    /// The prefix of the watch etcd has confirmed, while it stands.
    watching: watch::Sender<Option<String>>,
}

struct HubState {
    /// `{root}/`.
    root: String,
    /// What the watch covers: one namespace's base, or `root`.
    prefix: Option<String>,
    /// Every change up to here was handed to the namespaces, so the watch
    /// resumes after it; 0 when no namespace has been read yet.
    revision: Revision,
    /// Namespaces by base. Several clients may attach the same one.
    namespaces: HashMap<String, Vec<Weak<LiveNamespace>>>,
}

impl Hub {
    pub(crate) fn new(root: &str) -> Self {
        Hub {
            state: std::sync::Mutex::new(HubState {
                root: format!("{root}/"),
                prefix: None,
                revision: 0,
                namespaces: HashMap::new(),
            }),
            wake: Notify::new(),
            watching: watch::channel(None).0,
        }
    }

    /// Waits until etcd has confirmed a watch that covers `shared`, so that
    /// a change made from now on reaches it at once. A watch created after
    /// the change would only be caught up by etcd's sync loop (every
    /// 100 ms). Gives up quietly at `deadline`, or after a second: a watch
    /// that slow is failing, which the client's status says, and it catches
    /// up when it stands.
    pub(crate) async fn wait_for_watch(
        &self,
        shared: &LiveNamespace,
        deadline: tokio::time::Instant,
    ) {
        let deadline = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
        let mut watching = self.watching.subscribe();
        let covers = |prefix: &Option<String>| {
            prefix
                .as_deref()
                .is_some_and(|prefix| shared.base.starts_with(prefix))
        };
        let _ = tokio::time::timeout_at(deadline, watching.wait_for(covers)).await;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a namespace, still loading: the watch's events for it wait
    /// until [`activated`](Self::activated).
    pub(crate) fn attach(&self, shared: &Arc<LiveNamespace>) {
        let mut state = self.state();
        let widen = match &state.prefix {
            None => {
                state.prefix = Some(shared.base.clone());
                false
            }
            Some(prefix) => *prefix != shared.base && *prefix != state.root,
        };
        if widen {
            state.prefix = Some(state.root.clone());
        }
        state
            .namespaces
            .entry(shared.base.clone())
            .or_default()
            .push(Arc::downgrade(shared));
        drop(state);
        self.wake.notify_one();
    }

    /// A namespace was read whole: install it, and make sure the watch
    /// resumes no later than the read. A layered namespace needs its
    /// parents' keys too: the watch then covers the whole root, and starts
    /// again from there.
    pub(crate) fn activated(&self, shared: &LiveNamespace, read: Read) {
        let replayed = {
            let mut state = self.state();
            state.revision = match state.revision {
                0 => read.revision,
                at => at.min(read.revision),
            };
            let narrow = state.prefix.as_deref() != Some(&state.root);
            if read.is_layered() && narrow {
                state.prefix = Some(state.root.clone());
            }
            read.is_layered() && narrow
        };
        if !shared.activate(read, replayed) {
            tracing::debug!(base = %shared.base, "layers moved while reading; reading again");
        }
        self.wake.notify_one();
    }

    /// Whether a namespace waits to be read, which the watch task does
    /// between watches.
    fn any_waiting(&self) -> bool {
        self.namespaces()
            .iter()
            .any(|shared| shared.waits_for_load())
    }

    /// A namespace started from its snapshot: read it once etcd answers.
    pub(crate) fn needs_load(&self, shared: &LiveNamespace) {
        shared.needs_load();
        self.wake.notify_one();
    }

    /// The live namespaces, forgetting those whose clients are gone.
    fn namespaces(&self) -> Vec<Arc<LiveNamespace>> {
        let mut state = self.state();
        state.namespaces.retain(|_, list| {
            list.retain(|w| w.strong_count() > 0);
            !list.is_empty()
        });
        state
            .namespaces
            .values()
            .flatten()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// After compaction: every namespace is read again.
    fn reset(&self) {
        self.state().revision = 0;
        for shared in self.namespaces() {
            shared.reload();
        }
    }

    /// Where to watch, and from which revision; `None` until a namespace
    /// has been read.
    fn position(&self) -> Option<(String, Revision)> {
        let state = self.state();
        match (&state.prefix, state.revision) {
            (Some(prefix), revision) if revision > 0 => Some((prefix.clone(), revision + 1)),
            _ => None,
        }
    }

    fn prefix_is_root(&self, prefix: &str) -> bool {
        self.state().root == prefix
    }

    fn prefix_is(&self, prefix: &str) -> bool {
        self.state().prefix.as_deref() == Some(prefix)
    }

    /// Hands each namespace its events of a batch, then moves the resume
    /// point past them, but only while `prefix` (the one the batch came
    /// through) is still the hub's. Once a namespace outside it has been
    /// attached, that namespace may already have been read at a revision
    /// this watch goes past without carrying its events: the wider watch
    /// must start from where the narrow one was when it attached, and the
    /// namespaces skip what they already have.
    fn dispatch(&self, events: &[Event], prefix: &str) {
        let Some(last) = events.last().and_then(|e| e.kv()) else {
            return;
        };
        let (root, targets) = {
            let state = self.state();
            let targets: Vec<Arc<LiveNamespace>> = state
                .namespaces
                .values()
                .flatten()
                .filter_map(Weak::upgrade)
                .collect();
            (state.root.clone(), targets)
        };
        // Each event's namespace prefix, `{root}/{ns}/`.
        let bases: Vec<Option<&[u8]>> = events
            .iter()
            .map(|event| {
                let key = event.kv()?.key();
                let rest = key.strip_prefix(root.as_bytes())?;
                let slash = rest.iter().position(|&b| b == b'/')?;
                Some(&key[..root.len() + slash + 1])
            })
            .collect();
        let mut reload = false;
        for shared in targets {
            let wanted = shared.wanted();
            let mine: Vec<&Event> = events
                .iter()
                .zip(&bases)
                .filter(|(_, base)| match (base, &wanted) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(base), Some(wanted)) => wanted.iter().any(|w| w.as_bytes() == *base),
                })
                .map(|(event, _)| event)
                .collect();
            if !mine.is_empty() {
                reload |= shared.deliver(&mine);
            }
        }
        let mut state = self.state();
        if state.prefix.as_deref() == Some(prefix) {
            state.revision = state.revision.max(last.mod_revision());
        }
        drop(state);
        if reload {
            self.wake.notify_one();
        }
    }
}

/// Why a watch stream ended.
enum Ended {
    /// The resume revision was compacted: reload, then watch again.
    Compacted,
    /// The prefix widened: watch again from where we were.
    Widened,
    /// A namespace must be read again (its layers moved): read it, then
    /// watch again from where we were.
    Reload,
    /// Anything else: back off, then resume where we were.
    Failed(String),
}

/// The one background task of a connection: read the namespaces that need
/// it, watch, and on any failure resume from the last revision handed out.
/// It ends with the connection.
pub(crate) async fn run(conn: Weak<Connection>, hub: Arc<Hub>) {
    let mut backoff = Backoff::new();
    loop {
        let etcd = {
            let Some(conn) = conn.upgrade() else {
                return;
            };
            conn.etcd().await.map(|e| e.client.clone())
        };
        let etcd = match etcd {
            Ok(etcd) => etcd,
            Err(error) => {
                tracing::debug!(%error, "etcd not reachable yet");
                for shared in hub.namespaces() {
                    if !matches!(*shared.status.borrow(), Status::Offline { .. }) {
                        shared.disconnected();
                    }
                }
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        if let Err(error) = load_waiting(&etcd, &hub).await {
            tracing::warn!(%error, "reading a namespace failed; retrying");
            tokio::time::sleep(backoff.next()).await;
            continue;
        }
        let Some((prefix, start)) = hub.position() else {
            hub.wake.notified().await;
            continue;
        };
        let ended = watch_once(&etcd, &hub, &prefix, start, &mut backoff).await;
        hub.watching.send_replace(None);
        match ended {
            Ended::Compacted => {
                tracing::info!("watch revision compacted; reading the namespaces again");
                hub.reset();
            }
            Ended::Widened => tracing::debug!("watching the whole root from now on"),
            Ended::Reload => tracing::debug!("reading a namespace whose layers moved"),
            Ended::Failed(reason) => {
                tracing::warn!(%reason, "etcd watch lost; resuming");
                for shared in hub.namespaces() {
                    shared.disconnected();
                }
                tokio::time::sleep(backoff.next()).await;
            }
        }
    }
}

/// Reads every namespace that waits for it (started offline, or compacted).
async fn load_waiting(
    etcd: &etcd_client::Client,
    hub: &Hub,
) -> std::result::Result<(), etcd_client::Error> {
    for shared in hub.namespaces() {
        if !shared.start_load() {
            continue;
        }
        match crate::namespace::read(etcd, shared.root(), &shared.name, &shared.labels).await {
            Ok(read) => {
                hub.activated(&shared, read);
                shared.connected();
            }
            Err(error) => {
                shared.needs_load();
                return Err(error);
            }
        }
    }
    Ok(())
}

async fn watch_once(
    etcd: &etcd_client::Client,
    hub: &Hub,
    prefix: &str,
    start: Revision,
    backoff: &mut Backoff,
) -> Ended {
    // One namespace: its mirrored sections only, so that a service's etcd
    // role need not read the audit trail, and its records (one per write)
    // are not sent to every watcher to be dropped.
    let (from, end) = if hub.prefix_is_root(prefix) {
        (prefix.as_bytes().to_vec(), key::prefix_end(prefix.into()))
    } else {
        key::sections_range(prefix)
    };
    let options = WatchOptions::new()
        .with_range(end.clone())
        .with_start_revision(start)
        .with_progress_notify();
    // etcd creates a watch on a compacted revision and cancels it only
    // later, and on 3.4 a progress answer can come in between. Asking first
    // keeps a resync from starting after we already said `Connected`.
    let mut kv = etcd.kv_client();
    let probe = kv.get(
        from.clone(),
        Some(
            GetOptions::new()
                .with_range(end)
                .with_count_only()
                .with_revision(start - 1),
        ),
    );
    match tokio::time::timeout(DEAD_AFTER, probe).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if etcd_message(&e).contains("revision has been compacted") => {
            return Ended::Compacted
        }
        Ok(Err(e)) => return Ended::Failed(etcd_message(&e)),
        Err(_) => return Ended::Failed("etcd did not answer".into()),
    }
    let mut client = etcd.watch_client();
    let opened = tokio::time::timeout(DEAD_AFTER, client.watch(from, Some(options)));
    let mut stream = match opened.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Ended::Failed(etcd_message(&e)),
        Err(_) => return Ended::Failed("opening the watch timed out".into()),
    };
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            message = stream.message() => {
                let resp = match message {
                    Ok(Some(resp)) => resp,
                    Ok(None) => return Ended::Failed("etcd closed the watch".into()),
                    Err(e) => return Ended::Failed(etcd_message(&e)),
                };
                heard = Instant::now();
                if resp.compact_revision() > 0 {
                    return Ended::Compacted;
                }
                if resp.canceled() {
                    return Ended::Failed(format!("watch canceled: {}", resp.cancel_reason()));
                }
                if resp.created() {
                    backoff.reset();
                    hub.watching.send_replace(Some(prefix.to_owned()));
                }
                hub.dispatch(resp.events(), prefix);
                let etcd_revision = resp.header().map(|h| h.revision());
                for shared in hub.namespaces() {
                    if let Some(revision) = etcd_revision {
                        shared
                            .stats
                            .etcd_revision
                            .fetch_max(revision, std::sync::atomic::Ordering::Relaxed);
                    }
                    // Only a live stream proves the connection; progress
                    // answers carry no events and may run ahead of them on
                    // etcd 3.4, so they never move the resume revision.
                    if shared.is_active() {
                        shared.connected();
                    }
                }
            }
            _ = ticker.tick() => {
                if heard.elapsed() > DEAD_AFTER {
                    return Ended::Failed(format!("no answer from etcd for {DEAD_AFTER:?}"));
                }
                if let Err(e) = stream.request_progress().await {
                    return Ended::Failed(etcd_message(&e));
                }
            }
            () = hub.wake.notified() => {
                if !hub.prefix_is(prefix) {
                    return Ended::Widened;
                }
                if hub.any_waiting() {
                    return Ended::Reload;
                }
            }
        }
    }
}

/// Capped exponential backoff with jitter, so that many clients that lost
/// etcd together do not come back in lockstep.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }

    fn next(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_CAP);
        // Jitter in [50%, 100%] of the step, from the clock's low bits: no
        // need for a random number generator here.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        base / 2 + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
    }
}
