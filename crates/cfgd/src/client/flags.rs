//! Feature flags: stored flag definitions, the operations people run on
//! them (enable, disable, roll out), and the [`Flags`] evaluator.

use std::future::Future;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::handle::{Client, Entry, ImportReport};
use crate::error::{Error, Result};
use crate::flags::{self, Rollout};
use crate::key::Kind;
use crate::namespace::LiveNamespace;
use crate::types::{KeepAlive, Revision};
use crate::value;

/// Feature flags: definitions in flagd's format under
/// `{root}/{namespace}/flags/{name}`, shared evaluators under
/// `flags/$evaluators`. Every write is checked strictly first
/// ([`flags::validate_flag`]); nothing invalid is stored.
impl Client {
    /// Evaluates this namespace's flags, kept current by the watch. An
    /// evaluation never touches etcd. Needs a live client.
    pub fn flags(&self) -> Result<Flags> {
        let namespace = self.live("flags")?;
        Ok(Flags {
            namespace: namespace.clone(),
            _client: self.keep_alive(),
        })
    }

    /// The etcd key that holds flag `name`.
    pub fn flag_etcd_key(&self, name: &str) -> Result<String> {
        self.flag_key(name)
    }

    pub(crate) fn flag_key(&self, name: &str) -> Result<String> {
        if name == flags::EVALUATORS {
            return Ok(self.state.space.key_unchecked(Kind::Flags, name));
        }
        self.state.space.key(Kind::Flags, name)
    }

    /// The stored evaluators and their revision (empty and 0 when none).
    async fn evaluators(&self) -> Result<(flags::Evaluators, Revision)> {
        let key = self.flag_key(flags::EVALUATORS)?;
        match self.fetch(&key, None).await? {
            None => Ok((flags::Evaluators::new(), 0)),
            Some(kv) => match serde_json::from_slice(kv.value()) {
                Ok(Value::Object(map)) => Ok((map, kv.mod_revision())),
                Ok(_) => Err(Error::InvalidFlag {
                    key,
                    reason: "the stored $evaluators is not a JSON object".into(),
                }),
                Err(cause) => Err(Error::CorruptValue {
                    key,
                    revision: kv.mod_revision(),
                    cause,
                }),
            },
        }
    }

    pub(super) async fn checked_flag(
        &self,
        name: &str,
        definition: &Value,
    ) -> Result<(String, Vec<u8>)> {
        let key = self.flag_key(name)?;
        if name == flags::EVALUATORS {
            return Err(Error::InvalidName {
                name: name.to_owned(),
                reason: "$evaluators is written with set_evaluators",
            });
        }
        let (evaluators, _) = self.evaluators().await?;
        flags::validate_flag(&key, definition, &evaluators)?;
        let bytes = value::encode(&key, definition)?;
        Ok((key, bytes))
    }

    /// Checks a flag definition as [`set_flag`](Self::set_flag) would,
    /// writing nothing: what an editor shows before anything is saved.
    pub async fn check_flag(&self, name: &str, definition: &Value) -> Result<()> {
        self.checked_flag(name, definition).await.map(|_| ())
    }

    /// Stores a flag definition after checking it; returns the revision.
    pub async fn set_flag(&self, name: &str, definition: &Value) -> Result<Revision> {
        let (key, bytes) = self.checked_flag(name, definition).await?;
        self.put(key, bytes, "flag.set").await
    }

    /// [`set_flag`](Self::set_flag) from JSON text, as read from a file.
    pub async fn set_flag_json(&self, name: &str, json: &str) -> Result<Revision> {
        let key = self.flag_key(name)?;
        let definition: Value =
            serde_json::from_str(json).map_err(|cause| Error::InvalidJson { key, cause })?;
        self.set_flag(name, &definition).await
    }

    /// [`set_flag`](Self::set_flag) only if the flag is still at
    /// `expected` (0: only if absent); [`Error::Conflict`] otherwise.
    pub async fn set_flag_if(
        &self,
        name: &str,
        definition: &Value,
        expected: Revision,
    ) -> Result<Revision> {
        let (key, bytes) = self.checked_flag(name, definition).await?;
        self.put_if(key, bytes, expected, "flag.set").await
    }

    /// A flag's stored definition, read from etcd.
    pub async fn get_flag(&self, name: &str) -> Result<Option<Entry<Value>>> {
        let key = self.flag_key(name)?;
        match self.fetch(&key, None).await? {
            Some(kv) => Ok(Some(self.entry_of(Kind::Flags, name, &kv)?)),
            None => Ok(None),
        }
    }

