//! The offline snapshot: the last known values on disk, so a service can
//! start while etcd is down. One file holds any number of namespaces of one
//! root, so a process serving many (the `cfgd` server) keeps one file; each
//! namespace's writer replaces only its own part.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::key::Kind;
use crate::mirror::{LayerRead, Mirror, Named, Read, Section, Stored};
use crate::types::{Revision, Source};

const FORMAT: &str = "cfgd-snapshot/2";
/// Writes are gathered for this long, so a burst of changes costs one write.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    root: String,
    namespaces: std::collections::BTreeMap<String, Namespace>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Namespace {
    revision: Revision,
    entries: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    kind: String,
    name: String,
    revision: Revision,
    create_revision: Revision,
    version: i64,
    /// The stored text as a string, so that even a value another tool
    /// wrote that is not JSON survives the round trip.
    value: String,
}

/// What to write and where.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) path: PathBuf,
    pub(crate) root: String,
    pub(crate) namespace: String,
    /// Name prefixes that never reach the disk (secrets).
    pub(crate) redact: Vec<String>,
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::Snapshot {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Reads a snapshot file; `None` when there is none.
fn read_any(path: &Path) -> Result<Option<File>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(invalid(path, e.to_string())),
    };
    let file: File = serde_json::from_str(&text)
        .map_err(|e| invalid(path, format!("not a cfgd snapshot: {e}")))?;
    if file.format != FORMAT {
        return Err(invalid(path, format!("unknown format {:?}", file.format)));
    }
    Ok(Some(file))
}

/// Reads a snapshot file of `root`; `None` when there is none.
fn read(path: &Path, root: &str) -> Result<Option<File>> {
    let file = read_any(path)?;
    if let Some(file) = &file {
        if file.root != root {
            return Err(invalid(
                path,
                format!("it holds namespaces under {:?}, not {root:?}", file.root),
            ));
        }
    }
    Ok(file)
}

/// The namespaces a snapshot file holds (none when there is no file): a
/// server loads each at start, to serve them while etcd is down.
pub fn namespaces(path: &Path, root: &str) -> Result<Vec<String>> {
    Ok(read(path, root)?
        .map(|file| file.namespaces.into_keys().collect())
        .unwrap_or_default())
}

/// Reads one namespace from a snapshot, whole, or refuses it: nothing is
/// half-loaded. `None` when the file does not hold the namespace.
pub(crate) fn load(settings: &Settings) -> Result<Option<Read>> {
    let path = &settings.path;
    let Some(mut file) = read(path, &settings.root)? else {
        return Ok(None);
    };
    let Some(own) = file.namespaces.remove(&settings.namespace) else {
        return Ok(None);
    };
    let revision = own.revision;
    let mut parts = HashMap::new();
    parts.insert(settings.namespace.clone(), entries_of(path, own)?);
    for (namespace, part) in file.namespaces {
        parts.insert(namespace, entries_of(path, part)?);
    }
    let extends = |ns: &str| {
        let meta = parts
            .get(ns)?
            .iter()
            .find(|(kind, _, _)| *kind == Kind::Meta);
        Some(meta.map_or_else(Vec::new, |(_, _, s)| {
            crate::meta::Meta::from_stored("meta", &s.raw).extends
        }))
    };
    // The parents are in the file when this namespace's client wrote it;
    // without them (a file from before layers) it stands alone.
    let line = crate::layers::linearize(&settings.namespace, extends)
        .unwrap_or_else(|_| vec![settings.namespace.clone()]);
    let layers = line
        .into_iter()
        .map(|ns| LayerRead {
            base: format!("{}/{ns}/", settings.root),
            entries: parts.remove(&ns).unwrap_or_default(),
            namespace: ns.into(),
            overlay: false,
        })
        .collect();
    Ok(Some(Read { revision, layers }))
}

fn entries_of(path: &Path, file: Namespace) -> Result<Vec<Named>> {
    let mut entries = Vec::with_capacity(file.entries.len());
    for e in file.entries {
        let kind = Kind::from_segment(&e.kind)
            .ok_or_else(|| invalid(path, format!("unknown kind {:?}", e.kind)))?;
        if !(kind.is_single() && e.name.is_empty()) {
            crate::key::validate_name(&e.name).map_err(|err| invalid(path, err.to_string()))?;
        }
        if e.revision <= 0 || e.revision > file.revision {
            return Err(invalid(
                path,
                format!("{}: bad revision {}", e.name, e.revision),
            ));
        }
        entries.push((
            kind,
            Arc::from(e.name),
            Stored {
                raw: e.value.into_bytes().into(),
                revision: e.revision,
                create_revision: e.create_revision,
                version: e.version,
                origin: Source::Snapshot,
                decoded: Default::default(),
                sealed: None,
            },
        ));
    }
    Ok(entries)
}

/// The parts of the file a namespace writes: its own keys, and for a
/// layered namespace each of its layers as etcd holds it (so that an
/// offline start can make the effective values again), by namespace.
pub(crate) fn encode(settings: &Settings, mirror: &Mirror) -> Vec<(String, Namespace)> {
    let revision = mirror.revision;
    if mirror.layers.is_empty() {
        let part = encode_sections(settings, &mirror.sections, revision);
        return vec![(settings.namespace.clone(), part)];
    }
    // An overlay's keys are its namespace's own (`overlays/`): kept there.
    mirror
        .layers
        .iter()
        .filter(|l| !l.overlay)
        .map(|l| {
            let part = encode_sections(settings, &l.sections, revision);
            (l.namespace.to_string(), part)
        })
        .collect()
}

fn encode_sections(settings: &Settings, sections: &[Section], revision: Revision) -> Namespace {
    let mut entries = Vec::new();
    for kind in Kind::ALL {
        for (name, stored) in &sections[kind.index()].entries {
            if settings.redact.iter().any(|p| name.starts_with(p.as_str())) {
                continue;
            }
            let Ok(value) = std::str::from_utf8(stored.as_stored()) else {
                continue;
            };
            entries.push(Entry {
                kind: kind.segment().to_owned(),
                name: name.to_string(),
                revision: stored.revision,
                create_revision: stored.create_revision,
                version: stored.version,
                value: value.to_owned(),
            });
        }
    }
    entries.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    Namespace { revision, entries }
}
/// Replaces this namespace's parts of the file, keeping the others.
pub(crate) fn merge_and_write(
    settings: &Settings,
    parts: Vec<(String, Namespace)>,
) -> std::io::Result<()> {
    // One writer at a time in this process: namespaces sharing a file must
    // not each write back what they read before the other's write.
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let empty = || File {
        format: FORMAT.into(),
        root: settings.root.clone(),
        namespaces: Default::default(),
    };
    let mut file = match read_any(&settings.path) {
        Ok(Some(file)) if file.root == settings.root => file,
        // A file of another root is someone else's: never overwrite it.
        Ok(Some(file)) => {
            return Err(std::io::Error::other(format!(
                "the file holds namespaces under {:?}, not {:?}",
                file.root, settings.root
            )))
        }
        Ok(None) => empty(),
        Err(e) => {
            tracing::warn!(error = %e, "replacing an unreadable snapshot");
            empty()
        }
    };
    file.namespaces.extend(parts);
    let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    write_atomic(&settings.path, &bytes)
}

/// Temp file in the same directory, fsync, rename, fsync the directory: a
/// crash leaves the old snapshot or the new one, never a torn file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
