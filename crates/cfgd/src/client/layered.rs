//! Reads across layers ([`crate::layers`]): a namespace's line of layers,
//! what each holds of a name, the effective value made from them, and
//! where each field of it came from.

use std::collections::BTreeMap;
use std::sync::Arc;

use etcd_client::{Txn, TxnOp, TxnOpResponse};
use serde::Serialize;
use serde_json::Value;

use super::handle::{Client, Entry};
use crate::effective;
use crate::error::{Error, Result};
use crate::key::Kind;
use crate::mirror::{own_layer, Layer, Stored};
use crate::types::{Revision, Source};
use crate::value;

/// One layer's part in a name's effective value ([`Explained::layers`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct LayerValue {
    /// The namespace of the layer.
    pub namespace: String,
    /// The revision of its key; 0 when it holds none.
    pub revision: Revision,
    /// What it holds, as stored (an unset marker included); `null` when
    /// nothing.
    pub value: Option<Value>,
}

/// A name's effective value, and how its layers made it
/// ([`Client::explain`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Explained {
    /// The effective value; `null` when no layer gives one.
    pub value: Option<Value>,
    /// Every layer, first (lowest) to last (the namespace's own).
    pub layers: Vec<LayerValue>,
    /// The namespace each field of `value` came from, by JSON Pointer
    /// (`""` for a value that is not an object).
    pub origins: BTreeMap<String, String>,
}

impl Client {
    /// The namespace's layers, first (lowest) to last (itself): just itself
    /// when it extends nothing. A live client answers from memory.
    pub async fn layers(&self) -> Result<Vec<String>> {
        if let Some(live) = &self.state.live {
            let mirror = live.read();
            if mirror.layers.is_empty() {
                return Ok(vec![self.namespace().to_owned()]);
            }
            return Ok(mirror
                .layers
                .iter()
                .map(|l| l.namespace.to_string())
                .collect());
        }
        let meta = self.meta().await?;
        if meta.extends.is_empty() {
            return Ok(vec![self.namespace().to_owned()]);
        }
        let known = self.ancestors(&meta.extends).await?;
        let extends = |ns: &str| {
            if ns == self.namespace() {
                return Some(meta.extends.clone());
            }
            // One deleted since `extends` was checked: an empty layer.
            Some(known.get(ns).cloned().flatten().unwrap_or_default())
        };
        crate::layers::linearize(self.namespace(), extends).map_err(|e| Error::InvalidExtends {
            key: self.state.space.key_unchecked(Kind::Meta, ""),
            reason: e.to_string(),
        })
    }

    /// What each layer holds of `name` in `kind`, first to last, with its
    /// secrets opened: from memory when live, else read from etcd at one
    /// revision.
    pub(super) async fn layer_entries(&self, kind: Kind, name: &str) -> Result<Vec<Layer>> {
        let root = &self.state.etcd().root;
        if let Some(live) = &self.state.live {
            let mirror = live.read();
            if !mirror.layers.is_empty() {
                return Ok(mirror
                    .layers
                    .iter()
                    .map(|l| {
                        let mut layer = one(
                            l.namespace.clone(),
                            l.base.clone(),
                            kind,
                            name,
                            l.get(kind, name),
                        );
                        layer.overlay = l.overlay;
                        layer
                    })
                    .collect());
            }
            let stored = mirror.section(kind).entries.get(name).cloned();
            let base = live.base.clone();
            return Ok(vec![one(live.name.clone(), base, kind, name, stored)]);
        }
        // The key and the settings in one request: a namespace that extends
        // nothing, the most common, is read in that one round trip.
        let base = self.state.space.base().to_owned();
        let own_key = format!("{}{name}", crate::key::kind_prefix(&base, kind));
        let meta_key = self.state.space.key_unchecked(Kind::Meta, "");
        let probe = Txn::new().and_then([
            TxnOp::get(own_key.as_str(), None),
            TxnOp::get(meta_key.as_str(), None),
        ]);
        let mut kv = self.state.etcd().kv().await?;
        let resp = self
            .state
            .etcd()
            .call(&own_key, None, kv.txn(probe))
            .await?;
        let found: Vec<Option<etcd_client::KeyValue>> = resp
            .op_responses()
            .into_iter()
            .map(|answer| match answer {
                TxnOpResponse::Get(get) => get.kvs().first().cloned(),
                _ => None,
            })
            .collect();
        let flat = found[1].as_ref().is_none_or(|kv| {
            crate::meta::Meta::from_stored(&meta_key, kv.value())
                .extends
                .is_empty()
        });
        if flat {
            let stored = found[0]
                .as_ref()
                .map(|kv| self.open_stored(&own_key, kv))
                .transpose()?;
            return Ok(vec![one(self.namespace().into(), base, kind, name, stored)]);
        }
        // One transaction: every layer's key at one revision.
        let layers = self.layers().await?;
        let keys: Vec<(String, String)> = layers
            .iter()
            .map(|ns| {
                let base = format!("{root}/{ns}/");
                let key = format!("{}{name}", crate::key::kind_prefix(&base, kind));
                (base, key)
            })
            .collect();
        let ops: Vec<TxnOp> = keys
            .iter()
            .map(|(_, key)| TxnOp::get(key.as_str(), None))
            .collect();
        let mut kv = self.state.etcd().kv().await?;
        let resp = self
            .state
            .etcd()
            .call(&keys[0].1, None, kv.txn(Txn::new().and_then(ops)))
            .await?;
        let mut out = Vec::with_capacity(layers.len());
        for ((ns, (base, key)), answer) in layers.iter().zip(keys).zip(resp.op_responses()) {
            let found = match answer {
                TxnOpResponse::Get(get) => get.kvs().first().cloned(),
                _ => None,
            };
            let stored = found.map(|kv| self.open_stored(&key, &kv)).transpose()?;
            out.push(one(ns.as_str().into(), base, kind, name, stored));
        }
        Ok(out)
    }

