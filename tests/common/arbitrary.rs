//! proptest strategies shared by the library's unit tests and the
//! integration tests.

use proptest::prelude::*;
use serde_json::Value;

/// Any JSON value a person might store: nested objects and arrays, every
/// kind of number, strings with escapes and non-ASCII.
pub fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z\"\\\\/~é😀 \\n\\t]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("[a-z/~_.]{0,6}", inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A valid value name: segments of letters, digits, `.`, `_`, `-`,
/// joined by `/`.
pub fn name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,10}(/[a-z0-9][a-z0-9._-]{0,10}){0,2}"
}
