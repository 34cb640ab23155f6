//! The defaults file: a JSON object of name → value, applied live.
//!
//! It sits below etcd and the snapshot and above the default given in code.
//! An edit that does not parse, names an invalid key or holds an oversized
//! value is refused whole, logged, and the previous defaults stay.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{RecursiveMode, Watcher};

use crate::error::{Error, Result};

pub(crate) type Values = HashMap<String, Arc<[u8]>>;

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::Defaults {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Reads and checks the whole file; a missing file is no defaults.
pub(crate) fn read(path: &Path) -> Result<Values> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Values::new()),
        Err(e) => return Err(invalid(path, e.to_string())),
    };
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| invalid(path, format!("not a JSON object of name → value: {e}")))?;
    let mut values = Values::with_capacity(object.len());
    for (name, value) in object {
        crate::key::validate_name(&name).map_err(|e| invalid(path, e.to_string()))?;
        let bytes =
            crate::value::encode(&name, &value).map_err(|e| invalid(path, e.to_string()))?;
        values.insert(name, bytes.into());
    }
    Ok(values)
}

/// Keeps the defaults current while it lives.
pub(crate) struct FileWatcher {
    _watcher: notify::RecommendedWatcher,
    pub(crate) last_error: Arc<Mutex<Option<Arc<Error>>>>,
}

/// Watches the file's directory (editors replace files by renaming, which a
/// watch on the file itself would lose) and hands every good edit of the
/// file to `apply`. A bad edit is logged and kept as the last error.
pub(crate) fn watch(path: PathBuf, apply: impl Fn(Values) + Send + 'static) -> Result<FileWatcher> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let last_error: Arc<Mutex<Option<Arc<Error>>>> = Arc::default();
    let errors = last_error.clone();
    let file_name = path.file_name().map(|n| n.to_owned());
    let watched = path.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !event.paths.iter().any(|p| p.file_name() == file_name.as_deref()) {
            return;
        }
        let mut last = errors.lock().unwrap_or_else(|e| e.into_inner());
        match read(&watched) {
            Ok(values) => {
                *last = None;
                apply(values);
            }
            Err(error) => {
                tracing::error!(%error, "defaults file edit refused; keeping the previous defaults");
                *last = Some(Arc::new(error));
            }
        }
    })
    .map_err(|e| invalid(&path, format!("cannot watch it: {e}")))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| invalid(&path, format!("cannot watch {}: {e}", dir.display())))?;
    Ok(FileWatcher {
        _watcher: watcher,
        last_error,
    })
}
