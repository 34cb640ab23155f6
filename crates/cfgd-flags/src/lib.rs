//! Feature flags in flagd's flag format, evaluated with flagd's semantics.
//!
//! A flag is a set of `variants`, a `defaultVariant` and optional JsonLogic
//! `targeting` that picks a variant from the evaluation context. Targeting is
//! compiled once, when the definition is loaded; an evaluation only runs the
//! compiled rule. `fractional` buckets with either of flagd's hashings
//! ([`Bucketing`]), chosen when a [`FlagSet`] is built.
#![deny(missing_docs)]

mod definition;
mod details;
mod evaluation;
mod fractional;
mod ops;
mod rollout;
mod set;

pub use definition::{document, parse_document, validate_document, validate_flag, Document};
pub use details::{Details, ErrorCode, FlagValue, Json, Reason};
pub use fractional::{percent_bucket, Bucketing};
pub use rollout::Rollout;
pub use set::FlagSet;

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

/// Shared targeting rules, referenced from flags as `{"$ref": "name"}`.
pub type Evaluators = Map<String, Value>;

/// The name under which a namespace keeps its shared evaluators.
pub const EVALUATORS: &str = "$evaluators";

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

    /// `percent_bucket` is the bucket `fractional` uses: a flag with `p`
    /// percent "in" says "in" exactly for the keys whose bucket is below p.
    #[test]
    fn percent_bucket_agrees_with_a_fractional_rollout() {
        for p in [0u32, 10, 37, 100] {
            let rollout = crate::Rollout::new()
                .variant("in", p)
                .variant("out", 100 - p);
            let document = json!({"flags": {"canary": {
                "state": "ENABLED", "variants": {"in": "in", "out": "out"},
                "defaultVariant": "out", "targeting": rollout.targeting("canary").unwrap()}}})
            .to_string();
            let set = FlagSet::from_document(&document).unwrap();
            for host in 0..500 {
                let key = format!("host-{host}");
                let context = json!({"targetingKey": key});
                let inside = set.evaluate("canary", String::new(), &context).value == "in";
                assert_eq!(
                    inside,
                    u32::from(percent_bucket("canary", &key)) < p,
                    "{key} at {p}"
                );
            }
        }
    }
}

/// The crate README's Rust block, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
