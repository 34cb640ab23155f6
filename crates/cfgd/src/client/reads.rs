//! Reads: from the mirror of a live client, or from etcd.

use std::any::{Any, TypeId};
use std::sync::Arc;

use etcd_client::{GetOptions, KeyValue, SortOrder, SortTarget};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::handle::{Client, Entry};
use super::reach::Reach;
use crate::diff::{self, NamedDiff};
use crate::error::{Error, Result};
use crate::etcd::Pager;
use crate::key::{self, Kind};
use crate::mirror::Stored;
use crate::namespace::LiveNamespace;
use crate::policy::Policy;
use crate::schema::SchemaSet;
use crate::secret;
use crate::types::{Revision, Source};
use crate::value;

/// Keys per page of a newest-first read (the audit trail, read until its
/// caller has enough): bounded so one page of 1 MiB values stays far below
/// the decoding limit.
const LIST_PAGE: i64 = 64;

/// An entry's metadata, without its name and value.
#[derive(Clone, Copy)]
struct Meta {
    revision: Revision,
    create_revision: Revision,
    version: i64,
    source: Source,
    secret: bool,
}

impl Meta {
    fn of(stored: &Stored) -> Self {
        Meta {
            revision: stored.revision,
            create_revision: stored.create_revision,
            version: stored.version,
            source: stored.origin,
            secret: stored.is_secret(),
        }
    }

    fn defaults() -> Self {
        Meta {
            revision: 0,
            create_revision: 0,
            version: 0,
            source: Source::DefaultsFile,
            secret: false,
        }
    }
}

