//! A namespace's changes from a revision on, one per revision, each joined
//! to the audit record written in its transaction: what webhooks deliver.
//!
//! One etcd watch from the cursor over the namespace's keys that sort
//! before `webhooks/` (everything but the webhooks themselves, so the
//! worker's own cursor writes never wake it). Every
//! write through cfgd puts its audit record in the same transaction as its
//! change, so a revision's events hold both; a revision without a record
//! was made outside cfgd and goes out as unattributed.

use std::collections::VecDeque;
use std::sync::Arc;

use etcd_client::{EventType, WatchOptions, WatchStream};
use serde_json::Value;

use super::SECTION;
use crate::audit::AuditRecord;
use crate::client::Client;
use crate::diff::{self, NamedDiff};
use crate::error::{Error, Result};
use crate::key::{self, Kind};
use crate::policy::{Policy, REDACTED};
use crate::types::Revision;

/// One name a change touched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ChangedName {
    /// `config`, `flags`, `schemas`, `policy`, `meta`, `overlays`,
    /// `requests` or `schedules`.
    pub kind: String,
    /// The name within its kind (`""` for the policy and the settings).
    pub name: String,
    /// Whether it was deleted.
    pub deleted: bool,
}

/// One revision's change of a namespace.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NamespaceChange {
    /// Its revision.
    pub revision: Revision,
    /// Its event type (see [`EVENT_TYPES`](super::EVENT_TYPES)); `None`
    /// for a change no webhook is told of (webhook definitions).
    pub event_type: Option<&'static str>,
    /// The audit record written with it; `None`: made outside cfgd.
    pub record: Option<AuditRecord>,
    /// What it touched.
    pub names: Vec<ChangedName>,
    /// Its values' differences, path by path, secrets' values redacted.
    pub diff: Vec<NamedDiff>,
}

impl NamespaceChange {
    /// Whether it concerns names starting with `prefix` (`""`: any): a
    /// change of values (config, flags, overlays) that touches one, or a
    /// change of no value at all (a request's step, a schedule's, a failed
    /// webhook), which a prefix does not filter.
    pub fn touches(&self, prefix: &str) -> bool {
        let values: Vec<&ChangedName> = self
            .names
            .iter()
            .filter(|n| ["config", "flags", "overlays"].contains(&n.kind.as_str()))
            .collect();
        prefix.is_empty() || values.is_empty() || values.iter().any(|n| n.name.starts_with(prefix))
    }
}

/// What a [`ChangeFeed`] gives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FeedItem {
    /// The next change.
    Change(Box<NamespaceChange>),
    /// etcd compacted revisions the feed had not read (from `from`): what
    /// changed between cannot be told, so the feed goes on after `to`, the
    /// revision current then.
    Resync {
        /// The first revision that could not be read.
        from: Revision,
        /// The revision the feed goes on after.
        to: Revision,
    },
}

/// A namespace's changes in revision order: see [`Client::change_feed`].
pub struct ChangeFeed {
    client: Client,
    stream: Option<WatchStream>,
    /// The next revision to read.
    next: Revision,
    ready: VecDeque<FeedItem>,
    policy: Arc<Policy>,
    /// A change touched the policy: read it again before the next read.
    stale_policy: bool,
}

impl Client {
    /// The changes of this namespace after revision `after`, each with its
    /// audit record and diff.
    pub async fn change_feed(&self, after: Revision) -> Result<ChangeFeed> {
        Ok(ChangeFeed {
            client: self.clone(),
            stream: None,
            next: after + 1,
            ready: VecDeque::new(),
            policy: self.current_policy().await?,
            stale_policy: false,
        })
    }
}

impl ChangeFeed {
    /// The revision the next item starts at.
    pub fn position(&self) -> Revision {
        self.next
    }

