//! The live engine: one etcd watch per connection (the [`Hub`]), a mirror of
//! each namespace attached to it, and the fan-out of changes to every
//! subscriber.
//!
//! A mirror holds every key of its namespace (raw JSON and revisions) plus
//! tombstones of deleted keys. That is what lets a resync after compaction
//! name the keys that disappeared, lets a lagging subscriber catch up without
//! a round trip, and lets reads be served without asking etcd.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{Event, EventType, GetOptions, KeyValue, WatchOptions};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch, Notify};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::Stream;

use crate::client::{Conn, Inner, Revision, Source};
use crate::error::Result;
use crate::key::Kind;
use crate::live_value::Registry;
use crate::value;

/// How often an idle watch asks etcd for a progress answer.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Silence after which a watch stream is taken for dead and reopened.
const DEAD_AFTER: Duration = Duration::from_secs(6);
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Recent changes kept for resuming a subscription exactly (SSE
/// `Last-Event-ID`); older resumes get the current values as resync.
const RECENT: usize = 4096;
/// Keys in the first request when the namespace is read whole.
const LOAD_PAGE: i64 = 256;
/// Pages grow (4x at a time, up to this many keys) while they stay under
/// `LOAD_PAGE_BYTES`: etcd 3.4 walks the whole rest of the range on every
/// page, so a namespace of 100,000 small keys read 256 at a time takes
/// seconds, and in a few large pages, a fraction of one.
const LOAD_PAGE_MAX: i64 = 65_536;
const LOAD_PAGE_BYTES: usize = 8 << 20;
/// The largest answer accepted, by reads and lists alike. etcd accepts
/// values up to 1.5 MiB from other tools, so a full page of the largest must
/// still decode; a namespace read whose page grew past it is retried
/// smaller rather than refused.
pub(crate) const MAX_DECODE: usize = 128 << 20;

/// What a [`Change`] did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The key was created or given a new value.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change to one key, as delivered to subscribers. Cheap to clone: one
/// `Arc`, since every subscriber clones every change it is handed, and at
/// thousands of subscribers each shared counter touched is felt.
#[derive(Debug, Clone)]
pub struct Change {
    pub(crate) data: Arc<ChangeData>,
}

#[derive(Debug)]
pub(crate) struct ChangeData {
    pub(crate) section: Kind,
    pub(crate) name: Arc<str>,
    pub(crate) revision: Revision,
    pub(crate) resync: bool,
    /// The new value; `None` for a delete, which is what makes it one.
    pub(crate) raw: Option<Arc<[u8]>>,
    /// The server's SSE `data` for this change, made by the first stream
    /// that sends it and reused by the others.
    #[cfg(feature = "server")]
    pub(crate) sse_data: std::sync::OnceLock<String>,
}

impl Change {
    fn new(
        section: Kind,
        name: Arc<str>,
        revision: Revision,
        resync: bool,
        raw: Option<Arc<[u8]>>,
    ) -> Self {
        Change {
            data: Arc::new(ChangeData {
                section,
                name,
                revision,
                resync,
                raw,
                #[cfg(feature = "server")]
                sse_data: Default::default(),
            }),
        }
    }

    /// Whether a subscriber of `prefix` in `section` wants this change.
    fn is_under(&self, section: Kind, prefix: &str) -> bool {
        self.data.section == section && self.data.name.starts_with(prefix)
    }
}

impl Change {
    /// The name within the namespace.
    pub fn name(&self) -> &str {
        &self.data.name
    }

    /// Put or delete.
    pub fn kind(&self) -> ChangeKind {
        match self.data.raw {
            Some(_) => ChangeKind::Put,
            None => ChangeKind::Delete,
        }
    }

    /// The etcd revision of the change. For a delete found by a resync the
    /// exact revision is gone, and this is the revision the resync read at.
    pub fn revision(&self) -> Revision {
        self.data.revision
    }

    /// True when this change was not seen as it happened but found by a
    /// resync (after compaction, an outage, or a subscriber falling behind).
    pub fn is_resync(&self) -> bool {
        self.data.resync
    }

    /// The new value as JSON text; `None` for a delete.
    pub fn raw(&self) -> Option<&[u8]> {
        self.data.raw.as_deref()
    }

    /// The new value decoded as `T`; `None` for a delete.
    pub fn value<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.data
            .raw
            .as_deref()
            .map(|raw| value::decode(&self.data.name, self.data.revision, raw))
            .transpose()
    }
}

