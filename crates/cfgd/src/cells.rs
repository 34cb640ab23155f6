//! The cells behind live values: one per (name, type), holding the value
//! decoded once per change, fed by the namespace and read by every `Live`
//! of that name and type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwapOption;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::change::Change;
use crate::defaults::Values;
use crate::error::Error;
use crate::key::Kind;
use crate::types::{Revision, Source};
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
    pub(crate) fn apply(&self, defaults: &Values, change: &Change) {
        if change.section() != Kind::Config {
            return;
        }
        let sinks = self.sinks(change.name());
        if sinks.is_empty() {
            return;
        }
        let (raw, source) = match (change.raw(), defaults.get(change.name())) {
            (Some(raw), _) => (Some(raw), Source::Cache),
            (None, Some(fallback)) => (Some(&fallback[..]), Source::DefaultsFile),
            (None, None) => (None, Source::CodeDefault),
        };
        for sink in sinks {
            sink.apply(Update {
                revision: Some(change.revision()),
                raw,
                source,
            });
        }
    }

    /// Passes a defaults-file edit to the live values of `name`.
    pub(crate) fn apply_default(&self, name: &str, raw: Option<&[u8]>) {
        let source = if raw.is_some() {
            Source::DefaultsFile
        } else {
            Source::CodeDefault
        };
        for sink in self.sinks(name) {
            sink.apply(Update {
                revision: None,
                raw,
                source,
            });
        }
    }

    /// The cell of `name` as a `T`, and whether it was made just now (and so
    /// holds nothing yet).
    pub(crate) fn cell<T>(&self, name: &str) -> (Arc<Cell<T>>, bool)
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

pub(crate) struct CellState {
    /// The revision of the value shown.
    pub(crate) revision: Revision,
    /// The newest etcd revision applied, good or not: older ones are stale.
    seen: Revision,
    pub(crate) source: Source,
    pub(crate) last_error: Option<Arc<Error>>,
}

/// The decoded value of one name as one type, shared by its `Live`s.
pub(crate) struct Cell<T> {
    pub(crate) name: Arc<str>,
    /// `None`: nothing stored; each `Live` then shows its own default.
    pub(crate) value: ArcSwapOption<T>,
    state: Mutex<CellState>,
    pub(crate) changed: watch::Sender<u64>,
}

impl<T> Cell<T> {
    fn new(name: Arc<str>) -> Self {
        Cell {
            name,
            value: ArcSwapOption::empty(),
            state: Mutex::new(CellState {
                revision: 0,
                seen: 0,
                source: Source::CodeDefault,
                last_error: None,
            }),
            changed: watch::channel(0).0,
        }
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, CellState> {
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
