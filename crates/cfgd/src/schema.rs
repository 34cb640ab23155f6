//! JSON Schemas (draft 2020-12) that values must pass before they are
//! stored, one per name pattern.
//!
//! A pattern is an exact name (`database.config`) or a prefix ending in `*`
//! (`payments/*`, `feature.*`, or `*` for every name). The most specific
//! applies: the exact name first, then the longest prefix. Schemas live at
//! `{root}/{namespace}/schemas/{pattern}`; a live client keeps them compiled
//! and recompiles one only when it changes.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result, SchemaFailure};
use crate::key;
use crate::types::Revision;

/// Checks a schema pattern: a name, or a name prefix followed by `*`.
pub fn validate_pattern(pattern: &str) -> Result<()> {
    match pattern.strip_suffix('*') {
        Some(prefix) => key::validate_prefix(prefix),
        None => key::validate_name(pattern),
    }
}

/// A compiled schema, or why the stored one does not compile.
struct Compiled {
    pattern: String,
    revision: Revision,
    raw: Arc<[u8]>,
    validator: std::result::Result<jsonschema::Validator, String>,
}

/// Compiles a schema, refusing one that is not a valid draft 2020-12
/// document; `key` names it in the error.
pub(crate) fn compile(key: &str, schema: &Value) -> Result<jsonschema::Validator> {
    jsonschema::draft202012::new(schema).map_err(|e| Error::InvalidSchema {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// Every failure of `value` against `validator`, as JSON Pointer and rule.
pub(crate) fn failures(validator: &jsonschema::Validator, value: &Value) -> Vec<SchemaFailure> {
    validator
        .iter_errors(value)
        .map(|e| SchemaFailure {
            pointer: e.instance_path().as_str().to_owned(),
            message: e.to_string(),
            rule: e.kind().keyword().to_owned(),
        })
        .collect()
}

/// The schemas of one namespace, compiled.
#[derive(Default, Clone)]
pub(crate) struct SchemaSet {
    exact: HashMap<String, Arc<Compiled>>,
    /// Longest prefix first, so the first match is the most specific.
    prefixes: Vec<(String, Arc<Compiled>)>,
}

impl SchemaSet {
    /// Built from the stored schemas, reusing `previous`'s compiled ones
    /// whose revision did not change.
    pub(crate) fn from_store<'a>(
        stored: impl Iterator<Item = (&'a str, &'a Arc<[u8]>, Revision)>,
        previous: &SchemaSet,
    ) -> Self {
        let mut set = SchemaSet::default();
        for (pattern, raw, revision) in stored {
            let compiled = match previous.get(pattern) {
                Some(old) if old.revision == revision && old.raw == *raw => old.clone(),
                _ => {
                    let validator = serde_json::from_slice(raw)
                        .map_err(|e| format!("the stored schema is not JSON: {e}"))
                        .and_then(|schema| {
                            jsonschema::draft202012::new(&schema).map_err(|e| e.to_string())
                        });
                    if let Err(reason) = &validator {
                        // Written behind cfgd's back; writes it covers are
                        // refused until it is fixed.
                        tracing::warn!(pattern, %reason, "a stored schema does not compile");
                    }
                    Arc::new(Compiled {
                        pattern: pattern.to_owned(),
                        revision,
                        raw: raw.clone(),
                        validator,
                    })
                }
            };
            match pattern.strip_suffix('*') {
                Some(prefix) => set.prefixes.push((prefix.to_owned(), compiled)),
                None => {
                    set.exact.insert(pattern.to_owned(), compiled);
                }
            }
        }
        set.prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        set
    }

    fn get(&self, pattern: &str) -> Option<&Arc<Compiled>> {
        match pattern.strip_suffix('*') {
            Some(prefix) => self
                .prefixes
                .iter()
                .find(|(p, _)| p == prefix)
                .map(|(_, c)| c),
            None => self.exact.get(pattern),
        }
    }

    /// The pattern whose schema applies to `name`, if any.
    pub(crate) fn pattern_for(&self, name: &str) -> Option<&str> {
        self.governing(name).map(|c| c.pattern.as_str())
    }

    fn governing(&self, name: &str) -> Option<&Arc<Compiled>> {
        self.exact.get(name).or_else(|| {
            self.prefixes
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix.as_str()))
                .map(|(_, c)| c)
        })
    }

    /// Checks `value`, about to be stored as `name` (etcd key `key`),
    /// against the schema that governs it; fine when none does.
    pub(crate) fn check(&self, key: &str, name: &str, value: &[u8]) -> Result<()> {
        let Some(compiled) = self.governing(name) else {
            return Ok(());
        };
        let value: Value = serde_json::from_slice(value).map_err(|cause| Error::InvalidJson {
            key: key.to_owned(),
            cause,
        })?;
        compiled.check(key, &value)
    }

    /// [`check`](Self::check) of a value already parsed.
    pub(crate) fn check_parsed(&self, key: &str, name: &str, value: &Value) -> Result<()> {
        self.governing(name)
            .map_or(Ok(()), |compiled| compiled.check(key, value))
    }
}

