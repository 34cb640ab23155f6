//! The error type of the library, and its [`ErrorKind`].

mod failure;
mod kind;

use failure::join;
pub use failure::SchemaFailure;
pub use kind::ErrorKind;

use std::time::Duration;

use crate::types::Revision;

/// The error of a dependency under an [`Error`]: its `Display` is in the
/// error's, and it is the error's [`source`](std::error::Error::source), to
/// downcast when its type matters. Kept boxed so that no public field names
/// a dependency's type.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// The result type of every fallible call in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to cfgd's store.
///
/// The `Display` of each variant is one line with all the detail, including
/// that of the underlying error (kept in the `cause` fields), so printing
/// `{error}` is enough.
///
/// Every variant that concerns one key carries the full etcd key (for example
/// `/cfgd/prod/config/database.config`), so a message read in a log names
/// exactly what `etcdctl get` would show.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A namespace that breaks the `[a-z0-9][a-z0-9._-]{0,62}` rule.
    #[error("invalid namespace {namespace:?}: {reason}")]
    InvalidNamespace {
        /// The namespace as given.
        namespace: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A key name (or list prefix) that breaks the naming rules.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A root prefix that is not of the form `/a/b`.
    #[error("invalid root {root:?}: {reason}")]
    InvalidRoot {
        /// The root as given.
        root: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// No endpoint was given to the builder.
    #[error("no etcd endpoint given")]
    NoEndpoints,

    /// An endpoint that is not a usable URL (or `https://` without TLS support).
    #[error("invalid etcd endpoints {endpoints:?}: {}", cause_message(.cause))]
    InvalidEndpoints {
        /// The endpoints as given, comma separated.
        endpoints: String,
        /// What etcd-client said of them (an `etcd_client::Error`, to
        /// downcast when needed).
        #[source]
        cause: Cause,
    },

    /// A TLS file (CA, certificate or key) that cannot be read or holds no
    /// usable PEM, or TLS settings that do not fit the endpoints.
    #[error("TLS: {what}")]
    Tls {
        /// What is wrong, naming the file.
        what: String,
        /// The setting that is missing, when that is the fix; a binary adds
        /// the name of its own flag for it.
        needs: Option<TlsSetting>,
    },

    /// JSON text handed in to be stored is not valid JSON.
    #[error("{key}: value is not valid JSON: {cause}")]
    InvalidJson {
        /// The etcd key it was meant for.
        key: String,
        /// The parser's complaint, with line and column.
        cause: serde_json::Error,
    },

    /// A flag definition (or flagd document) that cfgd refuses to store or
    /// load: it breaks flagd's flag format, names a default variant that is
    /// not among its variants, mixes variant types, or has targeting that is
    /// not valid JsonLogic.
    #[error("{key}: invalid flag definition: {reason}")]
    InvalidFlag {
        /// The etcd key (or the flag name, for a document being loaded).
        key: String,
        /// What exactly is wrong, naming the field.
        reason: String,
    },

    /// A value that fails the JSON Schema of its name; nothing was written.
    #[error("{key}: does not match schema {pattern:?}: {}", join(.failures))]
    SchemaViolation {
        /// The etcd key it was meant for.
        key: String,
        /// The pattern of the schema that governs the name.
        pattern: String,
        /// Each failure: where in the value, and which rule.
        failures: Vec<SchemaFailure>,
    },

    /// A JSON Schema that is not a valid draft 2020-12 document.
    #[error("{key}: invalid JSON Schema: {reason}")]
    InvalidSchema {
        /// The etcd key of the schema.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A schema refused because values already stored would fail it (store
    /// it anyway with `force`).
    #[error("{key}: stored values would fail this schema: {}", .names.join(", "))]
    SchemaConflict {
        /// The etcd key of the schema.
        key: String,
        /// The names whose stored values fail it (at most the first 20).
        names: Vec<String>,
    },

    /// A release with more changes than one etcd transaction holds; it is
    /// never split, so nothing was written.
    #[error("release of {count} changes refused: one etcd transaction holds at most {limit} (etcd's --max-txn-ops, 128, less the audit record)")]
    ReleaseTooLarge {
        /// The changes it had.
        count: usize,
        /// The most one release can have.
        limit: usize,
    },

    /// A revert refused because keys changed after the release.
    #[error("release {id} cannot be reverted: changed since: {}", .names.join(", "))]
    ReleaseMoved {
        /// The release.
        id: String,
        /// The names that changed since it.
        names: Vec<String>,
    },

    /// A policy that is not a JSON object of known fields with valid
    /// patterns and approvals.
    #[error("{key}: invalid policy: {reason}")]
    InvalidPolicy {
        /// The etcd key of the policy.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Namespace settings (`{root}/{ns}/meta`) that are not a JSON object
    /// of known fields with valid values.
    #[error("{key}: invalid namespace settings: {reason}")]
    InvalidMeta {
        /// The etcd key of the settings.
        key: String,
        /// What is wrong with them, naming the field.
        reason: String,
    },

    /// A value that uses the unset marker of layered namespaces other than
    /// as `{"$cfgd.unset": true}` alone, as a name's or a field's value.
    #[error("{key}: invalid unset: {reason}")]
    InvalidUnset {
        /// The etcd key it was meant for.
        key: String,
        /// Where the marker is, as a JSON Pointer, and what is wrong.
        reason: String,
    },

    /// `extends` that cannot stand with the namespaces etcd holds: a parent
    /// that does not exist, the namespace itself, a cycle, more than
    /// [`MAX_DEPTH`](crate::layers::MAX_DEPTH) levels. Nothing is written.
    #[error("{key}: extends refused: {reason}")]
    InvalidExtends {
        /// The etcd key of the settings.
        key: String,
        /// What is wrong, naming the namespaces.
        reason: String,
    },

    /// An overlay's name or settings that cannot be stored.
    #[error("{key}: invalid overlay: {reason}")]
    InvalidOverlay {
        /// The etcd key of the overlay's settings.
        key: String,
        /// What is wrong, naming the field.
        reason: String,
    },

    /// Deleting a namespace that others extend: they would lose their
    /// layer. Change their `extends` first.
    #[error("namespace {namespace:?} is extended by {}: change their extends first", by.join(", "))]
    Extended {
        /// The namespace to be deleted.
        namespace: String,
        /// The namespaces whose `extends` names it.
        by: Vec<String>,
    },

    /// A direct write to a name the namespace's policy protects: it takes a
    /// change request (or, for an operator, a forced write).
    #[error(
        "{key} is protected by the namespace policy (pattern {pattern:?}): open a change request, or force the write"
    )]
    Protected {
        /// The etcd key written.
        key: String,
        /// The protected pattern that covers it.
        pattern: String,
    },

    /// A secret that cannot be read or written as asked: sealed under a
    /// key this client lacks, altered, or written without a key.
    #[error("{key} {reason}")]
    Secret {
        /// The etcd key.
        key: String,
        /// What is wrong, and what to give.
        reason: String,
    },

    /// etcd refused to make roles or users (`cfgctl admin roles`): the
    /// connecting user may not manage auth, most often.
    #[error("making etcd roles failed: {reason} (connect as etcd's root user)")]
    Roles {
        /// etcd's answer.
        reason: String,
    },

    /// A secret key file that cannot be used.
    #[error("{reason}")]
    SecretKey {
        /// What is wrong with it, naming the file.
        reason: String,
    },

    /// An author approving their own change request.
    #[error("change request {id}: {actor} opened it and cannot approve it; another person must")]
    SelfApproval {
        /// The request.
        id: String,
        /// Its author.
        actor: String,
    },

    /// A change request that cannot do what was asked in its state: merged
    /// or closed already, short of approvals, or changing nothing.
    #[error("change request {id}: {reason}")]
    RequestState {
        /// The request.
        id: String,
        /// Why not.
        reason: String,
    },

    /// A change request whose names moved since it was opened (or last
    /// rebased): merging it would overwrite changes its reviewers never
    /// saw, so nothing was written.
    #[error(
        "change request {id} cannot be merged: changed since it was opened: {}; rebase it and have it approved again",
        .names.join(", ")
    )]
    RequestMoved {
        /// The request.
        id: String,
        /// The names that moved.
        names: Vec<String>,
    },

    /// A value could not be serialized to JSON (a map with non-string keys, say).
    #[error("{key}: value cannot be encoded as JSON: {cause}")]
    Encode {
        /// The etcd key it was meant for.
        key: String,
        /// Why serialization failed.
        cause: serde_json::Error,
    },

    /// A value larger than the 1 MiB cfgd allows.
    #[error("{key}: value is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The etcd key it was meant for.
        key: String,
        /// Encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// The stored value is not JSON at all (written by some other tool).
    #[error("{key}: stored value at revision {revision} is not valid JSON: {cause}")]
    CorruptValue {
        /// The etcd key read.
        key: String,
        /// The revision of the bad value.
        revision: Revision,
        /// The parser's complaint.
        cause: serde_json::Error,
    },

    /// The stored value is JSON but not of the type asked for.
    #[error("{key}: value at revision {revision} is not a {type_name}: {cause}")]
    Decode {
        /// The etcd key read.
        key: String,
        /// The revision of the value.
        revision: Revision,
        /// The Rust type asked for.
        type_name: &'static str,
        /// What did not match.
        cause: serde_json::Error,
    },

    /// The key does not exist (or did not exist at the revision asked for).
    #[error("{key}: not found{}", at_revision(*.revision))]
    NotFound {
        /// The etcd key.
        key: String,
        /// The revision looked at, when it was not the latest.
        revision: Option<Revision>,
    },

    /// A write of an elected worker's refused by etcd: the replica no
    /// longer holds the election (its lease expired while it was paused or
    /// cut off), so another may be leading. Nothing was written.
    #[error("{key}: not written: this replica no longer holds the election {election} (its lease is gone)")]
    Fenced {
        /// The etcd key of the write.
        key: String,
        /// The election key the write compared.
        election: String,
    },

    /// A webhook definition that cannot be stored: a bad URL, an unknown
    /// event type or format, a receiver on loopback.
    #[error("invalid webhook: {reason}")]
    InvalidWebhook {
        /// What is wrong, naming the field.
        reason: String,
    },

    /// A schedule that cannot be made: a time in the past or unreadable, a
    /// step list that does not parse, a request that is not approved.
    #[error("invalid schedule: {reason}")]
    InvalidSchedule {
        /// What is wrong.
        reason: String,
    },

    /// A compare-and-set lost: the key's revision is not the one expected.
    #[error(
        "{key}: conflict: expected revision {expected}, but it is {current}{}",
        if *.current == 0 { " (absent)" } else { "" }
    )]
    Conflict {
        /// The etcd key.
        key: String,
        /// The revision the caller expected (0 = must not exist).
        expected: Revision,
        /// The key's revision now (0 = absent).
        current: Revision,
    },

    /// The revision asked for has been compacted away by etcd.
    #[error("{key}: revision {revision} has been compacted")]
    Compacted {
        /// The etcd key.
        key: String,
        /// The revision asked for.
        revision: Revision,
    },

    /// The revision asked for is newer than etcd's current revision.
    #[error("{key}: revision {revision} is in the future")]
    FutureRevision {
        /// The etcd key.
        key: String,
        /// The revision asked for.
        revision: Revision,
    },

    /// etcd could not be reached: no answer within the connect timeout, or
    /// the connection failed.
    #[error("etcd unreachable at {endpoints}: {}", unreachable_detail(*.waited, .cause.as_ref()))]
    Unreachable {
        /// The endpoints tried, comma separated.
        endpoints: String,
        /// How long we waited (zero when the failure was immediate).
        waited: Duration,
        /// The transport error, when there was one rather than silence (an
        /// `etcd_client::Error`).
        #[source]
        cause: Option<Cause>,
    },

    /// A request got no answer within the request timeout.
    #[error("{key}: etcd at {endpoints} did not answer within {after:?}")]
    Timeout {
        /// The etcd key (or prefix) of the request.
        key: String,
        /// The endpoints in use, comma separated.
        endpoints: String,
        /// The request timeout.
        after: Duration,
    },

    /// etcd refused the user name or password.
    #[error("etcd authentication failed for user {user:?}: {message}")]
    AuthFailed {
        /// The user name given.
        user: String,
        /// etcd's own words.
        message: String,
    },

    /// etcd has authentication on and no user was given.
    #[error("etcd at {endpoints} requires authentication: give a user name and password")]
    AuthRequired {
        /// The endpoints in use, comma separated.
        endpoints: String,
    },

    /// The user lacks the etcd permission for this key.
    #[error("{key}: permission denied by etcd")]
    PermissionDenied {
        /// The etcd key.
        key: String,
    },

    /// A snapshot file that is unreadable, corrupt or of another namespace.
    #[error("snapshot {path}: {reason}", path = .path.display())]
    Snapshot {
        /// The snapshot file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A defaults file that is unreadable or invalid.
    #[error("defaults file {path}: {reason}", path = .path.display())]
    Defaults {
        /// The defaults file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A live feature (watch, subscribe, snapshot, defaults file) was used
    /// on a client built with `live(false)`.
    #[error("{what} needs a live client; this one was built with live(false)")]
    NotLive {
        /// The feature asked for.
        what: &'static str,
    },

    /// Any other failure reported by etcd or its client.
    #[error("{key}: etcd error: {}", cause_message(.cause))]
    Etcd {
        /// The etcd key (or prefix) of the request.
        key: String,
        /// The underlying error (an `etcd_client::Error`).
        #[source]
        cause: Cause,
    },
}

/// A TLS setting of [`ClientBuilder`](crate::ClientBuilder), named in
/// [`Error::Tls`] when it is the one missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsSetting {
    /// [`ClientBuilder::ca_file`](crate::ClientBuilder::ca_file): the CA
    /// that signs etcd's certificates.
    CaFile,
    /// [`ClientBuilder::client_cert`](crate::ClientBuilder::client_cert): a
    /// client certificate and key.
    ClientCert,
}

