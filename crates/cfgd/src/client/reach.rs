//! What a write reaches through layers: the effective value it makes in
//! this namespace, when it extends others, and in every namespace that
//! extends it, each checked against the schemas that govern it there. A
//! write that would break any of them is refused before anything is
//! written, naming the namespace and the name.

use std::collections::HashMap;
use std::sync::Arc;

use etcd_client::{GetOptions, Txn, TxnOp, TxnOpResponse};

use super::handle::Client;
use crate::effective;
use crate::error::{Error, Result};
use crate::key::{self, Kind};
use crate::meta::Meta;
use crate::mirror::{Layer, Stored};
use crate::schema::SchemaSet;

/// Whether a write here reaches past the value written: this namespace
/// extends others, or others extend it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reach {
    pub(crate) layered: bool,
    pub(crate) extended: bool,
}

impl Client {
    /// A keys-only read of one marker of who extends this namespace: any
    /// answer means some namespace does.
    pub(super) fn children_probe(&self) -> TxnOp {
        let start = self.state.space.key_unchecked(Kind::Children, "");
        let end = key::prefix_end(start.clone().into_bytes());
        TxnOp::get(
            start,
            Some(
                GetOptions::new()
                    .with_range(end)
                    .with_keys_only()
                    .with_limit(1),
            ),
        )
    }

    /// [`Reach`], from memory when live, else in one request.
    async fn reach(&self) -> Result<Reach> {
        if let Some(live) = &self.state.live {
            let mirror = live.read();
            return Ok(Reach {
                layered: mirror.is_layered(),
                extended: !mirror.own(Kind::Children).entries.is_empty(),
            });
        }
        let meta_key = self.state.space.key_unchecked(Kind::Meta, "");
        let txn = Txn::new().and_then([TxnOp::get(meta_key.as_str(), None), self.children_probe()]);
        let mut kv = self.state.etcd().kv().await?;
        let resp = self.state.etcd().call(&meta_key, None, kv.txn(txn)).await?;
        let responses = resp.op_responses();
        let found = reads(&responses);
        let layered = found[0]
            .first()
            .is_some_and(|kv| !Meta::from_stored(&meta_key, kv.value()).extends.is_empty());
        Ok(Reach {
            layered,
            extended: !found[1].is_empty(),
        })
    }

    /// Checks the effective values a write of `bytes` (`None`: a delete)
    /// to config `name` makes wherever it reaches (`reach`, when the
    /// caller already read it). `false` when it reaches no layered
    /// namespace: the value as written is then the effective one, which the
    /// caller checks as before.
    pub(super) async fn check_reach(
        &self,
        name: &str,
        bytes: Option<&[u8]>,
        reach: Option<Reach>,
    ) -> Result<bool> {
        let reach = match reach {
            Some(reach) => reach,
            None => self.reach().await?,
        };
        if !reach.layered && !reach.extended {
            return Ok(false);
        }
        let own_line = match reach.layered {
            true => self.layers().await?,
            false => vec![self.namespace().to_owned()],
        };
        let descendants = match reach.extended {
            true => self.descendants().await?,
            false => Vec::new(),
        };
        let mut targets = Vec::with_capacity(descendants.len() + 1);
        if own_line.len() > 1 {
            targets.push((self.namespace().to_owned(), own_line));
        }
        for namespace in descendants {
            let line = self.line_of(&namespace).await?;
            targets.push((namespace, line));
        }
        for (namespace, line) in targets {
            let (mut layers, sets) = self.read_for_check(&line, name).await?;
            if let Some(mine) = layers
                .iter_mut()
                .find(|l| &*l.namespace == self.namespace())
            {
                let entries = &mut mine.section_mut(Kind::Config).entries;
                match bytes {
                    Some(bytes) => {
                        let revision = entries.get(name).map_or(0, |s| s.revision);
                        entries.insert(name.into(), written(bytes, revision));
                    }
                    None => {
                        entries.remove(name);
                    }
                }
            }
            let Some((value, _)) = effective::effective(&layers, Kind::Config, name) else {
                continue;
            };
            let root = &self.state.etcd().root;
            let key = format!("{root}/{namespace}/config/{name}");
            // Every layer's schemas hold: one a namespace defines for a
            // parent's pattern adds to the parent's, it does not lift it.
            for schemas in &sets {
                let checked = schemas.check(&key, name, &value.raw);
                self.unquoted(name, checked).await?;
            }
        }
        Ok(true)
    }

