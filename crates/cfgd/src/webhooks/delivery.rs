//! Where each webhook's delivery stands: its cursor, the log of its last
//! attempts, the events given up on, and the requests (replay, test) that
//! the worker takes up. The worker's writes here are fenced.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, TxnOp};
use serde::{Deserialize, Serialize};

use super::{decode, SECTION};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::Revision;

/// How many attempts the log keeps per webhook.
pub const LOG_SIZE: u64 = 100;

/// A webhook's progress: `{id}/cursor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Cursor {
    /// The last revision delivered or given up on; 0 before the first
    /// change after the webhook was added.
    pub revision: Revision,
    /// Attempts made so far: the next one's number in the log.
    pub attempts: u64,
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Attempt {
    /// Its number among the webhook's attempts.
    pub seq: u64,
    /// The event's `webhook-id`, the same on every retry.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The revision of the change it tells of.
    pub revision: Revision,
    /// Which try of this event it was, from 1.
    pub attempt: u32,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// From sending to the answer (or the failure), in milliseconds.
    pub latency_ms: f64,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The replica that sent it.
    pub replica: String,
    /// The nonce of the `cfgctl webhook test` it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
}

impl Attempt {
    /// Attempt number `seq` of the webhook, try `attempt` of the event of
    /// `revision`, sent now by `replica`; its outcome is set after.
    pub fn new(
        seq: u64,
        event_id: &str,
        event_type: &str,
        revision: Revision,
        attempt: u32,
        replica: &str,
    ) -> Self {
        Attempt {
            seq,
            event_id: event_id.to_owned(),
            event_type: event_type.to_owned(),
            revision,
            attempt,
            time_ms: crate::audit::now_ms(),
            status: None,
            latency_ms: 0.0,
            error: None,
            replica: replica.to_owned(),
            test: None,
        }
    }

    /// Whether the receiver took it (a 2xx).
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// An event given up on after its retries: `{id}/failed/{revision}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct FailedEvent {
    /// The revision of the change.
    pub revision: Revision,
    /// Its `webhook-id`.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// How many times it was tried.
    pub attempts: u32,
    /// When it was first tried, in milliseconds since the Unix epoch.
    pub first_ms: u64,
    /// The last try's failure.
    pub last_error: String,
}

impl FailedEvent {
    /// Made for the event of `attempt`, which was its last try.
    pub fn new(attempt: &Attempt, first_ms: u64) -> Self {
        FailedEvent {
            revision: attempt.revision,
            event_id: attempt.event_id.clone(),
            event_type: attempt.event_type.clone(),
            attempts: attempt.attempt,
            first_ms,
            last_error: attempt
                .error
                .clone()
                .or_else(|| attempt.status.map(|s| format!("HTTP {s}")))
                .unwrap_or_default(),
        }
    }
}

/// What was asked of a webhook's worker: `{id}/replay` and `{id}/test`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Control {
    /// Deliver again from this revision.
    pub replay_from: Option<Revision>,
    /// Send a test event with this nonce.
    pub test: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Replay {
    from: Revision,
}

#[derive(Serialize, Deserialize)]
struct Test {
    nonce: String,
}

impl Client {
    /// A webhook's cursor.
    pub async fn webhook_cursor(&self, id: &str) -> Result<Cursor> {
        let key = format!("{}/cursor", self.webhook_key(id)?);
        match self.fetch(&key, None).await? {
            Some(kv) => decode(&kv),
            None => Ok(Cursor::default()),
        }
    }

    /// A webhook's last attempts (at most [`LOG_SIZE`]), newest first.
    pub async fn webhook_deliveries(&self, id: &str) -> Result<Vec<Attempt>> {
        self.stored_webhook(id).await?;
        let prefix = format!("{}/log/", self.webhook_key(id)?);
        let mut out: Vec<Attempt> = self.records(&prefix).await?;
        out.sort_by_key(|a| std::cmp::Reverse(a.seq));
        Ok(out)
    }

    /// The events a webhook gave up on, oldest first.
    pub(crate) async fn failed_events(&self, id: &str) -> Result<Vec<FailedEvent>> {
        let prefix = format!("{}/failed/", self.webhook_key(id)?);
        self.records(&prefix).await
    }

    /// Every JSON record under `prefix`, in key order.
    pub(crate) async fn records<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<T>> {
        let mut kv = self.state.etcd().kv().await?;
        let resp = self
            .state
            .etcd()
            .call(
                prefix,
                None,
                kv.get(prefix, Some(GetOptions::new().with_prefix())),
            )
            .await?;
        resp.kvs().iter().map(decode).collect()
    }

    /// Asks the worker to deliver again every change from revision `from`
    /// (while etcd still has it; older: a resync event, then on).
    pub async fn replay_webhook(&self, id: &str, from: Revision) -> Result<()> {
        let key = self.webhook_key(id)?;
        if from < 1 {
            return Err(super::invalid(format!(
                "replay from revision {from}: revisions start at 1"
            )));
        }
        let (_, created) = self.stored_webhook(id).await?;
        let cursor = self.webhook_cursor(id).await?;
        let delivered = if cursor.revision == 0 {
            created
        } else {
            cursor.revision
        };
        if from > delivered + 1 {
            return Err(super::invalid(format!(
                "replay from revision {from}: delivery is at revision {delivered}, so that would skip what is not delivered yet; replay from {} or earlier",
                delivered + 1
            )));
        }
        let (record, _) = self.trail_op("webhook.replay", SECTION, id);
        let body = serde_json::to_vec(&Replay { from }).expect("serializes");
        let ops = vec![TxnOp::put(format!("{key}/replay"), body, None), record];
        self.plain_txn(&key, vec![exists(&key)], ops).await?;
        Ok(())
    }

