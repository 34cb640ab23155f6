//! The JSON bodies the REST routes answer with, and the parameters they
//! take, as types: each handler serializes one of these, and
//! `/openapi.json` describes the same type (`utoipa::ToSchema`,
//! `IntoParams`), so the document cannot say one thing while the server
//! sends another.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use cfgd::diff::NamedDiff;
use cfgd::Revision;

/// Every error: what went wrong, as a stable code and a sentence.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

/// The error of an [`ErrorBody`].
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable, for programs: `not_found`, `conflict`, `invalid_name`,
    /// `schema_violation`, `unauthorized`, ...
    #[schema(example = "not_found")]
    pub(crate) code: String,
    /// One line, for people.
    pub(crate) message: String,
    /// For a schema violation (422): each failure, where and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(nullable = false)]
    pub(crate) failures: Vec<Failure>,
}

/// One way a value fails its schema.
#[derive(Serialize, ToSchema)]
pub(crate) struct Failure {
    /// Where in the value, as a JSON Pointer.
    pub(crate) pointer: String,
    /// The rule it breaks.
    pub(crate) message: String,
}

/// A write or a delete done: the name and the revision it took effect at
/// (also the `ETag`).
#[derive(Serialize, ToSchema)]
pub(crate) struct Written {
    pub(crate) name: String,
    pub(crate) revision: Revision,
}

/// A `?dry_run=true` write that would succeed: nothing was written.
#[derive(Serialize, ToSchema)]
pub(crate) struct Checked {
    pub(crate) name: String,
    /// Always true.
    pub(crate) dry_run: bool,
}

/// One stored value in a list.
#[derive(Serialize, ToSchema)]
pub(crate) struct Item {
    pub(crate) name: String,
    /// The value; `"<redacted>"` for a secret (`GET` of the one name shows
    /// it, to a token with the secrets scope).
    pub(crate) value: Value,
    /// The etcd revision it was last written at.
    pub(crate) revision: Revision,
    /// How many times it was written since it was created.
    pub(crate) version: i64,
    /// Present, and true, for a secret.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(default = false)]
    pub(crate) secret: bool,
}

/// `/readyz`: ready, and where the values come from.
#[derive(Serialize, ToSchema)]
pub(crate) struct Ready {
    /// Always `ready` (a server that is not answers 503).
    pub(crate) status: &'static str,
    /// `etcd`; `snapshot` or `cache` while etcd is away.
    #[schema(example = "etcd")]
    pub(crate) source: &'static str,
    /// Why etcd did not answer, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) etcd: Option<String>,
}

/// `/v1/whoami`: the token, for the console to hide what it may not do.
#[derive(Serialize, ToSchema)]
pub(crate) struct Whoami {
    /// False when the server runs with `--no-auth`.
    pub(crate) auth: bool,
    /// The token's name.
    pub(crate) name: String,
    /// Namespace (or `*`) → `read`, `write`, `secrets` or `admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) scopes: Option<BTreeMap<String, String>>,
}

/// A namespace the token may read.
#[derive(Serialize, ToSchema)]
pub(crate) struct NamespaceSummary {
    pub(crate) name: String,
    /// The token's scope there.
    pub(crate) scope: &'static str,
    /// How many config values it holds.
    pub(crate) values: u64,
    /// How many flags it holds.
    pub(crate) flags: u64,
}

/// What the namespace policy says of one name.
#[derive(Serialize, ToSchema)]
pub(crate) struct PolicyOf {
    pub(crate) name: String,
    /// The pattern that protects it, if one does.
    pub(crate) protected: Option<String>,
    /// Whether its value is shown redacted in diffs.
    pub(crate) secret: bool,
}

/// A release published (or, for a dry run, what it would change: no id,
/// no revision).
#[derive(Serialize, ToSchema)]
pub(crate) struct Published {
    pub(crate) id: Option<String>,
    pub(crate) revision: Option<Revision>,
    pub(crate) changes: Vec<NamedDiff>,
}

impl From<cfgd::Release> for Published {
    fn from(release: cfgd::Release) -> Self {
        Published {
            id: Some(release.id),
            revision: Some(release.revision),
            changes: release.changes,
        }
    }
}

/// A release, with what it changed.
#[derive(Serialize, ToSchema)]
pub(crate) struct ReleaseShown {
    #[serde(flatten)]
    pub(crate) record: cfgd::audit::AuditRecord,
    pub(crate) changes: Vec<NamedDiff>,
}