fn at_revision(revision: Option<Revision>) -> String {
    revision.map_or_else(String::new, |r| format!(" at revision {r}"))
}

fn unreachable_detail(waited: Duration, source: Option<&Cause>) -> String {
    match source {
        Some(e) => cause_message(e),
        None => format!("no answer within {waited:?}"),
    }
}

/// A cause's words: etcd's own sentence for etcd-client's errors.
fn cause_message(cause: &Cause) -> String {
    match cause.downcast_ref::<etcd_client::Error>() {
        Some(e) => etcd_message(e),
        None => cause.to_string(),
    }
}

/// etcd-client's `Display` for a gRPC status includes metadata and details;
/// people only need etcd's own sentence.
pub(crate) fn etcd_message(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            // A transport failure hides its cause ("Connection refused")
            // at the bottom of the status's source chain.
            let mut root: &dyn std::error::Error = status;
            while let Some(next) = root.source() {
                root = next;
            }
            let root_text = root.to_string();
            if std::ptr::addr_eq(root, status) || status.message().contains(&root_text) {
                status.message().to_owned()
            } else {
                format!("{}: {root_text}", status.message())
            }
        }
        other => other.to_string(),
    }
}

impl Error {
    /// What kind of failure this is: what every front end (exit codes,
    /// HTTP statuses, gRPC codes) maps from.
    pub fn kind(&self) -> ErrorKind {
        kind::of(self)
    }

    /// A stable snake_case name of what went wrong, finer than
    /// [`kind`](Self::kind) (`invalid_flag`, `protected`, `not_found`...):
    /// the `code` of the server's error bodies.
    pub fn code(&self) -> &'static str {
        kind::code(self)
    }

    /// True when the error means etcd could not be reached or did not answer
    /// in time, as opposed to etcd answering "no".
    pub fn is_unreachable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    /// True when the error is about the caller's input (names, JSON, size,
    /// TLS settings, a value its schema refuses) and nothing was sent to etcd.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::InvalidInput
                | ErrorKind::TooLarge
                | ErrorKind::SchemaViolation
                | ErrorKind::SchemaConflict
                | ErrorKind::Tls
        )
    }
}

impl From<cfgd_flags::InvalidFlag> for Error {
    fn from(e: cfgd_flags::InvalidFlag) -> Self {
        Error::InvalidFlag {
            key: e.key,
            reason: e.reason,
        }
    }
}
