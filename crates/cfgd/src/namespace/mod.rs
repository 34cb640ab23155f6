//! A live namespace: the mirror of one namespace, kept current by the hub's
//! watch (or this process's own writes), and the fan-out of every change to
//! the live values, subscriptions and callbacks that follow it.
//!
//! Changes are published in revision order, one batch at a time: applied to
//! the mirror first, then handed to live values, the ring of recent changes
//! and the channel of subscriptions, then to callbacks, so that anyone
//! reading the mirror on a change sees at least that change.

mod hooks;
mod layered;
mod load;

pub(crate) use hooks::{Callback, Hook};

pub(crate) use layered::{chosen, overlay_layer, read, with_overlays};

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use etcd_client::{Event, EventType};
use tokio::sync::{broadcast, watch, Notify};

use crate::cells::Registry;
use crate::change::Change;
use crate::defaults::Values;
use crate::flags::FlagSet;
use crate::key::{self, Kind};
use crate::meta::Meta;
use crate::mirror::{Mirror, Named, Stored};
use crate::policy::Policy;
use crate::schema::SchemaSet;
use crate::secret::{self, Keyring};
use crate::types::{Revision, Source, Status};

/// Recent changes kept for resuming a subscription exactly (SSE
/// `Last-Event-ID`); older resumes get the current values as resync.
pub(crate) const RECENT: usize = 4096;
/// Tombstones are pruned once there are this many more than after the last
/// pruning, so that pruning costs O(1) per delete.
const PRUNE_EVERY: usize = 1024;
/// Subscription positions are kept in chunks of this many slots: no
/// allocation per subscription, and a pruning scan reads them in order.
const CHUNK: usize = 64;
/// A slot no subscription holds.
const FREE: Revision = Revision::MAX;

/// The slots where open subscriptions say how far they have read.
#[derive(Default)]
struct Positions {
    chunks: Vec<Arc<[AtomicI64; CHUNK]>>,
    free: Vec<usize>,
}

/// One subscription's slot: everything under its prefix up to the revision
/// stored here has been handed out, so it needs no tombstone at or below it.
pub(crate) struct Position {
    chunk: Arc<[AtomicI64; CHUNK]>,
    index: usize,
}

impl Position {
    pub(crate) fn store(&self, revision: Revision) {
        self.chunk[self.index % CHUNK].store(revision, Ordering::Release);
    }
}

/// One namespace kept live: its mirror, and the fan-out of its changes to
/// live values, subscriptions and callbacks. Held by the client handles, the
/// hub's watch task and every subscriber.
pub(crate) struct LiveNamespace {
    pub(crate) mirror: RwLock<Mirror>,
    pub(crate) changes: broadcast::Sender<Change>,
    pub(crate) status: watch::Sender<Status>,
    pub(crate) registry: Registry,
    /// Woken after every applied batch, for the snapshot writer.
    pub(crate) dirty: Notify,
    /// The etcd prefix of the namespace, ending in `/`.
    pub(crate) base: String,
    /// The namespace's name.
    pub(crate) name: Arc<str>,
    /// The prefixes of its layers (just `base` unless it extends others):
    /// the keys whose watch events it takes.
    pub(crate) bases: arc_swap::ArcSwap<Vec<String>>,
    /// The client's labels, which choose the overlays it sees.
    pub(crate) labels: crate::overlays::Labels,
    /// The defaults file's values (empty without one).
    pub(crate) defaults: arc_swap::ArcSwap<Values>,
    /// The namespace's flags, compiled; rebuilt on every flag change.
    pub(crate) flags: arc_swap::ArcSwap<FlagSet>,
    /// Bumped after each rebuild of `flags`.
    pub(crate) flag_changes: watch::Sender<u64>,
    /// Bumped after each full read is installed.
    pub(crate) loads: watch::Sender<u64>,
    /// The namespace's JSON Schemas, compiled; rebuilt when one changes.
    pub(crate) schemas: arc_swap::ArcSwap<SchemaSet>,
    /// The namespace's policy; the default when none is stored.
    pub(crate) policy: arc_swap::ArcSwap<Policy>,
    /// The namespace's settings; the defaults when none are stored.
    pub(crate) meta: arc_swap::ArcSwap<Meta>,
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
    /// How far each open subscription has taken what it needs: tombstones
    /// at or below the lowest of them can go.
    positions: std::sync::Mutex<Positions>,
    /// Prune tombstones when there are more than this many.
    prune_at: std::sync::atomic::AtomicUsize,
    /// Opens secrets as they come in, so that everything in memory (reads,
    /// live values, subscribers) has their plaintext.
    keyring: Option<Arc<Keyring>>,
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
    pub(crate) changes: std::collections::VecDeque<Change>,
    /// The ring holds every change after this revision: it moves past
    /// changes dropped for room, and to the revision of each full read of
    /// the namespace (which cannot name what was deleted before it).
    pub(crate) complete_after: Revision,
}