    /// Asks the worker to send a test event now, and waits up to `wait` for
    /// its attempt: what the receiver answered.
    pub async fn test_webhook(&self, id: &str, wait: Duration) -> Result<Attempt> {
        let key = self.webhook_key(id)?;
        self.stored_webhook(id).await?;
        let bytes: [u8; 8] = crate::secret::random();
        let nonce = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let body = serde_json::to_vec(&Test {
            nonce: nonce.clone(),
        })
        .expect("serializes");
        let ops = vec![TxnOp::put(format!("{key}/test"), body, None)];
        self.plain_txn(&key, vec![exists(&key)], ops).await?;
        let until = tokio::time::Instant::now() + wait;
        loop {
            let found = self
                .webhook_deliveries(id)
                .await?
                .into_iter()
                .find(|a| a.test.as_deref() == Some(nonce.as_str()));
            if let Some(attempt) = found {
                return Ok(attempt);
            }
            if tokio::time::Instant::now() >= until {
                return Err(Error::Timeout {
                    key: format!("{key}/test"),
                    endpoints: "the elected cfgd server (it sends webhooks): is one running?"
                        .into(),
                    after: wait,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What was asked of a webhook's worker (`{id}/replay`, `{id}/test`).
    pub async fn webhook_control(&self, id: &str) -> Result<Control> {
        let key = self.webhook_key(id)?;
        let start = format!("{key}/replay");
        let end = format!("{key}/test\0");
        let mut kv = self.state.etcd().kv().await?;
        let options = GetOptions::new().with_range(end);
        let resp = self
            .state
            .etcd()
            .call(&start, None, kv.get(start.as_str(), Some(options)))
            .await?;
        let mut control = Control::default();
        for kv in resp.kvs() {
            if kv.key() == start.as_bytes() {
                control.replay_from = Some(decode::<Replay>(kv)?.from);
            } else if kv.key().ends_with(b"/test") {
                control.test = Some(decode::<Test>(kv)?.nonce);
            }
        }
        Ok(control)
    }

    /// Records an attempt (fenced, for the worker): the log entry, the
    /// cursor (moved when it was delivered, or given up on with `failed`),
    /// and the requests it answered removed (`replay`, `test`). Refused
    /// once the webhook is removed.
    pub async fn record_attempt(
        &self,
        id: &str,
        cursor: Cursor,
        attempt: &Attempt,
        failed: Option<&FailedEvent>,
        answered: &[&str],
    ) -> Result<()> {
        let key = self.webhook_key(id)?;
        let mut ops = vec![
            TxnOp::put(
                format!("{key}/cursor"),
                serde_json::to_vec(&cursor).expect("serializes"),
                None,
            ),
            TxnOp::put(
                format!("{key}/log/{:03}", attempt.seq % LOG_SIZE),
                serde_json::to_vec(attempt).expect("serializes"),
                None,
            ),
        ];
        for request in answered {
            ops.push(TxnOp::delete(format!("{key}/{request}"), None));
        }
        if let Some(failed) = failed {
            ops.push(TxnOp::put(
                format!("{key}/failed/{:020}", failed.revision),
                serde_json::to_vec(failed).expect("serializes"),
                None,
            ));
            let (record, _) = self.trail_op("webhook.failed", SECTION, id);
            ops.push(record);
        }
        self.plain_txn(&key, vec![exists(&key)], ops).await?;
        Ok(())
    }

    /// Moves a webhook's cursor past changes it does not want (fenced, for
    /// the worker), so that a restart does not read them again.
    pub async fn advance_cursor(&self, id: &str, cursor: Cursor) -> Result<()> {
        let key = self.webhook_key(id)?;
        let ops = vec![TxnOp::put(
            format!("{key}/cursor"),
            serde_json::to_vec(&cursor).expect("serializes"),
            None,
        )];
        self.plain_txn(&key, vec![exists(&key)], ops).await?;
        Ok(())
    }

    /// Removes the requests a worker took up without an attempt to record
    /// (`replay`), fenced.
    pub async fn clear_control(&self, id: &str, answered: &[&str]) -> Result<()> {
        let key = self.webhook_key(id)?;
        let ops = answered
            .iter()
            .map(|r| TxnOp::delete(format!("{key}/{r}"), None))
            .collect();
        self.plain_txn(&key, vec![exists(&key)], ops).await?;
        Ok(())
    }

    /// Every webhook of every namespace under the root, as `(namespace,
    /// id)`: the worker's index.
    pub async fn webhook_index(&self) -> Result<Vec<(String, String)>> {
        let prefix = format!("{}/_workers/webhooks/", self.state.etcd().root);
        let mut kv = self.state.etcd().kv().await?;
        let options = GetOptions::new().with_prefix().with_keys_only();
        let resp = self
            .state
            .etcd()
            .call(&prefix, None, kv.get(prefix.as_str(), Some(options)))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let rest = std::str::from_utf8(kv.key().get(prefix.len()..)?).ok()?;
                let (ns, id) = rest.split_once('/')?;
                Some((ns.to_owned(), id.to_owned()))
            })
            .collect())
    }
}

/// The compare that `key` exists.
fn exists(key: &str) -> Compare {
    Compare::create_revision(key, CompareOp::Greater, 0)
}
