//! What an evaluation answers: the value, and OpenFeature's reason and
//! error code for it.

use serde_json::{Map, Value};

/// Why an evaluation gave the value it gave, as OpenFeature defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// No targeting: the default variant.
    Static,
    /// Targeting ran and chose nothing, or the flag has no default variant:
    /// the default.
    Default,
    /// Targeting chose a variant.
    TargetingMatch,
    /// A pseudorandom split chose the variant.
    Split,
    /// The flag is disabled: the caller's default.
    Disabled,
    /// Something went wrong: see the error code.
    Error,
}

impl Reason {
    /// The OpenFeature spelling: `STATIC`, `TARGETING_MATCH`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::Default => "DEFAULT",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong in an evaluation, as OpenFeature defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No flag of that name.
    FlagNotFound,
    /// The flag's value is not of the type asked for.
    TypeMismatch,
    /// The flag's targeting could not be compiled or run.
    ParseError,
    /// Anything else (a targeting rule that names no known variant, say).
    General,
}

impl ErrorCode {
    /// The OpenFeature spelling: `FLAG_NOT_FOUND`, `TYPE_MISMATCH`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::General => "GENERAL",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The full result of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Details<T> {
    /// The flag evaluated.
    pub flag_key: String,
    /// The value: the chosen variant's, or the caller's default.
    pub value: T,
    /// The chosen variant, when one was.
    pub variant: Option<String>,
    /// Why this value.
    pub reason: Reason,
    /// What went wrong, when something did (then `value` is the default).
    pub error_code: Option<ErrorCode>,
    /// A human-readable account of the error.
    pub error_message: Option<String>,
    /// The flag's metadata over the flag set's.
    pub metadata: Map<String, Value>,
}

/// A type a flag can be evaluated as.
pub trait FlagValue: Sized {
    /// The name of the type in messages (`boolean`, `string`, ...).
    const TYPE: &'static str;
    /// The variant's value as this type, if it is one.
    fn from_variant(value: &Value) -> Option<Self>;
}

impl FlagValue for bool {
    const TYPE: &'static str = "boolean";
    fn from_variant(value: &Value) -> Option<Self> {
        value.as_bool()
    }
}

impl FlagValue for String {
    const TYPE: &'static str = "string";
    fn from_variant(value: &Value) -> Option<Self> {
        value.as_str().map(str::to_owned)
    }
}

impl FlagValue for i64 {
    const TYPE: &'static str = "integer";
    fn from_variant(value: &Value) -> Option<Self> {
        value.as_i64().or_else(|| {
            // 10.0 is an integer to a JSON writer that only has floats.
            let f = value.as_f64()?;
            (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
        })
    }
}

impl FlagValue for f64 {
    const TYPE: &'static str = "float";
    fn from_variant(value: &Value) -> Option<Self> {
        value.as_f64()
    }
}

impl FlagValue for Value {
    const TYPE: &'static str = "object";
    fn from_variant(value: &Value) -> Option<Self> {
        value.is_object().then(|| value.clone())
    }
}

/// Any JSON value: evaluates a flag whatever the type of its variants (what
/// `cfgctl flag eval` prints). The default is usually `Json(Value::Null)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Json(pub Value);

impl FlagValue for Json {
    const TYPE: &'static str = "any JSON value";
    fn from_variant(value: &Value) -> Option<Self> {
        Some(Json(value.clone()))
    }
}
