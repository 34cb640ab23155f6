//! A release across several namespaces of one chain: `base` and `prod`
//! changed together, in one etcd transaction, so that no reader of
//! `prod-eu` ever sees one half of it. Each namespace's part is planned and
//! checked as [`Client::apply`] plans its own, and keeps its audit record
//! in the namespace it writes.

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::handle::Client;
use super::writes::MAX_TXN_OPS;
use crate::diff::NamedDiff;
use crate::error::{Error, Result};
use crate::etcd::header_revision;
use crate::key::Kind;
use crate::types::Revision;

/// One namespace's part of a [`ChainRelease`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ChainPart {
    /// The namespace it writes.
    pub namespace: String,
    /// The id of its audit record there; `None` for a dry run, or a part
    /// that changed nothing.
    pub id: Option<String>,
    /// What it changes (secrets redacted).
    pub changes: Vec<NamedDiff>,
}

/// A release across namespaces of one chain ([`Client::apply_chain`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ChainRelease {
    /// The revision every change of it has; 0 when nothing was written.
    pub revision: Revision,
    /// Each namespace's part, in the order given.
    pub parts: Vec<ChainPart>,
}

impl Client {
    /// Publishes config documents (name → value) to several namespaces of
    /// this namespace's line of layers ([`layers`](Self::layers)) as one
    /// etcd transaction, compare-and-set on every key: watchers see every
    /// change at one revision, and a concurrent change to any of its keys
    /// fails it whole ([`Error::Conflict`]). Each part is checked as
    /// [`apply`](Self::apply) checks its own (schemas where it reaches,
    /// policy) and keeps its audit record in the namespace it writes.
    /// `dry_run` plans and writes nothing.
    ///
    /// ```no_run
    /// # async fn demo(prod_eu: cfgd::Client) -> cfgd::Result<()> {
    /// let documents = [
    ///     ("base".to_owned(), r#"{"db": {"url": "postgres://new"}}"#.to_owned()),
    ///     ("prod".to_owned(), r#"{"db": {"pool": 40}}"#.to_owned()),
    /// ];
    /// let release = prod_eu.apply_chain(&documents, false).await?;
    /// println!("at revision {}", release.revision);
    /// # Ok(()) }
    /// ```
    pub async fn apply_chain(
        &self,
        documents: &[(String, String)],
        dry_run: bool,
    ) -> Result<ChainRelease> {
        let line = self.layers().await?;
        let mut planned = Vec::with_capacity(documents.len());
        for (namespace, document) in documents {
            if !line.contains(namespace)
                || planned
                    .iter()
                    .any(|(c, _): &(Client, _)| c.namespace() == namespace)
            {
                return Err(Error::InvalidExtends {
                    key: self.state.space.key_unchecked(Kind::Meta, ""),
                    reason: format!(
                        "a release spans one chain, each namespace once: {namespace:?} is not one of {}",
                        line.join(" <- ")
                    ),
                });
            }
            let client = self.sibling(namespace).await?;
            let plan = client.plan_release(document, None).await?;
            planned.push((client, plan));
        }
        let mut parts: Vec<ChainPart> = planned
            .iter()
            .map(|(client, plan)| ChainPart {
                namespace: client.namespace().to_owned(),
                id: None,
                changes: plan.changes.clone(),
            })
            .collect();
        let ops_needed: usize = planned
            .iter()
            .filter(|(_, plan)| !plan.writes.is_empty())
            .map(|(_, plan)| plan.writes.len() + 1)
            .sum();
        if ops_needed > MAX_TXN_OPS {
            return Err(Error::ReleaseTooLarge {
                count: ops_needed,
                limit: MAX_TXN_OPS,
            });
        }
        if dry_run || ops_needed == 0 {
            return Ok(ChainRelease { revision: 0, parts });
        }
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut ids = Vec::new();
        for (client, plan) in &planned {
            if plan.writes.is_empty() {
                ids.push(None);
                continue;
            }
            let mut befores = Vec::with_capacity(plan.writes.len());
            for write in &plan.writes {
                compares.push(Compare::mod_revision(
                    write.key.as_str(),
                    CompareOp::Equal,
                    write.before,
                ));
                ops.push(match &write.bytes {
                    Some(bytes) => TxnOp::put(write.key.as_str(), bytes.clone(), None),
                    None => TxnOp::delete(write.key.as_str(), None),
                });
                befores.push((write.key.as_str(), write.before));
            }
            let (record, id) = client.audit_record("release.chain", &befores, None);
            ops.push(record);
            ids.push(Some(id));
        }
        let first = &planned[0].1;
        let first_key = first
            .writes
            .first()
            .map_or_else(String::new, |w| w.key.clone());
        let mut kv = self.state.etcd().kv().await?;
        let resp = self
            .state
            .etcd()
            .call(
                &first_key,
                None,
                kv.txn(Txn::new().when(compares).and_then(ops)),
            )
            .await?;
        if !resp.succeeded() {
            let batch: Vec<(String, Vec<u8>, Revision)> = planned
                .iter()
                .flat_map(|(_, plan)| plan.writes.iter())
                .map(|w| (w.key.clone(), Vec::new(), w.before))
                .collect();
            return Err(self.first_conflict(&batch).await);
        }
        let revision = header_revision(resp.header());
        for ((client, plan), (part, id)) in planned.iter().zip(parts.iter_mut().zip(ids)) {
            for w in &plan.writes {
                client.applied(&w.key, w.bytes.clone(), revision);
            }
            part.id = id;
        }
        Ok(ChainRelease { revision, parts })
    }

    /// A client of `namespace` on this client's connection, writing as this
    /// client's author; this client itself for its own namespace.
    async fn sibling(&self, namespace: &str) -> Result<Client> {
        if namespace == self.namespace() {
            return Ok(self.clone());
        }
        let mut sibling = Client::builder()
            .share(self)
            .namespace(namespace)
            .live(false)
            .connect()
            .await?;
        sibling.author = self.author.clone();
        Ok(sibling)
    }
}
