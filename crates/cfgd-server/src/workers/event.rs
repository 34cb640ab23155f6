//! A webhook's request: its body (a CloudEvents 1.0 event in structured
//! JSON, or Slack's `{"text"}`) and its Standard Webhooks signature.

use base64::Engine as _;
use cfgd::webhooks::{FeedItem, NamespaceChange, WebhookFormat, RESYNC, TEST};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

/// One event for one webhook, the same on every retry.
pub(crate) struct Event {
    /// `webhook-id`: from the namespace and the revision, so that a
    /// receiver can drop repeats.
    pub(crate) id: String,
    pub(crate) event_type: String,
    pub(crate) revision: cfgd::Revision,
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: &'static str,
}

/// What an event tells, before it is written in a webhook's format.
pub(crate) struct Told {
    pub(crate) id: String,
    pub(crate) event_type: String,
    pub(crate) revision: cfgd::Revision,
    pub(crate) subject: Option<String>,
    pub(crate) data: Value,
    pub(crate) summary: String,
    /// When the change was made, by its writer's clock (its audit record's
    /// time); unknown for a change made outside cfgd.
    pub(crate) time_ms: Option<u64>,
}

impl Told {
    /// A feed item's event, or `None` for one no webhook is told of.
    pub(crate) fn of(namespace: &str, item: &FeedItem) -> Option<Told> {
        match item {
            FeedItem::Change(change) => Some(Told::change(namespace, change)?),
            FeedItem::Resync { from, to } => Some(Told {
                id: format!("cfgd-{namespace}-resync-{from}"),
                event_type: RESYNC.to_owned(),
                revision: *to,
                subject: None,
                data: json!({
                    "namespace": namespace,
                    "from": from,
                    "revision": to,
                    "reason": "etcd compacted revisions not yet sent to this webhook: what changed from `from` on cannot be told; delivery goes on after `revision`",
                }),
                summary: format!(
                    "cfgd {namespace}: revisions {from} to {to} were compacted before they were delivered"
                ),
                time_ms: None,
            }),
            _ => None,
        }
    }

    fn change(namespace: &str, change: &NamespaceChange) -> Option<Told> {
        let event_type = change.event_type?;
        let record = change.record.as_ref();
        let actor = record.map_or(cfgd::audit::UNATTRIBUTED, |r| r.actor.as_str());
        let names: Vec<&str> = change.names.iter().map(|n| n.name.as_str()).collect();
        let data = json!({
            "namespace": namespace,
            "revision": change.revision,
            "actor": actor,
            "via": record.map(|r| r.via.as_str()),
            "action": record.map_or("unknown", |r| r.action.as_str()),
            "message": record.and_then(|r| r.message.as_deref()),
            "record": record.map(|r| r.id.as_str()),
            "request": record.and_then(|r| r.request.as_deref()),
            "names": change.names,
            "diff": change.diff,
        });
        let mut summary = format!(
            "cfgd {namespace} r{}: {actor} {} {}",
            change.revision,
            record.map_or("changed", |r| r.action.as_str()),
            names.join(", ")
        );
        if let Some(message) = record.and_then(|r| r.message.as_deref()) {
            summary.push_str(&format!(" ({message})"));
        }
        Some(Told {
            id: format!("cfgd-{namespace}-{}", change.revision),
            event_type: event_type.to_owned(),
            revision: change.revision,
            subject: names
                .first()
                .filter(|n| !n.is_empty())
                .map(|n| (*n).to_owned()),
            data,
            summary,
            time_ms: record.map(|r| r.time_ms).filter(|t| *t > 0),
        })
    }

    /// The event `cfgctl webhook test` asks for.
    pub(crate) fn test(namespace: &str, nonce: &str) -> Told {
        Told {
            id: format!("cfgd-{namespace}-test-{nonce}"),
            event_type: TEST.to_owned(),
            revision: 0,
            subject: None,
            data: json!({ "namespace": namespace, "test": nonce }),
            summary: format!("cfgd {namespace}: a test of this webhook"),
            time_ms: None,
        }
    }

    /// Written in `format`; `time_ms` is the time of an event whose change
    /// has none of its own (the first try's).
    pub(crate) fn written(&self, source: &str, format: WebhookFormat, time_ms: u64) -> Event {
        let time_ms = self.time_ms.unwrap_or(time_ms);
        let (body, content_type) = match format {
            WebhookFormat::Slack => (json!({ "text": self.summary }), "application/json"),
            _ => {
                let mut event = json!({
                    "specversion": "1.0",
                    "id": self.id,
                    "source": source,
                    "type": self.event_type,
                    "time": cfgd::schedules::format_time(time_ms),
                    "datacontenttype": "application/json",
                    "data": self.data,
                });
                if let Some(subject) = &self.subject {
                    event["subject"] = json!(subject);
                }
                (event, "application/cloudevents+json")
            }
        };
        Event {
            id: self.id.clone(),
            event_type: self.event_type.clone(),
            revision: self.revision,
            body: serde_json::to_vec(&body).expect("serializes"),
            content_type,
        }
    }
}

/// `webhook-signature`'s value: `v1,` and the base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` under `key`.
pub(crate) fn signature(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    )
}

#[cfg(test)]
mod tests {
    /// The example of the Standard Webhooks specification.
    #[test]
    fn signs_as_the_standard_says() {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            super::signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
