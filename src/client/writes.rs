//! Writes: puts, compare-and-set, deletes, import and rollback. A live
//! client shows its own write in memory at once.

use std::collections::HashMap;

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp, TxnOpResponse};
use serde::de::IgnoredAny;
use serde::Serialize;

use super::handle::{Client, ImportReport};
use crate::error::{Error, Result};
use crate::etcd::header_revision;
use crate::key::Kind;
use crate::types::Revision;
use crate::value;

/// etcd's default `--max-txn-ops`.
pub(crate) const MAX_TXN_OPS: usize = 128;

impl Client {
    /// Stores `value` as compact JSON and returns the new revision.
    pub async fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let bytes = value::encode(&key, value)?;
        self.schemas().await?.check(&key, name, &bytes)?;
        self.put(key, bytes).await
    }

    /// Stores JSON text after checking that it is JSON; white space between
    /// tokens is dropped, everything else is kept as written.
    pub async fn set_json(&self, name: &str, json: &str) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let bytes = value::compact_text(&key, json)?;
        self.schemas().await?.check(&key, name, &bytes)?;
        self.put(key, bytes).await
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
        self.schemas().await?.check(&key, name, &bytes)?;
        self.put_if(key, bytes, expected).await
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
        let bytes = value::compact_text(&key, json)?;
        self.schemas().await?.check(&key, name, &bytes)?;
        self.put_if(key, bytes, expected).await
    }

    /// Deletes `name`. Returns the revision of the deletion, or `None` when
    /// there was nothing to delete.
    pub async fn delete(&self, name: &str) -> Result<Option<Revision>> {
        self.delete_key(self.etcd_key(name)?).await
    }

    /// Deletes `name` only if its revision is still `expected`; otherwise
    /// [`Error::Conflict`]. A key that is already gone is [`Error::NotFound`].
    pub async fn delete_if(&self, name: &str, expected: Revision) -> Result<Revision> {
        self.delete_key_if(self.etcd_key(name)?, expected).await
    }

    pub(super) async fn delete_key(&self, key: String) -> Result<Option<Revision>> {
        let mut kv = self.state.etcd().kv().await?;
        let resp = self
            .state
            .etcd()
            .call(
                &key,
                None,
                kv.delete(key.as_str(), Some(DeleteOptions::new())),
            )
            .await?;
        if resp.deleted() == 0 {
            return Ok(None);
        }
        let revision = header_revision(resp.header());
        self.applied(&key, None, revision);
        Ok(Some(revision))
    }

    pub(super) async fn delete_key_if(&self, key: String, expected: Revision) -> Result<Revision> {
        let resp = self
            .txn_if(&key, expected, TxnOp::delete(key.as_str(), None))
            .await?;
        match resp.op_responses().first() {
            Some(TxnOpResponse::Delete(d)) if d.deleted() > 0 => {
                let revision = header_revision(resp.header());
                self.applied(&key, None, revision);
                Ok(revision)
            }
            _ => Err(Error::NotFound {
                key,
                revision: None,
            }),
        }
    }

    /// Writes a JSON object of name → value, as `cfgctl import` does.
    ///
    /// Everything is checked first (names, JSON, sizes, schemas): one bad entry and
    /// nothing is written. Then only the names whose value differs are
    /// written, in etcd transactions of at most 128 puts, each guarded by
    /// the revisions read while planning, so a concurrent edit is reported
    /// as [`Error::Conflict`] instead of overwritten. Batches before a
    /// conflicting one stay written. With `dry_run` nothing is written.
    pub async fn import(&self, document: &str, dry_run: bool) -> Result<ImportReport> {
        let parsed: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(document).map_err(|cause| Error::InvalidJson {
                key: format!("{}config (import document)", self.state.space.base()),
                cause,
            })?;
        let schemas = self.schemas().await?;
        let mut wanted = Vec::with_capacity(parsed.len());
        for (name, raw) in &parsed {
            let key = self.etcd_key(name)?;
            let bytes = value::compact_text(&key, raw.get())?;
            schemas.check(&key, name, &bytes)?;
            wanted.push((name.clone(), key, bytes));
        }
        self.write_changed(Kind::Config, wanted, dry_run).await
    }

    /// Writes the (name, key, bytes) that differ from what `kind` holds, in
    /// guarded transactions of at most [`MAX_TXN_OPS`], and says what changed.
    pub(super) async fn write_changed(
        &self,
        kind: Kind,
        wanted: Vec<(String, String, Vec<u8>)>,
        dry_run: bool,
    ) -> Result<ImportReport> {
        let current: HashMap<String, (Revision, Vec<u8>)> = self
            .list_raw(kind, "")
            .await?
            .into_iter()
            .map(|kv| {
                let name = self
                    .state
                    .space
                    .name_of(kind, kv.key())
                    .unwrap_or_default()
                    .to_owned();
                (name, (kv.mod_revision(), kv.value().to_vec()))
            })
            .collect();
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
        if dry_run {
            return Ok(report);
        }
        for batch in writes.chunks(MAX_TXN_OPS) {
            let compares: Vec<Compare> = batch
                .iter()
                .map(|(key, _, rev)| Compare::mod_revision(key.as_str(), CompareOp::Equal, *rev))
                .collect();
            let puts: Vec<TxnOp> = batch
                .iter()
                .map(|(key, bytes, _)| TxnOp::put(key.as_str(), bytes.clone(), None))
                .collect();
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
    async fn first_conflict(&self, batch: &[(String, Vec<u8>, Revision)]) -> Error {
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
        // Refuse to restore something that is not JSON (written by another
        // tool) rather than spread it further.
        value::decode::<IgnoredAny>(&key, old.mod_revision(), old.value())?;
        // The schema may have changed since: an old value must pass today's.
        self.schemas().await?.check(&key, name, old.value())?;
        self.put(key, old.value().to_vec()).await
    }

    pub(super) async fn put(&self, key: String, bytes: Vec<u8>) -> Result<Revision> {
        let mut kv = self.state.etcd().kv().await?;
        let local = self.state.live.is_some().then(|| bytes.clone());
        let resp = self
            .state
            .etcd()
            .call(&key, None, kv.put(key.as_str(), bytes, None))
            .await?;
        let revision = header_revision(resp.header());
        self.applied(&key, local, revision);
        Ok(revision)
    }

    /// Shows this client's own write in its memory at once (live mode).
    fn applied(&self, key: &str, bytes: Option<Vec<u8>>, revision: Revision) {
        if let Some(shared) = &self.state.live {
            for kind in Kind::ALL {
                if let Some(name) = self.state.space.name_of(kind, key.as_bytes()) {
                    shared.apply_local(kind, name, bytes, revision);
                    return;
                }
            }
        }
    }

    pub(super) async fn put_if(
        &self,
        key: String,
        bytes: Vec<u8>,
        expected: Revision,
    ) -> Result<Revision> {
        let local = self.state.live.is_some().then(|| bytes.clone());
        let op = TxnOp::put(key.as_str(), bytes, None);
        let resp = self.txn_if(&key, expected, op).await?;
        let revision = header_revision(resp.header());
        self.applied(&key, local, revision);
        Ok(revision)
    }

    /// Runs `op` only if `key` is still at revision `expected`; otherwise
    /// reads the key in the same transaction to name its current revision.
    async fn txn_if(
        &self,
        key: &str,
        expected: Revision,
        op: TxnOp,
    ) -> Result<etcd_client::TxnResponse> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([op])
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