impl LiveNamespace {
    pub(crate) fn new(
        base: String,
        capacity: usize,
        status: Status,
        keyring: Option<Arc<Keyring>>,
        labels: crate::overlays::Labels,
    ) -> Self {
        let name = base.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        LiveNamespace {
            name: name.into(),
            bases: arc_swap::ArcSwap::from_pointee(vec![base.clone()]),
            labels,
            mirror: RwLock::new(Mirror::default()),
            changes: broadcast::channel(capacity).0,
            status: watch::channel(status).0,
            registry: Registry::default(),
            dirty: Notify::new(),
            base,
            defaults: Default::default(),
            flags: Default::default(),
            flag_changes: watch::channel(0).0,
            loads: watch::channel(0).0,
            schemas: Default::default(),
            policy: Default::default(),
            meta: Default::default(),
            rebuilding: Default::default(),
            recent: Default::default(),
            stats: Default::default(),
            attach: std::sync::Mutex::new(Attach::Loading(Vec::new())),
            hooks: Default::default(),
            positions: Default::default(),
            prune_at: PRUNE_EVERY.into(),
            keyring,
        }
    }

    /// `stored` (from the namespace under `base`: this one or a layer) with
    /// a secret opened, when this client holds its key. One that does not
    /// open stays sealed: reading it then fails, naming why.
    fn ingest(&self, base: &str, section: Kind, name: &str, mut stored: Stored) -> Stored {
        if section != Kind::Config || !secret::is_sealed(&stored.raw) {
            return stored;
        }
        let Some(keyring) = &self.keyring else {
            return stored;
        };
        let key = format!("{}{name}", key::kind_prefix(base, Kind::Config));
        match keyring.open(&key, &stored.raw) {
            Ok(plain) => stored.sealed = Some(std::mem::replace(&mut stored.raw, plain.into())),
            Err(error) => tracing::warn!(%error, "a secret does not open; reads of it fail"),
        }
        stored
    }

    fn ingest_all(&self, base: &str, entries: Vec<Named>) -> Vec<Named> {
        entries
            .into_iter()
            .map(|(section, name, stored)| {
                let stored = self.ingest(base, section, &name, stored);
                (section, name, stored)
            })
            .collect()
    }

    fn positions(&self) -> std::sync::MutexGuard<'_, Positions> {
        self.positions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A position for a new subscription, starting at `revision`; the
    /// subscription moves it as it takes changes, and hands it back with
    /// [`release`](Self::release).
    pub(crate) fn position(&self, revision: Revision) -> Position {
        let mut positions = self.positions();
        let index = match positions.free.pop() {
            Some(index) => index,
            None => {
                let first = positions.chunks.len() * CHUNK;
                positions
                    .chunks
                    .push(Arc::new(std::array::from_fn(|_| AtomicI64::new(FREE))));
                // Lowest last, so that slots are reused from the front.
                positions.free.extend((first + 1..first + CHUNK).rev());
                first
            }
        };
        let position = Position {
            chunk: positions.chunks[index / CHUNK].clone(),
            index,
        };
        position.store(revision);
        position
    }

    /// Hands back a closed subscription's position.
    pub(crate) fn release(&self, position: &Position) {
        position.store(FREE);
        self.positions().free.push(position.index);
    }

