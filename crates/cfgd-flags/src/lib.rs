//! Feature flags in flagd's flag format, evaluated with flagd's semantics.
//!
//! A flag is a set of `variants`, a `defaultVariant` and optional JsonLogic
//! `targeting` that picks a variant from the evaluation context. Targeting is
//! compiled once, when the definition is loaded; an evaluation only runs the
//! compiled rule.
#![deny(missing_docs)]

mod details;
mod ops;
mod rollout;

pub use details::{Details, ErrorCode, FlagValue, Json, Reason};
pub use rollout::Rollout;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use datalogic_rs::bumpalo::collections::Vec as BumpVec;
use datalogic_rs::DataValue;
use serde_json::{Map, Value};

/// A flag definition (or flagd document) that is refused: it breaks flagd's
/// flag format, names a default variant that is not among its variants,
/// mixes variant types, or has targeting that is not valid JsonLogic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: invalid flag definition: {reason}")]
pub struct InvalidFlag {
    /// The flag's etcd key or name, or `flagd document` for the document.
    pub key: String,
    /// What exactly is wrong, naming the field.
    pub reason: String,
}

type Result<T, E = InvalidFlag> = std::result::Result<T, E>;

/// One flag, parsed and with its targeting compiled.
pub(crate) struct Flag {
    enabled: bool,
    variants: Map<String, Value>,
    default_variant: Option<String>,
    rule: Rule,
    metadata: Map<String, Value>,
}

enum Rule {
    None,
    /// The rule, and whether it can read `$flagd.timestamp` (see
    /// [`reads_clock`]).
    Compiled(datalogic_rs::Logic, bool),
    /// Kept so that evaluating the flag reports why (flagd's PARSE_ERROR).
    Invalid(String),
}

fn engine() -> &'static datalogic_rs::Engine {
    static ENGINE: OnceLock<datalogic_rs::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| ops::register(datalogic_rs::Engine::builder()).build())
}

