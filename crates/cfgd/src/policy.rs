//! A namespace's policy, stored at `{root}/{namespace}/policy`: which
//! names only a change request may change, how many approvals a request
//! needs, and whose values are secret.
//!
//! Patterns are those of schemas: an exact name, or a prefix ending in `*`.
//! Flags are matched as `flags/{name}`, the way diffs name them, so
//! `flags/*` protects every flag.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::validate_pattern;

/// What a redacted value shows instead of itself.
pub const REDACTED: &str = "<redacted>";

/// The most approvals a policy may ask for.
const MAX_APPROVALS: u32 = 16;

/// A namespace's policy.
///
/// ```
/// let policy: cfgd::policy::Policy =
///     serde_json::from_str(r#"{"protected": ["payments/*"], "approvals": 2}"#).unwrap();
/// assert_eq!(policy.protecting("payments/limits"), Some("payments/*"));
/// assert_eq!(policy.protecting("search/limits"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(description = "A namespace's policy: protected names, approvals, secret names")
)]
// A misspelt field ("protcted") must not silently protect nothing.
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Policy {
    /// Patterns of the names that only a merged change request may change
    /// (or a forced write by an operator).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::Pattern>))]
    pub protected: Vec<String>,
    /// Approvals a change request needs before it merges, from people other
    /// than its author. At least 1.
    #[serde(default = "one", deserialize_with = "crate::whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 16))]
    pub approvals: u32,
    /// Patterns of the names whose values are shown as `"<redacted>"` in
    /// diffs of releases and change requests.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::Pattern>))]
    pub secrets: Vec<String>,
}

fn one() -> u32 {
    1
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            protected: Vec::new(),
            approvals: 1,
            secrets: Vec::new(),
        }
    }
}

impl Policy {
    /// Reads a policy from JSON text and checks it; `key` names it in the
    /// error.
    pub(crate) fn parse(key: &str, json: &[u8]) -> Result<Policy> {
        let invalid = |reason: String| Error::InvalidPolicy {
            key: key.to_owned(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| invalid(e.to_string()))?;
        // serde would also take an array, as the fields in order.
        if !value.is_object() {
            return Err(invalid("it must be a JSON object".into()));
        }
        let policy: Policy = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        policy.check().map_err(invalid)?;
        Ok(policy)
    }

    /// A stored policy as a live client takes it: one that does not parse
    /// (written by another tool) protects every name, since a guard rail
    /// that fails must fail closed.
    pub(crate) fn from_stored(key: &str, json: &[u8]) -> Policy {
        Policy::parse(key, json).unwrap_or_else(|e| {
            tracing::error!(error = %e, "stored policy unreadable; protecting every name");
            Policy {
                protected: vec!["*".to_owned()],
                ..Policy::default()
            }
        })
    }

    /// Why the policy cannot be stored, if it cannot.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        for pattern in self.protected.iter().chain(&self.secrets) {
            validate_pattern(pattern).map_err(|e| e.to_string())?;
        }
        if !(1..=MAX_APPROVALS).contains(&self.approvals) {
            return Err(format!(
                "approvals must be from 1 to {MAX_APPROVALS}, not {}",
                self.approvals
            ));
        }
        Ok(())
    }

    /// The first protected pattern that covers `label` (a name, or
    /// `flags/{name}`).
    pub fn protecting(&self, label: &str) -> Option<&str> {
        first_match(&self.protected, label)
    }

    /// Whether `label`'s values are secret.
    pub fn is_secret(&self, label: &str) -> bool {
        first_match(&self.secrets, label).is_some()
    }
}

fn first_match<'p>(patterns: &'p [String], label: &str) -> Option<&'p str> {
    patterns
        .iter()
        .find(|p| match p.strip_suffix('*') {
            Some(prefix) => label.starts_with(prefix),
            None => p.as_str() == label,
        })
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_and_flags() {
        let policy = Policy::parse(
            "/p",
            br#"{"protected": ["payments/*", "flags/checkout", "db"], "secrets": ["keys/*"]}"#,
        )
        .unwrap();
        assert_eq!(policy.approvals, 1);
        assert_eq!(policy.protecting("payments/a/b"), Some("payments/*"));
        assert_eq!(policy.protecting("db"), Some("db"));
        assert_eq!(policy.protecting("db2"), None);
        assert_eq!(policy.protecting("flags/checkout"), Some("flags/checkout"));
        assert_eq!(policy.protecting("flags/checkout2"), None);
        assert!(policy.is_secret("keys/stripe"));
        assert!(!policy.is_secret("payments/a"));
    }

    #[test]
    fn bad_policies_are_refused_with_the_reason() {
        for (text, says) in [
            (r#"{"protcted": ["a"]}"#, "unknown field `protcted`"),
            (r#"{"protected": ["a b"]}"#, "white space"),
            (
                r#"{"approvals": 0}"#,
                "approvals must be from 1 to 16, not 0",
            ),
            (r#"{"protected": "a"}"#, "expected a sequence"),
            (
                r#"{"approvals": 2.5}"#,
                "2.5 is not a whole number in range",
            ),
            (r#"{"approvals": -1}"#, "-1 is not a whole number in range"),
            (r#"{"approvals": "2"}"#, "invalid type: string"),
            ("[]", "it must be a JSON object"),
            ("{", "EOF while parsing"),
        ] {
            let e = Policy::parse("/cfgd/p/policy", text.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(says), "{text}: {e}");
            assert!(
                e.to_string().starts_with("/cfgd/p/policy: invalid policy"),
                "{e}"
            );
        }
    }

    /// Found by schemathesis: JSON Schema's integers include 2.0.
    #[test]
    fn approvals_may_be_a_whole_float() {
        let policy = Policy::parse("/p", br#"{"approvals": 2.0}"#).unwrap();
        assert_eq!(policy.approvals, 2);
    }

    #[test]
    fn an_unreadable_stored_policy_protects_everything() {
        let policy = Policy::from_stored("/p", b"not json");
        assert_eq!(policy.protecting("anything"), Some("*"));
    }
}
