//! `Live<T>`: a value kept current by the watch, read without a lock.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwapOption;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::client::{Inner, Revision, Source};
use crate::error::Error;
use crate::key::Kind;
use crate::live::{Change, Shared};
use crate::value;

/// A new state for a live value.
pub(crate) struct Update<'a> {
    /// The etcd revision, or `None` for an edit of the defaults file.
    pub(crate) revision: Option<Revision>,
    /// The JSON to decode; `None` means "fall back to the code default".
    pub(crate) raw: Option<&'a [u8]>,
    pub(crate) source: Source,
}

pub(crate) trait Sink: Send + Sync {
    fn apply(&self, update: Update<'_>);
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// Live cells by name, one per (name, type): a thousand `watch::<bool>` on
/// one key decode each change once.
#[derive(Default)]
pub(crate) struct Registry {
    cells: Mutex<Cells>,
}

type Cells = HashMap<Arc<str>, Vec<(TypeId, Weak<dyn Sink>)>>;

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cells> {
        self.cells.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sinks(&self, name: &str) -> Vec<Arc<dyn Sink>> {
        let mut cells = self.lock();
        let Some(list) = cells.get_mut(name) else {
            return Vec::new();
        };
        list.retain(|(_, weak)| weak.strong_count() > 0);
        let sinks = list.iter().filter_map(|(_, w)| w.upgrade()).collect();
        if list.is_empty() {
            cells.remove(name);
        }
        sinks
    }

    /// Passes an etcd change to the live values of its name. A delete falls
    /// back to the defaults file, if it has the name.
    pub(crate) fn apply(&self, shared: &Shared, change: &Change) {
        if change.data.section != Kind::Config {
            return;
        }
        let sinks = self.sinks(&change.data.name);
        if sinks.is_empty() {
            return;
        }
        let defaults = shared.defaults.load();
        let (raw, source) = match (&change.data.raw, defaults.get(&*change.data.name)) {
            (Some(raw), _) => (Some(&raw[..]), Source::Cache),
            (None, Some(fallback)) => (Some(&fallback[..]), Source::Defaults),
            (None, None) => (None, Source::Default),
        };
        for sink in sinks {
            sink.apply(Update {
                revision: Some(change.data.revision),
                raw,
                source,
            });
        }
    }

    /// Passes a defaults-file edit to the live values of `name`.
    pub(crate) fn apply_default(&self, name: &str, raw: Option<&[u8]>) {
        let source = if raw.is_some() {
            Source::Defaults
        } else {
            Source::Default
        };
        for sink in self.sinks(name) {
            sink.apply(Update {
                revision: None,
                raw,
                source,
            });
        }
    }

    fn cell<T>(&self, name: &str) -> (Arc<Cell<T>>, bool)
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let mut cells = self.lock();
        let list = cells.entry(name.into()).or_default();
        let found = list
            .iter()
            .filter(|(id, _)| *id == TypeId::of::<T>())
            .find_map(|(_, weak)| weak.upgrade())
            .and_then(|sink| sink.as_any().downcast::<Cell<T>>().ok());
        if let Some(cell) = found {
            return (cell, false);
        }
        let cell = Arc::new(Cell::<T>::new(name.into()));
        let sink: Arc<dyn Sink> = cell.clone();
        list.push((TypeId::of::<T>(), Arc::downgrade(&sink)));
        (cell, true)
    }
}

struct CellState {
    /// The revision of the value shown.
    revision: Revision,
    /// The newest etcd revision applied, good or not: older ones are stale.
    seen: Revision,
    source: Source,
    last_error: Option<Arc<Error>>,
}

/// The decoded value of one name as one type, shared by its `Live`s.
struct Cell<T> {
    name: Arc<str>,
    /// `None`: nothing stored; each `Live` then shows its own default.
    value: ArcSwapOption<T>,
    state: Mutex<CellState>,
    changed: watch::Sender<u64>,
}

impl<T> Cell<T> {
    fn new(name: Arc<str>) -> Self {
        Cell {
            name,
            value: ArcSwapOption::empty(),
            state: Mutex::new(CellState {
                revision: 0,
                seen: 0,
                source: Source::Default,
                last_error: None,
            }),
            changed: watch::channel(0).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CellState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Sink for Cell<T> {
    fn apply(&self, update: Update<'_>) {
        let mut state = self.state();
        match update.revision {
            // An etcd change older than (or the same as) what we have is
            // stale: the watch can deliver a revision a local write applied.
            Some(revision) if revision <= state.seen => return,
            Some(revision) => state.seen = revision,
            // The defaults file only matters while etcd does not hold the key.
            None if matches!(
                state.source,
                Source::Cache | Source::Snapshot | Source::Etcd
            ) =>
            {
                return
            }
            None => {}
        }
        let decoded = match update.raw {
            None => None,
            Some(raw) => match value::decode::<T>(&self.name, state.seen, raw) {
                Ok(v) => Some(Arc::new(v)),
                Err(error) => {
                    tracing::warn!(name = %self.name, %error, "new value does not decode; keeping the last good one");
                    state.last_error = Some(Arc::new(error));
                    return;
                }
            },
        };
        if update.revision.is_some() {
            state.revision = state.seen;
        }
        state.source = update.source;
        state.last_error = None;
        self.value.store(decoded);
        drop(state);
        self.changed.send_modify(|n| *n += 1);
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// A value that follows its key in etcd, read without a lock or a decode.
///
/// Made by [`Client::watch`](crate::Client::watch). [`get`](Live::get) is an
/// atomic load of the value decoded once per change; a deleted or absent key
/// gives the default; a new value that does not decode as `T` is reported by
/// [`last_error`](Live::last_error) and the last good value stays.
pub struct Live<T> {
    cell: Arc<Cell<T>>,
    default: Arc<T>,
    changed: watch::Receiver<u64>,
    _client: Arc<Inner>,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            cell: self.cell.clone(),
            default: self.default.clone(),
            changed: self.changed.clone(),
            _client: self._client.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("name", &self.cell.name)
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Live<T> {
    pub(crate) fn new(client: Arc<Inner>, shared: &Shared, name: &str, default: T) -> Self {
        let (cell, created) = shared.registry.cell::<T>(name);
        if created {
            let initial = shared
                .read()
                .section(Kind::Config)
                .entries
                .get(name)
                .cloned();
            match initial {
                Some(stored) => cell.apply(Update {
                    revision: Some(stored.revision),
                    raw: Some(&stored.raw),
                    source: stored.origin,
                }),
                None => {
                    if let Some(raw) = shared.defaults.load().get(name) {
                        cell.apply(Update {
                            revision: None,
                            raw: Some(raw),
                            source: Source::Defaults,
                        });
                    }
                }
            }
        }
        let mut changed = cell.changed.subscribe();
        changed.mark_unchanged();
        Live {
            cell,
            default: Arc::new(default),
            changed,
            _client: client,
        }
    }
}

impl<T> Live<T> {
    /// The current value: the stored one, else the defaults file's, else the
    /// default given to [`Client::watch`](crate::Client::watch).
    pub fn get(&self) -> Arc<T> {
        self.cell
            .value
            .load_full()
            .unwrap_or_else(|| self.default.clone())
    }

    /// The current value, as [`get`](Live::get) gives it, without touching
    /// its reference count: the cheapest read, for the hottest paths.
    ///
    /// Hold it as briefly as a lock guard (it blocks nobody): read what you
    /// need and drop it. A thread that holds several at once makes its later
    /// borrows slower, and a replaced value is freed only when its last
    /// borrow ends. To keep the value, across an `.await` say, use `get`.
    ///
    /// ```no_run
    /// # fn demo(limits: cfgd::Live<u32>) {
    /// let under_limit = 3 < *limits.borrow();
    /// # }
    /// ```
    pub fn borrow(&self) -> LiveRef<'_, T> {
        LiveRef {
            guard: self.cell.value.load(),
            default: &self.default,
        }
    }

    /// Waits until the value changes (a new value, a delete, a defaults-file
    /// edit). A value that fails to decode is not a change.
    pub async fn changed(&mut self) {
        // The sender lives in the cell this handle owns, so this never errors.
        let _ = self.changed.changed().await;
    }

    /// The etcd revision of the current value (0 if never stored).
    pub fn revision(&self) -> Revision {
        self.cell.state().revision
    }

    /// Where the current value came from.
    pub fn source(&self) -> Source {
        self.cell.state().source
    }

    /// Why the latest stored value was not taken, if it was not.
    pub fn last_error(&self) -> Option<Arc<Error>> {
        self.cell.state().last_error.clone()
    }

    /// The name this value follows.
    pub fn name(&self) -> &str {
        &self.cell.name
    }
}

/// A borrowed read of a [`Live`] value: see [`Live::borrow`].
pub struct LiveRef<'a, T> {
    guard: arc_swap::Guard<Option<Arc<T>>>,
    default: &'a T,
}

impl<T> std::ops::Deref for LiveRef<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.guard.as_deref().unwrap_or(self.default)
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for LiveRef<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        T::fmt(self, f)
    }
}