    /// The next change (waiting for it). An error (etcd unreachable) leaves
    /// the feed where it was: call again to go on. Cancel-safe: dropped
    /// while waiting, it loses nothing.
    pub async fn next(&mut self) -> Result<FeedItem> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(item);
            }
            if self.stale_policy {
                self.policy = self.client.current_policy().await?;
                self.stale_policy = false;
            }
            if self.stream.is_none() {
                self.stream = Some(self.open().await?);
            }
            let stream = self.stream.as_mut().expect("opened");
            let answer = match stream.message().await {
                Ok(Some(answer)) => answer,
                Ok(None) | Err(_) => {
                    // Watched again from where it stood.
                    self.stream = None;
                    return Err(Error::Etcd {
                        key: self.client.state.space.base().to_owned(),
                        cause: "the webhooks' watch ended".into(),
                    });
                }
            };
            if answer.compact_revision() > 0 {
                let to =
                    crate::etcd::header_revision(answer.header()).max(answer.compact_revision());
                self.ready.push_back(FeedItem::Resync {
                    from: self.next,
                    to,
                });
                self.next = to + 1;
                self.stream = None;
                continue;
            }
            if answer.canceled() {
                // Refused (a permission, say): not straight back.
                self.stream = None;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
            self.take(answer.events());
        }
    }

    async fn open(&self) -> Result<WatchStream> {
        let base = self.client.state.space.base();
        let end = format!("{base}{SECTION}/");
        let etcd = self.client.state.etcd();
        let mut raw = etcd.etcd().await?.client.clone();
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(self.next)
            .with_prev_key();
        raw.watch(base, Some(options))
            .await
            .map_err(|e| etcd.classify(e, base, Some(self.next)))
    }

    /// Groups a watch answer's events by revision into changes.
    fn take(&mut self, events: &[etcd_client::Event]) {
        let base = self.client.state.space.base().to_owned();
        let mut i = 0;
        while i < events.len() {
            let revision = events[i].kv().map_or(0, |kv| kv.mod_revision());
            let mut j = i;
            while j < events.len() && events[j].kv().map_or(0, |kv| kv.mod_revision()) == revision {
                j += 1;
            }
            let change = self.change(&base, revision, &events[i..j]);
            if change
                .names
                .iter()
                .any(|n| n.kind == Kind::Policy.segment())
            {
                self.stale_policy = true;
            }
            if !change.names.is_empty() || change.record.is_some() {
                self.ready.push_back(FeedItem::Change(Box::new(change)));
            }
            self.next = revision + 1;
            i = j;
        }
    }

    fn change(
        &self,
        base: &str,
        revision: Revision,
        events: &[etcd_client::Event],
    ) -> NamespaceChange {
        let mut record = None;
        let mut names = Vec::new();
        let mut pairs: Vec<(String, Option<Value>, Option<Value>, bool)> = Vec::new();
        for event in events {
            let Some(kv) = event.kv() else { continue };
            let deleted = event.event_type() == EventType::Delete;
            let Some(rest) = std::str::from_utf8(kv.key())
                .ok()
                .and_then(|k| k.strip_prefix(base))
            else {
                continue;
            };
            if let Some(id) = rest.strip_prefix("audit/") {
                if !deleted {
                    record = serde_json::from_slice::<AuditRecord>(kv.value())
                        .ok()
                        .map(|mut r| {
                            r.revision = revision;
                            if r.id.is_empty() {
                                r.id = id.to_owned();
                            }
                            r
                        });
                }
                continue;
            }
            for trail in ["requests", "schedules"] {
                if let Some(name) = rest.strip_prefix(trail).and_then(|r| r.strip_prefix('/')) {
                    names.push(ChangedName {
                        kind: trail.to_owned(),
                        name: name.to_owned(),
                        deleted,
                    });
                }
            }
            let Some((kind, name)) = key::split_key(base, kv.key()) else {
                continue;
            };
            if kind == Kind::Children {
                continue;
            }
            names.push(ChangedName {
                kind: kind.segment().to_owned(),
                name: name.to_owned(),
                deleted,
            });
            if matches!(kind, Kind::Config | Kind::Flags | Kind::Overlays) {
                let json = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).ok();
                let sealed = crate::secret::is_sealed(kv.value())
                    || event
                        .prev_kv()
                        .is_some_and(|p| crate::secret::is_sealed(p.value()));
                let secret = sealed
                    || match kind {
                        Kind::Config => self.policy.is_secret(name),
                        Kind::Overlays => name
                            .split_once("/config/")
                            .is_some_and(|(_, n)| self.policy.is_secret(n)),
                        _ => false,
                    };
                let label = match kind {
                    Kind::Config => name.to_owned(),
                    other => format!("{}/{name}", other.segment()),
                };
                let before = event.prev_kv().and_then(|p| json(p.value()));
                let after = if deleted { None } else { json(kv.value()) };
                pairs.push((label, before, after, secret));
            }
        }
        if names.is_empty() {
            // A step that changed no watched key (a webhook given up on):
            // what its record names.
            if let Some(r) = &record {
                names = r
                    .names
                    .iter()
                    .map(|n| ChangedName {
                        kind: n.kind.clone(),
                        name: n.name.clone(),
                        deleted: false,
                    })
                    .collect();
            }
        }
        let mut diff = diff::diff_named(
            pairs
                .iter()
                .map(|(n, b, a, _)| (n.as_str(), b.as_ref(), a.as_ref())),
        );
        for change in &mut diff {
            if pairs
                .iter()
                .any(|(n, _, _, secret)| *secret && *n == change.name)
            {
                change.redact(REDACTED);
            }
        }
        NamespaceChange {
            revision,
            event_type: event_type(record.as_ref(), &names),
            record,
            names,
            diff,
        }
    }
}

/// A change's event type, from what its record says it did.
fn event_type(record: Option<&AuditRecord>, names: &[ChangedName]) -> Option<&'static str> {
    let Some(record) = record else {
        return (!names.is_empty()).then_some("io.cfgd.config.changed");
    };
    Some(match record.action.as_str() {
        a if record.is_release() || a.starts_with("release") => "io.cfgd.release.published",
        "request.create" | "request.rebase" => "io.cfgd.request.opened",
        "request.approve" => "io.cfgd.request.approved",
        "request.close" => "io.cfgd.request.closed",
        "schedule.create" => "io.cfgd.schedule.created",
        "schedule.suspend" => "io.cfgd.schedule.suspended",
        "schedule.cancel" => "io.cfgd.schedule.cancelled",
        "webhook.failed" => "io.cfgd.webhook.failed",
        a if a.starts_with("webhook.") => return None,
        _ => "io.cfgd.config.changed",
    })
}