    /// Drops tombstones that no open subscription can need. A resume from
    /// before what was pruned is told so ([`Mirror::pruned_through`]).
    fn prune_tombstones(&self, mirror: &mut Mirror) {
        let count = mirror.tombstone_count();
        if count <= self.prune_at.load(Ordering::Relaxed) {
            return;
        }
        let lowest = self
            .positions()
            .chunks
            .iter()
            .flat_map(|chunk| chunk.iter())
            .map(|slot| slot.load(Ordering::Acquire))
            .min()
            .unwrap_or(FREE);
        mirror.prune_tombstones(lowest);
        let left = mirror.tombstone_count();
        tracing::debug!(base = %self.base, pruned = count - left, left, "tombstones pruned");
        self.prune_at.store(left + PRUNE_EVERY, Ordering::Relaxed);
    }

    /// Hands new defaults-file values to the live values whose default
    /// changed.
    pub(crate) fn apply_defaults(&self, values: Values) {
        let old = self.defaults.swap(Arc::new(values));
        let new = self.defaults.load();
        for (name, raw) in new.iter() {
            if old.get(name) != Some(raw) {
                self.registry.apply_default(name, Some(raw));
            }
        }
        for name in old.keys().filter(|n| !new.contains_key(*n)) {
            self.registry.apply_default(name, None);
        }
    }

    pub(crate) fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
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

    /// Hands this namespace its part of a batch from the watch; whether it
    /// now needs reading again (its line of layers moved).
    pub(crate) fn deliver(&self, events: &[&Event]) -> bool {
        let mut attach = self.attach();
        match &mut *attach {
            Attach::Loading(waiting) => waiting.extend(events.iter().map(|&e| e.clone())),
            Attach::NeedsLoad => {}
            Attach::Active => {
                if self.apply_events(events) {
                    *attach = Attach::NeedsLoad;
                    return true;
                }
            }
        }
        false
    }

    /// The prefixes whose events this namespace takes; `None` for all of
    /// them while it is being read, since until then it cannot know its
    /// layers.
    pub(crate) fn wanted(&self) -> Option<Arc<Vec<String>>> {
        match *self.attach() {
            Attach::Loading(_) => None,
            _ => Some(self.bases.load_full()),
        }
    }

    /// Recompiles the flags that changed since the last build.
    pub(crate) fn rebuild_flags(&self) {
        let _one_at_a_time = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        let next = {
            let mirror = self.read();
            let previous = self.flags.load();
            FlagSet::from_store(
                mirror
                    .section(Kind::Flags)
                    .entries
                    .iter()
                    .map(|(name, s)| (&**name, &*s.raw, s.revision)),
                self.meta.load().fractional,
                &previous,
            )
        };
        // A rebuild that found nothing new wakes nobody: streams would send
        // the same document again.
        if !next.same_revisions(&self.flags.load()) {
            self.flags.store(Arc::new(next));
            self.flag_changes.send_modify(|n| *n += 1);
        }
    }

    /// Recompiles the schemas that changed since the last build. Under the
    /// same lock as flag rebuilds: an older build never replaces a newer.
    fn rebuild_schemas(&self) {
        let _one_at_a_time = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        let next = {
            let mirror = self.read();
            SchemaSet::from_store(
                mirror
                    .section(Kind::Schemas)
                    .entries
                    .iter()
                    .map(|(pattern, s)| (&**pattern, &s.raw, s.revision)),
                &self.schemas.load(),
            )
        };
        self.schemas.store(Arc::new(next));
    }

    /// Reads the policy again from the mirror.
    fn rebuild_policy(&self) {
        let _one_at_a_time = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        let next = {
            let mirror = self.read();
            match mirror.section(Kind::Policy).entries.get("") {
                Some(stored) => Policy::from_stored(&format!("{}policy", self.base), &stored.raw),
                None => Policy::default(),
            }
        };
        self.policy.store(Arc::new(next));
    }

    /// Reads the settings again from the mirror; whether they changed.
    fn rebuild_meta(&self) -> bool {
        let _one_at_a_time = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        let next = {
            let mirror = self.read();
            match mirror.section(Kind::Meta).entries.get("") {
                Some(stored) => Meta::from_stored(&format!("{}meta", self.base), &stored.raw),
                None => Meta::default(),
            }
        };
        let changed = **self.meta.load() != next;
        self.meta.store(Arc::new(next));
        changed
    }

