//! The callbacks of [`Client::on_change`](crate::Client::on_change): run on
//! the watch's task, in revision order, one change at a time.

use super::*;

impl LiveNamespace {
    pub(crate) fn hooks(&self) -> std::sync::MutexGuard<'_, Arc<Vec<Arc<Hook>>>> {
        self.hooks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls every callback with the changes it asked for. Publishing is
    /// serialized (under `attach`), so each callback sees changes in
    /// revision order, one at a time.
    pub(super) fn call_hooks(&self, changes: &[Change]) {
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
}

/// A callback of [`Client::on_change`](crate::Client::on_change).
pub(crate) struct Hook {
    pub(crate) prefix: String,
    /// Changes up to here were in the mirror when the callback was added.
    pub(crate) after: Revision,
    pub(crate) active: std::sync::atomic::AtomicBool,
    pub(crate) call: std::sync::Mutex<Callback>,
}

pub(crate) type Callback = Box<dyn FnMut(&Change) + Send>;

impl Hook {
    pub(super) fn call(&self, change: &Change) {
        if change.revision() <= self.after
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
            tracing::error!(prefix = %self.prefix, revision = change.revision(),
                "an on_change callback panicked; it stays registered");
        }
    }
}
