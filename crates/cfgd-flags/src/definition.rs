//! A flag definition: parsed, checked and its targeting compiled; and
//! the flagd document that holds definitions.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::*;

/// One flag, parsed and with its targeting compiled.
pub(crate) struct Flag {
    pub(crate) enabled: bool,
    pub(crate) variants: Map<String, Value>,
    pub(crate) default_variant: Option<String>,
    pub(crate) rule: Rule,
    pub(crate) metadata: Map<String, Value>,
}

pub(crate) enum Rule {
    None,
    /// The rule, and whether it can read `$flagd.timestamp` (see
    /// [`reads_clock`]).
    Compiled(datalogic_rs::Logic, bool),
    /// Kept so that evaluating the flag reports why (flagd's PARSE_ERROR).
    Invalid(String),
}

pub(crate) fn engine() -> &'static datalogic_rs::Engine {
    static ENGINE: OnceLock<datalogic_rs::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| ops::register(datalogic_rs::Engine::builder()).build())
}

/// How strictly to read a definition.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Refuse anything flagd would not take: for every write.
    Strict,
    /// Load what can be loaded and report the rest at evaluation, as flagd
    /// does with a file it is given.
    Lenient,
}

impl Flag {
    /// Parses one flag definition. `Strict` refuses every problem with a
    /// message naming the field; `Lenient` only refuses what leaves nothing
    /// to evaluate.
    pub(crate) fn parse(
        definition: &Value,
        evaluators: &Evaluators,
        check: Check,
        bucketing: Bucketing,
    ) -> std::result::Result<Flag, String> {
        let Value::Object(def) = definition else {
            return Err("a flag is a JSON object".into());
        };
        if check == Check::Strict {
            for field in def.keys() {
                if ![
                    "state",
                    "variants",
                    "defaultVariant",
                    "targeting",
                    "metadata",
                ]
                .contains(&field.as_str())
                {
                    return Err(format!(
                        "unknown field {field:?} (expected state, variants, defaultVariant, targeting, metadata)"
                    ));
                }
            }
        }
        let enabled = match def.get("state") {
            Some(Value::String(s)) if s == "ENABLED" => true,
            Some(Value::String(s)) if s == "DISABLED" => false,
            Some(other) => {
                return Err(format!(
                    "state must be \"ENABLED\" or \"DISABLED\", not {other}"
                ))
            }
            None => return Err("state is missing (\"ENABLED\" or \"DISABLED\")".into()),
        };
        let variants = match def.get("variants") {
            Some(Value::Object(v)) if !v.is_empty() => v.clone(),
            Some(Value::Object(_)) => return Err("variants is empty".into()),
            Some(other) => return Err(format!("variants must be an object, not {other}")),
            None => return Err("variants is missing".into()),
        };
        let default_variant = match def.get("defaultVariant") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(format!("defaultVariant must be a string, not {other}")),
        };
        let metadata = match def.get("metadata") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => return Err(format!("metadata must be an object, not {other}")),
        };
        if check == Check::Strict {
            if let Some(default) = &default_variant {
                if !variants.contains_key(default) {
                    return Err(format!(
                        "defaultVariant {default:?} is not one of the variants ({})",
                        variants
                            .keys()
                            .map(|k| format!("{k:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            check_variant_types(&variants)?;
            for (key, value) in &metadata {
                if !(value.is_string() || value.is_number() || value.is_boolean()) {
                    return Err(format!(
                        "metadata {key:?} must be a string, number or boolean, not {value}"
                    ));
                }
            }
        }
        let rule = match def.get("targeting") {
            None => Rule::None,
            Some(Value::Object(t)) if t.is_empty() => Rule::None,
            // Null, as JSON tools write an absent field: no targeting.
            Some(Value::Null) => Rule::None,
            // flagd's schema asks for an object. A bare "on" or [..] is
            // JSON Logic too, but a literal that decides nothing, almost
            // surely a mistake: refused, so it is never stored.
            Some(other) if check == Check::Strict && !other.is_object() => {
                return Err(format!(
                    "targeting must be a JSON Logic rule (an object), not {}",
                    kind_of(other)
                ))
            }
            Some(targeting) => match compile(targeting, evaluators, bucketing) {
                Ok((logic, clock)) => Rule::Compiled(logic, clock),
                Err(reason) if check == Check::Strict => {
                    return Err(format!("targeting: {reason}"))
                }
                Err(reason) => Rule::Invalid(reason),
            },
        };
        Ok(Flag {
            enabled,
            variants,
            default_variant,
            rule,
            metadata,
        })
    }
}

impl Flag {
    /// A stored definition that cannot be read at all: evaluating it says so.
    pub(crate) fn broken(reason: String) -> Flag {
        Flag {
            enabled: true,
            variants: Map::new(),
            default_variant: None,
            rule: Rule::Invalid(reason),
            metadata: Map::new(),
        }
    }
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check_variant_types(variants: &Map<String, Value>) -> std::result::Result<(), String> {
    let mut first: Option<(&str, &'static str)> = None;
    for (name, value) in variants {
        let kind = kind_of(value);
        if matches!(kind, "null" | "array") {
            return Err(format!(
                "variant {name:?} is {kind}; variants are booleans, strings, numbers or objects"
            ));
        }
        match first {
            None => first = Some((name, kind)),
            Some((other, expected)) if expected != kind => {
                return Err(format!(
                    "variants mix types: {other:?} is {expected} but {name:?} is {kind}"
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Resolves `$ref`s, refuses unknown operators, and compiles.
fn compile(
    targeting: &Value,
    evaluators: &Evaluators,
    bucketing: Bucketing,
) -> std::result::Result<(datalogic_rs::Logic, bool), String> {
    let resolved = resolve_refs(targeting, evaluators, 0)?;
    check_operators(&resolved)?;
    let logic = engine()
        .compile(&ops::rewrite(&resolved, bucketing))
        .map_err(|e| format!("not valid JsonLogic: {e}"))?;
    Ok((logic, reads_clock(&resolved)))
}

/// Whether a rule can read `$flagd.timestamp`: a `var` of it, of `$flagd`
/// or the whole context, or of a path only known when evaluating. Rules
/// that cannot are evaluated without reading the clock, a tenth of a
/// simple rule's time. Only `var` reads values (`missing` sees the key,
/// which stays).
fn reads_clock(rule: &Value) -> bool {
    let path_may_be_clock = |path: &Value| match path {
        Value::String(path) => path.is_empty() || path.starts_with("$flagd"),
        Value::Number(_) => false,
        _ => true,
    };
    match rule {
        Value::Object(map) => map.iter().any(|(op, args)| {
            let direct = op == "var"
                && match args {
                    Value::Array(items) => items.first().is_none_or(path_may_be_clock),
                    path => path_may_be_clock(path),
                };
            direct || reads_clock(args)
        }),
        Value::Array(items) => items.iter().any(reads_clock),
        _ => false,
    }
}

fn resolve_refs(
    value: &Value,
    evaluators: &Evaluators,
    depth: usize,
) -> std::result::Result<Value, String> {
    if depth > 32 {
        return Err("$ref nesting deeper than 32 (a cycle?)".into());
    }
    Ok(match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("$ref") => {
            let Some(Value::String(name)) = map.get("$ref") else {
                return Err("$ref must name an evaluator (a string)".into());
            };
            let Some(target) = evaluators.get(name) else {
                return Err(format!(
                    "$ref names evaluator {name:?}, which does not exist in $evaluators"
                ));
            };
            resolve_refs(target, evaluators, depth + 1)?
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), resolve_refs(v, evaluators, depth)?)))
                .collect::<std::result::Result<_, String>>()?,
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| resolve_refs(v, evaluators, depth))
                .collect::<std::result::Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn check_operators(value: &Value) -> std::result::Result<(), String> {
    match value {
        Value::Object(map) => {
            if map.len() != 1 {
                return Err(format!(
                    "an operation is an object with exactly one operator, found {} keys ({})",
                    map.len(),
                    map.keys()
                        .map(|k| format!("{k:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let (op, args) = map.iter().next().expect("one entry");
            if !ops::KNOWN.contains(&op.as_str()) {
                return Err(format!("unknown operator {op:?}"));
            }
            check_operators(args)
        }
        Value::Array(items) => items.iter().try_for_each(check_operators),
        _ => Ok(()),
    }
}

/// The flagd document of stored flags, the one way it is built: every
/// definition under `"flags"`, and the shared evaluators (the entry named
/// [`EVALUATORS`]) as `"$evaluators"` when they are a non-empty object.
pub fn document<N: Into<String>>(stored: impl IntoIterator<Item = (N, Value)>) -> Value {
    let mut flags = Map::new();
    let mut evaluators = None;
    for (name, definition) in stored {
        let name = name.into();
        if name == EVALUATORS {
            evaluators = Some(definition);
        } else {
            flags.insert(name, definition);
        }
    }
    let mut document = Map::new();
    document.insert("flags".into(), Value::Object(flags));
    if let Some(evaluators) = evaluators.filter(|e| e.as_object().is_some_and(|o| !o.is_empty())) {
        document.insert(EVALUATORS.into(), evaluators);
    }
    Value::Object(document)
}

/// A flagd document taken apart, nothing checked but its shape.
#[derive(Debug, Clone, Default)]
pub struct Document {
    /// `flags`: name → definition.
    pub flags: Map<String, Value>,
    /// `$evaluators`: name → JsonLogic.
    pub evaluators: Evaluators,
    /// `metadata`, set-wide.
    pub metadata: Map<String, Value>,
}

/// Takes a flagd document apart: a JSON object whose `flags`,
/// `$evaluators` and `metadata` are objects when present.
pub fn parse_document(document: &str) -> Result<Document> {
    let invalid = |reason: String| InvalidFlag {
        key: "flagd document".into(),
        reason,
    };
    let value: Value =
        serde_json::from_str(document).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let Value::Object(mut doc) = value else {
        return Err(invalid(
            "a flagd document is a JSON object with \"flags\"".into(),
        ));
    };
    let take_object = |doc: &mut Map<String, Value>, field: &str| match doc.remove(field) {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(invalid(format!(
            "{field} must be an object, not {}",
            kind_of(&other)
        ))),
    };
    let flags = take_object(&mut doc, "flags")?;
    let evaluators = take_object(&mut doc, "$evaluators")?;
    let metadata = take_object(&mut doc, "metadata")?;
    Ok(Document {
        flags,
        evaluators,
        metadata,
    })
}

/// Checks one flag definition strictly, as every write path does: flagd's
/// format, a `defaultVariant` among the variants, one type for all
/// variants, targeting that is JsonLogic with known operators only and
/// `$ref`s that name existing evaluators.
pub fn validate_flag(name: &str, definition: &Value, evaluators: &Evaluators) -> Result<()> {
    // Validity does not depend on the bucketing.
    Flag::parse(definition, evaluators, Check::Strict, Bucketing::V2)
        .map(drop)
        .map_err(|reason| InvalidFlag {
            key: name.to_owned(),
            reason,
        })
}

/// Checks every flag of a flagd document strictly (see [`validate_flag`]).
pub fn validate_document(document: &str) -> Result<()> {
    let parsed = parse_document(document)?;
    for (name, definition) in &parsed.flags {
        validate_flag(name, definition, &parsed.evaluators)?;
    }
    Ok(())
}
