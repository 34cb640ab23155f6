//! [`Change`]: one change to one key, as every subscriber receives it, and
//! its one JSON form.

use std::any::Any;
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::key::Kind;
use crate::mirror::Stored;
use crate::policy::REDACTED;
use crate::types::Revision;
use crate::value;

/// What a [`Change`] did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The key was created or given a new value.
    Put,
    /// The key was deleted.
    Delete,
}

impl ChangeKind {
    /// `"put"` or `"delete"`, as the JSON form and SSE event names say it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Put => "put",
            ChangeKind::Delete => "delete",
        }
    }
}

/// One change to one key, as delivered to subscribers. Cheap to clone: one
/// `Arc`, since every subscriber clones every change it is handed, and at
/// thousands of subscribers each shared counter touched is felt.
#[derive(Debug, Clone)]
pub struct Change {
    data: Arc<ChangeData>,
}

#[derive(Debug)]
struct ChangeData {
    section: Kind,
    name: Arc<str>,
    revision: Revision,
    resync: bool,
    /// In a layered namespace, the layer whose write made the change.
    layer: Option<Arc<str>>,
    /// The new value; `None` for a delete, which is what makes it one.
    /// A secret's plaintext when this client opened it.
    raw: Option<Arc<[u8]>>,
    /// A secret: its value never goes into the JSON form.
    secret: bool,
    /// The JSON form, made by the first consumer that asks and shared by
    /// the rest: ten thousand SSE streams send one string.
    json: OnceLock<String>,
    /// A front end's own encoding of it (a server's SSE event), likewise
    /// made once: see [`Change::encoded`].
    encoded: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl Change {
    /// A delete of `name` at `revision`.
    pub(crate) fn delete(section: Kind, name: Arc<str>, revision: Revision, resync: bool) -> Self {
        Self::made(section, name, revision, resync, None, false, None)
    }

    /// A put of `stored`, as the mirror holds it.
    pub(crate) fn put(section: Kind, name: Arc<str>, resync: bool, stored: &Stored) -> Self {
        Self::put_in(section, name, resync, stored, None)
    }

    /// [`put`](Self::put) or, with `stored` `None`, [`delete`](Self::delete)
    /// of an effective value, made by a write to `layer`.
    pub(crate) fn layered(
        section: Kind,
        name: Arc<str>,
        revision: Revision,
        resync: bool,
        stored: Option<&Stored>,
        layer: Arc<str>,
    ) -> Self {
        match stored {
            Some(stored) => Self::put_in(section, name, resync, stored, Some(layer)),
            None => Self::made(section, name, revision, resync, None, false, Some(layer)),
        }
    }

    fn put_in(
        section: Kind,
        name: Arc<str>,
        resync: bool,
        stored: &Stored,
        layer: Option<Arc<str>>,
    ) -> Self {
        let raw = Some(stored.raw.clone());
        Self::made(
            section,
            name,
            stored.revision,
            resync,
            raw,
            stored.is_secret(),
            layer,
        )
    }

    fn made(
        section: Kind,
        name: Arc<str>,
        revision: Revision,
        resync: bool,
        raw: Option<Arc<[u8]>>,
        secret: bool,
        layer: Option<Arc<str>>,
    ) -> Self {
        Change {
            data: Arc::new(ChangeData {
                section,
                name,
                revision,
                resync,
                layer,
                raw,
                secret,
                json: OnceLock::new(),
                encoded: OnceLock::new(),
            }),
        }
    }

    /// Whether the value is a secret (see [`crate::secret`]): [`raw`](Self::raw)
    /// and [`value`](Self::value) give its plaintext to a client holding the
    /// key, and [`to_json`](Self::to_json) never does.
    pub fn is_secret(&self) -> bool {
        self.data.secret
    }

    /// This change encoded by `make`, made by the first caller and shared
    /// by every later one: a server with ten thousand event streams encodes
    /// each change once. One encoding is kept per change, that of the
    /// first type asked for; asking for another type calls `make` each time.
    pub fn encoded<T>(&self, make: impl FnOnce(&Change) -> T) -> T
    where
        T: Clone + Send + Sync + 'static,
    {
        if let Some(kept) = self.data.encoded.get() {
            return match kept.downcast_ref::<T>() {
                Some(value) => value.clone(),
                None => make(self),
            };
        }
        // Two first callers at once both encode; one encoding is kept.
        let value = make(self);
        let _ = self.data.encoded.set(Box::new(value.clone()));
        value
    }

    /// Whether a subscriber of `prefix` in `section` wants this change.
    pub(crate) fn is_under(&self, section: Kind, prefix: &str) -> bool {
        self.data.section == section && self.data.name.starts_with(prefix)
    }

    pub(crate) fn section(&self) -> Kind {
        self.data.section
    }

    /// The name within the namespace.
    pub fn name(&self) -> &str {
        &self.data.name
    }

    /// Put or delete.
    pub fn kind(&self) -> ChangeKind {
        match self.data.raw {
            Some(_) => ChangeKind::Put,
            None => ChangeKind::Delete,
        }
    }

    /// The etcd revision of the change. For a delete found by a resync the
    /// exact revision is gone, and this is the revision the resync read at.
    pub fn revision(&self) -> Revision {
        self.data.revision
    }

    /// True when this change was not seen as it happened but found by a
    /// resync (after compaction, an outage, or a subscriber falling behind).
    pub fn is_resync(&self) -> bool {
        self.data.resync
    }

    /// In a namespace that extends others, the namespace whose layer was
    /// written (an ancestor's, or its own); `None` in one that extends
    /// nothing.
    pub fn layer(&self) -> Option<&str> {
        self.data.layer.as_deref()
    }

    /// The new value as JSON text; `None` for a delete.
    pub fn raw(&self) -> Option<&[u8]> {
        self.data.raw.as_deref()
    }

    /// The new value decoded as `T`; `None` for a delete.
    pub fn value<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.data
            .raw
            .as_deref()
            .map(|raw| value::decode(&self.data.name, self.data.revision, raw))
            .transpose()
    }

    /// The change as one line of JSON, the form SSE and `cfgctl watch` send:
    /// `{"name":…,"kind":"put"|"delete","value":…,"revision":…,"resync":…}`,
    /// with `"layer"` in a namespace that extends others.
    /// `value` is `null` for a delete; a stored value that is not JSON
    /// (written by another tool) comes as a JSON string of its text. A
    /// secret's value is `"<redacted>"`, with `"secret":true`. Made once per
    /// change however many callers ask.
    pub fn to_json(&self) -> &str {
        self.data.json.get_or_init(|| {
            let value = match self.raw() {
                Some(_) if self.is_secret() => serde_json::Value::from(REDACTED),
                Some(raw) => serde_json::from_slice(raw).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(raw).into_owned())
                }),
                None => serde_json::Value::Null,
            };
            let mut json = serde_json::json!({
                "name": self.name(),
                "kind": self.kind().as_str(),
                "value": value,
                "revision": self.revision(),
                "resync": self.is_resync(),
            });
            if self.is_secret() {
                json["secret"] = true.into();
            }
            if let Some(layer) = self.layer() {
                json["layer"] = layer.into();
            }
            json.to_string()
        })
    }
}
