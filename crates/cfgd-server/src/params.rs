//! The parameters the REST routes take (path captures, headers, the
//! shared `?limit=`), as types for `/openapi.json` (`utoipa::IntoParams`).
//! The handlers read them through their own extractors; these describe
//! them, which is why rustc sees their fields as never read.
#![allow(dead_code)]

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// `{ns}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct NsPath {
    #[param(value_type = cfgd::openapi::Namespace)]
    pub(crate) ns: String,
}

/// `{ns}` and `{name}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct NamePath {
    #[param(value_type = cfgd::openapi::Namespace)]
    pub(crate) ns: String,
    #[param(value_type = cfgd::openapi::Name)]
    pub(crate) name: String,
}

/// `{ns}` and `{overlay}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct OverlayPath {
    #[param(value_type = cfgd::openapi::Namespace)]
    pub(crate) ns: String,
    /// The overlay's name: as a namespace's.
    #[param(value_type = cfgd::openapi::Namespace)]
    pub(crate) overlay: String,
}

/// `{ns}`, `{overlay}` and `{name}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct OverlayNamePath {
    #[param(value_type = cfgd::openapi::Namespace)]
    pub(crate) ns: String,
    /// The overlay's name: as a namespace's.
    #[param(value_type = cfgd::openapi::Namespace)]
    pub(crate) overlay: String,
    #[param(value_type = cfgd::openapi::Name)]
    pub(crate) name: String,
}

/// `X-Cfgd-Labels` on a read: the client's labels, which choose the
/// overlays it sees.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct LabelsHeader {
    /// `key=value` pairs, comma separated, each key once:
    /// `region=eu,canary=true,instance=i-42`. Empty: no labels.
    #[param(
        rename = "X-Cfgd-Labels",
        nullable = false,
        pattern = "^$|^[A-Za-z0-9][A-Za-z0-9._-]{0,62}=[A-Za-z0-9._-]{0,63}(,[A-Za-z0-9][A-Za-z0-9._-]{0,62}=[A-Za-z0-9._-]{0,63})*$"
    )]
    #[serde(rename = "X-Cfgd-Labels")]
    pub(crate) labels: Option<String>,
}

/// `{ns}` and `{id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct IdPath {
    #[param(value_type = cfgd::openapi::Namespace)]
    pub(crate) ns: String,
    /// The id of the release, change request, webhook or schedule.
    pub(crate) id: String,
}

/// `{ns}` and a schema's `{pattern}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct PatternPath {
    #[param(value_type = cfgd::openapi::Namespace)]
    pub(crate) ns: String,
    #[param(value_type = cfgd::openapi::Pattern)]
    pub(crate) pattern: String,
}

/// Which layer a read of one value gives, in a namespace that extends
/// others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LayerChoice {
    /// The effective value: every layer merged (the default).
    Effective,
    /// The namespace's own layer, without what it inherits.
    Own,
}

/// `?layer=` and `?explain=` on a read of one value.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LayerQuery {
    /// `own`: the namespace's own layer only; `effective` (the default):
    /// every layer merged.
    #[param(required = false, inline)]
    #[serde(default)]
    pub(crate) layer: Option<LayerChoice>,
    /// `true`: the effective value, each layer's own, and the namespace
    /// every field came from.
    #[param(required = false)]
    #[serde(default)]
    pub(crate) explain: bool,
}

/// `If-None-Match` on a read of one value.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct ReadPreconditions {
    /// `ETag`s (`"revision"`, comma-separated) or `*`: 304 when the value is
    /// still at one of them.
    #[param(
        rename = "If-None-Match",
        nullable = false,
        pattern = "^(\\*|(W/)?(\"[1-9][0-9]{0,17}\"|[1-9][0-9]{0,17})([ \\t]*,[ \\t]*(W/)?(\"[1-9][0-9]{0,17}\"|[1-9][0-9]{0,17}))*)$"
    )]
    #[serde(rename = "If-None-Match")]
    pub(crate) if_none_match: Option<String>,
}

