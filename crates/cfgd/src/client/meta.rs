//! The namespace's settings (`meta`): read and stored. A live client
//! applies a change to them as it comes, like any other change.

use std::collections::HashMap;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};

use super::handle::Client;
use crate::error::{Error, Result};
use crate::key::{self, Kind};
use crate::meta::Meta;
use crate::types::Revision;
use crate::value;

impl Client {
    /// The namespace's settings as stored in etcd now; the defaults when
    /// none are.
    pub async fn meta(&self) -> Result<Meta> {
        let key = self.meta_key();
        match self.fetch(&key, None).await? {
            Some(kv) => Meta::parse(&key, kv.value()),
            None => Ok(Meta::default()),
        }
    }

    /// Stores the namespace's settings.
    ///
    /// ```no_run
    /// # async fn demo(client: cfgd::Client) -> cfgd::Result<()> {
    /// use cfgd::flags::Bucketing;
    ///
    /// let meta = client.meta().await?.with_fractional(Bucketing::V3);
    /// client.set_meta(&meta).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// `extends` is checked against etcd first
    /// ([`Error::InvalidExtends`], nothing written): every parent must exist,
    /// and the namespaces it leads to must make no cycle and be at most
    /// [`MAX_DEPTH`](crate::layers::MAX_DEPTH) levels deep.
    pub async fn set_meta(&self, meta: &Meta) -> Result<Revision> {
        let key = self.meta_key();
        let invalid = |reason: String| Error::InvalidExtends {
            key: key.clone(),
            reason,
        };
        meta.check(self.namespace()).map_err(invalid)?;
        if !meta.extends.is_empty() {
            let known = self.ancestors(&meta.extends).await?;
            let extends = |ns: &str| {
                if ns == self.namespace() {
                    Some(meta.extends.clone())
                } else {
                    known.get(ns).cloned().flatten()
                }
            };
            crate::layers::linearize(self.namespace(), extends)
                .map_err(|e| invalid(e.to_string()))?;
        }
        let bytes = value::encode(&key, meta)?;
        let bytes = self.admitted(&key, bytes).await?;
        // The settings and the parents' markers of who extends them, in
        // one transaction: the markers are what lets a write to a parent
        // find the namespaces it reaches, and a delete refuse.
        for _ in 0..8 {
            let current = self.fetch(&key, None).await?;
            let expected = current.as_ref().map_or(0, |kv| kv.mod_revision());
            let before =
                current.map_or_else(Vec::new, |kv| Meta::from_stored(&key, kv.value()).extends);
            let mut ops = vec![TxnOp::put(key.as_str(), bytes.clone(), None)];
            for gone in before.iter().filter(|p| !meta.extends.contains(p)) {
                ops.push(TxnOp::delete(self.marker(gone), None));
            }
            for parent in &meta.extends {
                ops.push(TxnOp::put(self.marker(parent), "{}", None));
            }
            ops.push(self.audit_op("meta.set", &[(&key, expected)]));
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    expected,
                )])
                .and_then(ops);
            let mut kv = self.state.etcd().kv().await?;
            let resp = self.state.etcd().call(&key, None, kv.txn(txn)).await?;
            if resp.succeeded() {
                let revision = resp.header().map_or(0, |h| h.revision());
                self.applied(&key, Some(bytes), revision);
                self.relayered().await;
                return Ok(revision);
            }
        }
        Err(Error::Conflict {
            key,
            expected: 0,
            current: 0,
        })
    }

    /// Deletes the whole namespace: every value, flag, schema, its policy,
    /// settings, audit trail and change requests, in one transaction; how
    /// many keys went. Refused ([`Error::Extended`]) while other namespaces
    /// extend it, naming them.
    pub async fn delete_namespace(&self) -> Result<i64> {
        let by = self.children_of(self.namespace()).await?;
        if !by.is_empty() {
            return Err(Error::Extended {
                namespace: self.namespace().to_owned(),
                by,
            });
        }
        let base = self.state.space.base().to_owned();
        let mut ops = vec![TxnOp::delete(
            base.as_str(),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )];
        for parent in self.meta().await?.extends {
            ops.push(TxnOp::delete(self.marker(&parent), None));
        }
        let mut kv = self.state.etcd().kv().await?;
        let resp = self
            .state
            .etcd()
            .call(&base, None, kv.txn(Txn::new().and_then(ops)))
            .await?;
        Ok(match resp.op_responses().first() {
            Some(etcd_client::TxnOpResponse::Delete(d)) => d.deleted(),
            _ => 0,
        })
    }

    /// After this client changed its own `extends`: a live one reads its
    /// layers again before the write returns, so that its next read is
    /// effective by the new line. Waits at most the request timeout; the
    /// watch reads it again in any case.
    async fn relayered(&self) {
        let Some(live) = &self.state.live else {
            return;
        };
        if !live.line_moved(&live.read()) {
            return;
        }
        let mut loads = live.loads.subscribe();
        loads.mark_unchanged();
        self.state.link.hub().needs_load(live);
        let within = self.state.etcd().request_timeout;
        if tokio::time::timeout(within, loads.changed()).await.is_err() {
            tracing::warn!(
                namespace = self.namespace(),
                "new layers not read in time; the watch reads them"
            );
        }
    }

    /// The key under `parent` that says this namespace extends it.
    fn marker(&self, parent: &str) -> String {
        let root = &self.state.etcd().root;
        let base = format!("{root}/{parent}/");
        format!(
            "{}{}",
            key::kind_prefix(&base, Kind::Children),
            self.namespace()
        )
    }

    /// The namespaces that extend this one, directly or further down, as
    /// their parents' markers say, nearest first.
    pub async fn descendants(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        let mut level = vec![self.namespace().to_owned()];
        while !level.is_empty() && out.len() < 4096 {
            let mut next = Vec::new();
            for ns in level {
                for child in self.children_of(&ns).await? {
                    if !out.contains(&child) && child != self.namespace() {
                        out.push(child.clone());
                        next.push(child);
                    }
                }
            }
            level = next;
        }
        Ok(out)
    }

    /// The namespaces whose `extends` names `namespace`, by its markers.
    async fn children_of(&self, namespace: &str) -> Result<Vec<String>> {
        let root = &self.state.etcd().root;
        let start = key::kind_prefix(&format!("{root}/{namespace}/"), Kind::Children);
        Ok(self
            .list_keys(start.clone())
            .await?
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key()[start.len()..]).into_owned())
            .collect())
    }

    /// The `extends` of every namespace reachable from `parents`, read
    /// from etcd; `None` for one that does not exist. The walk stops past
    /// [`MAX_DEPTH`](crate::layers::MAX_DEPTH) levels, where
    /// [`linearize`](crate::layers::linearize) refuses anyway.
    pub(super) async fn ancestors(
        &self,
        parents: &[String],
    ) -> Result<HashMap<String, Option<Vec<String>>>> {
        let mut known = HashMap::new();
        let mut level: Vec<String> = parents.to_vec();
        for _ in 0..=crate::layers::MAX_DEPTH {
            let mut next = Vec::new();
            for ns in level {
                if known.contains_key(&ns) || ns == self.namespace() {
                    continue;
                }
                let found = self.extends_of(&ns).await?;
                next.extend(found.iter().flatten().cloned());
                known.insert(ns, found);
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        Ok(known)
    }

    /// `namespace`'s `extends` as etcd holds it, or `None` when it holds
    /// nothing at all under that namespace.
    async fn extends_of(&self, namespace: &str) -> Result<Option<Vec<String>>> {
        let root = &self.state.etcd().root;
        let key = format!("{root}/{namespace}/meta");
        if let Some(kv) = self.fetch(&key, None).await? {
            return Ok(Some(Meta::from_stored(&key, kv.value()).extends));
        }
        let base = format!("{root}/{namespace}/");
        let options = GetOptions::new()
            .with_range(key::prefix_end(base.clone().into_bytes()))
            .with_keys_only()
            .with_limit(1);
        let mut kv = self.state.etcd().kv().await?;
        let resp = self
            .state
            .etcd()
            .call(&base, None, kv.get(base.clone(), Some(options)))
            .await?;
        Ok((!resp.kvs().is_empty()).then(Vec::new))
    }

    /// [`set_meta`](Self::set_meta) from JSON text, refused
    /// ([`Error::InvalidMeta`](crate::Error::InvalidMeta)) unless it is an
    /// object of known fields with valid values.
    pub async fn set_meta_json(&self, json: &str) -> Result<Revision> {
        self.set_meta(&Meta::parse(&self.meta_key(), json.as_bytes())?)
            .await
    }

    fn meta_key(&self) -> String {
        self.state.space.key_unchecked(Kind::Meta, "")
    }
}
