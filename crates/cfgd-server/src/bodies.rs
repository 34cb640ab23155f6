//! The JSON bodies the REST routes answer with, and the parameters they
//! take, as types: each handler serializes one of these, and
//! `/openapi.json` describes the same type (`utoipa::ToSchema`,
//! `IntoParams`), so the document cannot say one thing while the server
//! sends another.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use cfgd::diff::NamedDiff;
use cfgd::Revision;

/// Every error: what went wrong, as a stable code and a sentence.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

/// An overlay's settings: who sees it. A selector of at least one label,
/// a percent, or both; nothing else.
pub(crate) struct OverlaySettings;

/// A label's key and value, as `cfgd::overlays::Labels` takes them.
pub(crate) const LABEL_KEY: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$";
pub(crate) const LABEL_VALUE: &str = "^[A-Za-z0-9._-]{0,63}$";

impl utoipa::PartialSchema for OverlaySettings {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
        let string = |pattern: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
        };
        let selector = || {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("Labels a client must all have: key → value"))
                .min_properties(Some(1))
                .property_names(Some(string(LABEL_KEY)))
                .additional_properties(Some(string(LABEL_VALUE)))
        };
        let percent = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some(
                    "Of the clients the selector takes, the share (0 to 100) whose instance label buckets below it",
                ))
                .minimum(Some(0))
                .maximum(Some(100))
        };
        let with = |required: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("selector", selector())
                .property("percent", percent())
                .required(required)
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                ))
        };
        let any = AnyOfBuilder::new()
            .description(Some(
                "An overlay's settings: a selector, a percent, or both",
            ))
            .item(with("selector"))
            .item(with("percent"))
            .build();
        Schema::AnyOf(any).into()
    }
}

impl ToSchema for OverlaySettings {}

/// The error of an [`ErrorBody`].
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable, for programs: `not_found`, `conflict`, `invalid_request`,
    /// `invalid_flag`, `schema_violation`, `unauthorized`, ...
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
    /// Whether this replica is the elected worker (webhooks, schedules).
    pub(crate) leader: bool,
}

/// `/v1/whoami`: the token, for the console to hide what it may not do.
#[derive(Serialize, ToSchema)]
pub(crate) struct Whoami {
    /// False when the server runs with `--no-auth`.
    pub(crate) auth: bool,
    /// The token's name, or `oidc:<subject>` (with the email the issuer
    /// gave) for a user signed in with SSO.
    pub(crate) name: String,
    /// Namespace (or `*`) → `read`, `write`, `secrets` or `admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) scopes: Option<BTreeMap<String, String>>,
    /// How the caller signed in: `token`, `jwt` (the issuer's access
    /// token) or `session` (the console's cookie).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) via: Option<&'static str>,
    /// With a session: the `X-Cfgd-Csrf` header its writes must carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) csrf: Option<String>,
    /// With SSO: the groups the issuer named.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) groups: Option<Vec<String>>,
    /// Why a signed-in user sees nothing, when their groups map to no scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) notice: Option<String>,
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
// A misspelt "confg" must not publish nothing and answer 200.
#[serde(deny_unknown_fields)]
pub(crate) struct Publish {
    /// Name → value: the values to set.
    #[serde(default)]
    #[schema(value_type = Values)]
    pub(crate) config: serde_json::Map<String, Value>,
    /// A flagd document (`{"flags": {...}}`): the flags to set.
    #[serde(default)]
    #[schema(value_type = Option<FlagdDocument>)]
    pub(crate) flags: Option<serde_json::Map<String, Value>>,
    /// Releases only (a change request refuses it): show what it would
    /// change, write nothing.
    #[serde(default)]
    pub(crate) dry_run: bool,
}

/// `POST …/rollback/{name}`'s body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rollback {
    /// The revision whose value to write again.
    #[serde(deserialize_with = "cfgd::whole_number")]
    pub(crate) revision: Revision,
}

/// An OFREP evaluation request's body.
// This type and the untagged answers below are described in the document
// only (dead code to rustc): the handlers read requests through their own
// extractors and build the answers' variants.
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
    #[schema(value_type = Value, required = false)]
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

