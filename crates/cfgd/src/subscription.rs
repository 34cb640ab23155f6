//! Following changes: [`Subscription`] streams and
//! [`on_change`](crate::Client::on_change) callbacks.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::Stream;

use crate::change::Change;
use crate::key::Kind;
use crate::namespace::{Callback, Hook, LiveNamespace, Position};
use crate::types::{KeepAlive, Revision};

/// Keeps a callback of [`Client::on_change`](crate::Client::on_change)
/// registered; dropping it stops the callback.
pub struct OnChange {
    hook: Arc<Hook>,
    shared: Arc<LiveNamespace>,
    _client: KeepAlive,
}

impl OnChange {
    pub(crate) fn new(
        client: KeepAlive,
        shared: Arc<LiveNamespace>,
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
///
/// While it is open, the client keeps the tombstones of deleted names it
/// may need for that; a subscription that is never read holds them.
pub struct Subscription {
    shared: Arc<LiveNamespace>,
    prefix: String,
    section: Kind,
    stream: BroadcastStream<Change>,
    pending: std::collections::VecDeque<Change>,
    /// Everything under the prefix up to here has been handed out.
    seen: Revision,
    /// `seen`, as the namespace reads it to prune tombstones.
    position: Position,
    /// After a catch-up: changes up to here were covered by it.
    skip_through: Revision,
    /// Resumed from before what the namespace still knows of deletes.
    reset: bool,
    _client: KeepAlive,
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
        client: KeepAlive,
        shared: Arc<LiveNamespace>,
        section: Kind,
        prefix: String,
    ) -> Self {
        Self::open(client, shared, section, prefix, None).0
    }

    /// Subscribed to the channel from now on, having seen `seen` (`None`:
    /// everything applied so far). Also says up to where tombstones were
    /// pruned when it opened.
    fn open(
        client: KeepAlive,
        shared: Arc<LiveNamespace>,
        section: Kind,
        prefix: String,
        seen: Option<Revision>,
    ) -> (Self, Revision) {
        // Under the mirror's lock, so that no pruning passes between reading
        // it and this subscription's position standing.
        let mirror = shared.read();
        let seen = seen.unwrap_or(mirror.revision);
        let pruned = mirror.pruned_through;
        let position = shared.position(seen);
        drop(mirror);
        let sub = Subscription {
            stream: BroadcastStream::new(shared.changes.subscribe()),
            shared,
            prefix,
            section,
            pending: Default::default(),
            seen,
            position,
            skip_through: 0,
            reset: false,
            _client: client,
        };
        (sub, pruned)
    }

    fn saw(&mut self, revision: Revision) {
        if revision > self.seen {
            self.seen = revision;
            self.position.store(revision);
        }
    }

    /// True when this subscription resumed from further back than the
    /// client still knows which names were deleted. It then starts with the
    /// current value of every name under its prefix (flagged resync), and a
    /// consumer that kept values from before must drop the names it is not
    /// given, as after an etcd compaction.
    pub fn is_reset(&self) -> bool {
        self.reset
    }

    /// A subscription that first delivers what changed after `revision`:
    /// exactly, from the recent changes, when they reach back that far;
    /// otherwise as the current values of everything that changed since
    /// (flagged resync), as after a lag.
    pub(crate) fn resume(
        client: KeepAlive,
        shared: Arc<LiveNamespace>,
        section: Kind,
        prefix: String,
        revision: Revision,
    ) -> Self {
        // Subscribed under the ring's lock: each change is then either in
        // the ring now or on the channel later, never both nor neither.
        let recent = shared.recent();
        let (mut sub, pruned) = Self::open(client, shared.clone(), section, prefix, Some(revision));
        if revision < pruned && revision < recent.complete_after {
            drop(recent);
            tracing::debug!(
                revision,
                pruned,
                "resume from before pruned deletes; sending everything"
            );
            sub.reset = true;
            sub.seen = 0;
            sub.position.store(0);
            sub.catch_up();
        } else if revision >= recent.complete_after {
            let last = recent.changes.back().map_or(revision, |c| c.revision());
            let missed: Vec<Change> = recent
                .changes
                .iter()
                .filter(|c| c.revision() > revision && sub.matches(c))
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
            .map(|(name, s)| Change::put(self.section, name.clone(), true, s))
            .chain(
                section
                    .tombstones
                    .iter()
                    .filter(|(name, &r)| r > self.seen && name.starts_with(&self.prefix))
                    .map(|(name, &revision)| {
                        Change::delete(self.section, name.clone(), revision, true)
                    }),
            )
            .collect();
        changes.sort_by_key(|c| c.revision());
        self.skip_through = mirror.revision;
        self.shared
            .stats
            .resyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        drop(mirror);
        self.pending.extend(changes);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.release(&self.position);
    }
}

impl Stream for Subscription {
    type Item = Change;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change>> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                self.saw(change.revision());
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
                    if change.revision() <= self.skip_through {
                        continue;
                    }
                    // A change for others still moves this one on: the
                    // channel brings changes in order, so nothing under the
                    // prefix before it was missed.
                    self.saw(change.revision());
                    if self.matches(&change) {
                        return Poll::Ready(Some(change));
                    }
                }
            }
        }
    }
}
