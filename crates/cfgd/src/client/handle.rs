//! [`Client`], the state its clones share, and its live side: values,
//! subscriptions, callbacks and status.

use std::any::{Any, TypeId};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::audit::{Author, Via};
use crate::change::Change;
use crate::defaults;
use crate::error::{Error, Result};
use crate::etcd::Connection;
use crate::hub::{self, Hub};
use crate::key::{self, KeySpace, Kind};
use crate::live_value::Live;
use crate::namespace::LiveNamespace;
use crate::secret::Keyring;
use crate::subscription::{OnChange, Subscription};
use crate::types::{KeepAlive, Revision, Source, Status};

/// A connection to cfgd's store, bound to one namespace.
///
/// Cheap to clone: clones share one connection, one watch and one cache. The
/// background tasks stop when the last clone (and the last [`Live`] and
/// [`Subscription`] made from it) is dropped.
#[derive(Clone)]
pub struct Client {
    pub(crate) state: Arc<ClientState>,
    /// Who this handle writes as, for the audit trail.
    pub(crate) author: Arc<Author>,
}

type DecodedCache = moka::sync::Cache<(Arc<str>, TypeId), (Revision, Arc<dyn Any + Send + Sync>)>;

/// What the clients made with [`ClientBuilder::share`] have in common: one
/// etcd connection and its one watch.
pub(crate) struct Link {
    pub(super) etcd: Arc<Connection>,
    hub: std::sync::Mutex<Option<(Arc<Hub>, tokio::task::JoinHandle<()>)>>,
    /// The keys secrets are sealed and opened with, if any.
    pub(crate) keyring: Option<Arc<Keyring>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.etcd.fmt(f)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some((_, task)) = self.hub.get_mut().unwrap_or_else(|e| e.into_inner()) {
            task.abort();
        }
    }
}

impl Link {
    pub(super) fn new(etcd: Connection, keyring: Option<Arc<Keyring>>) -> Self {
        Link {
            etcd: Arc::new(etcd),
            hub: Default::default(),
            keyring,
        }
    }

    /// The watch, started by the first live namespace.
    pub(super) fn hub(&self) -> Arc<Hub> {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        let (hub, _) = hub.get_or_insert_with(|| {
            let hub = Arc::new(Hub::new(&self.etcd.root));
            let task = tokio::spawn(hub::run(Arc::downgrade(&self.etcd), hub.clone()));
            (hub, task)
        });
        hub.clone()
    }
}

/// One namespace's view of a [`Link`]: what every clone of a [`Client`]
/// shares, and what its live values and subscriptions keep alive.
pub(crate) struct ClientState {
    pub(crate) link: Arc<Link>,
    pub(crate) space: KeySpace,
    pub(crate) live: Option<Arc<LiveNamespace>>,
    /// Decoded values by (name, type), checked against the mirror's revision.
    pub(super) cache: Option<DecodedCache>,
    pub(super) tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub(super) defaults: Option<defaults::FileWatcher>,
}

impl Drop for ClientState {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(|e| e.into_inner()) {
            task.abort();
        }
    }
}

impl ClientState {
    pub(crate) fn etcd(&self) -> &Connection {
        &self.link.etcd
    }
}

/// A value with the metadata etcd keeps about it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry<T = serde_json::Value> {
    /// The name within the namespace, for example `database.config`.
    pub name: String,
    /// The decoded value.
    pub value: T,
    /// The revision that last modified the key (etcd's `mod_revision`).
    pub revision: Revision,
    /// The revision that created the key in its current life.
    pub create_revision: Revision,
    /// How many times the key was written since it was created (1 = once).
    pub version: i64,
    /// Where the value came from.
    pub source: Source,
    /// A secret (see [`crate::secret`]): stored encrypted, `value` is its
    /// plaintext. Show it only to those meant to see it.
    pub secret: bool,
}

/// What [`Client::import`] wrote, or would write with `dry_run`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Names that did not exist.
    pub created: Vec<String>,
    /// Names whose value changed.
    pub updated: Vec<String>,
    /// Names that already held the same value (not written).
    pub unchanged: Vec<String>,
    /// The revision of the last batch written; `None` if nothing was.
    pub revision: Option<Revision>,
}

