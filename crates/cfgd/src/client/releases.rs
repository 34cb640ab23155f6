//! Releases: a set of values (and flags) published as one etcd
//! transaction, compare-and-set on every key it touches, with one audit
//! record that is the release; and reverting one.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde_json::Value;

use super::handle::Client;
use super::writes::MAX_TXN_OPS;
use crate::audit::{AuditName, AuditRecord};
use crate::diff::{self, NamedDiff};
use crate::error::{Error, Result};
use crate::etcd::header_revision;
use crate::flags;
use crate::key::Kind;
use crate::policy::{Policy, REDACTED};
use crate::types::Revision;
use crate::value;

/// The most changes one release holds: one transaction, less its record.
pub const RELEASE_MAX: usize = MAX_TXN_OPS - 1;

/// One key a release writes.
#[derive(Debug, Clone)]
pub(crate) struct Write {
    pub(crate) key: String,
    /// The new value; `None` deletes (a revert of a name the release made).
    pub(super) bytes: Option<Vec<u8>>,
    /// The revision it must still be at (0: absent).
    pub(super) before: Revision,
}

/// A release checked and compared with what is stored, not yet written:
/// what [`Client::publish`] writes, and what a dry run shows.
#[derive(Debug, Clone)]
pub struct ReleasePlan {
    pub(crate) writes: Vec<Write>,
    /// What it changes, name by name (flags as `flags/{name}`).
    pub changes: Vec<NamedDiff>,
    /// Every name the document held (flags as `flags/{name}`), with the
    /// revision it was read at (0: absent), changed or not.
    pub(crate) read: Vec<(String, Revision)>,
}

impl ReleasePlan {
    /// A plan of `writes` made elsewhere (promoting an overlay).
    pub(super) fn of(
        writes: Vec<Write>,
        changes: Vec<NamedDiff>,
        read: Vec<(String, Revision)>,
    ) -> Self {
        ReleasePlan {
            writes,
            changes,
            read,
        }
    }
}

/// A published release.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Release {
    /// Its id: the id of its audit record (`cfgctl release show ID`).
    pub id: String,
    /// The revision every change of it has.
    pub revision: Revision,
    /// What it changed.
    pub changes: Vec<NamedDiff>,
}

/// Hides the values, in `changes`, of the names `policy` calls secret:
/// governance views (releases, change requests) show that a secret changed
/// and where, never to what.
pub(super) fn redact_secrets(policy: &Policy, changes: &mut [NamedDiff]) {
    for change in changes {
        if policy.is_secret(&change.name) {
            change.redact(REDACTED);
        }
    }
}

/// What a change request's merge, or a schedule's application, adds to its
/// release's transaction.
pub(crate) struct RequestStep<'a> {
    /// The change request it merges, which the audit record names.
    pub(crate) id: Option<&'a str>,
    /// Given the release's id: what the transaction also compares (the
    /// request or schedule unchanged) and writes (it, done).
    pub(crate) with: StepOps<'a>,
}

/// Given a release's id, what a step adds to its transaction.
pub(crate) type StepOps<'a> = Box<dyn FnOnce(&str) -> (Vec<Compare>, Vec<TxnOp>) + Send + 'a>;

impl Client {
    /// Checks a release and compares it with what is stored, writing
    /// nothing: `config` is a JSON object of name → value, `flags` an
    /// optional flagd document. Names, JSON, schemas and flag definitions
    /// are all checked first; only what differs is planned. Refused when it
    /// holds more than [`RELEASE_MAX`] changes.
    ///
    /// Names the namespace policy protects are refused
    /// ([`Error::Protected`]) unless the client is
    /// [`forced`](Client::forced): they change through change requests.
    pub async fn plan_release(&self, config: &str, flags: Option<&str>) -> Result<ReleasePlan> {
        let policy = self.current_policy().await?;
        let plan = self.plan(config, flags, &policy).await?;
        self.admit(&policy, plan.writes.iter().map(|w| w.key.as_str()))?;
        Ok(plan)
    }