impl Compiled {
    /// Checks `value`, about to be stored at `key`, against this schema.
    fn check(&self, key: &str, value: &Value) -> Result<()> {
        let validator = self
            .validator
            .as_ref()
            .map_err(|reason| Error::InvalidSchema {
                key: format!("{key} (its schema {:?})", self.pattern),
                reason: reason.clone(),
            })?;
        // The common case, without building an error per failed rule.
        if validator.is_valid(value) {
            return Ok(());
        }
        let failures = failures(validator, value);
        if failures.is_empty() {
            return Ok(());
        }
        Err(Error::SchemaViolation {
            key: key.to_owned(),
            pattern: self.pattern.clone(),
            failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(schemas: &[(&str, Value)]) -> SchemaSet {
        let raws: Vec<(String, Arc<[u8]>)> = schemas
            .iter()
            .map(|(p, s)| (p.to_string(), Arc::from(s.to_string().into_bytes())))
            .collect();
        SchemaSet::from_store(
            raws.iter().map(|(p, r)| (p.as_str(), r, 1)),
            &SchemaSet::default(),
        )
    }

    #[test]
    fn the_most_specific_pattern_applies() {
        let schemas = set(&[
            ("*", json!({"type": "object"})),
            ("pay/*", json!({"type": "object", "required": ["currency"]})),
            (
                "pay/limits/*",
                json!({"type": "object", "required": ["max"]}),
            ),
            ("pay/limits/eu", json!({"type": "integer"})),
        ]);
        for (name, pattern) in [
            ("other", "*"),
            ("pay/x", "pay/*"),
            ("pay/limits/us", "pay/limits/*"),
            ("pay/limits/eu", "pay/limits/eu"),
        ] {
            assert_eq!(schemas.pattern_for(name), Some(pattern), "{name}");
        }
        assert!(set(&[]).pattern_for("x").is_none());

        let refused = schemas
            .check("/k", "pay/limits/us", br#"{"currency": "EUR"}"#)
            .unwrap_err();
        let Error::SchemaViolation {
            failures, pattern, ..
        } = &refused
        else {
            panic!("{refused}");
        };
        assert_eq!(pattern, "pay/limits/*");
        assert_eq!(failures.len(), 1, "{refused}");
        assert!(
            failures[0]
                .message
                .contains("\"max\" is a required property"),
            "{refused}"
        );
        schemas.check("/k", "pay/limits/eu", b"7").unwrap();
    }

    #[test]
    fn failures_name_the_pointer_and_the_rule() {
        let schemas = set(&[(
            "db",
            json!({"properties": {"pool_size": {"minimum": 1}, "url": {"type": "string"}}}),
        )]);
        let refused = schemas
            .check("/k", "db", br#"{"pool_size": 0, "url": 5}"#)
            .unwrap_err();
        let line = refused.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains("/pool_size: 0 is less than the minimum of 1"),
            "{line}"
        );
        assert!(line.contains("/url: 5 is not of type \"string\""), "{line}");
        assert!(validate_pattern("pay/*").is_ok() && validate_pattern("*").is_ok());
        assert!(validate_pattern("pay/**").is_err() && validate_pattern("/x").is_err());
        assert!(compile("/k", &json!({"type": 5})).is_err());
    }
}