/// The client's link to etcd, as seen by [`Client::status`](crate::Client::status).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Watching etcd; values are current.
    Connected {
        /// The last etcd revision applied.
        revision: Revision,
    },
    /// The connection was lost; last known values are served while it retries.
    Reconnecting {
        /// When the connection was lost.
        since: SystemTime,
        /// The last etcd revision applied.
        revision: Revision,
    },
    /// etcd was not reachable at start; values come from the snapshot file.
    Offline {
        /// Since when.
        since: SystemTime,
        /// The revision the snapshot was taken at.
        revision: Revision,
    },
}

impl Status {
    /// The last etcd revision the client has applied.
    pub fn revision(&self) -> Revision {
        match self {
            Status::Connected { revision }
            | Status::Reconnecting { revision, .. }
            | Status::Offline { revision, .. } => *revision,
        }
    }
}

/// One entry of a namespace read: section, name and what is stored.
pub(crate) type Named = (Kind, Arc<str>, Stored);

/// A stored key as the mirror knows it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) raw: Arc<[u8]>,
    pub(crate) revision: Revision,
    pub(crate) create_revision: Revision,
    pub(crate) version: i64,
    /// `Cache` when it came from etcd, `Snapshot` when from the file.
    pub(crate) origin: Source,
    /// The value decoded, for the first type it was read as. It lives and
    /// dies with this revision of the key, so it can never be stale, and a
    /// read that hits it costs a lookup and a clone of the value.
    pub(crate) decoded: Arc<std::sync::OnceLock<Decoded>>,
}

/// A decoded value and the type it was decoded as.
pub(crate) type Decoded = (std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>);

#[derive(Default)]
pub(crate) struct Section {
    pub(crate) entries: HashMap<Arc<str>, Stored>,
    /// Deleted names and the revision that deleted them, so that a lagging
    /// subscriber learns of deletes it missed.
    pub(crate) tombstones: HashMap<Arc<str>, Revision>,
}

#[derive(Default)]
pub(crate) struct Mirror {
    /// Everything up to this revision has been applied.
    pub(crate) revision: Revision,
    pub(crate) sections: [Section; 2],
}

impl Mirror {
    pub(crate) fn section(&self, kind: Kind) -> &Section {
        &self.sections[kind.index()]
    }

    /// Applies a put unless a newer revision is already there. `authoritative`
    /// (the watch) may also replace an entry of the same revision, since it
    /// carries etcd's own create revision and version.
    fn put(&mut self, kind: Kind, name: &Arc<str>, stored: Stored, authoritative: bool) -> bool {
        let section = &mut self.sections[kind.index()];
        if let Some(old) = section.entries.get(name) {
            let newer = stored.revision > old.revision
                || (authoritative && stored.revision == old.revision);
            if !newer {
                return false;
            }
        }
        if matches!(section.tombstones.get(name), Some(&r) if r > stored.revision) {
            return false;
        }
        section.tombstones.remove(name);
        section.entries.insert(name.clone(), stored);
        true
    }

    fn delete(&mut self, kind: Kind, name: &Arc<str>, revision: Revision) -> bool {
        let section = &mut self.sections[kind.index()];
        if matches!(section.entries.get(name), Some(old) if old.revision > revision) {
            return false;
        }
        section.entries.remove(name);
        section.tombstones.insert(name.clone(), revision);
        true
    }
}

