//! Webhooks: definitions per namespace at `{root}/{ns}/webhooks/{id}`, which
//! the elected worker (the `cfgd` server, see [`election`](crate::election))
//! follows to tell receivers of every change, in revision order.
//!
//! A definition holds the receiver's URL, the event types and name prefix
//! it wants, its format (`cloudevents` or `slack`) and its signing secret
//! (`whsec_…`, Standard Webhooks' form), sealed with the secrets key. The
//! worker's progress lives beside it: the cursor (`{id}/cursor`, the last
//! revision delivered), the last 100 attempts (`{id}/log/…`) and the
//! events given up on (`{id}/failed/…`). An index at
//! `{root}/_workers/webhooks/{ns}/{id}` lets the worker find them without
//! reading every namespace.
//!
//! Adding, removing, replaying and testing a webhook are audited writes
//! like any other; the worker's own writes are fenced
//! ([`Client::fenced`](crate::Client::fenced)).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod definitions;
mod delivery;
mod feed;

pub use definitions::WebhookShown;
pub use delivery::{Attempt, Control, Cursor, FailedEvent, LOG_SIZE};
pub use feed::{ChangeFeed, ChangedName, FeedItem, NamespaceChange};

/// The event types a webhook can ask for; none asked: all of them.
/// `io.cfgd.resync` and `io.cfgd.webhook.test` reach every webhook.
pub const EVENT_TYPES: &[&str] = &[
    "io.cfgd.config.changed",
    "io.cfgd.release.published",
    "io.cfgd.request.opened",
    "io.cfgd.request.approved",
    "io.cfgd.request.closed",
    "io.cfgd.schedule.created",
    "io.cfgd.schedule.suspended",
    "io.cfgd.schedule.cancelled",
    "io.cfgd.webhook.failed",
];

/// Sent when etcd compacted past a webhook's cursor: what happened between
/// is gone, and delivery goes on from the current revision.
pub const RESYNC: &str = "io.cfgd.resync";
/// Sent by `cfgctl webhook test`.
pub const TEST: &str = "io.cfgd.webhook.test";

/// How a webhook's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum WebhookFormat {
    /// A CloudEvents 1.0 event in structured JSON mode.
    #[default]
    Cloudevents,
    /// A Slack incoming webhook's `{"text": …}`.
    Slack,
}

impl std::str::FromStr for WebhookFormat {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "cloudevents" => Ok(WebhookFormat::Cloudevents),
            "slack" => Ok(WebhookFormat::Slack),
            other => Err(invalid(format!(
                "format must be cloudevents or slack, not {other:?}"
            ))),
        }
    }
}

/// A webhook as stored, less its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Webhook {
    /// Its id (`wh_` and 16 hex digits).
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The event types it wants; empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Only changes touching a name that starts with this ("": any).
    #[serde(default)]
    pub prefix: String,
    /// How bodies are written.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Who added it.
    pub created_by: String,
    /// When, in milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl Webhook {
    /// Whether it wants events of `event_type`.
    pub fn wants(&self, event_type: &str) -> bool {
        event_type == RESYNC
            || event_type == TEST
            || self.events.is_empty()
            || self.events.iter().any(|e| e == event_type)
    }
}

/// What [`Client::add_webhook`](crate::Client::add_webhook) takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// `http://` or `https://` URL of the receiver.
    pub url: String,
    /// Event types from [`EVENT_TYPES`]; empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Only changes touching names with this prefix.
    #[serde(default)]
    pub prefix: String,
    /// `cloudevents` (the default) or `slack`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// The signing secret, `whsec_` and base64 of 24 to 64 bytes; made
    /// when not given.
    #[serde(default)]
    pub secret: Option<String>,
}

/// The section of a namespace that holds its webhooks.
pub(crate) const SECTION: &str = "webhooks";

/// A stored JSON record, or [`Error::CorruptValue`] naming its key.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(kv: &etcd_client::KeyValue) -> Result<T> {
    serde_json::from_slice(kv.value()).map_err(|cause| Error::CorruptValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        revision: kv.mod_revision(),
        cause,
    })
}

fn invalid(reason: String) -> Error {
    Error::InvalidWebhook { reason }
}

