//! A namespace's settings, stored at `{root}/{namespace}/meta`: one JSON
//! object whose fields are all optional. `extends` names the namespaces it
//! inherits from ([`crate::layers`]); `fractional` is the bucketing of
//! flagd's `fractional` operator in this namespace's evaluations (library,
//! `cfgctl flag eval`, OFREP, flagd's gRPC evaluation).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::flags::Bucketing;

/// A namespace's settings.
///
/// ```
/// use cfgd::flags::Bucketing;
///
/// let meta: cfgd::meta::Meta = serde_json::from_str(r#"{"fractional": "v3"}"#).unwrap();
/// assert_eq!(meta.fractional, Bucketing::V3);
/// // Every field is optional; an unknown one is refused.
/// assert_eq!(cfgd::meta::Meta::default().fractional, Bucketing::V2);
/// assert!(serde_json::from_str::<cfgd::meta::Meta>(r#"{"fractionl": "v3"}"#).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// A misspelt field must not silently leave the default in place.
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Meta {
    /// The namespaces this one inherits from, lowest first: their values
    /// show through wherever this namespace holds none of its own
    /// ([`crate::layers`]). Checked when stored: each must exist, with no
    /// cycle and at most [`MAX_DEPTH`](crate::layers::MAX_DEPTH) levels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::Namespace>))]
    pub extends: Vec<String>,
    /// How `fractional` buckets: `"v2"` (the default: flagd's published
    /// behaviour) or `"v3"` (flagd's hashing-consistency ADR).
    #[serde(
        default,
        serialize_with = "bucketing_out",
        deserialize_with = "bucketing_in"
    )]
    #[cfg_attr(feature = "openapi", schema(schema_with = bucketing_schema))]
    pub fractional: Bucketing,
}

/// The schema of `fractional`: serde sees a string, but only these two.
#[cfg(feature = "openapi")]
fn bucketing_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some([Bucketing::V2, Bucketing::V3].map(|b| b.as_str())))
        .default(Some(Bucketing::default().as_str().into()))
        .build()
}

fn bucketing_out<S: Serializer>(
    bucketing: &Bucketing,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(bucketing.as_str())
}

fn bucketing_in<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Bucketing, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    let reason = match value.as_str() {
        Some(text) => match text.parse() {
            Ok(bucketing) => return Ok(bucketing),
            Err(reason) => reason,
        },
        None => format!("use \"v2\" or \"v3\", not {value}"),
    };
    Err(serde::de::Error::custom(format!("fractional: {reason}")))
}

impl Meta {
    /// Settings with `fractional` set to `bucketing`.
    pub fn with_fractional(mut self, bucketing: Bucketing) -> Self {
        self.fractional = bucketing;
        self
    }

    /// Settings that inherit from `parents`, lowest first.
    pub fn with_extends<S: Into<String>>(mut self, parents: impl IntoIterator<Item = S>) -> Self {
        self.extends = parents.into_iter().map(Into::into).collect();
        self
    }

    /// Why these settings cannot be stored by themselves, before etcd is
    /// asked whether the parents exist.
    pub(crate) fn check(&self, namespace: &str) -> std::result::Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for parent in &self.extends {
            crate::key::validate_namespace(parent).map_err(|e| format!("extends: {e}"))?;
            if parent == namespace {
                return Err(format!("extends: {namespace:?} cannot extend itself"));
            }
            if !seen.insert(parent) {
                return Err(format!("extends: {parent:?} is named twice"));
            }
        }
        Ok(())
    }

    /// Reads settings from JSON text; `key` names them in the error.
    pub(crate) fn parse(key: &str, json: &[u8]) -> Result<Meta> {
        let meta = Self::parse_fields(key, json)?;
        for parent in &meta.extends {
            crate::key::validate_namespace(parent).map_err(|e| Error::InvalidMeta {
                key: key.to_owned(),
                reason: format!("extends: {e}"),
            })?;
        }
        Ok(meta)
    }

    fn parse_fields(key: &str, json: &[u8]) -> Result<Meta> {
        let invalid = |reason: String| Error::InvalidMeta {
            key: key.to_owned(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| invalid(e.to_string()))?;
        // serde would also take an array, as the fields in order.
        if !value.is_object() {
            return Err(invalid("it must be a JSON object".into()));
        }
        serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
    }

    /// Stored settings as a live client takes them: ones that do not parse
    /// (written by another tool) count as the defaults, and say so in the
    /// log, since evaluations must go on.
    pub(crate) fn from_stored(key: &str, json: &[u8]) -> Meta {
        Meta::parse(key, json).unwrap_or_else(|e| {
            tracing::error!(error = %e, "stored namespace settings unreadable; using the defaults");
            Meta::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_the_field() {
        let err = |json: &str| Meta::parse("/cfgd/app/meta", json.as_bytes()).unwrap_err();
        let unknown = err(r#"{"fractionl": "v3"}"#).to_string();
        assert!(unknown.contains("fractionl"), "{unknown}");
        let value = err(r#"{"fractional": "v4"}"#).to_string();
        assert!(
            value.contains("fractional") && value.contains("\"v4\""),
            "{value}"
        );
        let kind = err(r#"{"fractional": 3}"#).to_string();
        assert!(
            kind.contains("/cfgd/app/meta: invalid namespace settings"),
            "{kind}"
        );
        assert!(err("[]").to_string().contains("JSON object"));
        assert_eq!(Meta::parse("k", b"{}").unwrap(), Meta::default());
        assert_eq!(
            serde_json::to_string(&Meta::default().with_fractional(Bucketing::V3)).unwrap(),
            r#"{"fractional":"v3"}"#
        );
    }
}
