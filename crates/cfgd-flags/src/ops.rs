//! flagd's custom JsonLogic operations: `fractional`, `sem_ver`,
//! `starts_with` and `ends_with`, registered on datalogic-rs as custom
//! operators, so they receive arguments already evaluated from the compiled
//! rule (nothing is re-parsed per evaluation).
//!
//! The crate's own `flagd` feature is not used: in the versions that build
//! on our toolchain its `fractional` accepts only string variant names,
//! while flagd lets a bucket be any value (`[[false, 0], [true, 100]]` as an
//! `if` condition, say), and its `starts_with` turns numbers into strings
//! where flagd answers `null`.
//!
//! Each operation answers `null` on bad input; the evaluator then falls back
//! to the flag's default variant, as flagd does.

use datalogic_rs::bumpalo::Bump;
use datalogic_rs::operator::EvalContext;
use datalogic_rs::{CustomOperator, DataValue};

use crate::fractional::{Bucketing, Fractional, FRACTIONAL_V3};

type OpResult<'a> = datalogic_rs::Result<&'a DataValue<'a>>;

fn null<'a>(arena: &'a Bump) -> OpResult<'a> {
    Ok(arena.alloc(DataValue::Null))
}

fn boolean<'a>(arena: &'a Bump, b: bool) -> OpResult<'a> {
    Ok(arena.alloc(DataValue::Bool(b)))
}

/// Registers flagd's operations on an engine builder.
pub(crate) fn register(builder: datalogic_rs::EngineBuilder) -> datalogic_rs::EngineBuilder {
    builder
        .add_operator("fractional", Fractional(Bucketing::V2))
        .add_operator(FRACTIONAL_V3, Fractional(Bucketing::V3))
        .add_operator("sem_ver", SemVer)
        .add_operator("starts_with", Affix { prefix: true })
        .add_operator("ends_with", Affix { prefix: false })
        .add_operator(ARRAY_OR_NULL, Guard { strings: false })
        .add_operator(IN_TARGET, Guard { strings: true })
        .add_operator(BETWEEN, Between)
        .add_operator(CAT, Cat)
}

/// Replaces `cat`.
const CAT: &str = "cfgd:cat";

/// Replaces the three-argument `<` and `<=`.
const BETWEEN: &str = "cfgd:between";

/// Wraps the list argument of the iterating operators (see [`rewrite`]).
const ARRAY_OR_NULL: &str = "cfgd:array-or-null";
/// Wraps the second argument of `in`.
const IN_TARGET: &str = "cfgd:array-string-or-null";

/// Makes the compiled rule fail where flagd-core's JsonLogic engine
/// (json-logic-engine) throws and datalogic-rs would answer: iterating
/// (`all`, `none`, `some`, `map`, `filter`, `reduce`) over something that is
/// neither an array nor null, and `in` over something that is neither an
/// array, a string nor null. A failing rule evaluates to the caller's
/// default with GENERAL, as in flagd-core. Applied after validation, so the
/// guard operators never appear in what users write.
pub(crate) fn rewrite(rule: &serde_json::Value, bucketing: Bucketing) -> serde_json::Value {
    use serde_json::Value;
    match rule {
        Value::Object(map) if map.len() == 1 => {
            let (op, args) = map.iter().next().expect("one entry");
            let mut args = rewrite(args, bucketing);
            let guard = match op.as_str() {
                "all" | "none" | "some" | "map" | "filter" | "reduce" => Some((0, ARRAY_OR_NULL)),
                "in" => Some((1, IN_TARGET)),
                _ => None,
            };
            if let (Some((at, guard)), Value::Array(items)) = (guard, &mut args) {
                // A literal list (or, for `in`, a literal string) passes
                // the guard whatever the context: skip it, and with it a
                // custom-operator lookup per evaluation.
                let literal = |arg: &Value| match arg {
                    Value::Array(_) => true,
                    Value::String(_) => guard == IN_TARGET,
                    _ => false,
                };
                if let Some(arg) = items.get_mut(at).filter(|arg| !literal(arg)) {
                    *arg = serde_json::json!({ guard: [arg.take()] });
                }
            }
            // The three-argument comparisons answer false where the
            // two-argument ones throw: see `Between`.
            if let ("<" | "<=", Value::Array(items)) = (op.as_str(), &args) {
                if items.len() == 3 {
                    let mut items = items.clone();
                    items.push(Value::Bool(op == "<="));
                    return serde_json::json!({ BETWEEN: items });
                }
            }
            if op == "cat" {
                return serde_json::json!({ CAT: args });
            }
            if op == "fractional" && bucketing == Bucketing::V3 {
                return serde_json::json!({ FRACTIONAL_V3: args });
            }
            // json-logic-engine's `all` over null is true (over [] false).
            if op == "all" {
                if let Some(list) = args.as_array().and_then(|a| a.first()).cloned() {
                    return serde_json::json!({"if": [{"===": [list, null]}, true, { op: args }]});
                }
            }
            serde_json::json!({ op: args })
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| rewrite(item, bucketing)).collect())
        }
        other => other.clone(),
    }
}

/// `a < b < c` (or `<=`) as json-logic-engine runs it: strings (and null)
/// compare as text, anything else as numbers, where a value that is not a
/// number makes the comparison false; an array or object fails the rule.
struct Between;

impl CustomOperator for Between {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> OpResult<'a> {
        let [a, b, c, DataValue::Bool(inclusive)] = args else {
            return Err(datalogic_rs::Error::invalid_arguments(
                "expected three values",
            ));
        };
        for (left, right) in [(a, b), (b, c)] {
            if !js_less(left, right, *inclusive)? {
                return boolean(arena, false);
            }
        }
        boolean(arena, true)
    }
}

