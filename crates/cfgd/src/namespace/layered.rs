//! A layered namespace ([`crate::layers`]): its layers read from etcd at one
//! revision, kept as etcd holds them, and the effective value of each name
//! made again whenever one of its layers changes. A change that leaves the
//! effective value as it was (a child shadows it) reaches no one.

use super::*;
use crate::effective;
use crate::layers::{self, LayerError};
use crate::mirror::{Layer, LayerRead, Read};
use crate::overlays::{Labels, Overlay};

/// The `extends` of a namespace read whole: none when it holds no
/// settings, or settings that do not parse (logged where they are read).
fn extends_in(entries: &[Named]) -> Vec<String> {
    entries
        .iter()
        .find(|(kind, _, _)| *kind == Kind::Meta)
        .map(|(_, _, stored)| Meta::from_stored("meta", &stored.raw).extends)
        .unwrap_or_default()
}

/// The layers of `namespace`, given each namespace's `extends` as far as
/// known. A line that cannot stand (a cycle or too deep, stored behind
/// cfgd's back, which refuses both) leaves the namespace by itself, and
/// says so in the log.
fn chain<F>(namespace: &str, extends: F) -> std::result::Result<Vec<String>, LayerError>
where
    F: Fn(&str) -> Option<Vec<String>>,
{
    match layers::linearize(namespace, extends) {
        Ok(line) => Ok(line),
        Err(e @ LayerError::Missing { .. }) => Err(e),
        Err(error) => {
            tracing::error!(namespace, %error, "extends cannot stand; reading the namespace alone");
            Ok(vec![namespace.to_owned()])
        }
    }
}

/// Reads `namespace` (under `root`, `{root}/`) whole, with every namespace
/// it inherits from, all at the revision of the first read. A parent that
/// holds nothing is an empty layer.
pub(crate) async fn read(
    etcd: &etcd_client::Client,
    root: &str,
    namespace: &str,
    labels: &Labels,
) -> std::result::Result<Read, etcd_client::Error> {
    let base = |ns: &str| format!("{root}{ns}/");
    let (revision, own) = crate::etcd::read_namespace(etcd, &base(namespace), None).await?;
    let mut reads: HashMap<String, Vec<Named>> = HashMap::new();
    let mut waiting = extends_in(&own);
    reads.insert(namespace.to_owned(), own);
    // Bounded: a cycle stops at namespaces already read, and a line too
    // long is refused by `chain` once this many are in.
    while let Some(ns) = waiting.pop() {
        if reads.contains_key(&ns) || reads.len() > 4 * layers::MAX_DEPTH {
            continue;
        }
        let (_, entries) = crate::etcd::read_namespace(etcd, &base(&ns), Some(revision)).await?;
        waiting.extend(extends_in(&entries));
        reads.insert(ns, entries);
    }
    let line = chain(namespace, |ns| {
        Some(reads.get(ns).map(|e| extends_in(e)).unwrap_or_default())
    })
    .unwrap_or_else(|_| vec![namespace.to_owned()]);
    let mut layers: Vec<LayerRead> = line
        .into_iter()
        .map(|ns| LayerRead {
            entries: reads.remove(&ns).unwrap_or_default(),
            base: base(&ns),
            namespace: ns.into(),
            overlay: false,
        })
        .collect();
    with_overlays(&mut layers, labels);
    Ok(Read { revision, layers })
}

