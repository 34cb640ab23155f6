//! What the fuzz targets in `fuzz/` run (feature `fuzzing`; not an API):
//! each takes arbitrary bytes and checks an invariant of what it parses. A
//! panic is a finding. `tests/fuzz_cases.rs` runs every input in
//! `fuzz/seeds/` and `fuzz/regressions/` through them in `make test`.

use serde_json::{json, Value};

use crate::flags::FlagSet;
use crate::key::{self, KeySpace, Kind};
use crate::secret::{self, Keyring};
use crate::value;

/// A target: arbitrary bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/` has them.
pub const TARGETS: &[(&str, Target)] = &[
    ("names", names),
    ("value", value),
    ("flags", flags),
    ("schema", schema),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Names and namespaces (`ns\nname`): what validates maps to a key and
/// back to the same name, in every section, and nothing else does.
pub fn names(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let (namespace, name) = text.split_once('\n').unwrap_or(("ns", text));
    let name_ok = key::validate_name(name).is_ok();
    let _ = key::validate_prefix(name);
    let Ok(space) = KeySpace::new("/cfgd", namespace) else {
        assert!(key::validate_namespace(namespace).is_err());
        return;
    };
    for kind in [Kind::Config, Kind::Flags, Kind::Schemas] {
        match space.key(kind, name) {
            Ok(key) => {
                assert!(name_ok, "{name:?} made a key without validating");
                assert_eq!(
                    key::split_key(space.base(), key.as_bytes()),
                    Some((kind, name))
                );
                assert_eq!(space.name_of(kind, key.as_bytes()), Some(name));
            }
            Err(_) => assert!(!name_ok, "{name:?} validates but made no key"),
        }
    }
}

/// Value text: compaction keeps the JSON value and is stable; decoding
/// refuses what is not JSON; a secret envelope of anything opens back to
/// it, and arbitrary bytes taken for an envelope are refused, not trusted.
pub fn value(data: &[u8]) {
    let _ = value::decode::<Value>("k", 1, data);
    let keyring =
        Keyring::parse("cfgd-secret-key-v1 fuzz AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            .expect("a fixed key");
    assert!(keyring.open("/k", data).is_err() || secret::is_sealed(data));
    assert_eq!(keyring.open("/k", &keyring.seal("/k", data)).unwrap(), data);
    let Some(text) = text(data) else { return };
    let Ok(compact) = value::compact_text("k", text) else {
        return;
    };
    let parsed: Value = serde_json::from_str(text).expect("compact_text checked it");
    let again: Value = serde_json::from_slice(&compact).expect("compaction keeps JSON");
    assert_eq!(parsed, again);
    let compact_text = std::str::from_utf8(&compact).expect("UTF-8 in, UTF-8 out");
    assert_eq!(value::compact_text("k", compact_text).unwrap(), compact);
    if !secret::is_sealed(&compact) {
        assert_eq!(value::decode::<Value>("k", 1, &compact).unwrap(), again);
    }
}

/// A flagd document, then a NUL, then an evaluation context: loading never
/// panics, a strictly valid document loads, and every flag evaluates as
/// each type, with an error or a value, never a panic.
pub fn flags(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let (document, context) = text.split_once('\0').unwrap_or((text, "{}"));
    let context: Value = serde_json::from_str(context).unwrap_or_else(|_| json!({}));
    let strict = crate::flags::validate_document(document).is_ok();
    let Ok(set) = FlagSet::from_document(document) else {
        assert!(!strict, "a valid document did not load");
        return;
    };
    let names: Vec<String> = set.keys().map(str::to_owned).collect();
    for name in names.iter().map(String::as_str).chain(["missing"]) {
        let _ = set.evaluate(name, false, &context);
        let _ = set.evaluate(name, String::new(), &context);
        let _ = set.evaluate(name, 0i64, &context);
        let _ = set.evaluate(name, 0f64, &context);
        let details = set.evaluate(name, Value::Null, &context);
        assert_eq!(details.flag_key, name);
    }
}

/// A JSON Schema, then a NUL, then an instance: compiling and validating
/// never panic, and a failure always names a pointer into the instance.
pub fn schema(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let (schema, instance) = text.split_once('\0').unwrap_or((text, "null"));
    let (Ok(schema), Ok(instance)) = (
        serde_json::from_str::<Value>(schema),
        serde_json::from_str::<Value>(instance),
    ) else {
        return;
    };
    let Ok(validator) = crate::schema::compile("k", &schema) else {
        return;
    };
    for instance in [&instance, &schema, &Value::Null] {
        for failure in crate::schema::failures(&validator, instance) {
            assert!(
                instance.pointer(&failure.pointer).is_some(),
                "{} is not in the instance",
                failure.pointer
            );
        }
    }
}