    /// Everything compiled from the mirror, built again after a full read.
    fn rebuild_all(&self) {
        // First: the flags compile with the settings' bucketing.
        self.rebuild_meta();
        self.rebuild_flags();
        self.rebuild_schemas();
        self.rebuild_policy();
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Mirror> {
        // A panic while holding the lock cannot leave the mirror half
        // updated in a way later updates would not repair.
        self.mirror.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Mirror> {
        self.mirror.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a batch of watch events, then tells live values and
    /// subscribers, in that order, so that a subscriber reading the mirror on
    /// a change sees at least that change. True when the namespace's line
    /// of layers moved, and it must be read again.
    fn apply_events(&self, events: &[&Event]) -> bool {
        let mut changes = Vec::with_capacity(events.len());
        let mut moved = false;
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
                if mirror.is_layered() {
                    let (made, settings) = self.apply_to_layer(&mut mirror, event);
                    changes.extend(made);
                    moved |= settings;
                    continue;
                }
                let Some((section, name)) = key::split_key(&self.base, kv.key()) else {
                    continue;
                };
                let name: Arc<str> = name.into();
                let change = match event.event_type() {
                    EventType::Put => {
                        let stored = self.ingest(&self.base, section, &name, Stored::from_etcd(kv));
                        moved |= section == Kind::Meta
                            || (section == Kind::Overlays && !self.labels.is_empty());
                        let change = Change::put(section, name.clone(), false, &stored);
                        mirror.put(section, &name, stored, true);
                        change
                    }
                    EventType::Delete => {
                        mirror.delete(section, &name, revision);
                        Change::delete(section, name, revision, false)
                    }
                };
                changes.push(change);
            }
            moved = moved && self.line_moved(&mirror);
            self.prune_tombstones(&mut mirror);
        }
        self.publish(changes);
        moved
    }

    fn publish(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let settings = changes.iter().any(|c| c.section() == Kind::Meta) && self.rebuild_meta();
        if settings || changes.iter().any(|c| c.section() == Kind::Flags) {
            self.rebuild_flags();
        }
        if changes.iter().any(|c| c.section() == Kind::Schemas) {
            self.rebuild_schemas();
        }
        if changes.iter().any(|c| c.section() == Kind::Policy) {
            self.rebuild_policy();
        }
        for change in &changes {
            self.registry.apply(&self.defaults.load(), change);
        }
        {
            let mut recent = self.recent();
            for change in &changes {
                if recent.changes.len() == RECENT {
                    if let Some(dropped) = recent.changes.pop_front() {
                        recent.complete_after = recent.complete_after.max(dropped.revision());
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
            if mirror.is_layered() {
                let stored = raw.map(|raw| Stored {
                    raw: raw.into(),
                    revision,
                    create_revision: revision,
                    version: 1,
                    origin: Source::Cache,
                    decoded: Default::default(),
                    sealed: None,
                });
                let made = self.apply_local_layer(&mut mirror, section, &name, stored, revision);
                // The watch may have applied it first, and still be telling
                // the live values: they are told here too.
                made.unwrap_or_else(|| match mirror.section(section).entries.get(&name) {
                    Some(stored) => Change::put(section, name.clone(), false, stored),
                    None => Change::delete(section, name.clone(), revision, false),
                })
            } else {
                match raw {
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
                            sealed: None,
                        };
                        let stored = self.ingest(&self.base, section, &name, stored);
                        let change = Change::put(section, name.clone(), false, &stored);
                        mirror.put(section, &name, stored, false);
                        change
                    }
                    None => {
                        mirror.delete(section, &name, revision);
                        Change::delete(section, name, revision, false)
                    }
                }
            }
        };
        // Both even when the watch got here first: it put the entry in the
        // mirror, but may still be compiling it or telling the live values,
        // and the caller must see its write in both once this returns. A
        // live value ignores a revision it already has, or an older one.
        match section {
            Kind::Flags => self.rebuild_flags(),
            Kind::Schemas => self.rebuild_schemas(),
            Kind::Policy => self.rebuild_policy(),
            Kind::Meta => {
                if self.rebuild_meta() {
                    self.rebuild_flags();
                }
            }
            Kind::Config | Kind::Children | Kind::Overlays => {}
        }
        self.registry.apply(&self.defaults.load(), &change);
    }
}