    /// [`plan_release`](Self::plan_release) whatever `policy` protects; its
    /// secrets are redacted in the changes.
    pub(crate) async fn plan(
        &self,
        config: &str,
        flags: Option<&str>,
        policy: &Policy,
    ) -> Result<ReleasePlan> {
        let wanted: BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(config).map_err(|cause| Error::InvalidJson {
                key: format!("{}config (release document)", self.state.space.base()),
                cause,
            })?;
        let schemas = self.schemas().await?;
        let mut new = Vec::new();
        for (name, raw) in &wanted {
            let key = self.etcd_key(name)?;
            let bytes = value::compact_text(&key, raw.get())?;
            // A change request keeps its secrets sealed; merging opens them.
            let bytes = self.opened(&key, &bytes)?.into_owned();
            // Checked where it reaches: in a chain, the effective values.
            if !self.check_reach(name, Some(&bytes), None).await? {
                self.unquoted(name, schemas.check(&key, name, &bytes))
                    .await?;
            }
            new.push((Kind::Config, name.clone(), key, bytes));
        }
        if let Some(document) = flags {
            let doc = flags::parse_document(document)?;
            for (name, definition) in &doc.flags {
                let key = self.flag_etcd_key(name)?;
                flags::validate_flag(&key, definition, &doc.evaluators)?;
                new.push((
                    Kind::Flags,
                    name.clone(),
                    key.clone(),
                    value::encode(&key, definition)?,
                ));
            }
        }
        // Each section read once, not a request per name.
        let config = self.stored(Kind::Config).await?;
        let stored_flags = if flags.is_some() {
            self.stored(Kind::Flags).await?
        } else {
            Default::default()
        };
        let mut writes = Vec::new();
        let mut pairs = Vec::new();
        let mut read = Vec::new();
        for (kind, name, key, bytes) in new {
            let section = if kind == Kind::Flags {
                &stored_flags
            } else {
                &config
            };
            let stored = section.get(&name);
            let before = stored.map_or(0, |(revision, _)| *revision);
            let label = match kind {
                Kind::Flags => format!("flags/{name}"),
                _ => name.clone(),
            };
            read.push((label.clone(), before));
            if stored.is_some_and(|(_, old)| *old == bytes) {
                continue;
            }
            let old: Option<Value> = stored.and_then(|(_, old)| serde_json::from_slice(old).ok());
            let now: Value = serde_json::from_slice(&bytes).expect("checked JSON");
            pairs.push((label, old, now));
            let bytes = self.sealed_for(policy, &key, bytes)?;
            writes.push(Write {
                key,
                bytes: Some(bytes),
                before,
            });
        }
        if writes.len() > RELEASE_MAX {
            return Err(Error::ReleaseTooLarge {
                count: writes.len(),
                limit: RELEASE_MAX,
            });
        }
        let mut changes = diff::diff_named(
            pairs
                .iter()
                .map(|(n, o, v)| (n.as_str(), o.as_ref(), Some(v))),
        );
        redact_secrets(policy, &mut changes);
        Ok(ReleasePlan {
            writes,
            changes,
            read,
        })
    }

    /// Publishes a plan as one etcd transaction: every key must still be at
    /// the revision the plan read, or nothing is written and the first key
    /// that moved is named ([`Error::Conflict`]). Watchers see every change
    /// at one revision. A plan with no change writes nothing.
    pub async fn publish(&self, plan: &ReleasePlan) -> Result<Option<Release>> {
        self.publish_as(plan, "release", None).await
    }

    /// [`plan_release`](Self::plan_release), then (unless `dry_run`)
    /// [`publish`](Self::publish). `None` when nothing differs or with
    /// `dry_run`; the plan's changes are in the answer either way.
    pub async fn apply(
        &self,
        config: &str,
        flags: Option<&str>,
        dry_run: bool,
    ) -> Result<(ReleasePlan, Option<Release>)> {
        let plan = self.plan_release(config, flags).await?;
        let release = if dry_run {
            None
        } else {
            self.publish(&plan).await?
        };
        Ok((plan, release))
    }

    /// Publishes `plan` as `action`. A change request's merge adds `step`:
    /// its request's id, and what else the transaction compares and writes
    /// (the request itself), given the release's id.
    pub(crate) async fn publish_as(
        &self,
        plan: &ReleasePlan,
        action: &str,
        step: Option<RequestStep<'_>>,
    ) -> Result<Option<Release>> {
        if plan.writes.is_empty() {
            return Ok(None);
        }
        let mut compares: Vec<Compare> = plan
            .writes
            .iter()
            .map(|w| Compare::mod_revision(w.key.as_str(), CompareOp::Equal, w.before))
            .collect();
        let mut ops: Vec<TxnOp> = plan
            .writes
            .iter()
            .map(|w| match &w.bytes {
                Some(bytes) => TxnOp::put(w.key.as_str(), bytes.clone(), None),
                None => TxnOp::delete(w.key.as_str(), None),
            })
            .collect();
        let befores: Vec<(&str, Revision)> = plan
            .writes
            .iter()
            .map(|w| (w.key.as_str(), w.before))
            .collect();
        let (record, id) = self.audit_record(action, &befores, step.as_ref().and_then(|s| s.id));
        ops.push(record);
        if let Some(step) = step {
            let (more_compares, more_ops) = (step.with)(&id);
            compares.extend(more_compares);
            ops.extend(more_ops);
        }
        compares.extend(self.fence_compare());
        let first = &plan.writes[0].key;
        let mut kv = self.state.etcd().kv().await?;
        let resp = self
            .state
            .etcd()
            .call(first, None, kv.txn(Txn::new().when(compares).and_then(ops)))
            .await?;
        if !resp.succeeded() {
            if let Some(fenced) = self.fence_lost(first).await {
                return Err(fenced);
            }
            let batch: Vec<(String, Vec<u8>, Revision)> = plan
                .writes
                .iter()
                .map(|w| (w.key.clone(), Vec::new(), w.before))
                .collect();
            return Err(self.first_conflict(&batch).await);
        }
        let revision = header_revision(resp.header());
        for w in &plan.writes {
            self.applied(&w.key, w.bytes.clone(), revision);
        }
        Ok(Some(Release {
            id,
            revision,
            changes: plan.changes.clone(),
        }))
    }

