//! Differential test of flagd's v3 `fractional` bucketing: cfgd's evaluator
//! against OpenFeature's Python evaluator core, `openfeature-flagd-core` 2.x
//! from PyPI (`tests/python/evaluate.py`, run in the virtualenv that
//! `make test` sets up in `target/pyenv`). Generated contexts bucket by
//! values of every JSON type, nested ones included; every evaluation must
//! give the same value, variant and reason.

use std::io::Write;
use std::process::{Command, Stdio};

use cfgd::flags::{Bucketing, FlagSet};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Map, Value};

/// Fractional rules of every shape the operator takes: a bucketing value
/// from the context (of any type), the shorthand, odd weights, missing
/// weights, weights past `i32::MAX`, and buckets used as a condition.
fn document() -> Value {
    let flag = |targeting: Value| {
        json!({"state": "ENABLED", "variants": {"a": "a", "b": "b", "c": "c"},
               "defaultVariant": "c", "targeting": targeting})
    };
    let ten: Vec<Value> = ["a", "b", "c", "a", "b", "c", "a", "b", "c", "a"]
        .iter()
        .enumerate()
        .map(|(i, v)| json!([v, i + 1]))
        .collect();
    let mut by_many = vec![json!({"var": "v"})];
    by_many.extend(ten);
    json!({"flags": {
        "by-value": flag(json!({"fractional": [{"var": "v"}, ["a", 25], ["b", 25], ["c", 50]]})),
        "shorthand": flag(json!({"fractional": [["a", 1], ["b", 1], ["c", 1]]})),
        "by-object": flag(json!({"fractional": [{"var": "o"}, ["a", 10], ["b", 20], ["c", 70]]})),
        "by-key": flag(json!({"fractional": [{"var": "targetingKey"}, ["a", 50], ["b", 50]]})),
        "many": flag(json!({"fractional": by_many})),
        "odd-weights": flag(json!({"fractional": [{"var": "v"}, ["a", 0], ["b", -5], ["c", 3], ["a", 1]]})),
        "no-weights": flag(json!({"fractional": [{"var": "v"}, ["a"], ["b"], ["c", 2]]})),
        "too-heavy": flag(json!({"fractional": [{"var": "v"}, ["a", 2_147_483_647], ["b", 1]]})),
        "as-condition": flag(json!({"if": [{"fractional": [{"var": "v"}, [true, 50], [false, 50]]}, "a", "b"]})),
        "nested-var": flag(json!({"fractional": [{"var": "o.inner"}, ["a", 1], ["b", 1]]})),
    }})
}

/// Floats where encodings differ: whole ones (which bucket as integers),
/// the edges of half and single precision, and past the integer range.
const EDGE_FLOATS: &[f64] = &[
    0.5,
    -0.5,
    1.5,
    3.0,
    -0.0,
    65504.5,
    65520.0,
    1.0e-5,
    5.960_464_477_539_063e-8,
    6.103_515_625e-5,
    3.402_823_466_385_288_6e38,
    1.0e300,
    -1.0e300,
    9_223_372_036_854_775_808.0,
    -9_223_372_036_854_775_808.0,
    18_446_744_073_709_551_616.0,
    -18_446_744_073_709_551_616.0,
    0.1,
    1.0e-310,
];

/// Any JSON value, with numbers where the encodings differ. Integers stay
/// within i64: cfgd holds a larger JSON integer as a float, the Python
/// core as an integer (see the flags guide).
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        (-100_000i32..100_000).prop_map(|i| Value::from(f64::from(i))),
        prop::sample::select(EDGE_FLOATS).prop_map(Value::from),
        "[a-zA-Z0-9 é😀\"\\\\]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 20, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{0,3}|[a-zA-Z0-9_é]{0,30}", inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn context() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just(None),
        Just(Some(String::new())),
        "[a-z0-9@.é-]{1,24}".prop_map(Some),
    ];
    let object = prop::collection::vec(("[a-z]{0,3}|inner", value()), 0..4)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect()));
    (key, value(), prop::option::of(object)).prop_map(|(key, v, o)| {
        let mut ctx = Map::new();
        if let Some(key) = key {
            ctx.insert("targetingKey".into(), Value::from(key));
        }
        if !v.is_null() {
            ctx.insert("v".into(), v);
        }
        if let Some(o) = o {
            ctx.insert("o".into(), o);
        }
        Value::Object(ctx)
    })
}

fn reference(document: &str, cases: &[Value]) -> Vec<Value> {
    let root = crate::common::root();
    let mut child = Command::new(crate::common::python())
        .arg(root.join("tests/python/evaluate.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the virtualenv's python");
    let input = json!({"document": document, "cases": cases}).to_string();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let printed = crate::common::stdout_of("python tests/python/evaluate.py", out);
    serde_json::from_str(&printed).expect("evaluate.py printed JSON")
}

#[test]
fn v3_bucketing_agrees_with_the_python_flagd_core_over_10_000_contexts() {
    let document = document();
    let text = document.to_string();
    let set = FlagSet::from_document_with(&text, Bucketing::V3).unwrap();
    let v2 = FlagSet::from_document(&text).unwrap();
    let mut runner = TestRunner::deterministic();
    let strategy = context();
    let contexts: Vec<Value> = (0..10_000)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let keys: Vec<&String> = document["flags"].as_object().unwrap().keys().collect();
    let cases: Vec<Value> = contexts
        .iter()
        .flat_map(|ctx| {
            keys.iter()
                .map(move |key| json!({"key": key, "context": ctx}))
        })
        .collect();
    let theirs = reference(&text, &cases);
    assert_eq!(theirs.len(), cases.len());

    let mut disagreements = Vec::new();
    let mut bucketed = 0;
    let mut moved = 0;
    for (case, expected) in cases.iter().zip(&theirs) {
        let key = case["key"].as_str().unwrap();
        let ctx = &case["context"];
        let d = set.evaluate(key, "fallback".to_owned(), ctx);
        let got = json!({"value": d.value, "variant": d.variant, "reason": d.reason.as_str()});
        if d.reason.as_str() == "TARGETING_MATCH" {
            bucketed += 1;
        }
        if v2.evaluate(key, "fallback".to_owned(), ctx).variant != d.variant {
            moved += 1;
        }
        if &got != expected {
            disagreements.push(format!(
                "{case}\n  cfgd:        {got}\n  python core: {expected}"
            ));
        }
    }
    println!(
        "{} evaluations over {} contexts compared with openfeature-flagd-core: {} disagree; \
         {bucketed} bucketed, {moved} in another variant than v2 gives",
        cases.len(),
        contexts.len(),
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} of {} evaluations disagree; first ones:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The generated values must really exercise the buckets, not fall
    // back to the default for most of them.
    assert!(
        bucketed > cases.len() / 3,
        "only {bucketed} evaluations bucketed"
    );
    assert!(moved > 0, "v3 never differs from v2: is v3 in use?");
}