/// Shared targeting rules, referenced from flags as `{"$ref": "name"}`.
pub type Evaluators = Map<String, Value>;

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
            Some(targeting) => match compile(targeting, evaluators) {
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
    fn broken(reason: String) -> Flag {
        Flag {
            enabled: true,
            variants: Map::new(),
            default_variant: None,
            rule: Rule::Invalid(reason),
            metadata: Map::new(),
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
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
) -> std::result::Result<(datalogic_rs::Logic, bool), String> {
    let resolved = resolve_refs(targeting, evaluators, 0)?;
    check_operators(&resolved)?;
    let logic = engine()
        .compile(&ops::rewrite(&resolved))
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

/// What one evaluation found, before it is typed.
struct Resolution<'f> {
    variant: Option<&'f str>,
    value: Option<&'f Value>,
    reason: Reason,
    error: Option<(ErrorCode, String)>,
}

impl<'f> Resolution<'f> {
    fn error(code: ErrorCode, message: String) -> Self {
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

    fn resolve(&self, key: &str, context: &Value) -> Resolution<'_> {
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
fn to_data<'a>(value: &'a Value, arena: &'a datalogic_rs::bumpalo::Bump) -> DataValue<'a> {
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

/// A set of flags with their shared evaluators and metadata, compiled, ready
/// to evaluate. Cheap to clone.
#[derive(Clone, Default)]
pub struct FlagSet {
    /// Every evaluation looks its flag up here: foldhash rather than
    /// SipHash, as only the set's own names are ever inserted.
    flags: Arc<foldhash::HashMap<String, Arc<Flag>>>,
    metadata: Arc<Map<String, Value>>,
    /// For a set built from etcd: the revision each flag was compiled from,
    /// and that of `$evaluators`, so a rebuild recompiles only what changed.
    revisions: Arc<HashMap<String, i64>>,
    evaluators_revision: i64,
}

/// The name under which a namespace keeps its shared evaluators.
pub const EVALUATORS: &str = "$evaluators";

impl std::fmt::Debug for FlagSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagSet")
            .field("flags", &self.flags.len())
            .finish_non_exhaustive()
    }
}

impl FlagSet {
    /// Loads a flagd document: `{"flags": {...}, "$evaluators": {...},
    /// "metadata": {...}}`. As flagd does with its files, a flag whose
    /// targeting cannot be compiled is still loaded and reports
    /// `PARSE_ERROR` when evaluated; use [`validate_document`] to refuse it.
    pub fn from_document(document: &str) -> Result<FlagSet> {
        let parsed = parse_document(document)?;
        let mut flags =
            foldhash::HashMap::with_capacity_and_hasher(parsed.flags.len(), Default::default());
        for (name, definition) in &parsed.flags {
            let flag =
                Flag::parse(definition, &parsed.evaluators, Check::Lenient).map_err(|reason| {
                    InvalidFlag {
                        key: name.clone(),
                        reason,
                    }
                })?;
            flags.insert(name.clone(), Arc::new(flag));
        }
        Ok(FlagSet {
            flags: Arc::new(flags),
            metadata: Arc::new(parsed.metadata),
            ..FlagSet::default()
        })
    }

    /// Whether both were built from the same stored revisions.
    pub fn same_revisions(&self, other: &FlagSet) -> bool {
        self.evaluators_revision == other.evaluators_revision && self.revisions == other.revisions
    }

    /// Builds the set from stored definitions (name → (JSON, revision)),
    /// reusing every compiled flag of `previous` whose definition and
    /// evaluators have not changed. A definition that does not even parse
    /// is kept as a flag that answers `PARSE_ERROR`.
    pub fn from_store<'a>(
        stored: impl Iterator<Item = (&'a str, &'a [u8], i64)>,
        previous: &FlagSet,
    ) -> FlagSet {
        let mut definitions = Vec::new();
        let mut evaluators = (Evaluators::new(), 0);
        for (name, raw, revision) in stored {
            if name == EVALUATORS {
                if let Ok(Value::Object(map)) = serde_json::from_slice(raw) {
                    evaluators = (map, revision);
                }
            } else {
                definitions.push((name, raw, revision));
            }
        }
        let same_evaluators = evaluators.1 == previous.evaluators_revision;
        let mut flags =
            foldhash::HashMap::with_capacity_and_hasher(definitions.len(), Default::default());
        let mut revisions = HashMap::with_capacity(definitions.len());
        for (name, raw, revision) in definitions {
            let reuse = same_evaluators
                && previous.revisions.get(name) == Some(&revision)
                && previous.flags.contains_key(name);
            let flag = if reuse {
                previous.flags[name].clone()
            } else {
                let parsed = serde_json::from_slice(raw)
                    .map_err(|e| format!("not valid JSON: {e}"))
                    .and_then(|def| Flag::parse(&def, &evaluators.0, Check::Lenient));
                Arc::new(parsed.unwrap_or_else(Flag::broken))
            };
            flags.insert(name.to_owned(), flag);
            revisions.insert(name.to_owned(), revision);
        }
        FlagSet {
            flags: Arc::new(flags),
            metadata: Arc::default(),
            revisions: Arc::new(revisions),
            evaluators_revision: evaluators.1,
        }
    }

    /// Evaluates `key` as a `T`, never failing: problems give `default`
    /// with a reason and error code saying why.
    pub fn evaluate<T: FlagValue>(&self, key: &str, default: T, context: &Value) -> Details<T> {
        let flag = self.flags.get(key);
        let resolution = match flag {
            Some(flag) => flag.resolve(key, context),
            None => Resolution::error(ErrorCode::FlagNotFound, format!("flag {key:?} not found")),
        };
        let mut metadata = Map::new();
        if let Some(flag) = flag {
            // The flag's entries override the set's. Most have none, and
            // extending by nothing would still reserve.
            for source in [&*self.metadata, &flag.metadata] {
                if !source.is_empty() {
                    metadata.extend(source.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut details = Details {
            flag_key: key.to_owned(),
            value: default,
            variant: None,
            reason: resolution.reason,
            error_code: resolution.error.as_ref().map(|(c, _)| *c),
            error_message: resolution.error.map(|(_, m)| m),
            metadata,
        };
        if let Some(value) = resolution.value {
            match T::from_variant(value) {
                Some(typed) => {
                    details.value = typed;
                    details.variant = resolution.variant.map(str::to_owned);
                }
                None => {
                    details.reason = Reason::Error;
                    details.error_code = Some(ErrorCode::TypeMismatch);
                    details.error_message = Some(format!(
                        "{key}: variant {:?} is {}, not {}",
                        resolution.variant.unwrap_or_default(),
                        kind_of(value),
                        T::TYPE
                    ));
                }
            }
        }
        details
    }

    /// Each flag's name and the revision it was compiled from (0 for a set
    /// loaded from a document), and the evaluators' revision under
    /// [`EVALUATORS`]: what tells two builds apart.
    pub fn fingerprint(&self) -> HashMap<String, i64> {
        let mut out: HashMap<String, i64> = self
            .flags
            .keys()
            .map(|k| (k.clone(), self.revisions.get(k).copied().unwrap_or(0)))
            .collect();
        out.insert(EVALUATORS.to_owned(), self.evaluators_revision);
        out
    }

    /// Names of the flags in the set, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.keys().map(String::as_str)
    }
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
    Flag::parse(definition, evaluators, Check::Strict)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Cut points in 0..=100 make a split of 100 over 1 to 5 variants.
    fn split() -> impl Strategy<Value = Vec<u32>> {
        prop::collection::vec(0u32..=100, 0..5).prop_map(|mut cuts| {
            cuts.sort_unstable();
            let mut weights = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([100]) {
                weights.push(cut - from);
                from = cut;
            }
            weights
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// A fractional rollout whose weights sum to 100 puts every user in
        /// one variant of nonzero weight, the same one every time and in
        /// every set compiled from it, and each variant's share of 4,000
        /// fixed users lies within 4 points of its weight.
        #[test]
        fn fractional_buckets_are_stable_and_sum_to_100(weights in split()) {
            let rollout = weights
                .iter()
                .enumerate()
                .fold(crate::Rollout::new(), |r, (i, w)| r.variant(format!("v{i}"), *w));
            prop_assert_eq!(rollout.total(), 100);
            let variants: serde_json::Map<String, Value> =
                (0..weights.len()).map(|i| (format!("v{i}"), json!(i))).collect();
            let document = json!({"flags": {"f": {
                "state": "ENABLED", "variants": variants, "defaultVariant": "v0",
                "targeting": rollout.targeting("f").unwrap()}}})
            .to_string();
            let (one, two) = (
                FlagSet::from_document(&document).unwrap(),
                FlagSet::from_document(&document).unwrap(),
            );
            let mut counts = vec![0u32; weights.len()];
            let users = 4000;
            for user in 0..users {
                let context = json!({"targetingKey": format!("user-{user}")});
                let first = one.evaluate("f", -1i64, &context);
                prop_assert_eq!(first.reason, Reason::TargetingMatch);
                prop_assert_eq!(first.value, two.evaluate("f", -1i64, &context).value);
                prop_assert_eq!(first.value, one.evaluate("f", -1i64, &context).value);
                let i = usize::try_from(first.value).unwrap();
                prop_assert!(weights[i] > 0, "user-{} in v{} of weight 0", user, i);
                counts[i] += 1;
            }
            prop_assert_eq!(counts.iter().sum::<u32>(), users);
            for (count, weight) in counts.iter().zip(&weights) {
                let share = f64::from(*count) * 100.0 / f64::from(users);
                prop_assert!((share - f64::from(*weight)).abs() < 4.0, "{} against {}", share, weight);
            }
        }
    }
}