/// A flagd flag, as `PUT …/flags/{name}` takes it. The shape is here;
/// cfgd-flags checks the rest as flagd does (the default variant is one of
/// the variants, the targeting is JSON Logic it can run): 400 otherwise.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "state": "ENABLED",
    "variants": {"on": true, "off": false},
    "defaultVariant": "off",
    "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on", "off"]},
    "metadata": {"owner": "checkout"}
}))]
pub(crate) struct FlagDefinition {
    /// `ENABLED` or `DISABLED`.
    #[schema(pattern = "^(ENABLED|DISABLED)$")]
    state: String,
    #[schema(schema_with = variants_schema)]
    variants: Map<String, Value>,
    /// The variant when no targeting rule decides: one of the variants.
    /// Null or absent: the caller's default.
    #[schema(nullable = true)]
    default_variant: Option<String>,
    /// A JSON Logic rule that returns a variant name; `{}` or null: none.
    #[schema(nullable = true, value_type = Object, required = false)]
    targeting: Option<Value>,
    /// Answered with each evaluation.
    #[schema(nullable = false, schema_with = metadata_schema)]
    metadata: Option<Map<String, Value>>,
}

/// Variant name → value, at least one, all of one type: booleans, strings,
/// numbers or objects.
fn variants_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
    let of = |kind: Type| {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .min_properties(Some(1))
            .additional_properties(Some(ObjectBuilder::new().schema_type(kind)))
    };
    let any = AnyOfBuilder::new()
        .description(Some(
            "Variant name → value: at least one, all booleans, all strings, all numbers or all objects",
        ))
        .item(of(Type::Boolean))
        .item(of(Type::String))
        .item(of(Type::Number))
        .item(of(Type::Object))
        .build();
    Schema::AnyOf(any)
}

/// Flag metadata: name → string, number or boolean.
fn metadata_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Answered with each evaluation: name → string, number or boolean",
        ))
        .additional_properties(Some(ObjectBuilder::new().schema_type(
            SchemaType::from_iter([Type::String, Type::Number, Type::Boolean]),
        )))
        .build()
}

/// A flagd document: every flag, as a stock flagd reads it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct FlagdDocument {
    /// Flag name → definition.
    #[schema(value_type = BTreeMap<cfgd::openapi::Name, FlagDefinition>)]
    flags: BTreeMap<String, FlagDefinition>,
    /// Shared rules that flags reference with `$ref`.
    #[schema(rename = "$evaluators", nullable = false)]
    evaluators: Option<Map<String, Value>>,
    /// The flag set's metadata.
    #[schema(nullable = false)]
    metadata: Option<Map<String, Value>>,
}

/// Name → value (any JSON).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Values(BTreeMap<cfgd::openapi::Name, Value>);

/// A JSON Schema (draft 2020-12): an object, or `true` / `false`.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub(crate) enum SchemaDocument {
    Boolean(bool),
    Object(Map<String, Value>),
}

/// One event of a `…/watch` stream, as an SSE parser hands it over: the
/// `text/event-stream` answer describes one event (OpenAPI 3.1 has no
/// `itemSchema`; tools read `schema` as each event's).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ChangeEvent {
    /// The change's revision; send it as `Last-Event-ID` to resume after
    /// it. Absent on `reset`.
    #[schema(pattern = "^[0-9]+$")]
    id: Option<String>,
    /// `put` or `delete`; `reset` when a resume reached back before the
    /// deletes cfgd still knows and the current values follow.
    #[schema(pattern = "^(put|delete|reset)$")]
    event: String,
    /// The change, as JSON: `{"name", "kind", "value", "revision",
    /// "resync"}`, and `"secret": true` (value `"<redacted>"`) for a secret.
    #[schema(content_media_type = "application/json")]
    data: String,
}

/// One event of `/ofrep/v1/events`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct RefetchEvent {
    /// `{"type": "refetchEvaluation", "etag": …}`: evaluate again, passing
    /// `etag` as `flagConfigEtag`.
    #[schema(content_media_type = "application/json")]
    data: String,
}
