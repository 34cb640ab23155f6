//! [`SchemaFailure`]: one way a value fails its JSON Schema, as errors name it.

/// One way a value fails its JSON Schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFailure {
    /// Where in the value, as a JSON Pointer (`""` for the whole value).
    pub pointer: String,
    /// The rule it breaks, as the validator words it. For a secret it names
    /// the rule but never quotes the value.
    pub message: String,
    /// The schema keyword it breaks (`type`, `minimum`, `required`...).
    pub rule: String,
}

impl std::fmt::Display for SchemaFailure {
    /// `/pool_size: 0 is less than the minimum of 1`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}", self.message)
    }
}

pub(super) fn join(failures: &[SchemaFailure]) -> String {
    let lines: Vec<String> = failures.iter().map(ToString::to_string).collect();
    lines.join("; ")
}