    /// Releases (and reverts of them), newest first, at most `limit`.
    pub async fn releases(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        // Read more than `limit` records: other writes sit between them.
        let mut out: Vec<AuditRecord> = self
            .audit_log("", None, limit.saturating_mul(20).max(1000))
            .await?
            .into_iter()
            .filter(AuditRecord::is_release)
            .collect();
        out.truncate(limit);
        Ok(out)
    }

    /// A release's record and what it changed, each name's value before it
    /// against the value it wrote (while etcd still has those revisions).
    pub async fn release(&self, id: &str) -> Result<(AuditRecord, Vec<NamedDiff>)> {
        let record = self.release_record(id).await?;
        let mut pairs = Vec::new();
        for name in &record.names {
            let (key, label) = self.key_and_label(name);
            let json = |kv: Option<etcd_client::KeyValue>| {
                kv.and_then(|kv| serde_json::from_slice::<Value>(kv.value()).ok())
            };
            let before = json(self.fetch(&key, Some(record.revision - 1)).await?);
            let after = json(self.fetch(&key, Some(record.revision)).await?);
            pairs.push((label, before, after));
        }
        let mut changes = diff::diff_named(
            pairs
                .iter()
                .map(|(n, b, a)| (n.as_str(), b.as_ref(), a.as_ref())),
        );
        redact_secrets(&*self.current_policy().await?, &mut changes);
        Ok((record, changes))
    }

    /// Restores every key of release `id` to its value before it, as one new
    /// release, compare-and-set on the release's own revision: refused,
    /// naming them, when any key changed since ([`Error::ReleaseMoved`]).
    pub async fn revert_release(&self, id: &str) -> Result<Release> {
        let record = self.release_record(id).await?;
        let mut writes = Vec::new();
        let mut moved = Vec::new();
        let mut pairs = Vec::new();
        for name in &record.names {
            let (key, label) = self.key_and_label(name);
            let now = self.fetch(&key, None).await?;
            if now.as_ref().map_or(0, |kv| kv.mod_revision()) != record.revision {
                moved.push(name.name.clone());
                continue;
            }
            let old = self.fetch(&key, Some(record.revision - 1)).await?;
            let bytes = old.map(|kv| kv.value().to_vec());
            let json = |b: Option<&[u8]>| b.and_then(|b| serde_json::from_slice::<Value>(b).ok());
            pairs.push((
                label,
                json(now.as_ref().map(|kv| kv.value())),
                json(bytes.as_deref()),
            ));
            writes.push(Write {
                key,
                bytes,
                before: record.revision,
            });
        }
        if !moved.is_empty() {
            return Err(Error::ReleaseMoved {
                id: id.to_owned(),
                names: moved,
            });
        }
        let mut changes = diff::diff_named(
            pairs
                .iter()
                .map(|(n, a, b)| (n.as_str(), a.as_ref(), b.as_ref())),
        );
        let policy = self.current_policy().await?;
        redact_secrets(&policy, &mut changes);
        let plan = ReleasePlan {
            writes,
            changes,
            read: Vec::new(),
        };
        self.admit(&policy, plan.writes.iter().map(|w| w.key.as_str()))?;
        let reverting = self.with_message(format!("revert of release {id}"));
        let release = reverting.publish_as(&plan, "release.revert", None).await?;
        release.ok_or_else(|| Error::NotFound {
            key: self.state.space.audit_key(id),
            revision: None,
        })
    }

    /// The etcd key of a name a release touched, and how diffs show it
    /// (flags as `flags/{name}`, beside config names).
    fn key_and_label(&self, name: &AuditName) -> (String, String) {
        if name.kind == Kind::Overlays.segment() {
            let key = self.state.space.key_unchecked(Kind::Overlays, &name.name);
            (key, format!("overlays/{}", name.name))
        } else if name.kind == Kind::Flags.segment() {
            let key = self.state.space.key_unchecked(Kind::Flags, &name.name);
            (key, format!("flags/{}", name.name))
        } else {
            let key = self.state.space.key_unchecked(Kind::Config, &name.name);
            (key, name.name.clone())
        }
    }

    async fn release_record(&self, id: &str) -> Result<AuditRecord> {
        let key = self.state.space.audit_key(id);
        let not_found = || Error::NotFound {
            key: key.clone(),
            revision: None,
        };
        if id.is_empty() || id.contains('/') {
            return Err(not_found());
        }
        let kv = self.fetch(&key, None).await?.ok_or_else(not_found)?;
        let mut record: AuditRecord =
            serde_json::from_slice(kv.value()).map_err(|cause| Error::CorruptValue {
                key: key.clone(),
                revision: kv.mod_revision(),
                cause,
            })?;
        record.revision = kv.mod_revision();
        if !record.is_release() {
            return Err(not_found());
        }
        Ok(record)
    }
}