/// `If-None-Match` on a read of a whole document, whose `ETag` is a digest.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct DocumentPreconditions {
    /// The `ETag` of the document last read: 304 while it is unchanged.
    #[param(rename = "If-None-Match", nullable = false)]
    #[serde(rename = "If-None-Match")]
    pub(crate) if_none_match: Option<String>,
}

/// `*`, the one value `If-None-Match` takes on a write.
#[derive(ToSchema)]
pub(crate) enum Star {
    #[schema(rename = "*")]
    Any,
}

/// `If-Match`, `If-None-Match` and `X-Cfgd-Message` on a write.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct WritePreconditions {
    /// Write only at this `ETag` (`"revision"`); `*`: only if it exists.
    /// 412 otherwise.
    #[param(
        rename = "If-Match",
        nullable = false,
        pattern = "^(\\*|(W/)?(\"[1-9][0-9]{0,17}\"|[1-9][0-9]{0,17}))$"
    )]
    #[serde(rename = "If-Match")]
    pub(crate) if_match: Option<String>,
    /// `*`: create only (412 if it exists).
    #[param(rename = "If-None-Match", required = false, value_type = Star)]
    #[serde(rename = "If-None-Match")]
    pub(crate) if_none_match: Option<String>,
    /// Why: kept in the audit record.
    #[param(rename = "X-Cfgd-Message", nullable = false, pattern = "^[\\t -~]*$")]
    #[serde(rename = "X-Cfgd-Message")]
    pub(crate) message: Option<String>,
}

/// `If-Match` and `X-Cfgd-Message` on a delete.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct DeletePreconditions {
    /// Delete only at this `ETag` (`"revision"`); `*`: only if it exists.
    /// 412 otherwise.
    #[param(
        rename = "If-Match",
        nullable = false,
        pattern = "^(\\*|(W/)?(\"[1-9][0-9]{0,17}\"|[1-9][0-9]{0,17}))$"
    )]
    #[serde(rename = "If-Match")]
    pub(crate) if_match: Option<String>,
    /// Why: kept in the audit record.
    #[param(rename = "X-Cfgd-Message", nullable = false, pattern = "^[\\t -~]*$")]
    #[serde(rename = "X-Cfgd-Message")]
    pub(crate) message: Option<String>,
}

/// `X-Cfgd-Message` on a write.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct Message {
    /// Why: kept in the audit record.
    #[param(rename = "X-Cfgd-Message", nullable = false, pattern = "^[\\t -~]*$")]
    #[serde(rename = "X-Cfgd-Message")]
    pub(crate) message: Option<String>,
}

/// `{ns}`, `{id}` and the `{step}` to take.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct StepPath {
    #[param(value_type = cfgd::openapi::Namespace)]
    pub(crate) ns: String,
    /// The change request's id.
    pub(crate) id: String,
    /// `approve`, `merge`, `rebase` or `close` (a token never approves its
    /// own request).
    #[param(pattern = "^(approve|merge|rebase|close)$")]
    pub(crate) step: String,
}

/// `Last-Event-ID`: resume a stream.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct LastEventId {
    /// The `id` of the last event received: every change after it follows.
    #[param(rename = "Last-Event-ID", nullable = false, pattern = "^[0-9]{1,18}$")]
    #[serde(rename = "Last-Event-ID")]
    pub(crate) last_event_id: Option<String>,
}

/// `X-Cfgd-Namespace` on an OFREP request.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct OfrepNamespace {
    /// The namespace whose flags to evaluate; needed unless the token is
    /// scoped to exactly one.
    #[param(rename = "X-Cfgd-Namespace", required = false, value_type = cfgd::openapi::Namespace)]
    #[serde(rename = "X-Cfgd-Namespace")]
    pub(crate) namespace: Option<String>,
}

/// The most items a list (history, audit, releases, requests) gives in one
/// answer.
pub(crate) const LIMIT_MAX: usize = 1000;

/// A list's `?limit=`, `default` unless given; 400 outside 1 to
/// [`LIMIT_MAX`], so that a caller asking for more never silently gets less.
pub(crate) fn limit(given: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match given.unwrap_or(default) {
        n @ 1..=LIMIT_MAX => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "limit must be from 1 to {LIMIT_MAX}"
        ))),
    }
}
