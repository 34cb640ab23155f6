//! Loading a namespace and its status: the first read at attach, a
//! re-read after compaction or an outage, a snapshot at start, and what
//! [`Status`] each leaves it in.

use super::*;
use crate::mirror::Read;

impl LiveNamespace {
    /// To be read by the hub once etcd answers (started from a snapshot).
    pub(crate) fn needs_load(&self) {
        *self.attach() = Attach::NeedsLoad;
    }

    /// After compaction: an active namespace is read again.
    pub(crate) fn reload(&self) {
        let mut attach = self.attach();
        if matches!(*attach, Attach::Active) {
            *attach = Attach::NeedsLoad;
        }
    }

    /// Whether the hub should read this namespace now; if so, it is marked
    /// as being read, and events wait for the read.
    pub(crate) fn start_load(&self) -> bool {
        let mut attach = self.attach();
        if !matches!(*attach, Attach::NeedsLoad) {
            return false;
        }
        *attach = Attach::Loading(Vec::new());
        true
    }

    /// Installs a full read, then what the watch brought while it was
    /// being made, unless `replayed`: the hub's watch then starts again
    /// from no later than the read and brings those events once more (it
    /// was narrower than a layered namespace needs). False when the
    /// namespace must be read again: the settings the watch brought give
    /// it other layers.
    pub(crate) fn activate(&self, read: Read, replayed: bool) -> bool {
        let mut attach = self.attach();
        self.replace(read);
        if let Attach::Loading(waiting) = std::mem::replace(&mut *attach, Attach::Active) {
            if !replayed && self.apply_events(&waiting.iter().collect::<Vec<_>>()) {
                *attach = Attach::NeedsLoad;
                return false;
            }
        }
        true
    }

    pub(crate) fn waits_for_load(&self) -> bool {
        matches!(*self.attach(), Attach::NeedsLoad)
    }

    pub(crate) fn is_active(&self) -> bool {
        matches!(*self.attach(), Attach::Active)
    }

    /// Replaces the mirror with a full read of the namespace, emitting what
    /// differs as resync changes.
    fn replace(&self, read: Read) {
        let revision = read.revision;
        let mut changes = Vec::new();
        {
            let mut mirror = self.write();
            let mut next = self.install(&mut mirror, read);
            for section in Kind::ALL {
                let old = &mut mirror.sections[section.index()];
                let new = &next[section.index()];
                for (name, stored) in new {
                    let same = old
                        .entries
                        .get(name)
                        .is_some_and(|o| o.revision == stored.revision && o.raw == stored.raw);
                    if !same {
                        changes.push(Change::put(section, name.clone(), true, stored));
                    }
                    old.tombstones.remove(name);
                }
                for name in old.entries.keys() {
                    if !new.contains_key(name) {
                        old.tombstones.insert(name.clone(), revision);
                        changes.push(Change::delete(section, name.clone(), revision, true));
                    }
                }
                old.entries = std::mem::take(&mut next[section.index()]);
            }
            mirror.revision = revision;
            // The watch resumes after this read: no echo it holds will come.
            mirror.echoes.clear();
            self.prune_tombstones(&mut mirror);
        }
        changes.sort_by_key(|c| c.revision());
        self.stats
            .resyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.complete_from(revision);
        self.publish(changes);
        self.loads.send_modify(|n| *n += 1);
    }

    /// Loads a snapshot into an empty mirror (offline start).
    pub(crate) fn load_snapshot(&self, read: Read) {
        let revision = read.revision;
        {
            let mut mirror = self.write();
            let next = self.install(&mut mirror, read);
            for (section, entries) in mirror.sections.iter_mut().zip(next) {
                section.entries = entries;
            }
            mirror.revision = revision;
        }
        self.complete_from(revision);
        self.rebuild_all();
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

    pub(crate) fn connected(&self) {
        let revision = self.read().revision;
        self.set_status(Status::Connected { revision });
    }

    pub(crate) fn disconnected(&self) {
        let revision = self.read().revision;
        self.set_status(Status::Reconnecting {
            since: SystemTime::now(),
            revision,
        });
    }
}
