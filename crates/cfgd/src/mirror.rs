//! The in-memory mirror of one namespace: every key (raw JSON and
//! revisions) plus tombstones of recently deleted keys.
//!
//! That is what lets a resync after compaction name the keys that
//! disappeared, lets a lagging subscriber catch up without a round trip, and
//! lets reads be served without asking etcd.
//!
//! A namespace that extends others ([`crate::layers`]) also keeps each of
//! its layers as etcd holds it, and its sections hold the effective values
//! made from them: everything that reads the mirror reads those.

use std::collections::HashMap;
use std::sync::Arc;

use crate::key::Kind;
use crate::types::{Revision, Source};

/// One entry of a namespace read: section, name and what is stored.
pub(crate) type Named = (Kind, Arc<str>, Stored);

/// A namespace read whole, at one revision: each of its layers, first
/// (lowest) to last (its own); one for a namespace that extends nothing.
pub(crate) struct Read {
    pub(crate) revision: Revision,
    pub(crate) layers: Vec<LayerRead>,
}

/// One layer of a [`Read`].
pub(crate) struct LayerRead {
    pub(crate) namespace: Arc<str>,
    /// Its etcd prefix, ending in `/`.
    pub(crate) base: String,
    pub(crate) entries: Vec<Named>,
    /// An overlay this client's labels select, above the own layer.
    pub(crate) overlay: bool,
}

impl Read {
    pub(crate) fn is_layered(&self) -> bool {
        self.layers.len() > 1
    }
}

/// A decoded value and the type it was decoded as.
pub(crate) type Decoded = (std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>);

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
    /// For a secret this client opened, the envelope etcd holds (`raw` is
    /// then the plaintext): what the snapshot file keeps.
    pub(crate) sealed: Option<Arc<[u8]>>,
}

impl Stored {
    pub(crate) fn from_etcd(kv: &etcd_client::KeyValue) -> Self {
        Stored {
            raw: kv.value().into(),
            revision: kv.mod_revision(),
            create_revision: kv.create_revision(),
            version: kv.version(),
            origin: Source::Cache,
            decoded: Default::default(),
            sealed: None,
        }
    }

    /// Whether the value is a secret, opened or not.
    pub(crate) fn is_secret(&self) -> bool {
        self.sealed.is_some() || crate::secret::is_sealed(&self.raw)
    }

    /// The bytes as etcd holds them.
    pub(crate) fn as_stored(&self) -> &[u8] {
        self.sealed.as_deref().unwrap_or(&self.raw)
    }
}

#[derive(Default, Clone)]
pub(crate) struct Section {
    pub(crate) entries: HashMap<Arc<str>, Stored>,
    /// Deleted names and the revision that deleted them, so that a lagging
    /// subscriber learns of deletes it missed. Pruned once no subscriber
    /// can need them ([`Mirror::prune_tombstones`]).
    pub(crate) tombstones: HashMap<Arc<str>, Revision>,
}

impl Section {
    /// Applies a put unless a newer revision is already there. `authoritative`
    /// (the watch) may also replace an entry of the same revision, since it
    /// carries etcd's own create revision and version.
    pub(crate) fn put(&mut self, name: &Arc<str>, stored: Stored, authoritative: bool) -> bool {
        let section = self;
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

    pub(crate) fn delete(&mut self, name: &Arc<str>, revision: Revision) -> bool {
        let section = self;
        if matches!(section.entries.get(name), Some(old) if old.revision > revision) {
            return false;
        }
        section.entries.remove(name);
        section.tombstones.insert(name.clone(), revision);
        true
    }
}

/// One layer of a layered namespace, as etcd holds it.
#[derive(Clone)]
pub(crate) struct Layer {
    /// Its namespace; for an overlay, `{ns}@{overlay}`.
    pub(crate) namespace: Arc<str>,
    /// Its etcd prefix, ending in `/`.
    pub(crate) base: String,
    pub(crate) sections: [Section; Kind::ALL.len()],
    /// An overlay above the own layer (which is the last that is not one).
    pub(crate) overlay: bool,
}

impl Layer {
    pub(crate) fn new(namespace: Arc<str>, base: String) -> Self {
        Layer {
            namespace,
            base,
            sections: Default::default(),
            overlay: false,
        }
    }

    /// What this layer holds as `name` in `kind`.
    pub(crate) fn get(&self, kind: Kind, name: &str) -> Option<Stored> {
        self.sections[kind.index()].entries.get(name).cloned()
    }

    pub(crate) fn section_mut(&mut self, kind: Kind) -> &mut Section {
        &mut self.sections[kind.index()]
    }
}

/// The namespace's own layer among `layers`: the last that is no overlay.
pub(crate) fn own_layer(layers: &[Layer]) -> Option<&Layer> {
    layers.iter().rev().find(|l| !l.overlay)
}

#[derive(Default)]
pub(crate) struct Mirror {
    /// Everything up to this revision has been applied.
    pub(crate) revision: Revision,
    /// What reads see: the namespace's own keys, or for a layered one the
    /// effective values of its layers.
    pub(crate) sections: [Section; Kind::ALL.len()],
    /// Tombstones of deletes up to here were pruned: a catch-up from before
    /// it cannot name every delete.
    pub(crate) pruned_through: Revision,
    /// A layered namespace's layers, first (lowest) to last (its own);
    /// empty for one that extends nothing, whose own keys are `sections`.
    pub(crate) layers: Vec<Layer>,
    /// A layered namespace's own writes, applied at once (section, name,
    /// revision), whose echo from the watch has not come yet. The echo
    /// finds the effective value already in place, yet subscribers have
    /// not been told: it must still make their change.
    pub(crate) echoes: std::collections::HashSet<(Kind, Arc<str>, Revision)>,
}

impl Mirror {
    pub(crate) fn section(&self, kind: Kind) -> &Section {
        &self.sections[kind.index()]
    }

    /// See [`Section::put`].
    pub(crate) fn put(
        &mut self,
        kind: Kind,
        name: &Arc<str>,
        stored: Stored,
        authoritative: bool,
    ) -> bool {
        self.sections[kind.index()].put(name, stored, authoritative)
    }

    pub(crate) fn delete(&mut self, kind: Kind, name: &Arc<str>, revision: Revision) -> bool {
        self.sections[kind.index()].delete(name, revision)
    }

    pub(crate) fn is_layered(&self) -> bool {
        !self.layers.is_empty()
    }

    /// The own layer's entries of `kind`: `sections` for a namespace that
    /// extends nothing.
    pub(crate) fn own(&self, kind: Kind) -> &Section {
        match own_layer(&self.layers) {
            Some(own) => &own.sections[kind.index()],
            None => self.section(kind),
        }
    }

    pub(crate) fn tombstone_count(&self) -> usize {
        let layered = self.layers.iter().flat_map(|l| l.sections.iter());
        self.sections
            .iter()
            .chain(layered)
            .map(|s| s.tombstones.len())
            .sum()
    }

    /// Forgets the deletes at or below `through`. A tombstone also guards a
    /// local write against an older put the watch brings late, so those of
    /// deletes newer than the applied revision always stay.
    pub(crate) fn prune_tombstones(&mut self, through: Revision) {
        let through = through.min(self.revision);
        if through <= self.pruned_through {
            return;
        }
        let layered = self.layers.iter_mut().flat_map(|l| l.sections.iter_mut());
        for section in self.sections.iter_mut().chain(layered) {
            section.tombstones.retain(|_, deleted| *deleted > through);
            section.tombstones.shrink_to(section.tombstones.len() * 2);
        }
        self.pruned_through = through;
    }
}