    /// The line of layers of `namespace`, first to last, from the settings
    /// etcd holds now.
    async fn line_of(&self, namespace: &str) -> Result<Vec<String>> {
        let mut known: HashMap<String, Vec<String>> = HashMap::new();
        let mut waiting = vec![namespace.to_owned()];
        while let Some(ns) = waiting.pop() {
            if known.contains_key(&ns) || known.len() > 4 * crate::layers::MAX_DEPTH {
                continue;
            }
            let key = format!("{}/{ns}/meta", self.state.etcd().root);
            let extends = match self.fetch(&key, None).await? {
                Some(kv) => Meta::from_stored(&key, kv.value()).extends,
                None => Vec::new(),
            };
            waiting.extend(extends.iter().cloned());
            known.insert(ns, extends);
        }
        crate::layers::linearize(namespace, |ns| known.get(ns).cloned()).map_err(|e| {
            Error::InvalidExtends {
                key: format!("{}/{namespace}/meta", self.state.etcd().root),
                reason: e.to_string(),
            }
        })
    }

    /// `name` in each layer of `line` and each layer's schemas, read in one
    /// transaction, secrets opened.
    async fn read_for_check(
        &self,
        line: &[String],
        name: &str,
    ) -> Result<(Vec<Layer>, Vec<SchemaSet>)> {
        let root = &self.state.etcd().root;
        let bases: Vec<String> = line.iter().map(|ns| format!("{root}/{ns}/")).collect();
        let mut ops = Vec::with_capacity(bases.len() * 2);
        for base in &bases {
            let value = format!("{}{name}", key::kind_prefix(base, Kind::Config));
            let schemas = key::kind_prefix(base, Kind::Schemas);
            let end = key::prefix_end(schemas.clone().into_bytes());
            ops.push(TxnOp::get(value, None));
            ops.push(TxnOp::get(schemas, Some(GetOptions::new().with_range(end))));
        }
        let mut kv = self.state.etcd().kv().await?;
        let resp = self
            .state
            .etcd()
            .call(&bases[0], None, kv.txn(Txn::new().and_then(ops)))
            .await?;
        let responses = resp.op_responses();
        let answers = reads(&responses);
        let mut layers = Vec::with_capacity(line.len());
        let mut sets = Vec::new();
        for ((ns, base), pair) in line.iter().zip(&bases).zip(answers.chunks(2)) {
            let mut layer = Layer::new(ns.as_str().into(), base.clone());
            if let Some(kv) = pair[0].first() {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let stored = self.open_stored(&key, kv)?;
                layer
                    .section_mut(Kind::Config)
                    .entries
                    .insert(name.into(), stored);
            }
            let patterns: Vec<(String, Arc<[u8]>, i64)> = pair[1]
                .iter()
                .filter_map(|kv| match key::split_key(base, kv.key()) {
                    Some((Kind::Schemas, pattern)) => {
                        Some((pattern.to_owned(), kv.value().into(), kv.mod_revision()))
                    }
                    _ => None,
                })
                .collect();
            if !patterns.is_empty() {
                sets.push(SchemaSet::from_store(
                    patterns.iter().map(|(p, raw, rev)| (p.as_str(), raw, *rev)),
                    &SchemaSet::default(),
                ));
            }
            layers.push(layer);
        }
        Ok((layers, sets))
    }
}

/// The keys each read of a transaction found.
fn reads(responses: &[TxnOpResponse]) -> Vec<&[etcd_client::KeyValue]> {
    responses
        .iter()
        .map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs(),
            _ => &[],
        })
        .collect()
}

/// The value a write would store, as a layer would hold it.
fn written(bytes: &[u8], revision: i64) -> Stored {
    Stored {
        raw: bytes.into(),
        revision,
        create_revision: revision,
        version: 1,
        origin: crate::types::Source::Cache,
        decoded: Default::default(),
        sealed: None,
    }
}