impl Client {
    /// Reads `name` as a `T`; `None` when it does not exist.
    ///
    /// A live client answers from memory: the value etcd's watch last
    /// delivered (or this client last wrote), decoded once per change.
    pub async fn get<T>(&self, name: &str) -> Result<Option<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        if let Some(shared) = &self.state.live {
            // The hot path of a live client: no key string, no entry built.
            key::validate_name(name)?;
            return Ok(self.read_mirror(shared, name)?.map(|(value, _)| value));
        }
        // Boxed so that this future stays small: the etcd request's state
        // would otherwise be moved around on every cached read too.
        Ok(Box::pin(self.get_entry(name)).await?.map(|e| e.value))
    }

    /// Reads `name` as a `T`, or returns `default` when it is missing or
    /// anything goes wrong. Failures are logged (with `tracing`), never returned:
    /// this is the call for code that must keep running on its defaults.
    ///
    /// Precedence: etcd, then the snapshot, then the defaults file, then
    /// `default`.
    pub async fn get_or<T>(&self, name: &str, default: T) -> T
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        match self.get(name).await {
            Ok(Some(value)) => value,
            Ok(None) => default,
            Err(error) => {
                tracing::warn!(name, %error, "config read failed; using the default");
                default
            }
        }
    }

    /// Reads `name` with its revision and provenance ([`Entry::source`]).
    pub async fn get_entry<T>(&self, name: &str) -> Result<Option<Entry<T>>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let key = self.etcd_key(name)?;
        if let Some(shared) = &self.state.live {
            return Ok(self.read_mirror(shared, name)?.map(|(value, meta)| Entry {
                name: name.to_owned(),
                value,
                revision: meta.revision,
                create_revision: meta.create_revision,
                version: meta.version,
                source: meta.source,
                secret: meta.secret,
            }));
        }
        self.effective_from_etcd(&key, name).await
    }

    /// A read from the mirror (then the defaults file) of a live client.
    /// Decoded values are kept first in the entry itself, for the first type
    /// read, then in the bounded cache for other types.
    fn read_mirror<T>(&self, shared: &LiveNamespace, name: &str) -> Result<Option<(T, Meta)>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let count = |hit: bool| {
            let counter = if hit {
                &shared.stats.cache_hits
            } else {
                &shared.stats.cache_misses
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let found = {
            let mirror = shared.read();
            let Some((cache_name, stored)) =
                mirror.section(Kind::Config).entries.get_key_value(name)
            else {
                drop(mirror);
                let defaults = shared.defaults.load();
                let Some(raw) = defaults.get(name) else {
                    return Ok(None);
                };
                let value = value::decode(&self.etcd_key(name)?, 0, raw)?;
                return Ok(Some((value, Meta::defaults())));
            };
            let meta = Meta::of(stored);
            if let Some(value) = stored
                .decoded
                .get()
                .filter(|(type_id, _)| *type_id == TypeId::of::<T>())
                .and_then(|(_, any)| any.downcast_ref::<T>())
            {
                let value = value.clone();
                drop(mirror);
                count(true);
                return Ok(Some((value, meta)));
            }
            (cache_name.clone(), stored.clone(), meta)
        };
        let (cache_name, stored, meta) = found;
        let slot = (cache_name, TypeId::of::<T>());
        let cache = self.state.cache.as_ref();
        if let Some(value) = cache
            .and_then(|c| c.get(&slot))
            .filter(|(revision, _)| *revision == stored.revision)
            .and_then(|(_, any)| any.downcast::<T>().ok())
        {
            count(true);
            return Ok(Some((T::clone(&value), meta)));
        }
        count(false);
        let value: T = value::decode(&self.etcd_key(name)?, stored.revision, &stored.raw)?;
        let shared_value: Arc<dyn Any + Send + Sync> = Arc::new(value.clone());
        if stored
            .decoded
            .set((TypeId::of::<T>(), shared_value.clone()))
            .is_err()
        {
            // The entry already holds another type: the bounded cache
            // keeps this one.
            if let Some(cache) = cache {
                cache.insert(slot, (stored.revision, shared_value));
            }
        }
        Ok(Some((value, meta)))
    }

    /// Reads `name` as it was at `revision` (while etcd still has that
    /// revision; see [`Error::Compacted`]).
    pub async fn get_entry_at<T: DeserializeOwned>(
        &self,
        name: &str,
        revision: Revision,
    ) -> Result<Option<Entry<T>>> {
        let key = self.etcd_key(name)?;
        Ok(match self.fetch(&key, Some(revision)).await? {
            Some(kv) => Some(self.entry(name, &kv)?),
            None => None,
        })
    }

    /// Every entry whose name starts with `prefix` (`""` for the whole
    /// namespace), sorted by name, all read at one revision.
    pub async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<Entry<T>>> {
        if let Some(entries) = self.list_layered(prefix).await? {
            return Ok(entries);
        }
        self.list_raw(Kind::Config, prefix)
            .await?
            .iter()
            .filter_map(|kv| {
                let name = self.state.space.name_of(Kind::Config, kv.key())?;
                Some(self.entry(name, kv))
            })
            .collect()
    }

    pub(super) async fn list_raw(&self, kind: Kind, prefix: &str) -> Result<Vec<KeyValue>> {
        key::validate_prefix(prefix)?;
        self.list_keys(self.state.space.key_unchecked(kind, prefix))
            .await
    }

    /// The config values under `prefix` in the namespace under `base` (a
    /// layer of this one).
    pub(super) async fn list_layer(&self, base: &str, prefix: &str) -> Result<Vec<KeyValue>> {
        self.list_keys(format!("{}{prefix}", key::kind_prefix(base, Kind::Config)))
            .await
    }

    /// Every key that starts with `start`.
    pub(super) async fn list_keys(&self, start: String) -> Result<Vec<KeyValue>> {
        let end = key::prefix_end(start.clone().into_bytes());
        let mut pager = Pager::new(start.clone().into_bytes(), end, None);
        let mut out = Vec::new();
        loop {
            let kv = self.state.etcd().kv().await?;
            let page = pager.next(|from, options| {
                let mut kv = kv.clone();
                async move { kv.get(from, Some(options)).await }
            });
            match self.state.etcd().call(&start, None, page).await? {
                Some(page) => out.extend(page),
                None => return Ok(out),
            }
        }
    }

    /// The namespace's JSON Schemas, compiled: a live client's, kept current
    /// by the watch; otherwise read from etcd now.
    pub(super) async fn schemas(&self) -> Result<Arc<SchemaSet>> {
        if let Some(namespace) = &self.state.live {
            return Ok(namespace.schemas.load_full());
        }
        let stored = self.list_raw(Kind::Schemas, "").await?;
        Ok(Arc::new(self.compile_schemas(&stored)))
    }

    /// The schemas among `stored` (keys read from etcd), compiled.
    fn compile_schemas(&self, stored: &[KeyValue]) -> SchemaSet {
        let raws: Vec<(&str, Arc<[u8]>, Revision)> = stored
            .iter()
            .filter_map(|kv| {
                let pattern = self.state.space.name_of(Kind::Schemas, kv.key())?;
                Some((pattern, Arc::from(kv.value()), kv.mod_revision()))
            })
            .collect();
        SchemaSet::from_store(
            raws.iter().map(|(p, raw, r)| (*p, raw, *r)),
            &SchemaSet::default(),
        )
    }

    /// The namespace's policy: a live client's, kept current by the watch;
    /// otherwise read from etcd now. The default when none is stored.
    pub(crate) async fn current_policy(&self) -> Result<Arc<Policy>> {
        if let Some(namespace) = &self.state.live {
            return Ok(namespace.policy.load_full());
        }
        // Joined across the layers, so that a parent's patterns hold here.
        let key = self.state.space.key_unchecked(Kind::Policy, "");
        let layers = self.layer_entries(Kind::Policy, "").await?;
        Ok(Arc::new(
            crate::effective::effective(&layers, Kind::Policy, "")
                .map_or_else(Policy::default, |(s, _)| Policy::from_stored(&key, &s.raw)),
        ))
    }

    /// What an unconditional write of `key` needs first: the schemas, the
    /// policy, and the revision the key is believed to be at. A live client
    /// knows them all; another reads them in one request, so that its write
    /// then takes one more, not two (a guessed revision costs a failed
    /// compare).
    pub(super) async fn rules_and_revision(
        &self,
        key: &str,
    ) -> Result<(Arc<SchemaSet>, Arc<Policy>, Revision, Option<Reach>)> {
        if let Some(namespace) = &self.state.live {
            return Ok((
                self.schemas().await?,
                namespace.policy.load_full(),
                self.believed_revision(key),
                None,
            ));
        }
        let start = self.state.space.key_unchecked(Kind::Schemas, "");
        let end = key::prefix_end(start.clone().into_bytes());
        let policy_key = self.state.space.key_unchecked(Kind::Policy, "");
        let txn = etcd_client::Txn::new().and_then([
            etcd_client::TxnOp::get(start.as_str(), Some(GetOptions::new().with_range(end))),
            etcd_client::TxnOp::get(policy_key.as_str(), None),
            etcd_client::TxnOp::get(key, Some(GetOptions::new().with_keys_only())),
            etcd_client::TxnOp::get(self.state.space.key_unchecked(Kind::Meta, ""), None),
            self.children_probe(),
        ]);
        let mut kv = self.state.etcd().kv().await?;
        let resp = self.state.etcd().call(key, None, kv.txn(txn)).await?;
        let answers = resp.op_responses();
        let ranges: Vec<&[KeyValue]> = answers
            .iter()
            .filter_map(|op| match op {
                etcd_client::TxnOpResponse::Get(get) => Some(get.kvs()),
                _ => None,
            })
            .collect();
        let [stored, policy, current, meta, children] = ranges[..] else {
            unreachable!("a transaction of five reads answers five reads");
        };
        let schemas = self.compile_schemas(stored);
        let layered = meta.first().is_some_and(|kv| {
            !crate::meta::Meta::from_stored(&policy_key, kv.value())
                .extends
                .is_empty()
        });
        let policy = match layered {
            true => Policy::clone(&*self.current_policy().await?),
            false => policy.first().map_or_else(Policy::default, |kv| {
                Policy::from_stored(&policy_key, kv.value())
            }),
        };
        let revision = current.first().map_or(0, |kv| kv.mod_revision());
        let reach = Reach {
            layered,
            extended: !children.is_empty(),
        };
        Ok((Arc::new(schemas), Arc::new(policy), revision, Some(reach)))
    }

    /// The namespaces that hold anything under this client's root, sorted:
    /// one keys-only read per namespace, each jumping past the one before.
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        let root = format!("{}/", self.state.etcd().root);
        let end = key::prefix_end(root.clone().into_bytes());
        let mut from = root.clone().into_bytes();
        let mut out = Vec::new();
        loop {
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_keys_only()
                .with_limit(1);
            let mut kv = self.state.etcd().kv().await?;
            let resp = self
                .state
                .etcd()
                .call(&root, None, kv.get(from.clone(), Some(options)))
                .await?;
            let Some(first) = resp.kvs().first() else {
                return Ok(out);
            };
            let rest = &first.key()[root.len()..];
            let Some(slash) = rest.iter().position(|&b| b == b'/') else {
                // A key with no namespace: step past it.
                from = first.key().to_vec();
                from.push(0);
                continue;
            };
            let namespace = String::from_utf8_lossy(&rest[..slash]).into_owned();
            from = key::prefix_end(format!("{root}{namespace}/").into_bytes());
            if key::validate_namespace(&namespace).is_ok() {
                out.push(namespace);
            }
        }
    }

    /// How many values and how many flags the namespace holds (the shared
    /// `$evaluators` not counted as a flag), read from etcd.
    pub async fn counts(&self) -> Result<(u64, u64)> {
        let mut counts = [0u64; 2];
        for (i, kind) in [Kind::Config, Kind::Flags].into_iter().enumerate() {
            let start = self.state.space.kind_prefix(kind);
            let end = key::prefix_end(start.clone().into_bytes());
            let mut kv = self.state.etcd().kv().await?;
            let options = GetOptions::new().with_range(end).with_count_only();
            let resp = self
                .state
                .etcd()
                .call(&start, None, kv.get(start.as_str(), Some(options)))
                .await?;
            counts[i] = resp.count().max(0) as u64;
        }
        let evaluators = self
            .state
            .space
            .key_unchecked(Kind::Flags, crate::flags::EVALUATORS);
        if counts[1] > 0 && self.fetch(&evaluators, None).await?.is_some() {
            counts[1] -= 1;
        }
        Ok((counts[0], counts[1]))
    }

    /// What [`import`](Self::import) of `document` (a JSON object of
    /// name → value) would change: for each name it holds, the stored value
    /// against the document's. Names the document leaves out are not
    /// compared, as import leaves them alone.
    pub async fn diff_document(&self, document: &str) -> Result<Vec<NamedDiff>> {
        let wanted: serde_json::Map<String, Value> =
            serde_json::from_str(document).map_err(|cause| Error::InvalidJson {
                key: format!("{}config (document)", self.state.space.base()),
                cause,
            })?;
        for name in wanted.keys() {
            key::validate_name(name)?;
        }
        let (stored, secrets) = self.document("", false).await?;
        let changes = diff::diff_named(
            wanted
                .iter()
                .map(|(name, value)| (name.as_str(), stored.get(name), Some(value))),
        );
        self.redacted(&secrets, changes).await
    }

    /// What differs between this namespace and `other`'s under `prefix`:
    /// `before` is `other` (prod, say), `after` this one (staging), so the
    /// diff reads as what promoting this one would change there.
    pub async fn diff_namespace(&self, other: &Client, prefix: &str) -> Result<Vec<NamedDiff>> {
        self.diff_with(other, prefix, false).await
    }

    /// [`diff_namespace`](Self::diff_namespace) of the two namespaces' own
    /// layers, without what either inherits: one layer against another.
    pub async fn diff_own_layers(&self, other: &Client, prefix: &str) -> Result<Vec<NamedDiff>> {
        self.diff_with(other, prefix, true).await
    }

    async fn diff_with(&self, other: &Client, prefix: &str, own: bool) -> Result<Vec<NamedDiff>> {
        let (mine, mut secrets) = self.document_of(prefix, false, own).await?;
        let (theirs, their_secrets) = other.document_of(prefix, false, own).await?;
        secrets.extend(their_secrets);
        let names: std::collections::BTreeSet<&String> = mine.keys().chain(theirs.keys()).collect();
        let changes = diff::diff_named(
            names
                .into_iter()
                .map(|name| (name.as_str(), theirs.get(name), mine.get(name))),
        );
        self.redacted(&secrets, changes).await
    }

    /// Reads the keys under `start` (a prefix ending in `/`), newest key
    /// first, a page at a time, handing each to `each` until it says stop
    /// (false). True when every key was read.
    pub(super) async fn newest_first(
        &self,
        start: &str,
        mut each: impl FnMut(&KeyValue) -> bool,
    ) -> Result<bool> {
        let mut upper = key::prefix_end(start.as_bytes().to_vec());
        loop {
            let options = GetOptions::new()
                .with_range(upper.clone())
                .with_limit(LIST_PAGE)
                .with_sort(SortTarget::Key, SortOrder::Descend);
            let mut kv = self.state.etcd().kv().await?;
            let resp = self
                .state
                .etcd()
                .call(start, None, kv.get(start, Some(options)))
                .await?;
            for kv in resp.kvs() {
                if !each(kv) {
                    return Ok(false);
                }
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => upper = last.key().to_vec(),
                _ => return Ok(true),
            }
        }
    }

    pub(crate) async fn fetch(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<Option<KeyValue>> {
        let options = revision.map(|r| GetOptions::new().with_revision(r));
        let mut kv = self.state.etcd().kv().await?;
        let mut resp = self
            .state
            .etcd()
            .call(key, revision, kv.get(key, options))
            .await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    pub(super) fn entry<T: DeserializeOwned>(&self, name: &str, kv: &KeyValue) -> Result<Entry<T>> {
        self.entry_of(Kind::Config, name, kv)
    }

    pub(super) fn entry_of<T: DeserializeOwned>(
        &self,
        kind: Kind,
        name: &str,
        kv: &KeyValue,
    ) -> Result<Entry<T>> {
        let revision = kv.mod_revision();
        let key = self.state.space.key_unchecked(kind, name);
        let value = value::decode(&key, revision, &self.opened(&key, kv.value())?)?;
        Ok(Entry {
            name: name.to_owned(),
            value,
            revision,
            create_revision: kv.create_revision(),
            version: kv.version(),
            source: Source::Etcd,
            secret: secret::is_sealed(kv.value()),
        })
    }
}