/// A change request, with what merging it would change now.
#[derive(Serialize, ToSchema)]
pub(crate) struct Review {
    #[serde(flatten)]
    pub(crate) request: cfgd::ChangeRequest,
    pub(crate) changes: Vec<NamedDiff>,
    /// The names changed since its base: while any is, it can be rebased
    /// or closed, not merged.
    pub(crate) moved: Vec<String>,
}

/// A change request merged: the release it became.
#[derive(Serialize, ToSchema)]
pub(crate) struct Merged {
    /// The release's id.
    pub(crate) release: String,
    pub(crate) revision: Revision,
    pub(crate) changes: Vec<NamedDiff>,
}

/// What a step on a change request answers: the request as it now is, or
/// the release a merge made.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Stepped {
    Request(Box<cfgd::ChangeRequest>),
    Merged(Merged),
}

/// A release's or a change request's content.
#[derive(Deserialize, ToSchema)]
pub(crate) struct Publish {
    /// Name → value: the values to set.
    #[serde(default)]
    pub(crate) config: serde_json::Map<String, Value>,
    /// A flagd document (`{"flags": {...}}`): the flags to set.
    #[serde(default)]
    pub(crate) flags: Option<serde_json::Map<String, Value>>,
    /// Releases only: show what it would change, write nothing.
    #[serde(default)]
    pub(crate) dry_run: bool,
}

/// `POST …/rollback/{name}`'s body.
#[derive(Deserialize, ToSchema)]
pub(crate) struct Rollback {
    /// The revision whose value to write again.
    pub(crate) revision: Revision,
}

/// An OFREP evaluation request's body.
// This type, the parameter structs and the untagged answers below are
// described in the document only (dead code to rustc): the handlers read
// requests through their own extractors and build the answers' variants.
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
pub(crate) struct EvaluationRequest {
    /// The evaluation context: `targetingKey` and any attributes.
    #[serde(default)]
    #[schema(nullable = true)]
    pub(crate) context: Option<serde_json::Map<String, Value>>,
}

/// One flag evaluated (OFREP).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Evaluated {
    pub(crate) key: String,
    /// `STATIC`, `TARGETING_MATCH`, `SPLIT`, `DISABLED`, `DEFAULT`, ...
    pub(crate) reason: String,
    /// Absent when the flag gives no variant (disabled, or no default
    /// variant): the provider answers with the caller's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) variant: Option<String>,
    /// The variant's value (with `variant`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, nullable = false)]
    pub(crate) value: Option<Value>,
    /// The flag set's and the flag's metadata.
    pub(crate) metadata: serde_json::Map<String, Value>,
}

/// One flag that could not be evaluated (OFREP).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EvaluationFailed {
    pub(crate) key: String,
    /// `FLAG_NOT_FOUND`, `PARSE_ERROR` or `GENERAL`.
    pub(crate) error_code: &'static str,
    pub(crate) error_details: Option<String>,
}

/// One entry of a bulk evaluation.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Evaluation {
    Evaluated(Evaluated),
    Failed(EvaluationFailed),
}

/// Every flag of the namespace evaluated (OFREP), and the change stream
/// that tells when to ask again.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BulkEvaluation {
    pub(crate) flags: Vec<Evaluation>,
    pub(crate) event_streams: Vec<EventStreamRef>,
}

/// An OFREP change stream.
#[derive(Serialize, ToSchema)]
pub(crate) struct EventStreamRef {
    /// Always `sse`.
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) endpoint: Endpoint,
}

/// Where an OFREP change stream is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Endpoint {
    /// Relative to the server: `/ofrep/v1/events?namespace=…&ticket=…`.
    pub(crate) request_uri: String,
}

/// `{ns}`.
#[allow(dead_code)]
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct NsPath {
    /// The namespace.
    #[param(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    pub(crate) ns: String,
}

/// `{ns}` and `{name}`.
#[allow(dead_code)]
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct NamePath {
    /// The namespace.
    #[param(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    pub(crate) ns: String,
    /// The name, such as `db/main`.
    #[param(pattern = "^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", max_length = 256)]
    pub(crate) name: String,
}

/// `{ns}` and `{id}`.
#[allow(dead_code)]
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct IdPath {
    /// The namespace.
    #[param(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    pub(crate) ns: String,
    /// The release's or the change request's id.
    pub(crate) id: String,
}

/// `{ns}` and a schema's `{pattern}`.
#[allow(dead_code)]
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct PatternPath {
    /// The namespace.
    #[param(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    pub(crate) ns: String,
    /// A name, or a name prefix and `*`: `db/*`.
    #[param(pattern = "^([A-Za-z0-9._-]+(/[A-Za-z0-9._-]*)*\\*?|\\*)$", max_length = 257)]
    pub(crate) pattern: String,
}

