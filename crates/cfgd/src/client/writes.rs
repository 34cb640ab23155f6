//! Writes: puts, compare-and-set, deletes, import and rollback. A live
//! client shows its own write in memory at once.

use std::borrow::Cow;
use std::collections::HashMap;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use serde::de::IgnoredAny;
use serde::Serialize;

use super::handle::{Client, ImportReport};
use crate::audit::{AuditName, AuditRecord};
use crate::error::{Error, Result};
use crate::etcd::header_revision;
use crate::key::{self, Kind};
use crate::policy::Policy;
use crate::types::Revision;
use crate::value;

/// etcd's default `--max-txn-ops`.
pub(crate) const MAX_TXN_OPS: usize = 128;
/// Compare-and-set tries of a write that is not conditional, each after
/// the key moved between reading and writing it.
const ATTEMPTS: usize = 16;

impl Client {
    /// Stores `value` as compact JSON and returns the new revision.
    pub async fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let bytes = value::encode(&key, value)?;
        let (schemas, policy, believed, reach) = self.rules_and_revision(&key).await?;
        if !self.check_reach(name, Some(&bytes), reach).await? {
            self.unquoted(name, schemas.check(&key, name, &bytes))
                .await?;
        }
        self.admit(&policy, [key.as_str()])?;
        let bytes = self.sealed_for(&policy, &key, bytes)?;
        self.put_from(key, bytes, believed, "set").await
    }

    /// Stores JSON text after checking that it is JSON; white space between
    /// tokens is dropped, everything else is kept as written.
    pub async fn set_json(&self, name: &str, json: &str) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let (bytes, parsed) = value::compact_json(&key, json)?;
        let (schemas, policy, believed, reach) = self.rules_and_revision(&key).await?;
        if !self.check_reach(name, Some(&bytes), reach).await? {
            self.unquoted(name, schemas.check_parsed(&key, name, &parsed))
                .await?;
        }
        self.admit(&policy, [key.as_str()])?;
        let bytes = self.sealed_for(&policy, &key, bytes)?;
        self.put_from(key, bytes, believed, "set").await
    }

    /// Checks JSON text as [`set_json`](Self::set_json) would (name, JSON,
    /// size, schema), writing nothing: what an editor shows as you type.
    /// The policy is not consulted; [`policy`](Self::policy) tells whether
    /// the name changes only through a change request.
    pub async fn check_json(&self, name: &str, json: &str) -> Result<()> {
        let key = self.etcd_key(name)?;
        let (bytes, parsed) = value::compact_json(&key, json)?;
        if self.check_reach(name, Some(&bytes), None).await? {
            return Ok(());
        }
        let schemas = self.schemas().await?;
        self.unquoted(name, schemas.check_parsed(&key, name, &parsed))
            .await
    }

    /// Compare-and-set: stores `value` only if the key's revision is still
    /// `expected` (`0`: only if the key does not exist). Otherwise fails with
    /// [`Error::Conflict`] naming the current revision.
    pub async fn set_if<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
        expected: Revision,
    ) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let bytes = value::encode(&key, value)?;
        let expected = self.own_expected(&key, name, expected).await?;
        if !self.check_reach(name, Some(&bytes), None).await? {
            let schemas = self.schemas().await?;
            self.unquoted(name, schemas.check(&key, name, &bytes))
                .await?;
        }
        self.put_if(key, bytes, expected, "set").await
    }

    /// [`set_json`](Self::set_json) with the compare-and-set of
    /// [`set_if`](Self::set_if).
    pub async fn set_json_if(
        &self,
        name: &str,
        json: &str,
        expected: Revision,
    ) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let (bytes, parsed) = value::compact_json(&key, json)?;
        let expected = self.own_expected(&key, name, expected).await?;
        if !self.check_reach(name, Some(&bytes), None).await? {
            let schemas = self.schemas().await?;
            self.unquoted(name, schemas.check_parsed(&key, name, &parsed))
                .await?;
        }
        self.put_if(key, bytes, expected, "set").await
    }

    /// Deletes `name`. Returns the revision of the deletion, or `None` when
    /// there was nothing to delete.
    pub async fn delete(&self, name: &str) -> Result<Option<Revision>> {
        let key = self.etcd_key(name)?;
        // What shows through once it is gone must hold where it shows.
        self.check_reach(name, None, None).await?;
        self.delete_key(key, "delete").await
    }

    /// Deletes `name` only if its revision is still `expected`; otherwise
    /// [`Error::Conflict`]. A key that is already gone is [`Error::NotFound`].
    pub async fn delete_if(&self, name: &str, expected: Revision) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let expected = self.own_expected(&key, name, expected).await?;
        self.check_reach(name, None, None).await?;
        self.delete_key_if(key, expected, "delete").await
    }

    pub(super) async fn delete_key(&self, key: String, action: &str) -> Result<Option<Revision>> {
        self.admit_keys([key.as_str()]).await?;
        let mut expected = self.believed_revision(&key);
        for _ in 0..ATTEMPTS {
            if expected == 0 {
                // Believed absent: make sure, since a delete of nothing
                // must leave no record.
                match self.fetch(&key, None).await? {
                    Some(kv) => expected = kv.mod_revision(),
                    None => return Ok(None),
                }
            }
            match self.delete_admitted(key.clone(), expected, action).await {
                Ok(revision) => return Ok(Some(revision)),
                Err(Error::Conflict { current, .. }) => expected = current,
                Err(Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Err(self.busy(&key, expected).await)
    }

    pub(super) async fn delete_key_if(
        &self,
        key: String,
        expected: Revision,
        action: &str,
    ) -> Result<Revision> {
        self.admit_keys([key.as_str()]).await?;
        self.delete_admitted(key, expected, action).await
    }

    /// [`delete_key_if`](Self::delete_key_if), the policy already checked.
    async fn delete_admitted(
        &self,
        key: String,
        expected: Revision,
        action: &str,
    ) -> Result<Revision> {
        if expected == 0 {
            // "Only if absent" leaves nothing to delete.
            return Err(Error::NotFound {
                key,
                revision: None,
            });
        }
        let resp = self
            .txn_if(&key, expected, TxnOp::delete(key.as_str(), None), action)
            .await?;
        let revision = header_revision(resp.header());
        self.applied(&key, None, revision);
        Ok(revision)
    }

    /// Every key of `kind`, name → (revision, stored bytes), read in one
    /// paged list at one revision: what a document is compared with.
    pub(super) async fn stored(&self, kind: Kind) -> Result<HashMap<String, (Revision, Vec<u8>)>> {
        Ok(self
            .list_raw(kind, "")
            .await?
            .into_iter()
            .filter_map(|kv| {
                let name = self.state.space.name_of(kind, kv.key())?.to_owned();
                // A secret this client cannot open compares as different,
                // and writing it then says why.
                let key = std::str::from_utf8(kv.key()).ok()?;
                let bytes = self
                    .opened(key, kv.value())
                    .map_or_else(|_| kv.value().to_vec(), |b| b.into_owned());
                Some((name, (kv.mod_revision(), bytes)))
            })
            .collect())
    }

    /// Writes the (name, key, bytes) that differ from what `kind` holds, in
    /// guarded transactions of at most [`MAX_TXN_OPS`], and says what changed.
    pub(super) async fn write_changed(
        &self,
        kind: Kind,
        wanted: Vec<(String, String, Vec<u8>)>,
        dry_run: bool,
        action: &str,
    ) -> Result<ImportReport> {
        let current = self.stored(kind).await?;
        let policy = self.current_policy().await?;
        let mut report = ImportReport::default();
        let mut writes = Vec::new();
        for (name, key, bytes) in wanted {
            match current.get(&name) {
                Some((_, old)) if *old == bytes => report.unchanged.push(name),
                Some((revision, _)) => {
                    report.updated.push(name);
                    writes.push((key, bytes, *revision));
                }
                None => {
                    report.created.push(name);
                    writes.push((key, bytes, 0));
                }
            }
        }
        report.created.sort();
        report.updated.sort();
        report.unchanged.sort();
        self.admit(&policy, writes.iter().map(|(key, _, _)| key.as_str()))?;
        let writes = writes
            .into_iter()
            .map(|(key, bytes, revision)| {
                let bytes = self.sealed_for(&policy, &key, bytes)?;
                Ok((key, bytes, revision))
            })
            .collect::<Result<Vec<_>>>()?;
        if dry_run {
            return Ok(report);
        }
        // One operation of each transaction is its audit record.
        for batch in writes.chunks(MAX_TXN_OPS - 1) {
            let compares: Vec<Compare> = batch
                .iter()
                .map(|(key, _, rev)| Compare::mod_revision(key.as_str(), CompareOp::Equal, *rev))
                .collect();
            let mut puts: Vec<TxnOp> = batch
                .iter()
                .map(|(key, bytes, _)| TxnOp::put(key.as_str(), bytes.clone(), None))
                .collect();
            let befores: Vec<(&str, Revision)> = batch
                .iter()
                .map(|(key, _, rev)| (key.as_str(), *rev))
                .collect();
            puts.push(self.audit_op(action, &befores));
            let first = &batch[0].0;
            let mut kv = self.state.etcd().kv().await?;
            let resp = self
                .state
                .etcd()
                .call(
                    first,
                    None,
                    kv.txn(Txn::new().when(compares).and_then(puts)),
                )
                .await?;
            if !resp.succeeded() {
                return Err(self.first_conflict(batch).await);
            }
            let revision = header_revision(resp.header());
            for (key, bytes, _) in batch {
                self.applied(key, Some(bytes.clone()), revision);
            }
            report.revision = Some(revision);
        }
        Ok(report)
    }

    /// Finds which key of a failed guarded batch moved.
    pub(super) async fn first_conflict(&self, batch: &[(String, Vec<u8>, Revision)]) -> Error {
        for (key, _, expected) in batch {
            let current = match self.fetch(key, None).await {
                Ok(kv) => kv.map_or(0, |kv| kv.mod_revision()),
                Err(e) => return e,
            };
            if current != *expected {
                return Error::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    current,
                };
            }
        }
        Error::Conflict {
            key: batch[0].0.clone(),
            expected: batch[0].2,
            current: batch[0].2,
        }
    }

    /// Writes the value `name` had at `revision` as a new revision; history
    /// is never rewritten. Returns the new revision.
    pub async fn rollback(&self, name: &str, revision: Revision) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let Some(old) = self.fetch(&key, Some(revision)).await? else {
            return Err(Error::NotFound {
                key,
                revision: Some(revision),
            });
        };
        let old_value = self.opened(&key, old.value())?;
        // Refuse to restore something that is not JSON (written by another
        // tool) rather than spread it further.
        value::decode::<IgnoredAny>(&key, old.mod_revision(), &old_value)?;
        // The schema may have changed since: an old value must pass today's.
        let schemas = self.schemas().await?;
        self.unquoted(name, schemas.check(&key, name, &old_value))
            .await?;
        self.put(key, old_value.into_owned(), "rollback").await
    }

    /// Stores `bytes` at `key` whatever revision it is at, with its audit
    /// record: compare-and-set on the revision believed (the mirror's, or
    /// absent), and again on the one etcd names when that was wrong, so the
    /// record names the exact revision it replaced.
    pub(super) async fn put(&self, key: String, bytes: Vec<u8>, action: &str) -> Result<Revision> {
        let bytes = self.admitted(&key, bytes).await?;
        let believed = self.believed_revision(&key);
        self.put_from(key, bytes, believed, action).await
    }

    /// [`put`](Self::put), starting from revision `expected`, the policy
    /// already checked.
    async fn put_from(
        &self,
        key: String,
        bytes: Vec<u8>,
        mut expected: Revision,
        action: &str,
    ) -> Result<Revision> {
        for _ in 0..ATTEMPTS {
            match self.txn_put(&key, &bytes, expected, action).await {
                Ok(revision) => {
                    self.applied(&key, Some(bytes), revision);
                    return Ok(revision);
                }
                Err(Error::Conflict { current, .. }) => expected = current,
                Err(e) => return Err(e),
            }
        }
        Err(self.busy(&key, expected).await)
    }

    /// Refuses a write to any of `keys` that `policy` protects, unless this
    /// client is [`forced`](Client::forced).
    pub(super) fn admit<'k>(
        &self,
        policy: &Policy,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<()> {
        if self.author.forced {
            return Ok(());
        }
        for key in keys {
            let Some(label) = self.policy_label(key) else {
                continue;
            };
            if let Some(pattern) = policy.protecting(&label) {
                return Err(Error::Protected {
                    key: key.to_owned(),
                    pattern: pattern.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// [`admit`](Self::admit) against the current policy, read only when
    /// one of `keys` is a value or a flag.
    pub(super) async fn admit_keys<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<()> {
        if self.author.forced {
            return Ok(());
        }
        let keys: Vec<&str> = keys
            .into_iter()
            .filter(|key| self.policy_label(key).is_some())
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let policy = self.current_policy().await?;
        self.admit(&policy, keys)
    }

    /// How policy patterns name `key`: a value by its name, a flag as
    /// `flags/{name}`; `None` for what no pattern protects (schemas, the
    /// policy).
    pub(super) fn policy_label<'k>(&self, key: &'k str) -> Option<Cow<'k, str>> {
        match key::split_key(self.state.space.base(), key.as_bytes())? {
            (Kind::Config, name) => Some(Cow::Borrowed(name)),
            (Kind::Flags, name) => Some(Cow::Owned(format!("flags/{name}"))),
            _ => None,
        }
    }

    /// The revision of `key` as this client last saw it; 0 when it does not
    /// know (a wrong guess costs one failed compare).
    pub(super) fn believed_revision(&self, key: &str) -> Revision {
        let Some(namespace) = &self.state.live else {
            return 0;
        };
        let Some((kind, name)) = key::split_key(&namespace.base, key.as_bytes()) else {
            return 0;
        };
        // The own layer's: the key written, not the effective value.
        namespace
            .read()
            .own(kind)
            .entries
            .get(name)
            .map_or(0, |stored| stored.revision)
    }

    /// A key that moved under every one of [`ATTEMPTS`] writes.
    async fn busy(&self, key: &str, expected: Revision) -> Error {
        let current = match self.fetch(key, None).await {
            Ok(kv) => kv.map_or(0, |kv| kv.mod_revision()),
            Err(e) => return e,
        };
        Error::Conflict {
            key: key.to_owned(),
            expected,
            current,
        }
    }

    /// The audit record of a write, for its transaction: what it did to
    /// which keys, at which revisions before.
    pub(super) fn audit_op(&self, action: &str, keys: &[(&str, Revision)]) -> TxnOp {
        self.audit_record(action, keys, None).0
    }

    /// [`audit_op`](Self::audit_op) of a step of change request `request`
    /// (if any), and the record's id.
    pub(super) fn audit_record(
        &self,
        action: &str,
        keys: &[(&str, Revision)],
        request: Option<&str>,
    ) -> (TxnOp, String) {
        let names = keys
            .iter()
            .filter_map(|(key, before)| {
                let (kind, name) = key::split_key(self.state.space.base(), key.as_bytes())?;
                Some(AuditName {
                    name: name.to_owned(),
                    kind: kind.segment().to_owned(),
                    before: *before,
                })
            })
            .collect();
        let mut record = AuditRecord::new(&self.author, action, names);
        record.request = request.map(str::to_owned);
        let key = self.state.space.audit_key(&record.id);
        // Room for a record of one name, so that writing it never regrows.
        let mut json = Vec::with_capacity(384);
        serde_json::to_writer(&mut json, &record).expect("serializes");
        let op = TxnOp::put(key, json, None);
        (op, record.id)
    }

    /// Shows this client's own write in its memory at once (live mode).
    pub(super) fn applied(&self, key: &str, bytes: Option<Vec<u8>>, revision: Revision) {
        if let Some(shared) = &self.state.live {
            if let Some((kind, name)) = key::split_key(self.state.space.base(), key.as_bytes()) {
                shared.apply_local(kind, name, bytes, revision);
            }
        }
    }

    /// Compare-and-set of `bytes` at `key`, with its audit record, if the
    /// policy lets this client write it.
    pub(super) async fn put_if(
        &self,
        key: String,
        bytes: Vec<u8>,
        expected: Revision,
        action: &str,
    ) -> Result<Revision> {
        let bytes = self.admitted(&key, bytes).await?;
        self.put_admitted(&key, bytes, expected, action).await
    }

    /// `bytes` for `key` if the policy lets this client write there, sealed
    /// if the policy calls it a secret.
    pub(super) async fn admitted(&self, key: &str, bytes: Vec<u8>) -> Result<Vec<u8>> {
        if self.policy_label(key).is_none() {
            return Ok(bytes);
        }
        let policy = self.current_policy().await?;
        self.admit(&policy, [key])?;
        self.sealed_for(&policy, key, bytes)
    }

    pub(super) async fn put_admitted(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: Revision,
        action: &str,
    ) -> Result<Revision> {
        let revision = self.txn_put(key, &bytes, expected, action).await?;
        self.applied(key, Some(bytes), revision);
        Ok(revision)
    }

    /// The compare-and-set of [`put_admitted`](Self::put_admitted), before
    /// the mirror is told: a retry then needs no copy of `bytes`.
    async fn txn_put(
        &self,
        key: &str,
        bytes: &[u8],
        expected: Revision,
        action: &str,
    ) -> Result<Revision> {
        let op = TxnOp::put(key, bytes, None);
        let resp = self.txn_if(key, expected, op, action).await?;
        Ok(header_revision(resp.header()))
    }

    /// Runs `op` and puts its audit record, only if `key` is still at
    /// revision `expected`; otherwise reads the key in the same transaction
    /// to name its current revision.
    async fn txn_if(
        &self,
        key: &str,
        expected: Revision,
        op: TxnOp,
        action: &str,
    ) -> Result<etcd_client::TxnResponse> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([op, self.audit_op(action, &[(key, expected)])])
            .or_else([TxnOp::get(key, Some(GetOptions::new().with_keys_only()))]);
        let mut kv = self.state.etcd().kv().await?;
        let resp = self.state.etcd().call(key, None, kv.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(conflict(key.to_owned(), expected, &resp));
        }
        Ok(resp)
    }
}

fn conflict(key: String, expected: Revision, resp: &etcd_client::TxnResponse) -> Error {
    let current = match resp.op_responses().first() {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().map_or(0, |kv| kv.mod_revision()),
        _ => 0,
    };
    Error::Conflict {
        key,
        expected,
        current,
    }
}