/// State shared by the client handles, the watch task and the subscribers.
pub(crate) struct Shared {
    pub(crate) mirror: RwLock<Mirror>,
    pub(crate) changes: broadcast::Sender<Change>,
    pub(crate) status: watch::Sender<Status>,
    pub(crate) registry: Registry,
    /// Woken after every applied batch, for the snapshot writer.
    pub(crate) dirty: Notify,
    /// The etcd prefix of the namespace, ending in `/`.
    pub(crate) base: String,
    /// The defaults file's values (empty without one).
    pub(crate) defaults: arc_swap::ArcSwap<crate::defaults::Values>,
    /// The namespace's flags, compiled; rebuilt on every flag change.
    pub(crate) flags: arc_swap::ArcSwap<crate::flags::FlagSet>,
    /// Bumped after each rebuild of `flags`.
    pub(crate) flag_changes: watch::Sender<u64>,
    /// Serializes rebuilds, so an older build never replaces a newer one.
    rebuilding: std::sync::Mutex<()>,
    /// The last [`RECENT`] changes published, oldest first. Its lock is
    /// held while publishing, so a resume sees each change exactly once:
    /// either here or from the channel.
    recent: std::sync::Mutex<Recent>,
    /// Counters for [`Client::stats`](crate::Client::stats).
    pub(crate) stats: Counters,
    /// Where the namespace stands with the hub's watch.
    attach: std::sync::Mutex<Attach>,
    /// Callbacks of [`Client::on_change`](crate::Client::on_change). The
    /// list is copied on write only while a publish holds it, so taking it
    /// costs one reference count, however many callbacks there are.
    hooks: std::sync::Mutex<Arc<Vec<Arc<Hook>>>>,
}

/// A namespace's standing with the hub's watch.
enum Attach {
    /// Being read whole: watch events wait here until the read is in, and
    /// those after its revision are applied then.
    Loading(Vec<Event>),
    /// To be read by the hub once etcd answers (started from a snapshot, or
    /// after compaction); events are dropped meanwhile, the read covers them.
    NeedsLoad,
    /// Read: watch events apply as they come.
    Active,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) cache_hits: std::sync::atomic::AtomicU64,
    pub(crate) cache_misses: std::sync::atomic::AtomicU64,
    pub(crate) resyncs: std::sync::atomic::AtomicU64,
    /// etcd's revision as last reported on the watch stream.
    pub(crate) etcd_revision: std::sync::atomic::AtomicI64,
}

#[derive(Default)]
pub(crate) struct Recent {
    changes: std::collections::VecDeque<Change>,
    /// The ring holds every change after this revision: it moves past
    /// changes dropped for room, and to the revision of each full read of
    /// the namespace (which cannot name what was deleted before it).
    complete_after: Revision,
}

impl Shared {
    pub(crate) fn new(base: String, capacity: usize, status: Status) -> Self {
        Shared {
            mirror: RwLock::new(Mirror::default()),
            changes: broadcast::channel(capacity).0,
            status: watch::channel(status).0,
            registry: Registry::default(),
            dirty: Notify::new(),
            base,
            defaults: Default::default(),
            flags: Default::default(),
            flag_changes: watch::channel(0).0,
            rebuilding: Default::default(),
            recent: Default::default(),
            stats: Default::default(),
            attach: std::sync::Mutex::new(Attach::Loading(Vec::new())),
            hooks: Default::default(),
        }
    }