/// `If-Match` and `If-None-Match` on a read.
#[allow(dead_code)]
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct ReadPreconditions {
    /// An `ETag` (`"revision"`) or `*`: 304 when the value is still there.
    #[param(rename = "If-None-Match")]
    #[serde(rename = "If-None-Match")]
    pub(crate) if_none_match: Option<String>,
}

/// `If-Match` and `If-None-Match` on a write.
#[allow(dead_code)]
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct WritePreconditions {
    /// Write only at this `ETag` (`"revision"`); `*`: only if it exists.
    /// 412 otherwise.
    #[param(rename = "If-Match")]
    #[serde(rename = "If-Match")]
    pub(crate) if_match: Option<String>,
    /// `*`: create only (412 if it exists).
    #[param(rename = "If-None-Match")]
    #[serde(rename = "If-None-Match")]
    pub(crate) if_none_match: Option<String>,
    /// Why: kept in the audit record.
    #[param(rename = "X-Cfgd-Message")]
    #[serde(rename = "X-Cfgd-Message")]
    pub(crate) message: Option<String>,
}

/// `X-Cfgd-Message` on a write.
#[allow(dead_code)]
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct Message {
    /// Why: kept in the audit record.
    #[param(rename = "X-Cfgd-Message")]
    #[serde(rename = "X-Cfgd-Message")]
    pub(crate) message: Option<String>,
}

/// `{ns}` and a flag's `{name}`.
#[allow(dead_code)]
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct FlagPath {
    /// The namespace.
    #[param(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    pub(crate) ns: String,
    /// The flag's name; `$evaluators` for the shared evaluators.
    #[param(pattern = "^([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*|\\$evaluators)$", max_length = 256)]
    pub(crate) name: String,
}

/// `{ns}`, `{id}` and the `{step}` to take.
#[allow(dead_code)]
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct StepPath {
    /// The namespace.
    #[param(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    pub(crate) ns: String,
    /// The change request's id.
    pub(crate) id: String,
    /// `approve`, `merge`, `rebase` or `close` (a token never approves its
    /// own request).
    #[param(pattern = "^(approve|merge|rebase|close)$")]
    pub(crate) step: String,
}

/// `Last-Event-ID`: resume a stream.
#[allow(dead_code)]
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct LastEventId {
    /// The `id` of the last event received: every change after it follows.
    #[param(rename = "Last-Event-ID", pattern = "^[0-9]+$")]
    #[serde(rename = "Last-Event-ID")]
    pub(crate) last_event_id: Option<String>,
}

/// `X-Cfgd-Namespace` on an OFREP request.
#[allow(dead_code)]
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct OfrepNamespace {
    /// The namespace whose flags to evaluate; needed unless the token is
    /// scoped to exactly one.
    #[param(rename = "X-Cfgd-Namespace", pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    #[serde(rename = "X-Cfgd-Namespace")]
    pub(crate) namespace: Option<String>,
}

/// What a `PUT` answers: written, or (with `dry_run`) only checked.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum WriteAnswer {
    Written(Written),
    Checked(Checked),
}

/// An OFREP 400: the evaluation failed, or the request was refused before
/// any evaluation.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum OfrepBad {
    Failed(EvaluationFailed),
    Error(ErrorBody),
}

/// A flagd flag, as `PUT …/flags/{name}` takes it (the rules are flagd's:
/// cfgd-flags checks them; this only describes the shape).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub(crate) struct FlagDefinition {
    /// `ENABLED` or `DISABLED`.
    #[schema(pattern = "^(ENABLED|DISABLED)$")]
    state: String,
    /// Variant name → value.
    variants: Map<String, Value>,
    /// The variant when no targeting rule decides; null or absent: the
    /// caller's default.
    #[schema(nullable = true)]
    default_variant: Option<String>,
    /// A JSON Logic rule that returns a variant name.
    #[schema(nullable = false)]
    targeting: Option<Value>,
    /// Free-form metadata, answered with each evaluation.
    #[schema(nullable = false)]
    metadata: Option<Map<String, Value>>,
}

/// A flagd document: every flag, as a stock flagd reads it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct FlagdDocument {
    /// Flag name → definition.
    flags: BTreeMap<String, FlagDefinition>,
    /// Shared rules that flags reference with `$ref`.
    #[schema(rename = "$evaluators", nullable = false)]
    evaluators: Option<Map<String, Value>>,
    /// The flag set's metadata.
    #[schema(nullable = false)]
    metadata: Option<Map<String, Value>>,
}