/// Counters of a live client, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Reads answered from the decoded-value cache.
    pub cache_hits: u64,
    /// Reads that had to decode the stored JSON.
    pub cache_misses: u64,
    /// Full re-reads of the namespace (start, compaction, outage) plus
    /// subscribers caught up after falling behind.
    pub resyncs: u64,
    /// How far the applied revision trails the newest revision etcd
    /// reported on the watch stream.
    pub lag_revisions: i64,
    /// Deleted names still remembered for subscribers that may need them;
    /// pruned once every open subscription has moved past them.
    pub tombstones: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so the password never reaches a log.
        f.debug_struct("Client")
            .field("endpoints", &self.state.etcd().endpoints)
            .field("namespace", &self.state.space.namespace())
            .field("live", &self.state.live.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// This client, writing as `actor` coming `via` from now on (the
    /// audit trail's record of each write says so). Cheap: it shares
    /// everything else with `self`.
    pub fn with_actor(&self, actor: impl Into<String>, via: Via) -> Client {
        let actor = actor.into();
        self.authored(|a| {
            a.actor = actor;
            a.via = via;
        })
    }

    /// This client, with `message` (why) in the audit record of each write
    /// it makes.
    pub fn with_message(&self, message: impl Into<String>) -> Client {
        let message = message.into();
        self.authored(|a| a.message = Some(message))
    }

    /// This client, writing past the namespace policy's protection: an
    /// operator's path around change requests, for emergencies. Every write
    /// it makes is marked `forced` in its audit record.
    pub fn forced(&self) -> Client {
        self.authored(|a| a.forced = true)
    }

    /// This client, writing only while `fence` (an elected worker's
    /// leadership, see [`election`](crate::election)) still holds: each of
    /// its releases and worker writes compares it in the same transaction,
    /// and fails with [`Error::Fenced`] once the lease is gone.
    pub fn fenced(&self, fence: &crate::election::Fence) -> Client {
        let fence = fence.clone();
        self.authored(|a| a.fence = Some(fence))
    }

    /// This client with its author changed by `edit`.
    fn authored(&self, edit: impl FnOnce(&mut Author)) -> Client {
        let mut author = Author::clone(&self.author);
        edit(&mut author);
        Client {
            state: self.state.clone(),
            author: Arc::new(author),
        }
    }

    /// The namespace this client reads and writes.
    pub fn namespace(&self) -> &str {
        self.state.space.namespace()
    }

    /// The etcd key that holds `name`, for example
    /// `/cfgd/prod/config/database.config`.
    pub fn etcd_key(&self, name: &str) -> Result<String> {
        self.state.space.key(Kind::Config, name)
    }

    /// What the handles made from this client hold to keep it working.
    pub(super) fn keep_alive(&self) -> KeepAlive {
        self.state.clone()
    }

    pub(super) fn live(&self, what: &'static str) -> Result<&Arc<LiveNamespace>> {
        self.state.live.as_ref().ok_or(Error::NotLive { what })
    }

    /// A stream of every change to names starting with `prefix` (`""` for
    /// all), in revision order, from now on. See [`Subscription`].
    pub fn subscribe(&self, prefix: &str) -> Result<Subscription> {
        self.subscribe_in(Kind::Config, prefix, None)
    }

    /// Calls `f` with every change to names starting with `prefix` (`""` for
    /// all), in revision order, from now on, until the returned handle is
    /// dropped. The cheapest way to follow changes: no task and no channel
    /// per callback.
    ///
    /// `f` runs on the watch's own task, right after the change is
    /// applied, so it must be quick and never block: hand longer work, and
    /// anything that awaits, to a task or a channel. It may use the
    /// client's other non-async methods, and add or drop callbacks. A
    /// callback that panics is logged and kept. A call already under way
    /// when the handle is dropped still finishes.
    ///
    /// Unlike a [`Subscription`], a callback never falls behind: it is
    /// called for each change before the watch reads further.
    ///
    /// ```no_run
    /// # fn demo(client: cfgd::Client) -> cfgd::Result<()> {
    /// let _keep = client.on_change("feature.", |change| {
    ///     println!("{} changed at {}", change.name(), change.revision());
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn on_change<F>(&self, prefix: &str, f: F) -> Result<OnChange>
    where
        F: FnMut(&Change) + Send + 'static,
    {
        key::validate_prefix(prefix)?;
        let shared = self.live("on_change")?;
        Ok(OnChange::new(
            self.keep_alive(),
            shared.clone(),
            prefix.to_owned(),
            Box::new(f),
        ))
    }

    /// Like [`subscribe`](Self::subscribe), but first delivering every
    /// change after `revision` (for a consumer that reconnects, as SSE's
    /// `Last-Event-ID` does). Changes still held in memory (the last few
    /// thousand) come exactly as they happened; a resume from further back
    /// gets the current value of each name that changed since, flagged
    /// resync, deletions included.
    pub fn subscribe_from(&self, prefix: &str, revision: Revision) -> Result<Subscription> {
        self.subscribe_in(Kind::Config, prefix, Some(revision))
    }

    /// Like [`subscribe`](Self::subscribe), for flag definitions: every
    /// change to the flags whose names start with `prefix`.
    pub fn subscribe_flags(&self, prefix: &str) -> Result<Subscription> {
        self.subscribe_in(Kind::Flags, prefix, None)
    }

    /// Like [`subscribe_from`](Self::subscribe_from), for flag definitions.
    pub fn subscribe_flags_from(&self, prefix: &str, revision: Revision) -> Result<Subscription> {
        self.subscribe_in(Kind::Flags, prefix, Some(revision))
    }

    fn subscribe_in(
        &self,
        section: Kind,
        prefix: &str,
        from: Option<Revision>,
    ) -> Result<Subscription> {
        key::validate_prefix(prefix)?;
        let shared = self.live("subscribe")?.clone();
        let keep = self.keep_alive();
        Ok(match from {
            Some(revision) => {
                Subscription::resume(keep, shared, section, prefix.to_owned(), revision)
            }
            None => Subscription::new(keep, shared, section, prefix.to_owned()),
        })
    }

    /// A [`Live`] value that follows `name`: the stored value, else the
    /// defaults file's, else `default`.
    pub fn watch<T>(&self, name: &str, default: T) -> Result<Live<T>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        key::validate_name(name)?;
        let shared = self.live("watch")?;
        Ok(Live::new(self.keep_alive(), shared, name, default))
    }

    /// The state of the link to etcd. A client built with `live(false)` has
    /// no standing link and always says `Connected` at revision 0.
    pub fn status(&self) -> Status {
        match &self.state.live {
            Some(shared) => shared.status.borrow().clone(),
            None => Status::Connected { revision: 0 },
        }
    }

    /// A receiver that wakes on every change of [`status`](Self::status).
    pub fn status_changes(&self) -> Result<tokio::sync::watch::Receiver<Status>> {
        Ok(self.live("status_changes")?.status.subscribe())
    }

    /// Counters for monitoring a live client (all zero for `live(false)`).
    pub fn stats(&self) -> Stats {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(shared) = &self.state.live else {
            return Stats::default();
        };
        let (applied, tombstones) = {
            let mirror = shared.read();
            (mirror.revision, mirror.tombstone_count() as u64)
        };
        let etcd = shared.stats.etcd_revision.load(Relaxed);
        Stats {
            cache_hits: shared.stats.cache_hits.load(Relaxed),
            cache_misses: shared.stats.cache_misses.load(Relaxed),
            resyncs: shared.stats.resyncs.load(Relaxed),
            lag_revisions: (etcd - applied).max(0),
            tombstones,
        }
    }

    /// Why the latest edit of the defaults file was refused, if it was.
    pub fn defaults_error(&self) -> Option<Arc<Error>> {
        let watch = self.state.defaults.as_ref()?;
        watch
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