/// The overlays `labels` select among `overlays` (the own layer's
/// `overlays/` keys, by name within it), in the order they lie, lowest
/// first. One whose settings do not parse selects nobody.
pub(crate) fn chosen<'a>(
    overlays: impl Iterator<Item = (&'a str, &'a Stored)>,
    labels: &Labels,
) -> Vec<String> {
    if labels.is_empty() {
        return Vec::new();
    }
    let metas: Vec<(String, Overlay)> = overlays
        .filter_map(|(name, stored)| {
            let overlay = name.strip_suffix("/meta")?;
            let text = std::str::from_utf8(&stored.raw).ok()?;
            match Overlay::parse(text) {
                Ok(parsed) => Some((overlay.to_owned(), parsed)),
                Err(error) => {
                    tracing::warn!(overlay, %error, "stored overlay settings unreadable; it selects nobody");
                    None
                }
            }
        })
        .collect();
    crate::overlays::selected(metas.iter().map(|(n, o)| (n.as_str(), o)), labels)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The name of overlay `overlay`'s layer in `namespace`.
pub(crate) fn overlay_layer(namespace: &str, overlay: &str) -> String {
    format!("{namespace}@{overlay}")
}

/// Puts the overlays `labels` select above the own layer (the last of
/// `layers`), each made of the own layer's `overlays/{o}/config/` and
/// `overlays/{o}/flags/` keys.
pub(crate) fn with_overlays(layers: &mut Vec<LayerRead>, labels: &Labels) {
    let Some(own) = layers.last() else { return };
    let overlays = own
        .entries
        .iter()
        .filter(|(kind, _, _)| *kind == Kind::Overlays)
        .map(|(_, name, stored)| (&**name, stored));
    let chosen = chosen(overlays, labels);
    let mut above = Vec::with_capacity(chosen.len());
    for overlay in chosen {
        // An overlay holds values and flags: `{o}/config/…`, `{o}/flags/…`.
        let inside = |name: &str| -> Option<(Kind, Arc<str>)> {
            let rest = name.strip_prefix(overlay.as_str())?.strip_prefix('/')?;
            let (section, name) = rest.split_once('/')?;
            match section {
                "config" => Some((Kind::Config, name.into())),
                "flags" => Some((Kind::Flags, name.into())),
                _ => None,
            }
        };
        let entries = own
            .entries
            .iter()
            .filter(|(kind, _, _)| *kind == Kind::Overlays)
            .filter_map(|(_, name, stored)| {
                let (kind, name) = inside(name)?;
                Some((kind, name, stored.clone()))
            })
            .collect();
        above.push(LayerRead {
            namespace: overlay_layer(&own.namespace, &overlay).into(),
            base: format!("{}overlays/{overlay}/", own.base),
            entries,
            overlay: true,
        });
    }
    layers.extend(above);
}

impl LiveNamespace {
    /// `{root}/`, the prefix of every namespace's base.
    pub(crate) fn root(&self) -> &str {
        &self.base[..self.base.len() - self.name.len() - 1]
    }

    /// The mirror's sections for a full read, and its layers kept when the
    /// namespace extends others. Effective values that changed take a
    /// revision above the one they replace, so that live values, which
    /// ignore what is not newer, take them.
    pub(super) fn install(
        &self,
        mirror: &mut Mirror,
        read: Read,
    ) -> [HashMap<Arc<str>, Stored>; Kind::ALL.len()] {
        let revision = read.revision;
        let mut next: [HashMap<Arc<str>, Stored>; Kind::ALL.len()] = Default::default();
        let bases: Vec<String> = read.layers.iter().map(|l| l.base.clone()).collect();
        if !read.is_layered() {
            mirror.layers.clear();
            for layer in read.layers {
                for (section, name, stored) in self.ingest_all(&layer.base, layer.entries) {
                    next[section.index()].insert(name, stored);
                }
            }
            self.bases.store(Arc::new(vec![self.base.clone()]));
            return next;
        }
        let mut layers = Vec::with_capacity(read.layers.len());
        for read in read.layers {
            let mut layer = Layer::new(read.namespace, read.base);
            layer.overlay = read.overlay;
            for (section, name, stored) in self.ingest_all(&layer.base, read.entries) {
                layer.section_mut(section).entries.insert(name, stored);
            }
            layers.push(layer);
        }
        for kind in Kind::ALL {
            for name in effective::names(&layers, kind) {
                let Some((mut stored, _)) = effective::effective(&layers, kind, &name) else {
                    continue;
                };
                if let Some(old) = mirror.section(kind).entries.get(&name) {
                    if old.raw == stored.raw {
                        stored = old.clone();
                    } else if stored.revision <= old.revision {
                        stored.revision = revision;
                    }
                }
                next[kind.index()].insert(name, stored);
            }
        }
        mirror.layers = layers;
        self.bases.store(Arc::new(bases));
        next
    }

    /// Applies one watch event to its layer (to each layer it is under:
    /// an overlay's key is also its namespace's own); the changes of the
    /// effective values it makes, and whether the namespace's line of
    /// layers may have moved (a layer's settings or an overlay's changed).
    pub(super) fn apply_to_layer(&self, mirror: &mut Mirror, event: &Event) -> (Vec<Change>, bool) {
        let mut changes = Vec::new();
        let mut moved = false;
        let Some(kv) = event.kv() else {
            return (changes, moved);
        };
        let revision = kv.mod_revision();
        for at in 0..mirror.layers.len() {
            if !kv.key().starts_with(mirror.layers[at].base.as_bytes()) {
                continue;
            }
            let base = mirror.layers[at].base.clone();
            let Some((section, name)) = key::split_key(&base, kv.key()) else {
                continue;
            };
            let name: Arc<str> = name.into();
            let layer = &mut mirror.layers[at];
            let applied = match event.event_type() {
                EventType::Put => {
                    let stored = self.ingest(&base, section, &name, Stored::from_etcd(kv));
                    layer.section_mut(section).put(&name, stored, true)
                }
                EventType::Delete => layer.section_mut(section).delete(&name, revision),
            };
            if !applied {
                continue;
            }
            moved |= section == Kind::Meta
                || (section == Kind::Overlays
                    && name.ends_with("/meta")
                    && !self.labels.is_empty());
            let namespace = layer.namespace.clone();
            let echo = mirror.echoes.remove(&(section, name.clone(), revision));
            match Self::settle(mirror, section, &name, revision, namespace.clone()) {
                Some(change) => changes.push(change),
                // This client's own write, in the mirror since it returned:
                // its subscribers learn of it now.
                None if echo => {
                    let stored = mirror.section(section).entries.get(&name);
                    changes.push(Change::layered(
                        section,
                        name.clone(),
                        revision,
                        false,
                        stored,
                        namespace,
                    ));
                }
                None => {}
            }
        }
        (changes, moved)
    }

    /// A write this client made to its own layer, applied at once.
    pub(super) fn apply_local_layer(
        &self,
        mirror: &mut Mirror,
        section: Kind,
        name: &Arc<str>,
        stored: Option<Stored>,
        revision: Revision,
    ) -> Option<Change> {
        let own = mirror.layers.iter_mut().rev().find(|l| !l.overlay)?;
        let applied = match stored {
            Some(stored) => {
                let stored = self.ingest(&own.base, section, name, stored);
                own.section_mut(section).put(name, stored, false)
            }
            None => own.section_mut(section).delete(name, revision),
        };
        let namespace = own.namespace.clone();
        let change = applied
            .then(|| Self::settle(mirror, section, name, revision, namespace))
            .flatten();
        if change.is_some() {
            mirror.echoes.insert((section, name.clone(), revision));
        }
        change
    }

    /// Makes the effective value of `name` again after a change at
    /// `revision` to `layer`; the change subscribers see, unless it stayed
    /// the same.
    fn settle(
        mirror: &mut Mirror,
        section: Kind,
        name: &Arc<str>,
        revision: Revision,
        layer: Arc<str>,
    ) -> Option<Change> {
        let next = effective::effective(&mirror.layers, section, name);
        let old = mirror.section(section).entries.get(name);
        match (next, old) {
            (None, None) => None,
            (Some((stored, _)), Some(old))
                if old.raw == stored.raw && old.is_secret() == stored.is_secret() =>
            {
                None
            }
            (None, Some(_)) => {
                mirror.delete(section, name, revision);
                Some(Change::layered(
                    section,
                    name.clone(),
                    revision,
                    false,
                    None,
                    layer,
                ))
            }
            (Some((mut stored, _)), _) => {
                stored.revision = stored.revision.max(revision);
                let change =
                    Change::layered(section, name.clone(), revision, false, Some(&stored), layer);
                mirror.put(section, name, stored, true);
                Some(change)
            }
        }
    }

    /// Whether the settings the mirror holds now give this namespace other
    /// layers than it has, or need a namespace it has not read: then it
    /// must be read again.
    pub(crate) fn line_moved(&self, mirror: &Mirror) -> bool {
        let held: Vec<&str> = match mirror.layers.is_empty() {
            true => vec![&*self.name],
            false => mirror.layers.iter().map(|l| &*l.namespace).collect(),
        };
        let extends = |ns: &str| -> Option<Vec<String>> {
            let meta = match mirror.layers.iter().find(|l| &*l.namespace == ns) {
                Some(layer) => layer.sections[Kind::Meta.index()].entries.get(""),
                None if ns == &*self.name => mirror.section(Kind::Meta).entries.get(""),
                None => return None,
            };
            Some(meta.map_or_else(Vec::new, |s| Meta::from_stored("meta", &s.raw).extends))
        };
        let mut line = match chain(&self.name, extends) {
            Ok(line) => line,
            Err(_) => return true,
        };
        let overlays = mirror.own(Kind::Overlays).entries.iter();
        let chosen = chosen(overlays.map(|(n, s)| (&**n, s)), &self.labels);
        line.extend(chosen.iter().map(|o| overlay_layer(&self.name, o)));
        line.iter().map(String::as_str).ne(held.iter().copied())
    }
}
