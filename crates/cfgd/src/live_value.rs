//! `Live<T>`: a value kept current by the watch, read without a lock.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::cells::{Cell, Sink, Update};
use crate::error::Error;
use crate::key::Kind;
use crate::namespace::LiveNamespace;
use crate::types::{KeepAlive, Revision, Source};

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
    _client: KeepAlive,
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
    pub(crate) fn new(
        client: KeepAlive,
        namespace: &LiveNamespace,
        name: &str,
        default: T,
    ) -> Self {
        let (cell, created) = namespace.registry.cell::<T>(name);
        if created {
            let initial = namespace
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
                    if let Some(raw) = namespace.defaults.load().get(name) {
                        cell.apply(Update {
                            revision: None,
                            raw: Some(raw),
                            source: Source::DefaultsFile,
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