fn js_less(a: &DataValue<'_>, b: &DataValue<'_>, or_equal: bool) -> datalogic_rs::Result<bool> {
    if let (DataValue::String(x), DataValue::String(y)) = (a, b) {
        // JS compares strings by UTF-16 code units.
        let x: Vec<u16> = x.encode_utf16().collect();
        let y: Vec<u16> = y.encode_utf16().collect();
        return Ok(if or_equal { x <= y } else { x < y });
    }
    let (x, y) = (js_number(a)?, js_number(b)?);
    Ok(if or_equal { x <= y } else { x < y })
}

/// JavaScript's `Number(v)` for JSON values; arrays and objects fail.
fn js_number(v: &DataValue<'_>) -> datalogic_rs::Result<f64> {
    Ok(match v {
        DataValue::Null => 0.0,
        DataValue::Bool(b) => f64::from(u8::from(*b)),
        DataValue::Number(n) => n.as_f64(),
        DataValue::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                0.0
            } else {
                t.parse().unwrap_or(f64::NAN)
            }
        }
        _ => return Err(datalogic_rs::Error::invalid_arguments("NaN")),
    })
}

/// `cat` as flagd-core's compiled JsonLogic runs it: JavaScript's
/// `String(v)` of each argument, so null is "null" (a fractional bucketing
/// key built with `cat` from a missing attribute depends on this).
struct Cat;

impl CustomOperator for Cat {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> OpResult<'a> {
        let mut out = String::new();
        for arg in args {
            js_string(arg, &mut out, false);
        }
        Ok(arena.alloc(DataValue::String(arena.alloc_str(&out))))
    }
}

/// JavaScript's `String(v)`; inside an array, null is "" as
/// `Array.prototype.join` has it.
fn js_string(v: &DataValue<'_>, out: &mut String, in_array: bool) {
    match v {
        DataValue::Null if in_array => {}
        DataValue::Null => out.push_str("null"),
        DataValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        DataValue::Number(n) => match n.as_i64() {
            Some(i) => out.push_str(&i.to_string()),
            None => {
                let f = n.as_f64();
                if f.fract() == 0.0 && f.abs() < 1e21 {
                    out.push_str(&format!("{f:.0}"));
                } else {
                    out.push_str(&f.to_string());
                }
            }
        },
        DataValue::String(s) => out.push_str(s),
        DataValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                js_string(item, out, true);
            }
        }
        _ => out.push_str("[object Object]"),
    }
}

struct Guard {
    strings: bool,
}

impl CustomOperator for Guard {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> OpResult<'a> {
        match args.first() {
            None => null(arena),
            Some(v @ (DataValue::Null | DataValue::Array(_))) => Ok(v),
            Some(v @ DataValue::String(_)) if self.strings => Ok(v),
            Some(_) => Err(datalogic_rs::Error::invalid_arguments(if self.strings {
                "expected an array or a string"
            } else {
                "expected an array"
            })),
        }
    }
}

/// The operators a flag's targeting may use: JsonLogic's and flagd's.
pub(crate) const KNOWN: &[&str] = &[
    "var",
    "missing",
    "missing_some",
    "if",
    "?:",
    "==",
    "===",
    "!=",
    "!==",
    "!",
    "!!",
    "or",
    "and",
    ">",
    ">=",
    "<",
    "<=",
    "max",
    "min",
    "+",
    "-",
    "*",
    "/",
    "%",
    "map",
    "reduce",
    "filter",
    "all",
    "none",
    "some",
    "merge",
    "in",
    "cat",
    "substr",
    "log",
    "fractional",
    "sem_ver",
    "starts_with",
    "ends_with",
];

struct Affix {
    prefix: bool,
}

impl CustomOperator for Affix {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> OpResult<'a> {
        match args {
            [DataValue::String(s), DataValue::String(affix)] => boolean(
                arena,
                if self.prefix {
                    s.starts_with(affix)
                } else {
                    s.ends_with(affix)
                },
            ),
            _ => null(arena),
        }
    }
}

struct SemVer;

impl CustomOperator for SemVer {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> OpResult<'a> {
        let [left, DataValue::String(op), right] = args else {
            return null(arena);
        };
        let (Some(a), Some(b)) = (version(left), version(right)) else {
            return null(arena);
        };
        let result = match *op {
            "=" => a == b,
            "!=" => a != b,
            "<" => a < b,
            "<=" => a <= b,
            ">" => a > b,
            ">=" => a >= b,
            "^" => a.major == b.major,
            "~" => a.major == b.major && a.minor == b.minor,
            _ => return null(arena),
        };
        boolean(arena, result)
    }
}

/// A version as flagd reads one: a leading `v`/`V` is dropped, a number is
/// taken as its text, missing minor and patch parts are zero, and build
/// metadata does not take part in comparisons.
fn version(value: &DataValue<'_>) -> Option<semver::Version> {
    let text = match value {
        DataValue::String(s) => s.to_string(),
        DataValue::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => n.as_f64().to_string(),
        },
        _ => return None,
    };
    let text = text.strip_prefix(['v', 'V']).unwrap_or(&text).to_owned();
    // Pad only the numeric core: "1.2-rc.1" becomes "1.2.0-rc.1".
    let core_end = text.find(['-', '+']).unwrap_or(text.len());
    let dots = text[..core_end].matches('.').count();
    let padded = match dots {
        0 => format!("{}.0.0{}", &text[..core_end], &text[core_end..]),
        1 => format!("{}.0{}", &text[..core_end], &text[core_end..]),
        _ => text,
    };
    let mut parsed = semver::Version::parse(&padded).ok()?;
    parsed.build = semver::BuildMetadata::EMPTY;
    Some(parsed)
}
