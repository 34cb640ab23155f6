//! Evaluating one flag against a context: its targeting run, its variant
//! resolved.

use datalogic_rs::bumpalo::collections::Vec as BumpVec;
use datalogic_rs::DataValue;
use serde_json::{Map, Value};

use crate::definition::{engine, Flag, Rule};
use crate::*;

/// What one evaluation found, before it is typed.
pub(crate) struct Resolution<'f> {
    pub(crate) variant: Option<&'f str>,
    pub(crate) value: Option<&'f Value>,
    pub(crate) reason: Reason,
    pub(crate) error: Option<(ErrorCode, String)>,
}

impl<'f> Resolution<'f> {
    pub(crate) fn error(code: ErrorCode, message: String) -> Self {
        Resolution {
            variant: None,
            value: None,
            reason: Reason::Error,
            error: Some((code, message)),
        }
    }
}

impl Flag {
    /// A variant by name. Flags have a handful of variants, where a scan
    /// beats hashing the name (serde_json's map hashes with SipHash).
    fn variant(&self, name: &str) -> Option<(&str, &Value)> {
        if self.variants.len() <= 8 {
            self.variants
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(k, v)| (k.as_str(), v))
        } else {
            self.variants
                .get_key_value(name)
                .map(|(k, v)| (k.as_str(), v))
        }
    }

    pub(crate) fn resolve(&self, key: &str, context: &Value) -> Resolution<'_> {
        if !self.enabled {
            return Resolution {
                variant: None,
                value: None,
                reason: Reason::Disabled,
                error: None,
            };
        }
        let (chosen, reason) = match &self.rule {
            Rule::None => (self.default_variant.as_deref(), Reason::Static),
            Rule::Invalid(reason) => {
                return Resolution::error(ErrorCode::ParseError, format!("{key}: {reason}"))
            }
            Rule::Compiled(logic, clock) => match run(logic, *clock, key, context, self) {
                // A rule that compiled but fails on this context (a number
                // compared with a word, say): flagd-core's GENERAL, kept
                // apart from rules that never compiled.
                Err(e) => {
                    return Resolution::error(
                        ErrorCode::General,
                        format!("{key}: targeting failed: {e}"),
                    )
                }
                Ok(Outcome::Nothing) => (self.default_variant.as_deref(), Reason::Default),
                Ok(Outcome::Other(json)) => {
                    return Resolution::error(
                        ErrorCode::General,
                        format!("{key}: targeting gave {json}, not a variant name"),
                    )
                }
                Ok(Outcome::Variant(variant, value)) => {
                    return Resolution {
                        variant: Some(variant),
                        value: Some(value),
                        reason: Reason::TargetingMatch,
                        error: None,
                    }
                }
                Ok(Outcome::Unknown(name)) => {
                    return Resolution::error(
                        ErrorCode::General,
                        format!("{key}: targeting chose {name:?}, which is not a variant"),
                    )
                }
            },
        };
        match chosen.and_then(|v| self.variant(v)) {
            Some((variant, value)) => Resolution {
                variant: Some(variant),
                value: Some(value),
                reason,
                error: None,
            },
            // No default variant: the caller's default.
            None => Resolution {
                variant: None,
                value: None,
                reason: Reason::Default,
                error: None,
            },
        }
    }
}

/// What a targeting rule gave.
enum Outcome<'f> {
    /// null: the default variant.
    Nothing,
    /// One of the flag's variants, found by the name the rule gave (a
    /// boolean result names "true" or "false"): borrowed from the flag, so
    /// an evaluation allocates nothing for it.
    Variant(&'f str, &'f Value),
    /// A name that is not a variant, for the error message.
    Unknown(String),
    /// Anything else, as JSON, for the error message.
    Other(String),
}

thread_local! {
    /// Reused across evaluations on a thread: resetting keeps its memory.
    static ARENA: std::cell::RefCell<datalogic_rs::bumpalo::Bump> = Default::default();
}

/// The caller's context as the engine's value, built in the arena. Unlike
/// datalogic-rs's own conversion, strings and keys are borrowed from the
/// context rather than copied: it outlives the evaluation anyway.
pub(crate) fn to_data<'a>(
    value: &'a Value,
    arena: &'a datalogic_rs::bumpalo::Bump,
) -> DataValue<'a> {
    use datalogic_rs::datavalue::NumberValue;
    match value {
        Value::Null => DataValue::Null,
        Value::Bool(b) => DataValue::Bool(*b),
        // As datalogic-rs converts: integers stay integers, the rest floats.
        Value::Number(n) => DataValue::Number(match n.as_i64() {
            Some(i) => NumberValue::Integer(i),
            None => NumberValue::Float(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => DataValue::String(s),
        Value::Array(items) => {
            DataValue::Array(arena.alloc_slice_fill_iter(items.iter().map(|v| to_data(v, arena))))
        }
        Value::Object(map) => DataValue::Object(
            arena.alloc_slice_fill_iter(map.iter().map(|(k, v)| (k.as_str(), to_data(v, arena)))),
        ),
    }
}

/// Runs a compiled rule over the caller's context plus `$flagd.flagKey` and
/// `$flagd.timestamp` (0 when `clock` says the rule cannot read it), built
/// straight in the arena (no copy of the context as JSON).
fn run<'f>(
    logic: &datalogic_rs::Logic,
    clock: bool,
    key: &str,
    context: &Value,
    flag: &'f Flag,
) -> std::result::Result<Outcome<'f>, datalogic_rs::Error> {
    ARENA.with(|cell| {
        let mut arena = cell.borrow_mut();
        arena.reset();
        let arena = &*arena;
        let timestamp = if clock {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        } else {
            0
        };
        let flagd = DataValue::Object(arena.alloc_slice_copy(&[
            ("flagKey", DataValue::String(key)),
            ("timestamp", DataValue::from_i64(timestamp)),
        ]));
        // The caller's fields plus `$flagd`, which replaces any of theirs.
        let user = context.as_object();
        let mut all = BumpVec::with_capacity_in(user.map_or(0, Map::len) + 1, arena);
        if let Some(user) = user {
            all.extend(
                user.iter()
                    .filter(|(k, _)| *k != "$flagd")
                    .map(|(k, v)| (k.as_str(), to_data(v, arena))),
            );
        }
        all.push(("$flagd", flagd));
        let root: &DataValue<'_> = arena.alloc(DataValue::Object(all.into_bump_slice()));
        let named = |name: &str| match flag.variant(name) {
            Some((variant, value)) => Outcome::Variant(variant, value),
            None => Outcome::Unknown(name.to_owned()),
        };
        Ok(match engine().evaluate(logic, root, arena)? {
            DataValue::Null => Outcome::Nothing,
            DataValue::String(s) => named(s),
            DataValue::Bool(b) => named(if *b { "true" } else { "false" }),
            other => Outcome::Other(other.to_json_string()),
        })
    })
}