    fn hooks(&self) -> std::sync::MutexGuard<'_, Arc<Vec<Arc<Hook>>>> {
        self.hooks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls every callback with the changes it asked for. Publishing is
    /// serialized (under `attach`), so each callback sees changes in
    /// revision order, one at a time.
    fn call_hooks(&self, changes: &[Change]) {
        // Not under the lock, so that a callback may add or drop callbacks.
        let hooks = {
            let hooks = self.hooks();
            if hooks.is_empty() {
                return;
            }
            Arc::clone(&hooks)
        };
        for change in changes {
            for hook in hooks.iter() {
                hook.call(change);
            }
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A full read at `revision` cannot name what was deleted before it, so
    /// the ring of recent changes is complete only from there on.
    fn complete_from(&self, revision: Revision) {
        let mut recent = self.recent();
        recent.complete_after = recent.complete_after.max(revision);
    }

    fn attach(&self) -> std::sync::MutexGuard<'_, Attach> {
        self.attach.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands this namespace its part of a batch from the watch.
    fn deliver(&self, events: &[&Event]) {
        let mut attach = self.attach();
        match &mut *attach {
            Attach::Loading(waiting) => waiting.extend(events.iter().map(|&e| e.clone())),
            Attach::NeedsLoad => {}
            Attach::Active => self.apply_events(events),
        }
    }

    /// Installs a full read at `revision`, then what the watch brought
    /// while it was being made.
    fn activate(&self, revision: Revision, fresh: Vec<Named>) {
        let mut attach = self.attach();
        self.replace(revision, fresh);
        if let Attach::Loading(waiting) = std::mem::replace(&mut *attach, Attach::Active) {
            self.apply_events(&waiting.iter().collect::<Vec<_>>());
        }
    }

    fn is_active(&self) -> bool {
        matches!(*self.attach(), Attach::Active)
    }

    /// Recompiles the flags that changed since the last build.
    pub(crate) fn rebuild_flags(&self) {
        let _one_at_a_time = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        let next = {
            let mirror = self.read();
            let previous = self.flags.load();
            crate::flags::FlagSet::from_store(
                mirror
                    .section(Kind::Flags)
                    .entries
                    .iter()
                    .map(|(name, s)| (&**name, &*s.raw, s.revision)),
                &previous,
            )
        };
        self.flags.store(Arc::new(next));
        self.flag_changes.send_modify(|n| *n += 1);
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Mirror> {
        // A panic while holding the lock cannot leave the mirror half
        // updated in a way later updates would not repair.
        self.mirror.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Mirror> {
        self.mirror.write().unwrap_or_else(|e| e.into_inner())
    }

    fn split_key<'k>(&self, key: &'k [u8]) -> Option<(Kind, &'k str)> {
        let rest = std::str::from_utf8(key.strip_prefix(self.base.as_bytes())?).ok()?;
        let (section, name) = rest.split_once('/')?;
        Some((Kind::from_segment(section)?, name))
    }

    /// Applies a batch of watch events, then tells live values and
    /// subscribers, in that order, so that a subscriber reading the mirror on
    /// a change sees at least that change.
    fn apply_events(&self, events: &[&Event]) {
        let mut changes = Vec::with_capacity(events.len());
        {
            let mut mirror = self.write();
            // The watch may bring again what a full read already holds (it
            // runs behind reads of namespaces attached later). A revision's
            // events never straddle two batches, so all of a batch's events
            // at or below the start are old.
            let floor = mirror.revision;
            for event in events {
                let Some(kv) = event.kv() else { continue };
                let revision = kv.mod_revision();
                if revision <= floor {
                    continue;
                }
                mirror.revision = mirror.revision.max(revision);
                let Some((section, name)) = self.split_key(kv.key()) else {
                    continue;
                };
                let name: Arc<str> = name.into();
                let change = match event.event_type() {
                    EventType::Put => {
                        let stored = stored(kv, Source::Cache);
                        let raw = stored.raw.clone();
                        mirror.put(section, &name, stored, true);
                        Change::new(section, name, revision, false, Some(raw))
                    }
                    EventType::Delete => {
                        mirror.delete(section, &name, revision);
                        Change::new(section, name, revision, false, None)
                    }
                };
                changes.push(change);
            }
        }
        self.publish(changes);
    }

    fn publish(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        if changes.iter().any(|c| c.data.section == Kind::Flags) {
            self.rebuild_flags();
        }
        for change in &changes {
            self.registry.apply(self, change);
        }
        {
            let mut recent = self.recent();
            for change in &changes {
                if recent.changes.len() == RECENT {
                    if let Some(dropped) = recent.changes.pop_front() {
                        recent.complete_after = recent.complete_after.max(dropped.data.revision);
                    }
                }
                recent.changes.push_back(change.clone());
                // No receivers is fine: nobody subscribed yet.
                let _ = self.changes.send(change.clone());
            }
        }
        // After the channel (its subscribers wake on other threads while
        // these run), and outside `recent`, which a callback may need.
        self.call_hooks(&changes);
        self.dirty.notify_one();
    }

    /// A write this client made, applied at once so that a read right after
    /// it sees it. The watch delivers the same revision later, to subscribers.
    pub(crate) fn apply_local(
        &self,
        section: Kind,
        name: &str,
        raw: Option<Vec<u8>>,
        revision: Revision,
    ) {
        let name: Arc<str> = name.into();
        let change = {
            let mut mirror = self.write();
            let applied = match raw {
                Some(raw) => {
                    let (create_revision, version) =
                        match mirror.section(section).entries.get(&name) {
                            Some(old) => (old.create_revision, old.version + 1),
                            None => (revision, 1),
                        };
                    let stored = Stored {
                        raw: raw.into(),
                        revision,
                        create_revision,
                        version,
                        origin: Source::Cache,
                        decoded: Default::default(),
                    };
                    let raw = stored.raw.clone();
                    mirror
                        .put(section, &name, stored, false)
                        .then_some(Some(raw))
                }
                None => mirror.delete(section, &name, revision).then_some(None),
            };
            applied.map(|raw| Change::new(section, name, revision, false, raw))
        };
        if let Some(change) = change {
            if change.data.section == Kind::Flags {
                self.rebuild_flags();
            }
            self.registry.apply(self, &change);
        }
    }

    /// Replaces the mirror with a full read of the namespace, emitting what
    /// differs as resync changes.
    fn replace(&self, revision: Revision, fresh: Vec<Named>) {
        let mut changes = Vec::new();
        {
            let mut mirror = self.write();
            let mut next: [HashMap<Arc<str>, Stored>; 2] = Default::default();
            for (section, name, stored) in fresh {
                next[section.index()].insert(name, stored);
            }
            for section in [Kind::Config, Kind::Flags] {
                let old = &mut mirror.sections[section.index()];
                let new = &next[section.index()];
                for (name, stored) in new {
                    let same = old
                        .entries
                        .get(name)
                        .is_some_and(|o| o.revision == stored.revision && o.raw == stored.raw);
                    if !same {
                        changes.push(Change::new(
                            section,
                            name.clone(),
                            stored.revision,
                            true,
                            Some(stored.raw.clone()),
                        ));
                    }
                    old.tombstones.remove(name);
                }
                for name in old.entries.keys() {
                    if !new.contains_key(name) {
                        old.tombstones.insert(name.clone(), revision);
                        changes.push(Change::new(section, name.clone(), revision, true, None));
                    }
                }
                old.entries = std::mem::take(&mut next[section.index()]);
            }
            mirror.revision = revision;
        }
        changes.sort_by_key(|c| c.data.revision);
        self.stats
            .resyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.complete_from(revision);
        self.publish(changes);
    }

    /// Loads snapshot entries into an empty mirror (offline start).
    pub(crate) fn load_snapshot(&self, revision: Revision, entries: Vec<Named>) {
        {
            let mut mirror = self.write();
            for (section, name, stored) in entries {
                mirror.sections[section.index()]
                    .entries
                    .insert(name, stored);
            }
            mirror.revision = revision;
        }
        self.complete_from(revision);
        self.rebuild_flags();
    }

    /// Wakes status subscribers on a change of state only; the revision is
    /// kept current in place without waking anyone.
    fn set_status(&self, status: Status) {
        self.status.send_if_modified(|old| {
            if std::mem::discriminant(old) == std::mem::discriminant(&status) {
                match old {
                    Status::Connected { revision }
                    | Status::Reconnecting { revision, .. }
                    | Status::Offline { revision, .. } => *revision = status.revision(),
                }
                false
            } else {
                *old = status;
                true
            }
        });
    }

    fn connected(&self) {
        let revision = self.read().revision;
        self.set_status(Status::Connected { revision });
    }

    fn disconnected(&self) {
        let revision = self.read().revision;
        self.set_status(Status::Reconnecting {
            since: SystemTime::now(),
            revision,
        });
    }
}

fn stored(kv: &KeyValue, origin: Source) -> Stored {
    Stored {
        raw: kv.value().into(),
        revision: kv.mod_revision(),
        create_revision: kv.create_revision(),
        version: kv.version(),
        origin,
        decoded: Default::default(),
    }
}

/// Reads the whole namespace at one revision.
pub(crate) async fn load(
    etcd: &etcd_client::Client,
    shared: &Shared,
) -> std::result::Result<(Revision, Vec<Named>), etcd_client::Error> {
    let base = shared.base.as_bytes().to_vec();
    let mut end = base.clone();
    *end.last_mut().expect("base ends in '/'") += 1;
    let mut from = base;
    let mut at = None;
    let mut fresh = Vec::new();
    let mut kv = etcd.kv_client().max_decoding_message_size(MAX_DECODE);
    let mut page = LOAD_PAGE;
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(page);
        if let Some(revision) = at {
            options = options.with_revision(revision);
        }
        let resp = match kv.get(from.clone(), Some(options)).await {
            Ok(resp) => resp,
            Err(etcd_client::Error::GRpcStatus(status))
                if page > 1 && status.code() == tonic::Code::OutOfRange =>
            {
                page = (page / 16).max(1);
                continue;
            }
            Err(e) => return Err(e),
        };
        let revision = *at.get_or_insert(resp.header().map_or(0, |h| h.revision()));
        let mut bytes = 0;
        for kv in resp.kvs() {
            bytes += kv.key().len() + kv.value().len();
            if let Some((section, name)) = shared.split_key(kv.key()) {
                fresh.push((section, Arc::from(name), stored(kv, Source::Cache)));
            }
        }
        if bytes < LOAD_PAGE_BYTES / 4 {
            page = (page * 4).min(LOAD_PAGE_MAX);
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok((revision, fresh)),
        }
    }
}

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
    namespaces: HashMap<String, Vec<Weak<Shared>>>,
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
    pub(crate) async fn wait_for_watch(&self, shared: &Shared, deadline: tokio::time::Instant) {
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
    pub(crate) fn attach(&self, shared: &Arc<Shared>) {
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

    /// A namespace was read whole at `revision`: install it, and make sure
    /// the watch resumes no later than that.
    pub(crate) fn activated(&self, shared: &Shared, revision: Revision, fresh: Vec<Named>) {
        {
            let mut state = self.state();
            state.revision = match state.revision {
                0 => revision,
                at => at.min(revision),
            };
        }
        shared.activate(revision, fresh);
        self.wake.notify_one();
    }

    /// A namespace started from its snapshot: read it once etcd answers.
    pub(crate) fn needs_load(&self, shared: &Shared) {
        *shared.attach() = Attach::NeedsLoad;
        self.wake.notify_one();
    }

    /// The live namespaces, forgetting those whose clients are gone.
    fn namespaces(&self) -> Vec<Arc<Shared>> {
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
            let mut attach = shared.attach();
            if matches!(*attach, Attach::Active) {
                *attach = Attach::NeedsLoad;
            }
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
        let mut groups: HashMap<&[u8], Vec<&Event>> = HashMap::new();
        let targets = {
            let state = self.state();
            let root = state.root.as_bytes();
            for event in events {
                let Some(key) = event.kv().map(|kv| kv.key()) else {
                    continue;
                };
                let Some(rest) = key.strip_prefix(root) else {
                    continue;
                };
                let Some(slash) = rest.iter().position(|&b| b == b'/') else {
                    continue;
                };
                groups
                    .entry(&key[..root.len() + slash + 1])
                    .or_default()
                    .push(event);
            }
            groups
                .keys()
                .filter_map(|base| {
                    let base = std::str::from_utf8(base).ok()?;
                    let list = state.namespaces.get(base)?;
                    Some((
                        base.to_owned(),
                        list.iter().filter_map(Weak::upgrade).collect::<Vec<_>>(),
                    ))
                })
                .collect::<Vec<_>>()
        };
        for (base, list) in targets {
            let events = &groups[base.as_bytes()];
            for shared in list {
                shared.deliver(events);
            }
        }
        let mut state = self.state();
        if state.prefix.as_deref() == Some(prefix) {
            state.revision = state.revision.max(last.mod_revision());
        }
    }
}

/// Why a watch stream ended.
enum Ended {
    /// The resume revision was compacted: reload, then watch again.
    Compacted,
    /// The prefix widened: watch again from where we were.
    Widened,
    /// Anything else: back off, then resume where we were.
    Failed(String),
}

/// The one background task of a connection: read the namespaces that need
/// it, watch, and on any failure resume from the last revision handed out.
/// It ends with the connection.
pub(crate) async fn run(conn: Weak<Conn>, hub: Arc<Hub>) {
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
        {
            let mut attach = shared.attach();
            if !matches!(*attach, Attach::NeedsLoad) {
                continue;
            }
            *attach = Attach::Loading(Vec::new());
        }
        match load(etcd, &shared).await {
            Ok((revision, fresh)) => {
                hub.activated(&shared, revision, fresh);
                shared.connected();
            }
            Err(error) => {
                *shared.attach() = Attach::NeedsLoad;
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
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(start)
        .with_progress_notify();
    // etcd creates a watch on a compacted revision and cancels it only
    // later, and on 3.4 a progress answer can come in between. Asking first
    // keeps a resync from starting after we already said `Connected`.
    let mut kv = etcd.kv_client();
    let probe = kv.get(
        prefix,
        Some(GetOptions::new().with_count_only().with_revision(start - 1)),
    );
    match tokio::time::timeout(DEAD_AFTER, probe).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if crate::error::etcd_message(&e).contains("revision has been compacted") => {
            return Ended::Compacted
        }
        Ok(Err(e)) => return Ended::Failed(crate::error::etcd_message(&e)),
        Err(_) => return Ended::Failed("etcd did not answer".into()),
    }
    let mut client = etcd.watch_client();
    let opened = tokio::time::timeout(DEAD_AFTER, client.watch(prefix, Some(options)));
    let mut stream = match opened.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Ended::Failed(crate::error::etcd_message(&e)),
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
                    Err(e) => return Ended::Failed(crate::error::etcd_message(&e)),
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
                    return Ended::Failed(crate::error::etcd_message(&e));
                }
            }
            () = hub.wake.notified() => {
                if !hub.prefix_is(prefix) {
                    return Ended::Widened;
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

/// A callback of [`Client::on_change`](crate::Client::on_change).
pub(crate) struct Hook {
    prefix: String,
    /// Changes up to here were in the mirror when the callback was added.
    after: Revision,
    active: std::sync::atomic::AtomicBool,
    call: std::sync::Mutex<Callback>,
}

pub(crate) type Callback = Box<dyn FnMut(&Change) + Send>;

impl Hook {
    fn call(&self, change: &Change) {
        if change.data.revision <= self.after
            || !change.is_under(Kind::Config, &self.prefix)
            || !self.active.load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        // Never contended: calls are serialized, and only a drop in
        // progress could hold it otherwise.
        let mut call = self.call.lock().unwrap_or_else(|e| e.into_inner());
        let run = std::panic::AssertUnwindSafe(|| (*call)(change));
        // The watch task runs every namespace's changes: one callback's
        // panic must not stop it.
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!(prefix = %self.prefix, revision = change.data.revision,
                "an on_change callback panicked; it stays registered");
        }
    }
}

/// Keeps a callback of [`Client::on_change`](crate::Client::on_change)
/// registered; dropping it stops the callback.
pub struct OnChange {
    hook: Arc<Hook>,
    shared: Arc<Shared>,
    _client: Arc<Inner>,
}

impl OnChange {
    pub(crate) fn new(
        client: Arc<Inner>,
        shared: Arc<Shared>,
        prefix: String,
        call: Callback,
    ) -> Self {
        let hook = Arc::new(Hook {
            prefix,
            after: shared.read().revision,
            active: true.into(),
            call: std::sync::Mutex::new(call),
        });
        Arc::make_mut(&mut shared.hooks()).push(hook.clone());
        OnChange {
            hook,
            shared,
            _client: client,
        }
    }
}

impl Drop for OnChange {
    fn drop(&mut self) {
        self.hook
            .active
            .store(false, std::sync::atomic::Ordering::Release);
        Arc::make_mut(&mut self.shared.hooks()).retain(|hook| !Arc::ptr_eq(hook, &self.hook));
    }
}

impl std::fmt::Debug for OnChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnChange")
            .field("prefix", &self.hook.prefix)
            .finish_non_exhaustive()
    }
}

/// A stream of the changes under one name prefix, in revision order.
///
/// A subscriber that falls behind the channel is not left stale: it gets the
/// current values of everything that changed since the last change it saw,
/// as resync changes, and carries on from there.
pub struct Subscription {
    shared: Arc<Shared>,
    prefix: String,
    section: Kind,
    stream: BroadcastStream<Change>,
    pending: std::collections::VecDeque<Change>,
    /// The revision of the last change handed out.
    seen: Revision,
    /// After a catch-up: changes up to here were covered by it.
    skip_through: Revision,
    _client: Arc<Inner>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("prefix", &self.prefix)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(
        client: Arc<Inner>,
        shared: Arc<Shared>,
        section: Kind,
        prefix: String,
    ) -> Self {
        let seen = shared.read().revision;
        Self::open(client, shared, section, prefix, seen)
    }

    /// Subscribed to the channel from now on, having seen `seen`.
    fn open(
        client: Arc<Inner>,
        shared: Arc<Shared>,
        section: Kind,
        prefix: String,
        seen: Revision,
    ) -> Self {
        Subscription {
            stream: BroadcastStream::new(shared.changes.subscribe()),
            shared,
            prefix,
            section,
            pending: Default::default(),
            seen,
            skip_through: 0,
            _client: client,
        }
    }

    /// A subscription that first delivers what changed after `revision`:
    /// exactly, from the recent changes, when they reach back that far;
    /// otherwise as the current values of everything that changed since
    /// (flagged resync), as after a lag.
    pub(crate) fn resume(
        client: Arc<Inner>,
        shared: Arc<Shared>,
        section: Kind,
        prefix: String,
        revision: Revision,
    ) -> Self {
        // Subscribed under the ring's lock: each change is then either in
        // the ring now or on the channel later, never both nor neither.
        let recent = shared.recent();
        let mut sub = Self::open(client, shared.clone(), section, prefix, revision);
        if revision >= recent.complete_after {
            let last = recent.changes.back().map_or(revision, |c| c.data.revision);
            let missed: Vec<Change> = recent
                .changes
                .iter()
                .filter(|c| c.data.revision > revision && sub.matches(c))
                .cloned()
                .collect();
            sub.pending.extend(missed);
            // Everything in the ring is either pending now or older.
            sub.skip_through = last;
            drop(recent);
        } else {
            drop(recent);
            sub.catch_up();
        }
        sub
    }

    fn matches(&self, change: &Change) -> bool {
        change.is_under(self.section, &self.prefix)
    }

    /// Everything under the prefix that changed after `self.seen`.
    fn catch_up(&mut self) {
        let mirror = self.shared.read();
        let section = mirror.section(self.section);
        let mut changes: Vec<Change> = section
            .entries
            .iter()
            .filter(|(name, s)| s.revision > self.seen && name.starts_with(&self.prefix))
            .map(|(name, s)| {
                Change::new(
                    self.section,
                    name.clone(),
                    s.revision,
                    true,
                    Some(s.raw.clone()),
                )
            })
            .chain(
                section
                    .tombstones
                    .iter()
                    .filter(|(name, &r)| r > self.seen && name.starts_with(&self.prefix))
                    .map(|(name, &revision)| {
                        Change::new(self.section, name.clone(), revision, true, None)
                    }),
            )
            .collect();
        changes.sort_by_key(|c| c.data.revision);
        self.skip_through = mirror.revision;
        self.shared
            .stats
            .resyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        drop(mirror);
        self.pending.extend(changes);
    }
}

impl Stream for Subscription {
    type Item = Change;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change>> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                self.seen = self.seen.max(change.data.revision);
                return Poll::Ready(Some(change));
            }
            match Pin::new(&mut self.stream).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(missed)))) => {
                    tracing::debug!(missed, prefix = %self.prefix, "subscriber lagged; catching up");
                    self.catch_up();
                }
                Poll::Ready(Some(Ok(change))) => {
                    if change.data.revision <= self.skip_through || !self.matches(&change) {
                        continue;
                    }
                    self.seen = self.seen.max(change.data.revision);
                    return Poll::Ready(Some(change));
                }
            }
        }
    }
}