    /// Deletes a flag; `None` when there was none.
    pub async fn delete_flag(&self, name: &str) -> Result<Option<Revision>> {
        self.delete_key(self.flag_key(name)?, "flag.delete").await
    }

    /// Deletes a flag only if it is still at `expected`; otherwise
    /// [`Error::Conflict`]. A flag that is already gone is
    /// [`Error::NotFound`].
    pub async fn delete_flag_if(&self, name: &str, expected: Revision) -> Result<Revision> {
        self.delete_key_if(self.flag_key(name)?, expected, "flag.delete")
            .await
    }

    /// Every flag definition (not the evaluators), sorted by name.
    pub async fn list_flags(&self) -> Result<Vec<Entry<Value>>> {
        let mut out = Vec::new();
        for kv in self.list_raw(Kind::Flags, "").await? {
            match self.state.space.name_of(Kind::Flags, kv.key()) {
                Some(name) if name != flags::EVALUATORS => {
                    out.push(self.entry_of(Kind::Flags, name, &kv)?)
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Every flag and the shared evaluators as one flagd document:
    /// `{"flags": {...}, "$evaluators": {...}}`.
    pub async fn export_flags(&self) -> Result<Value> {
        let mut stored = Vec::new();
        for kv in self.list_raw(Kind::Flags, "").await? {
            if let Some(name) = self.state.space.name_of(Kind::Flags, kv.key()) {
                let entry: Entry<Value> = self.entry_of(Kind::Flags, name, &kv)?;
                stored.push((entry.name, entry.value));
            }
        }
        Ok(flags::document(stored))
    }

    /// [`export_flags`](Self::export_flags) as compact JSON text, from
    /// memory: what flagd's sync protocol sends. A live client answers from
    /// its mirror (so it answers while etcd is away); one built with
    /// `live(false)` gets [`Error::NotLive`].
    pub fn flag_document(&self) -> Result<String> {
        let namespace = self.live("flag_document")?;
        let mirror = namespace.read();
        // A definition that is not JSON (written by another tool) is left out.
        let stored = mirror
            .section(Kind::Flags)
            .entries
            .iter()
            .filter_map(|(name, stored)| {
                let value = serde_json::from_slice::<Value>(&stored.raw).ok()?;
                Some((&**name, value))
            });
        Ok(flags::document(stored).to_string())
    }

    /// Loads a flagd document: every flag is checked against the document's
    /// `$evaluators` first, and so is every stored flag the document leaves
    /// alone; only then are the flags (and the evaluators) that differ
    /// written, the evaluators first. Stored flags the document does not
    /// name are kept. `dry_run` reports without writing.
    pub async fn import_flags(&self, document: &str, dry_run: bool) -> Result<ImportReport> {
        let doc = flags::parse_document(document)?;
        let mut wanted = Vec::with_capacity(doc.flags.len() + 1);
        if !doc.evaluators.is_empty() {
            let key = self.flag_key(flags::EVALUATORS)?;
            let bytes = value::encode(&key, &Value::Object(doc.evaluators.clone()))?;
            wanted.push((flags::EVALUATORS.to_owned(), key, bytes));
        }
        for (name, definition) in &doc.flags {
            let key = self.flag_key(name)?;
            flags::validate_flag(&key, definition, &doc.evaluators)?;
            let bytes = value::encode(&key, definition)?;
            wanted.push((name.clone(), key, bytes));
        }
        if !doc.evaluators.is_empty() {
            for stored in self.list_flags().await? {
                if !doc.flags.contains_key(&stored.name) {
                    let key = self.flag_key(&stored.name)?;
                    flags::validate_flag(&key, &stored.value, &doc.evaluators)?;
                }
            }
        }
        self.write_changed(Kind::Flags, wanted, dry_run, "flag.import")
            .await
    }

    /// Replaces the shared evaluators, refusing a change that would leave
    /// any stored flag with a `$ref` to nothing (or otherwise invalid).
    pub async fn set_evaluators(&self, evaluators: &flags::Evaluators) -> Result<Revision> {
        let key = self.flag_key(flags::EVALUATORS)?;
        let (_, current) = self.evaluators().await?;
        for flag in self.list_flags().await? {
            let flag_key = self.flag_key(&flag.name)?;
            flags::validate_flag(&flag_key, &flag.value, evaluators)?;
        }
        let bytes = value::encode(&key, &Value::Object(evaluators.clone()))?;
        self.put_if(key, bytes, current, "flag.evaluators").await
    }

    /// Changes a stored flag definition with `edit` and writes it back with
    /// compare-and-set on the revision read, checked as
    /// [`set_flag`](Self::set_flag) checks it. A concurrent write makes it
    /// fail with [`Error::Conflict`] rather than be overwritten; a missing
    /// flag is [`Error::NotFound`]; an error from `edit` writes nothing.
    ///
    /// ```no_run
    /// # async fn demo(client: cfgd::Client) -> cfgd::Result<()> {
    /// client
    ///     .update_flag("new-checkout", |flag| {
    ///         flag.insert("defaultVariant".into(), "on".into());
    ///         Ok(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn update_flag<F>(&self, name: &str, edit: F) -> Result<Revision>
    where
        F: FnOnce(&mut Map<String, Value>) -> Result<()>,
    {
        let key = self.flag_key(name)?;
        let Some(entry) = self.get_flag(name).await? else {
            return Err(Error::NotFound {
                key,
                revision: None,
            });
        };
        let mut definition = entry.value;
        let Value::Object(map) = &mut definition else {
            return Err(Error::InvalidFlag {
                key,
                reason: "the stored definition is not a JSON object".into(),
            });
        };
        edit(map)?;
        self.set_flag_if(name, &definition, entry.revision).await
    }

    /// Sets a flag's `state` to `ENABLED`, keeping the rest of it.
    pub async fn enable_flag(&self, name: &str) -> Result<Revision> {
        self.set_flag_state(name, "ENABLED").await
    }

    /// Sets a flag's `state` to `DISABLED`: evaluations then answer the
    /// caller's default with reason `DISABLED`.
    pub async fn disable_flag(&self, name: &str) -> Result<Revision> {
        self.set_flag_state(name, "DISABLED").await
    }

    async fn set_flag_state(&self, name: &str, state: &str) -> Result<Revision> {
        self.update_flag(name, |flag| {
            flag.insert("state".into(), state.into());
            Ok(())
        })
        .await
    }

    /// Replaces a flag's targeting with `rollout`'s `fractional` split.
    /// The variants must be the flag's own; that is checked with the rest
    /// of the definition before anything is written.
    pub async fn set_rollout(&self, name: &str, rollout: &Rollout) -> Result<Revision> {
        let key = self.flag_key(name)?;
        let targeting = rollout.targeting(&key)?;
        self.update_flag(name, |flag| {
            let variants = flag.get("variants").and_then(Value::as_object);
            let unknown = rollout
                .buckets()
                .iter()
                .find(|(variant, _)| !variants.is_some_and(|v| v.contains_key(variant)));
            if let Some((variant, _)) = unknown {
                let known: Vec<&str> = variants
                    .map(|v| v.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                return Err(Error::InvalidFlag {
                    key,
                    reason: format!(
                        "the rollout names variant {variant:?}, which the flag does not have \
                         (it has {})",
                        known.join(", ")
                    ),
                });
            }
            flag.insert("targeting".into(), targeting);
            Ok(())
        })
        .await
    }
}

/// Evaluates a namespace's flags from memory. Made by [`Client::flags`];
/// cheap to clone.
#[derive(Clone)]
pub struct Flags {
    namespace: Arc<LiveNamespace>,
    _client: KeepAlive,
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flags").finish_non_exhaustive()
    }
}

impl Flags {
    /// Full details of one evaluation: value, variant, reason, error code.
    pub fn details<T: flags::FlagValue>(
        &self,
        key: &str,
        default: T,
        context: &Value,
    ) -> flags::Details<T> {
        self.namespace.flags.load().evaluate(key, default, context)
    }

    /// A boolean flag, or `default` on any problem.
    pub fn bool(&self, key: &str, default: bool, context: &Value) -> bool {
        self.details(key, default, context).value
    }

    /// A string flag, or `default` on any problem.
    pub fn string(&self, key: &str, default: &str, context: &Value) -> String {
        self.details(key, default.to_owned(), context).value
    }

    /// An integer flag, or `default` on any problem.
    pub fn int(&self, key: &str, default: i64, context: &Value) -> i64 {
        self.details(key, default, context).value
    }

    /// A float flag, or `default` on any problem.
    pub fn float(&self, key: &str, default: f64, context: &Value) -> f64 {
        self.details(key, default, context).value
    }

    /// An object flag, or `default` on any problem.
    pub fn object(&self, key: &str, default: Value, context: &Value) -> Value {
        self.details(key, default, context).value
    }

    /// The compiled flags as they are now.
    pub fn snapshot(&self) -> flags::FlagSet {
        flags::FlagSet::clone(&self.namespace.flags.load())
    }

    /// Resolves at the next change of any flag (or of the evaluators) after
    /// this call: it starts listening at once, not when first polled.
    pub fn changed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.namespace.flag_changes.subscribe();
        rx.mark_unchanged();
        async move {
            let _ = rx.changed().await;
        }
    }
}