    /// The effective value of a config `name` read from etcd, for a client
    /// that is not live; `None` when no layer gives one.
    pub(super) async fn effective_from_etcd<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        name: &str,
    ) -> Result<Option<Entry<T>>> {
        let layers = self.layer_entries(Kind::Config, name).await?;
        effective::effective(&layers, Kind::Config, name)
            .map(|(stored, _)| stored_entry(key, name, &stored, Source::Etcd))
            .transpose()
    }

    /// The effective values under `prefix`, sorted by name, for a layered
    /// namespace; `None` for one that extends nothing, which lists from
    /// etcd at one revision.
    pub(super) async fn list_layered<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Option<Vec<Entry<T>>>> {
        let Some(stored) = self.effective_under(prefix).await? else {
            return Ok(None);
        };
        stored
            .into_iter()
            .map(|(name, stored)| {
                let key = self.state.space.key_unchecked(Kind::Config, &name);
                stored_entry(&key, &name, &stored, Source::Etcd)
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// The effective values under `prefix` as stored values (secrets
    /// opened, each keeping the envelope of the layer it came from), sorted
    /// by name; `None` for a namespace that extends nothing.
    pub(super) async fn effective_under(
        &self,
        prefix: &str,
    ) -> Result<Option<Vec<(String, Stored)>>> {
        crate::key::validate_prefix(prefix)?;
        let layers = match &self.state.live {
            Some(live) => {
                let mirror = live.read();
                if mirror.layers.is_empty() {
                    return Ok(None);
                }
                let mut names: Vec<_> = mirror
                    .section(Kind::Config)
                    .entries
                    .iter()
                    .filter(|(name, _)| name.starts_with(prefix))
                    .map(|(name, stored)| (name.to_string(), stored.clone()))
                    .collect();
                names.sort_by(|a, b| a.0.cmp(&b.0));
                return Ok(Some(names));
            }
            None => self.layers().await?,
        };
        if layers.len() < 2 {
            return Ok(None);
        }
        let root = &self.state.etcd().root;
        let mut read = Vec::with_capacity(layers.len());
        for ns in layers {
            let base = format!("{root}/{ns}/");
            let mut layer = Layer::new(ns.as_str().into(), base.clone());
            for kv in self.list_layer(&base, prefix).await? {
                let Some((kind, name)) = crate::key::split_key(&base, kv.key()) else {
                    continue;
                };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let stored = self.open_stored(&key, &kv)?;
                layer.section_mut(kind).entries.insert(name.into(), stored);
            }
            read.push(layer);
        }
        let mut names: Vec<_> = effective::names(&read, Kind::Config).into_iter().collect();
        names.sort();
        Ok(Some(
            names
                .into_iter()
                .filter_map(|name| {
                    let (stored, _) = effective::effective(&read, Kind::Config, &name)?;
                    Some((name.to_string(), stored))
                })
                .collect(),
        ))
    }

    /// The policy that holds here: this namespace's joined with every
    /// layer's below it (each `protected` and `secrets` pattern, the most
    /// `approvals`). [`policy`](Self::policy) is the one stored here.
    pub async fn effective_policy(&self) -> Result<crate::policy::Policy> {
        Ok(crate::policy::Policy::clone(&*self.current_policy().await?))
    }

    /// In a layered namespace, a compare-and-set's `expected` names the
    /// effective value's revision (what reads give, 0 for none); the write
    /// goes to the own key, so this answers the own key's revision to
    /// compare with, or [`Error::Conflict`] when the effective value is not
    /// at `expected`. A namespace that extends nothing keeps `expected`.
    pub(super) async fn own_expected(
        &self,
        key: &str,
        name: &str,
        expected: Revision,
    ) -> Result<Revision> {
        let revision = |s: Option<&Stored>| s.map_or(0, |s| s.revision);
        let (current, own) = match &self.state.live {
            // The revision reads gave: that of the last change to the
            // effective value, which a merge of the layers cannot know.
            Some(live) => {
                let mirror = live.read();
                if !mirror.is_layered() {
                    return Ok(expected);
                }
                let current = revision(mirror.section(Kind::Config).entries.get(name));
                (
                    current,
                    revision(mirror.own(Kind::Config).entries.get(name)),
                )
            }
            None => {
                let layers = self.layer_entries(Kind::Config, name).await?;
                if layers.len() < 2 {
                    return Ok(expected);
                }
                let current = effective::effective(&layers, Kind::Config, name);
                let own = own_layer(&layers).and_then(|l| l.get(Kind::Config, name));
                (
                    revision(current.as_ref().map(|(s, _)| s)),
                    revision(own.as_ref()),
                )
            }
        };
        if current != expected {
            return Err(Error::Conflict {
                key: key.to_owned(),
                expected,
                current,
            });
        }
        Ok(own)
    }

    /// The own layer's value of `name`, without what it inherits: what
    /// REST's `?layer=own` reads.
    pub async fn get_own_entry(&self, name: &str) -> Result<Option<Entry<Value>>> {
        let layers = self.layer_entries(Kind::Config, name).await?;
        let key = self.etcd_key(name)?;
        // The own layer, below any overlay a labelled client sees.
        own_layer(&layers)
            .and_then(|l| l.get(Kind::Config, name))
            .map(|stored| stored_entry(&key, name, &stored, stored.origin))
            .transpose()
    }

    /// How the layers make `name`'s effective value: each layer's own value,
    /// the merge, and the namespace every field came from.
    ///
    /// ```no_run
    /// # async fn demo(client: cfgd::Client) -> cfgd::Result<()> {
    /// let explained = client.explain("database.config").await?;
    /// for (field, namespace) in &explained.origins {
    ///     println!("{field} from {namespace}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn explain(&self, name: &str) -> Result<Explained> {
        let key = self.etcd_key(name)?;
        let layers = self.layer_entries(Kind::Config, name).await?;
        let mut values = Vec::with_capacity(layers.len());
        for layer in &layers {
            let stored = layer.get(Kind::Config, name);
            let value = match &stored {
                Some(s) => Some(value::decode::<Value>(&key, s.revision, &s.raw)?),
                None => None,
            };
            values.push((
                layer.namespace.to_string(),
                stored.map_or(0, |s| s.revision),
                value,
            ));
        }
        let pairs = values.iter().map(|(ns, _, v)| (ns.as_str(), v.as_ref()));
        let (value, origins) = match crate::layers::explain(pairs) {
            Some((value, origins)) => (Some(value), origins),
            None => (None, BTreeMap::new()),
        };
        Ok(Explained {
            value,
            layers: values
                .into_iter()
                .map(|(namespace, revision, value)| LayerValue {
                    namespace,
                    revision,
                    value,
                })
                .collect(),
            origins,
        })
    }
}

impl Client {
    /// A value read from etcd as a layer holds it: a secret opened, its
    /// envelope kept beside.
    pub(super) fn open_stored(&self, key: &str, kv: &etcd_client::KeyValue) -> Result<Stored> {
        let mut stored = Stored::from_etcd(kv);
        stored.origin = Source::Etcd;
        if crate::secret::is_sealed(&stored.raw) {
            let plain = self.opened(key, &stored.raw)?.into_owned();
            stored.sealed = Some(std::mem::replace(&mut stored.raw, plain.into()));
        }
        Ok(stored)
    }
}

/// The entry of `stored`, `name`'s value (etcd key `key`) from `source`.
pub(super) fn stored_entry<T: serde::de::DeserializeOwned>(
    key: &str,
    name: &str,
    stored: &Stored,
    source: Source,
) -> Result<Entry<T>> {
    Ok(Entry {
        name: name.to_owned(),
        value: value::decode(key, stored.revision, &stored.raw)?,
        revision: stored.revision,
        create_revision: stored.create_revision,
        version: stored.version,
        source,
        secret: stored.is_secret(),
    })
}

/// A layer holding at most `stored` as `name` in `kind`.
fn one(namespace: Arc<str>, base: String, kind: Kind, name: &str, stored: Option<Stored>) -> Layer {
    let mut layer = Layer::new(namespace, base);
    if let Some(stored) = stored {
        layer.section_mut(kind).entries.insert(name.into(), stored);
    }
    layer
}
