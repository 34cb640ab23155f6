//! Adding, reading and removing webhook definitions, each one audited
//! transaction with its index key.

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::delivery::{Cursor, FailedEvent};
use super::{check_spec, decode, invalid, new_secret, Webhook, WebhookSpec, SECTION};
use crate::audit::{now_ms, AuditName, AuditRecord};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::etcd::header_revision;
use crate::types::Revision;

/// A webhook as stored: the definition and its sealed secret.
#[derive(Serialize, Deserialize)]
pub(crate) struct Stored {
    #[serde(flatten)]
    pub(crate) webhook: Webhook,
    /// `whsec_…`, sealed with the secrets key.
    pub(crate) secret: String,
}

/// A webhook with where its delivery stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct WebhookShown {
    /// The definition.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The last revision delivered (or skipped as failed).
    pub cursor: Revision,
    /// The events given up on after their retries, oldest first.
    pub failed: Vec<FailedEvent>,
}

impl Client {
    /// `{base}webhooks/{id}`; the id is checked first.
    pub(crate) fn webhook_key(&self, id: &str) -> Result<String> {
        let ok = id.len() == 19
            && id.starts_with("wh_")
            && id[3..].bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(Error::NotFound {
                key: format!("{}{SECTION}/{id}", self.state.space.base()),
                revision: None,
            });
        }
        Ok(format!("{}{SECTION}/{id}", self.state.space.base()))
    }

    /// `{root}/_workers/webhooks/{ns}/{id}`: how the worker finds it.
    pub(crate) fn webhook_index_key(&self, id: &str) -> String {
        format!(
            "{}/_workers/webhooks/{}/{id}",
            self.state.etcd().root,
            self.namespace()
        )
    }

    /// The audit record of a governance step on something other than a
    /// value (a webhook, a schedule), named `kind`/`name`.
    pub(crate) fn trail_op(&self, action: &str, kind: &str, name: &str) -> (TxnOp, String) {
        let names = vec![AuditName {
            name: name.to_owned(),
            kind: kind.to_owned(),
            before: 0,
        }];
        let record = AuditRecord::new(&self.author, action, names);
        let key = self.state.space.audit_key(&record.id);
        let json = serde_json::to_vec(&record).expect("serializes");
        (TxnOp::put(key, json, None), record.id)
    }

    /// Adds a webhook to this namespace and answers it with its signing
    /// secret (made when the spec has none): the only time the secret is
    /// shown. Deliveries start with the next change. The receiver's host
    /// must resolve, and not to loopback or link-local unless
    /// `allow_loopback`. Needs the secrets key, which seals the secret.
    pub async fn add_webhook(
        &self,
        spec: &WebhookSpec,
        allow_loopback: bool,
    ) -> Result<(Webhook, String)> {
        let receiver = check_spec(spec)?;
        receiver.resolve(allow_loopback).await?;
        let Some(keyring) = &self.state.link.keyring else {
            return Err(invalid(
                "a webhook's signing secret is sealed with the secrets key: give one (--secret-key-file)".into(),
            ));
        };
        let bytes: [u8; 8] = crate::secret::random();
        let id = format!(
            "wh_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let key = self.webhook_key(&id)?;
        let secret = spec.secret.clone().unwrap_or_else(new_secret);
        let webhook = Webhook {
            id: id.clone(),
            url: spec.url.clone(),
            events: spec.events.clone(),
            prefix: spec.prefix.clone(),
            format: spec.format,
            created_by: self.author.actor.clone(),
            created_ms: now_ms(),
        };
        let sealed = keyring.seal(&key, secret.as_bytes());
        let stored = Stored {
            webhook: webhook.clone(),
            secret: String::from_utf8(sealed).expect("a sealed envelope is text"),
        };
        let (record, _) = self.trail_op("webhook.add", SECTION, &id);
        let compares = vec![Compare::create_revision(key.as_str(), CompareOp::Equal, 0)];
        let ops = vec![
            TxnOp::put(
                key.as_str(),
                serde_json::to_vec(&stored).expect("serializes"),
                None,
            ),
            TxnOp::put(
                format!("{key}/cursor"),
                serde_json::to_vec(&Cursor::default()).expect("serializes"),
                None,
            ),
            TxnOp::put(self.webhook_index_key(&id), "", None),
            record,
        ];
        self.plain_txn(&key, compares, ops).await?;
        tracing::info!(namespace = self.namespace(), webhook = %id, url = %webhook.url, "webhook added");
        Ok((webhook, secret))
    }

    /// This namespace's webhooks, oldest first.
    pub async fn webhooks(&self) -> Result<Vec<Webhook>> {
        let prefix = format!("{}{SECTION}/", self.state.space.base());
        let mut kv = self.state.etcd().kv().await?;
        let resp = self
            .state
            .etcd()
            .call(
                &prefix,
                None,
                kv.get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
            )
            .await?;
        let mut out = Vec::new();
        for kv in resp.kvs() {
            let rest = &kv.key()[prefix.len()..];
            if rest.contains(&b'/') {
                continue;
            }
            out.push(decode::<Stored>(kv)?.webhook);
        }
        out.sort_by_key(|w| w.created_ms);
        Ok(out)
    }

    /// One webhook, stored as `(definition, its sealed secret)`, with the
    /// revision it was made at.
    pub(crate) async fn stored_webhook(&self, id: &str) -> Result<(Stored, Revision)> {
        let key = self.webhook_key(id)?;
        let kv = self.fetch(&key, None).await?.ok_or(Error::NotFound {
            key: key.clone(),
            revision: None,
        })?;
        Ok((decode(&kv)?, kv.create_revision()))
    }

    /// What the worker delivers with: a webhook, its HMAC key (the secret
    /// opened with the secrets key) and the revision it was added at.
    pub async fn webhook_for_delivery(&self, id: &str) -> Result<(Webhook, Vec<u8>, Revision)> {
        let (stored, created) = self.stored_webhook(id).await?;
        let key = self.webhook_key(id)?;
        let Some(keyring) = &self.state.link.keyring else {
            return Err(Error::Secret {
                key,
                reason: "is sealed, and this server has no secrets key (secret_key_file)".into(),
            });
        };
        let secret = keyring.open(&key, stored.secret.as_bytes())?;
        let secret = String::from_utf8(secret).map_err(|_| Error::Secret {
            key: key.clone(),
            reason: "opens to text that is not UTF-8".into(),
        })?;
        Ok((stored.webhook, super::secret_key(&secret)?, created))
    }

    /// One webhook and where its delivery stands.
    pub async fn webhook(&self, id: &str) -> Result<WebhookShown> {
        let (stored, _) = self.stored_webhook(id).await?;
        let cursor = self.webhook_cursor(id).await?;
        let failed = self.failed_events(id).await?;
        Ok(WebhookShown {
            webhook: stored.webhook,
            cursor: cursor.revision,
            failed,
        })
    }

    /// Removes a webhook with its cursor, log and index entry; deliveries
    /// to it stop.
    pub async fn remove_webhook(&self, id: &str) -> Result<()> {
        let key = self.webhook_key(id)?;
        self.stored_webhook(id).await?;
        let (record, _) = self.trail_op("webhook.remove", SECTION, id);
        let compares = vec![Compare::create_revision(
            key.as_str(),
            CompareOp::Greater,
            0,
        )];
        let ops = vec![
            TxnOp::delete(key.as_str(), None),
            TxnOp::delete(
                format!("{key}/"),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            ),
            TxnOp::delete(self.webhook_index_key(id), None),
            record,
        ];
        self.plain_txn(&key, compares, ops).await?;
        tracing::info!(namespace = self.namespace(), webhook = %id, "webhook removed");
        Ok(())
    }

    /// One transaction that must succeed: `Conflict` on `key` otherwise,
    /// or [`Error::Fenced`] when this handle's fence is gone. A fenced
    /// handle adds its fence's compare.
    pub(crate) async fn plain_txn(
        &self,
        key: &str,
        mut compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<Revision> {
        compares.extend(self.fence_compare());
        let txn = Txn::new().when(compares).and_then(ops);
        let mut kv = self.state.etcd().kv().await?;
        let resp = self.state.etcd().call(key, None, kv.txn(txn)).await?;
        if !resp.succeeded() {
            if let Some(fenced) = self.fence_lost(key).await {
                return Err(fenced);
            }
            // Someone else's write got there first: what `key` is now.
            let current = self
                .fetch(key, None)
                .await?
                .map_or(0, |kv| kv.mod_revision());
            if current == 0 {
                return Err(Error::NotFound {
                    key: key.to_owned(),
                    revision: None,
                });
            }
            return Err(Error::Conflict {
                key: key.to_owned(),
                expected: 0,
                current,
            });
        }
        Ok(header_revision(resp.header()))
    }
}