/// Where a receiver is, as read from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    /// `https://`.
    pub https: bool,
    /// The host name or address (IPv6 without its brackets).
    pub host: String,
    /// The port, the scheme's own unless given.
    pub port: u16,
    /// The path and query, at least `/`.
    pub path: String,
}

impl Receiver {
    /// Reads `url`; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| invalid(format!("url {url:?}: {why}"));
        if url.len() > 2048 {
            return Err(bad("longer than 2048 bytes"));
        }
        if url
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad("it holds spaces or control characters"));
        }
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("it must start with http:// or https://"));
        };
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(bad("user names and passwords do not go in the URL"));
        }
        let path = path.split('#').next().unwrap_or("");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("it has no host"));
        }
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("its port is not a number from 1 to 65535"))?,
            None if https => 443,
            None => 80,
        };
        let path = if path.is_empty() || path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Receiver {
            https,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The addresses its host resolves to, refused when one is on loopback
    /// or link-local (the machine itself, or a cloud's metadata service)
    /// unless `allow_loopback`.
    pub async fn resolve(&self, allow_loopback: bool) -> Result<Vec<std::net::SocketAddr>> {
        let found: Vec<_> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| invalid(format!("host {:?} does not resolve: {e}", self.host)))?
            .collect();
        if found.is_empty() {
            return Err(invalid(format!("host {:?} has no address", self.host)));
        }
        if !allow_loopback {
            if let Some(addr) = found.iter().find(|a| is_internal(a.ip())) {
                return Err(invalid(format!(
                    "host {:?} resolves to {}, a loopback or link-local address: refused unless allowed (the server's [webhooks] allow_loopback = true; cfgctl --allow-loopback)",
                    self.host,
                    addr.ip()
                )));
            }
        }
        Ok(found)
    }
}

/// Loopback, link-local or unspecified: addresses a receiver on the
/// network has no business with.
pub fn is_internal(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Checks a spec's fields, naming the first that is wrong.
pub(crate) fn check_spec(spec: &WebhookSpec) -> Result<Receiver> {
    let receiver = Receiver::parse(&spec.url)?;
    if receiver.https {
        return Err(invalid(format!(
            "url {:?}: https receivers are not supported yet; give an http:// URL (a TLS proxy in front of the receiver)",
            spec.url
        )));
    }
    for event in &spec.events {
        if !EVENT_TYPES.contains(&event.as_str()) {
            return Err(invalid(format!(
                "unknown event type {event:?}: it is one of {}",
                EVENT_TYPES.join(", ")
            )));
        }
    }
    if !spec.prefix.is_empty() {
        crate::key::validate_prefix(&spec.prefix)
            .map_err(|e| invalid(format!("prefix {:?}: {e}", spec.prefix)))?;
    }
    if let Some(secret) = &spec.secret {
        secret_key(secret)?;
    }
    Ok(receiver)
}

/// The HMAC key of a `whsec_…` secret.
pub fn secret_key(secret: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    let bad = || invalid("secret must be whsec_ and the base64 of 24 to 64 bytes".into());
    let encoded = secret.strip_prefix("whsec_").ok_or_else(bad)?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| bad())?;
    if !(24..=64).contains(&key.len()) {
        return Err(bad());
    }
    Ok(key)
}

/// A new random `whsec_…` secret.
pub(crate) fn new_secret() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = crate::secret::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let r = Receiver::parse("http://hooks.example:8080/in?x=1").unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.path.as_str()),
            ("hooks.example", 8080, "/in?x=1")
        );
        let r = Receiver::parse("https://[::1]/").unwrap();
        assert_eq!((r.https, r.host.as_str(), r.port), (true, "::1", 443));
        assert_eq!(Receiver::parse("http://h").unwrap().path, "/");
        for bad in [
            "ftp://h/",
            "http://",
            "http://u:p@h/",
            "http://h:0/",
            "http://h:x/",
            "http://h /",
        ] {
            assert!(Receiver::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "192.0.2.7", "2001:db8::1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn secrets() {
        assert_eq!(secret_key(&new_secret()).unwrap().len(), 32);
        assert!(secret_key("whsec_c2hvcnQ=").is_err());
        assert!(secret_key("nope").is_err());
    }
}
