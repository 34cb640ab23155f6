//! Change requests (four-eyes): a changeset and the revisions it was based
//! on, stored at `{root}/{namespace}/requests/{id}`, approved by people
//! other than its author, and merged as one release, compare-and-set on
//! those revisions. Every step is one transaction with its audit record.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, GetOptions, SortOrder, SortTarget, Txn, TxnOp};
use serde_json::{Map, Value};

use super::handle::Client;
use super::releases::{Release, ReleasePlan, RequestStep};
pub use super::request_types::{Approval, ChangeRequest, RequestReview, RequestState};
use super::writes::MAX_TXN_OPS;
use crate::audit::now_ms;
use crate::error::{Error, Result};
use crate::etcd::header_revision;
use crate::key::{self, Kind};
use crate::policy::{Policy, REDACTED};
use crate::types::Revision;
use crate::value;

/// The most changes one request holds: its merge is one transaction that
/// also updates the request and writes the audit record.
pub const REQUEST_MAX: usize = MAX_TXN_OPS - 2;

/// Digits of the zero-padded number in a request's key, so that keys sort
/// as numbers do.
const ID_WIDTH: usize = 10;

impl Client {
    /// Opens a change request for `config` (a JSON object of name → value)
    /// and optional `flags` (a flagd document), checked as
    /// [`plan_release`](Self::plan_release) checks a release, protected
    /// names included: this is how those change. It holds only what
    /// differs from what is stored, with the revisions read.
    pub async fn create_request(&self, config: &str, flags: Option<&str>) -> Result<ChangeRequest> {
        let plan = self
            .plan(config, flags, &*self.current_policy().await?)
            .await?;
        let evaluators = match flags {
            Some(document) => serde_json::from_str::<Value>(document)
                .ok()
                .and_then(|d| d.get("$evaluators").cloned()),
            None => None,
        };
        let time_ms = now_ms();
        let mut request = ChangeRequest {
            id: String::new(),
            revision: 0,
            author: self.author.actor.clone(),
            via: self.author.via.as_str().to_owned(),
            message: self.author.message.clone(),
            created_ms: time_ms,
            state: RequestState::Open,
            config: Map::new(),
            flags: None,
            base: BTreeMap::new(),
            approvals: Vec::new(),
            release: None,
            done_by: None,
        };
        self.take_plan(&mut request, &plan, evaluators, "new")?;
        for _ in 0..16 {
            let id = self.next_request_id().await?;
            request.id = id.to_string();
            let key = self.request_key(&request.id)?;
            let compare = Compare::create_revision(key.as_str(), CompareOp::Equal, 0);
            match self
                .request_txn(&request, &key, compare, "request.create")
                .await
            {
                Ok(revision) => {
                    request.revision = revision;
                    return Ok(request);
                }
                // Someone opened one with the same number first.
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::RequestState {
            id: "new".into(),
            reason: "other requests kept taking its number; try again".into(),
        })
    }

    /// The change request `id`, as stored.
    pub async fn get_request(&self, id: &str) -> Result<ChangeRequest> {
        let key = self.request_key(id)?;
        let kv = self
            .fetch(&key, None)
            .await?
            .ok_or_else(|| Error::NotFound {
                key: key.clone(),
                revision: None,
            })?;
        let mut request: ChangeRequest =
            serde_json::from_slice(kv.value()).map_err(|cause| Error::CorruptValue {
                key,
                revision: kv.mod_revision(),
                cause,
            })?;
        request.revision = kv.mod_revision();
        Ok(request)
    }

    /// Change requests, newest first, at most `limit`, only those in
    /// `state` when one is given.
    pub async fn requests(
        &self,
        state: Option<RequestState>,
        limit: usize,
    ) -> Result<Vec<ChangeRequest>> {
        let start = self.state.space.requests_prefix();
        let mut out = Vec::new();
        self.newest_first(&start, |kv| {
            let Ok(mut request) = serde_json::from_slice::<ChangeRequest>(kv.value()) else {
                tracing::warn!(key = %String::from_utf8_lossy(kv.key()), "not a change request");
                return true;
            };
            request.revision = kv.mod_revision();
            if state.is_none_or(|s| s == request.state) {
                out.push(request);
            }
            out.len() < limit
        })
        .await?;
        Ok(out)
    }

    /// Change request `id` with what merging it would change now, and the
    /// names that moved since its base. Values of secret names are hidden.
    pub async fn review_request(&self, id: &str) -> Result<RequestReview> {
        let mut request = self.get_request(id).await?;
        let policy = self.current_policy().await?;
        let (changes, moved) = if request.state == RequestState::Open {
            let plan = self.plan_of(&request, &policy).await?;
            let moved = moved_names(&request, &plan);
            (plan.changes, moved)
        } else {
            // What it did is its release's to show.
            Default::default()
        };
        for (name, value) in request.config.iter_mut() {
            if policy.is_secret(name) {
                *value = Value::String(REDACTED.into());
            }
        }
        if let Some(Value::Object(flags)) = request.flags.as_mut().and_then(|d| d.get_mut("flags"))
        {
            for (name, value) in flags.iter_mut() {
                if policy.is_secret(&format!("flags/{name}")) {
                    *value = Value::String(REDACTED.into());
                }
            }
        }
        Ok(RequestReview {
            request,
            changes,
            moved,
        })
    }

    /// Approves change request `id` as this client's actor, who must not be
    /// its author ([`Error::SelfApproval`]) nor have approved it already.
    pub async fn approve_request(&self, id: &str) -> Result<ChangeRequest> {
        let mut request = self.open_request(id).await?;
        let actor = &self.author.actor;
        if *actor == request.author {
            return Err(Error::SelfApproval {
                id: request.id,
                actor: actor.clone(),
            });
        }
        if request.approvals.iter().any(|a| a.actor == *actor) {
            return Err(Error::RequestState {
                id: request.id,
                reason: format!("{actor} approved it already"),
            });
        }
        request.approvals.push(Approval {
            actor: actor.clone(),
            time_ms: now_ms(),
        });
        self.update_request(request, "request.approve").await
    }

    /// Closes change request `id` without merging it.
    pub async fn close_request(&self, id: &str) -> Result<ChangeRequest> {
        let mut request = self.open_request(id).await?;
        request.state = RequestState::Closed;
        request.done_by = Some(self.author.actor.clone());
        self.update_request(request, "request.close").await
    }

    /// Bases change request `id` on what is stored now: its changes are
    /// compared anew, its base revisions read again, and its approvals
    /// dropped, since what they approved may have changed.
    pub async fn rebase_request(&self, id: &str) -> Result<ChangeRequest> {
        let mut request = self.open_request(id).await?;
        let plan = self
            .plan_of(&request, &*self.current_policy().await?)
            .await?;
        let evaluators = request
            .flags
            .as_ref()
            .and_then(|d| d.get("$evaluators").cloned());
        let id = request.id.clone();
        self.take_plan(&mut request, &plan, evaluators, &id)?;
        request.approvals.clear();
        self.update_request(request, "request.rebase").await
    }

    /// Merges change request `id`: once it has the approvals the policy
    /// asks for, publishes it as one release, compare-and-set on its base
    /// revisions, and marks it merged in the same transaction. When any of
    /// its names moved since its base, nothing is written
    /// ([`Error::RequestMoved`]).
    pub async fn merge_request(&self, id: &str) -> Result<Release> {
        self.merge_request_with(id, None, None).await
    }

    /// [`merge_request`](Self::merge_request), refused unless the request
    /// is still at revision `pinned` (when given), with `extra` (given the
    /// release's id) compared and written in the same transaction: how a
    /// schedule merges what was approved and marks itself applied at once.
    pub(crate) async fn merge_request_with(
        &self,
        id: &str,
        pinned: Option<Revision>,
        extra: Option<super::releases::StepOps<'_>>,
    ) -> Result<Release> {
        let mut request = self.open_request(id).await?;
        if pinned.is_some_and(|p| p != request.revision) {
            return Err(Error::RequestState {
                id: request.id,
                reason: "it changed after it was scheduled".into(),
            });
        }
        let policy = self.current_policy().await?;
        let needed = policy.approvals as usize;
        let approvals = request.approvals.len();
        if approvals < needed {
            return Err(Error::RequestState {
                id: request.id,
                reason: format!("it needs {needed} approval(s) and has {approvals}"),
            });
        }
        let plan = self.plan_of(&request, &policy).await?;
        let moved = moved_names(&request, &plan);
        if !moved.is_empty() {
            return Err(Error::RequestMoved {
                id: request.id,
                names: moved,
            });
        }
        let key = self.request_key(&request.id)?;
        let expected = request.revision;
        let actor = self.author.actor.clone();
        let step_id = request.id.clone();
        let step = RequestStep {
            id: Some(&step_id),
            with: Box::new(move |release: &str| {
                request.state = RequestState::Merged;
                request.release = Some(release.to_owned());
                request.done_by = Some(actor);
                request.revision = 0;
                let bytes = serde_json::to_vec(&request).expect("serializes");
                let mut compares = vec![Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    expected,
                )];
                let mut ops = vec![TxnOp::put(key.as_str(), bytes, None)];
                if let Some(extra) = extra {
                    let (more_compares, more_ops) = extra(release);
                    compares.extend(more_compares);
                    ops.extend(more_ops);
                }
                (compares, ops)
            }),
        };
        let message = format!("change request {step_id}");
        let merging = match &self.author.message {
            Some(_) => self.clone(),
            None => self.with_message(message),
        };
        match merging.publish_as(&plan, "request.merge", Some(step)).await {
            Ok(Some(release)) => {
                tracing::info!(
                    namespace = self.namespace(),
                    request = %step_id,
                    actor = %self.author.actor,
                    release = %release.id,
                    "change request merged"
                );
                Ok(release)
            }
            Ok(None) => Err(Error::RequestState {
                id: step_id,
                reason: "it changes nothing any more; close it".into(),
            }),
            Err(Error::Conflict { .. }) => {
                // Either a name moved or the request itself changed (an
                // approval, a close) since it was read.
                let request = self.get_request(&step_id).await?;
                let plan = self.plan_of(&request, &policy).await?;
                let moved = moved_names(&request, &plan);
                Err(if moved.is_empty() {
                    Error::RequestState {
                        id: step_id,
                        reason: "it changed while being merged; try again".into(),
                    }
                } else {
                    Error::RequestMoved {
                        id: step_id,
                        names: moved,
                    }
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The request `id`, refused unless it is open.
    async fn open_request(&self, id: &str) -> Result<ChangeRequest> {
        let request = self.get_request(id).await?;
        if request.state != RequestState::Open {
            return Err(Error::RequestState {
                id: request.id,
                reason: format!("it is {} already", request.state.as_str()),
            });
        }
        Ok(request)
    }

    /// What merging `request` would write now, checked as a release is
    /// (today's schemas), whatever the policy protects.
    async fn plan_of(&self, request: &ChangeRequest, policy: &Policy) -> Result<ReleasePlan> {
        let config = Value::Object(request.config.clone()).to_string();
        let flags = request.flags.as_ref().map(Value::to_string);
        self.plan(&config, flags.as_deref(), policy).await
    }

    /// Makes `request` hold just what `plan` changes, based on the
    /// revisions it read.
    fn take_plan(
        &self,
        request: &mut ChangeRequest,
        plan: &ReleasePlan,
        evaluators: Option<Value>,
        id: &str,
    ) -> Result<()> {
        if plan.writes.is_empty() {
            return Err(Error::RequestState {
                id: id.to_owned(),
                reason: "it changes nothing: every value is already as it asks".into(),
            });
        }
        if plan.writes.len() > REQUEST_MAX {
            return Err(Error::ReleaseTooLarge {
                count: plan.writes.len(),
                limit: REQUEST_MAX,
            });
        }
        let mut config = Map::new();
        let mut flags = Map::new();
        let mut base = BTreeMap::new();
        for write in &plan.writes {
            let Some((kind, name)) = key::split_key(self.state.space.base(), write.key.as_bytes())
            else {
                continue;
            };
            let value: Value = write
                .bytes
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            match kind {
                Kind::Flags => {
                    flags.insert(name.to_owned(), value);
                    base.insert(format!("flags/{name}"), write.before);
                }
                _ => {
                    config.insert(name.to_owned(), value);
                    base.insert(name.to_owned(), write.before);
                }
            }
        }
        request.config = config;
        request.flags = (!flags.is_empty()).then(|| {
            let mut document = Map::new();
            if let Some(evaluators) = evaluators {
                document.insert("$evaluators".into(), evaluators);
            }
            document.insert("flags".into(), Value::Object(flags));
            Value::Object(document)
        });
        request.base = base;
        Ok(())
    }

    /// Stores `request` changed, compare-and-set on the revision it was
    /// read at, with the audit record of `action`.
    async fn update_request(
        &self,
        mut request: ChangeRequest,
        action: &str,
    ) -> Result<ChangeRequest> {
        let key = self.request_key(&request.id)?;
        let compare = Compare::mod_revision(key.as_str(), CompareOp::Equal, request.revision);
        match self.request_txn(&request, &key, compare, action).await {
            Ok(revision) => {
                request.revision = revision;
                Ok(request)
            }
            Err(Error::Conflict { .. }) => Err(Error::RequestState {
                id: request.id,
                reason: "it changed meanwhile; look at it again and retry".into(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Puts `request` at `key` if `compare` holds, with its audit record,
    /// which names the request's names and base revisions. A failed
    /// compare is [`Error::Conflict`].
    async fn request_txn(
        &self,
        request: &ChangeRequest,
        key: &str,
        compare: Compare,
        action: &str,
    ) -> Result<Revision> {
        let mut stored = request.clone();
        stored.revision = 0;
        let bytes = value::encode(key, &stored)?;
        let keys: Vec<(String, Revision)> = request
            .base
            .iter()
            .map(|(label, before)| {
                let key = match label.strip_prefix("flags/") {
                    Some(flag) => self.state.space.key_unchecked(Kind::Flags, flag),
                    None => self.state.space.key_unchecked(Kind::Config, label),
                };
                (key, *before)
            })
            .collect();
        let befores: Vec<(&str, Revision)> = keys.iter().map(|(k, r)| (k.as_str(), *r)).collect();
        let (record, _) = self.audit_record(action, &befores, Some(&request.id));
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key, bytes, None), record]);
        let mut kv = self.state.etcd().kv().await?;
        let resp = self.state.etcd().call(key, None, kv.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(Error::Conflict {
                key: key.to_owned(),
                expected: request.revision,
                current: 0,
            });
        }
        tracing::info!(
            namespace = self.namespace(),
            request = %request.id,
            actor = %self.author.actor,
            action,
            "change request"
        );
        Ok(header_revision(resp.header()))
    }

    /// The number after the newest request's.
    async fn next_request_id(&self) -> Result<u64> {
        let start = self.state.space.requests_prefix();
        let end = key::prefix_end(start.clone().into_bytes());
        let options = GetOptions::new()
            .with_range(end)
            .with_keys_only()
            .with_limit(1)
            .with_sort(SortTarget::Key, SortOrder::Descend);
        let mut kv = self.state.etcd().kv().await?;
        let resp = self
            .state
            .etcd()
            .call(&start, None, kv.get(start.as_str(), Some(options)))
            .await?;
        let last = resp
            .kvs()
            .first()
            .and_then(|kv| {
                std::str::from_utf8(kv.key())
                    .ok()?
                    .strip_prefix(&start)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0u64);
        Ok(last + 1)
    }

    /// The etcd key of request `id` (a number).
    fn request_key(&self, id: &str) -> Result<String> {
        let number: u64 = id.parse().map_err(|_| Error::NotFound {
            key: self.state.space.request_key(id),
            revision: None,
        })?;
        Ok(self
            .state
            .space
            .request_key(&format!("{number:0width$}", width = ID_WIDTH)))
    }
}

/// The names of `request` whose revision now (as `plan` read it) is not its
/// base revision.
fn moved_names(request: &ChangeRequest, plan: &ReleasePlan) -> Vec<String> {
    let now: BTreeMap<&str, Revision> = plan.read.iter().map(|(l, r)| (l.as_str(), *r)).collect();
    request
        .base
        .iter()
        .filter(|(label, base)| now.get(label.as_str()) != Some(base))
        .map(|(label, _)| label.clone())
        .collect()
}
