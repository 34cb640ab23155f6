//! What a change request is: its state, approvals and review, as stored
//! and as answered.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::diff::NamedDiff;
use crate::types::Revision;

/// Where a change request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RequestState {
    /// Waiting for approvals, or to be merged.
    Open,
    /// Published as a release.
    Merged,
    /// Closed without merging.
    Closed,
}

impl RequestState {
    /// `open`, `merged` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Open => "open",
            RequestState::Merged => "merged",
            RequestState::Closed => "closed",
        }
    }
}

impl std::str::FromStr for RequestState {
    type Err = String;

    /// `open`, `merged` or `closed`, as [`as_str`](RequestState::as_str)
    /// writes them; the error names what was given.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        [
            RequestState::Open,
            RequestState::Merged,
            RequestState::Closed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or_else(|| format!("a request state is open, merged or closed, not {text:?}"))
    }
}

/// One approval of a change request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Approval {
    /// Who approved.
    pub actor: String,
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// A change request, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct ChangeRequest {
    /// Its number, as text: `"1"`, `"2"`, ...
    pub id: String,
    /// The revision it was last changed at (its key's `mod_revision`); not
    /// stored in it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: Revision,
    /// Who opened it.
    pub author: String,
    /// How it was opened (`http`, `cfgctl`, ...).
    pub via: String,
    /// Why, as the author said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was opened, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Open, merged or closed.
    pub state: RequestState,
    /// The values it sets, name → value: only those that differed from
    /// what was stored when it was opened (or rebased).
    pub config: Map<String, Value>,
    /// The flags it sets, as a flagd document, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Value>,
    /// The revision of each name it changes (flags as `flags/{name}`) when
    /// it was opened or rebased (0: absent). Merging needs every one of
    /// them unchanged.
    pub base: BTreeMap<String, Revision>,
    /// Approvals since it was opened or last rebased.
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// The release it was merged as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Who merged or closed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_by: Option<String>,
}

fn is_zero(revision: &Revision) -> bool {
    *revision == 0
}

/// A change request with what merging it would change now.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RequestReview {
    /// The request (secret values shown as `"<redacted>"`).
    pub request: ChangeRequest,
    /// What merging it would change now, name by name (nothing once it is
    /// merged or closed).
    pub changes: Vec<NamedDiff>,
    /// The names that moved since its base: while any did, it cannot be
    /// merged, only rebased or closed.
    pub moved: Vec<String>,
}
