//! [`Rollout`]: a percentage split of users between variants.

use serde_json::Value;

use crate::InvalidFlag;

/// A percentage rollout: variants and their weights, written as flagd's
/// `fractional` operator, which buckets each evaluation by a hash of the
/// flag key and the targeting key, so a user keeps their variant while the
/// split stays the same.
///
/// ```
/// let rollout = cfgd_flags::Rollout::new().variant("on", 25).variant("off", 75);
/// assert_eq!(rollout.total(), 100);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollout {
    buckets: Vec<(String, u32)>,
}

impl Rollout {
    /// An empty rollout; add variants with [`variant`](Self::variant).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a variant with its weight. Weights are relative: `on` 1 and
    /// `off` 3 is the same split as 25 and 75.
    pub fn variant(mut self, name: impl Into<String>, weight: u32) -> Self {
        self.buckets.push((name.into(), weight));
        self
    }

    /// The variants and weights, in order.
    pub fn buckets(&self) -> &[(String, u32)] {
        &self.buckets
    }

    /// The sum of the weights.
    pub fn total(&self) -> u64 {
        self.buckets.iter().map(|(_, w)| u64::from(*w)).sum()
    }

    /// The flag's `targeting`: `{"fractional": [["on", 25], ["off", 75]]}`.
    /// Refused when it has no variant, names one twice, or weighs nothing.
    pub fn targeting(&self, key: &str) -> Result<Value, InvalidFlag> {
        let invalid = |reason: String| InvalidFlag {
            key: key.to_owned(),
            reason,
        };
        if self.buckets.is_empty() {
            return Err(invalid("a rollout needs at least one variant".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &self.buckets {
            if !seen.insert(name.as_str()) {
                return Err(invalid(format!("the rollout names variant {name:?} twice")));
            }
        }
        if self.total() == 0 {
            return Err(invalid("the rollout's weights sum to 0".into()));
        }
        let buckets = self
            .buckets
            .iter()
            .map(|(name, weight)| serde_json::json!([name, weight]))
            .collect();
        Ok(serde_json::json!({ "fractional": Value::Array(buckets) }))
    }
}
