//! The audit trail: one record per write through cfgd, put in the same etcd
//! transaction as the change, so that there is never a change without its
//! record nor a record without its change, and the record's `mod_revision`
//! is the change's revision.
//!
//! Records live at `{root}/{namespace}/audit/{id}`; ids sort by time. They
//! hold names and revisions, never values, so no secret reaches them.
//! Live clients never keep them in memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::types::Revision;

/// The actor of a change made without cfgd.
pub const UNATTRIBUTED: &str = "unattributed";

/// How a write came to cfgd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Via {
    /// A service using the library.
    Library,
    /// The `cfgctl` command.
    Cfgctl,
    /// The `cfgd` server's REST API.
    Http,
    /// The `cfgd` web console.
    Console,
    /// The elected worker, applying a schedule made by the actor.
    Schedule,
}

impl Via {
    /// `library`, `cfgctl`, `http`, `console` or `schedule`, as records say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Library => "library",
            Via::Cfgctl => "cfgctl",
            Via::Http => "http",
            Via::Console => "console",
            Via::Schedule => "schedule",
        }
    }
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Who writes, how, and why: what every write's audit record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Author {
    pub(crate) actor: String,
    pub(crate) via: Via,
    pub(crate) message: Option<String>,
    /// Writes past the policy's protection (an operator's choice), and
    /// says so in each record.
    pub(crate) forced: bool,
    /// The leadership the writer must still hold: every transaction of a
    /// fenced handle (an elected worker's) compares it, so a writer that
    /// lost its lease writes nothing.
    pub(crate) fence: Option<crate::election::Fence>,
}

impl Author {
    /// The local OS user, as `user@host`: the actor when none is given.
    pub(crate) fn local() -> Self {
        Author {
            actor: local_actor(),
            via: Via::Library,
            message: None,
            forced: false,
            fence: None,
        }
    }
}

/// `user@host` from the environment and `/etc/hostname`.
pub fn local_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// One name a write touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct AuditName {
    /// The name within the namespace (a schema's pattern for a schema).
    pub name: String,
    /// `config`, `flags` or `schemas`.
    pub kind: String,
    /// The key's revision before the write (0: it did not exist).
    pub before: Revision,
}

/// One write, as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct AuditRecord {
    /// Unique, and sorted by time.
    pub id: String,
    /// The revision of the write (the record's own `mod_revision`); not
    /// stored in the record, which cannot know it before it is written.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: Revision,
    /// Who wrote: a token's name, an etcd user, `user@host`, or what the
    /// library was told; `unattributed` for a change made without cfgd.
    pub actor: String,
    /// How the write came.
    pub via: String,
    /// What it did: `set`, `delete`, `rollback`, `import`, `flag.set`, ...
    pub action: String,
    /// The names it touched, with their revisions before.
    pub names: Vec<AuditName>,
    /// Why, as the writer said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When, in milliseconds since the Unix epoch, by the writer's clock.
    pub time_ms: u64,
    /// True for a write forced past the namespace policy's protection.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
    /// The change request this step was of (`request.*` actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

fn is_zero(revision: &Revision) -> bool {
    *revision == 0
}

impl AuditRecord {
    pub(crate) fn new(author: &Author, action: &str, names: Vec<AuditName>) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Random per process rather than its pid: a container's main
        // process is commonly pid 1, and two writers that made the same id
        // would each put the same key, the second record replacing the
        // first.
        static WRITER: OnceLock<u64> = OnceLock::new();
        let writer = *WRITER.get_or_init(|| u64::from_le_bytes(crate::secret::random()));
        let time_ms = now_ms();
        // Time first so ids sort by time; the writer and its counter make
        // two writes in the same millisecond distinct.
        let id = format!(
            "{time_ms:013}-{writer:016x}-{:x}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        AuditRecord {
            id,
            revision: 0,
            actor: author.actor.clone(),
            via: author.via.as_str().to_owned(),
            action: action.to_owned(),
            names,
            message: author.message.clone(),
            time_ms,
            forced: author.forced,
            request: None,
        }
    }

    /// A current value's change that no record accounts for.
    pub(crate) fn unattributed(kind: &str, name: &str, revision: Revision) -> Self {
        AuditRecord {
            id: String::new(),
            revision,
            actor: UNATTRIBUTED.to_owned(),
            via: String::new(),
            action: "unknown".to_owned(),
            names: vec![AuditName {
                name: name.to_owned(),
                kind: kind.to_owned(),
                before: 0,
            }],
            message: None,
            time_ms: 0,
            forced: false,
            request: None,
        }
    }

    /// Whether it is a release: published, reverted, or a merged change
    /// request (each revertible as one).
    pub fn is_release(&self) -> bool {
        self.action.starts_with("release") || self.action == "request.merge"
    }

    /// Whether it touched a name starting with `prefix` (`""`: any record).
    pub fn touches(&self, prefix: &str) -> bool {
        prefix.is_empty() || self.names.iter().any(|n| n.name.starts_with(prefix))
    }
}
