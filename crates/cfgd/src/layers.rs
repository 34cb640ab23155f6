//! Layered namespaces (DESIGN, "Layered namespaces and overlays"): which
//! layers a namespace reads, in what order, and how one name's values in
//! those layers make its effective value.
//!
//! This module is the rule only, on plain JSON: it reads nothing from etcd
//! and is not yet wired into the client's reads (the layers issue builds on
//! it). Keeping the rule apart lets every surface — library, server, agent,
//! console — merge the same way, and lets the tests state it exactly.
//!
//! - [`linearize`]: a namespace's layers from its `extends` and its
//!   parents', first (lowest) to last (its own). A namespace met twice keeps
//!   its first place, so no ancestor ever sits above a namespace that
//!   extends it; a cycle, a missing parent or more than [`MAX_DEPTH`] levels
//!   is refused.
//! - [`merge`]: objects merge key by key, recursively; anything else
//!   replaces. `{"$cfgd.unset": true}` removes the name, or the field, that
//!   the layers below gave.
//! - [`explain`]: the same merge, and for every leaf of the result the
//!   namespace it came from, by JSON Pointer.
//!
//! ```
//! use cfgd::layers::{explain, merge};
//! use serde_json::json;
//!
//! let base = json!({"pool": {"size": 10, "timeout_ms": 500}, "region": "any"});
//! let prod = json!({"pool": {"size": 40}});
//! let prod_eu = json!({"region": {"$cfgd.unset": true}});
//! let layers = [("base", Some(&base)), ("prod", Some(&prod)), ("prod-eu", Some(&prod_eu))];
//! assert_eq!(
//!     merge(layers),
//!     Some(json!({"pool": {"size": 40, "timeout_ms": 500}}))
//! );
//! let (_, origins) = explain(layers).unwrap();
//! assert_eq!(origins["/pool/size"], "prod");
//! assert_eq!(origins["/pool/timeout_ms"], "base");
//! ```

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The key of the marker that removes a name or a field:
/// `{"$cfgd.unset": true}`, alone.
pub const UNSET: &str = "$cfgd.unset";

/// The most namespaces on one line of `extends`, the namespace itself
/// included: `base` ← `prod` ← `prod-eu` is 3.
pub const MAX_DEPTH: usize = 8;

/// Why a namespace's layers cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// `extends` names a namespace that does not exist.
    #[error("namespace {namespace:?} extends {parent:?}, which does not exist")]
    Missing {
        /// The namespace whose `extends` names it.
        namespace: String,
        /// The missing parent.
        parent: String,
    },
    /// `extends` leads back to a namespace on its own line.
    #[error("extends makes a cycle: {}", .cycle.join(" -> "))]
    Cycle {
        /// The namespaces of the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// A line of `extends` longer than [`MAX_DEPTH`].
    #[error("extends is {depth} levels deep from {namespace:?}: at most {MAX_DEPTH}", depth = .line.len())]
    TooDeep {
        /// The namespace whose layers were asked for.
        namespace: String,
        /// The line, from it to the deepest parent reached.
        line: Vec<String>,
    },
}

/// The layers of `namespace`, first (lowest) to last (`namespace` itself).
///
/// `extends(ns)` gives a namespace's parents in order, or `None` when no
/// such namespace exists (asked only of parents: `namespace` itself is
/// taken to exist). Each namespace's layers are its parents' layers, in
/// order, then its own; later layers win. One met more than once keeps its
/// first place: a shared grandparent stays below both parents.
///
/// ```
/// use cfgd::layers::linearize;
///
/// let extends = |ns: &str| match ns {
///     "prod-eu" => Some(vec!["prod".to_owned(), "eu".to_owned()]),
///     "prod" | "eu" => Some(vec!["base".to_owned()]),
///     "base" => Some(vec![]),
///     _ => None,
/// };
/// assert_eq!(linearize("prod-eu", extends).unwrap(), ["base", "prod", "eu", "prod-eu"]);
/// ```
pub fn linearize<F>(namespace: &str, extends: F) -> Result<Vec<String>, LayerError>
where
    F: Fn(&str) -> Option<Vec<String>>,
{
    let parents = extends(namespace).unwrap_or_default();
    let mut line = vec![namespace.to_owned()];
    let mut out = Vec::new();
    walk(
        namespace, &parents, &extends, &mut line, &mut out, namespace,
    )?;
    // Each namespace keeps its first place, which comes after its own
    // parents and before every namespace that extends it; its last place
    // (DESIGN's first wording) could put a shared ancestor above a parent
    // that overrides it.
    let mut seen = std::collections::HashSet::new();
    Ok(out
        .into_iter()
        .filter(|ns| seen.insert(ns.clone()))
        .collect())
}

fn walk<F>(
    namespace: &str,
    parents: &[String],
    extends: &F,
    line: &mut Vec<String>,
    out: &mut Vec<String>,
    asked: &str,
) -> Result<(), LayerError>
where
    F: Fn(&str) -> Option<Vec<String>>,
{
    for parent in parents {
        if let Some(at) = line.iter().position(|ns| ns == parent) {
            let mut cycle = line[at..].to_vec();
            cycle.push(parent.clone());
            return Err(LayerError::Cycle { cycle });
        }
        let grand = extends(parent).ok_or_else(|| LayerError::Missing {
            namespace: namespace.to_owned(),
            parent: parent.clone(),
        })?;
        line.push(parent.clone());
        if line.len() > MAX_DEPTH {
            return Err(LayerError::TooDeep {
                namespace: asked.to_owned(),
                line: line.clone(),
            });
        }
        walk(parent, &grand, extends, line, out, asked)?;
        line.pop();
    }
    out.push(namespace.to_owned());
    Ok(())
}

/// Whether `value` is the unset marker.
pub fn is_unset(value: &Value) -> bool {
    matches!(value, Value::Object(map) if map.len() == 1 && map.get(UNSET) == Some(&Value::Bool(true)))
}

/// Where `value` uses [`UNSET`] other than as `{"$cfgd.unset": true}`
/// alone, as a JSON Pointer and what is wrong: a layer that says that is
/// refused, not guessed at.
pub fn check_unset(value: &Value) -> Result<(), String> {
    fn at(value: &Value, pointer: &mut String) -> Result<(), String> {
        match value {
            Value::Object(map) if map.contains_key(UNSET) => {
                if is_unset(value) {
                    Ok(())
                } else {
                    Err(format!(
                        "{}: {UNSET} must be alone and true: {{\"{UNSET}\": true}}",
                        if pointer.is_empty() { "/" } else { pointer }
                    ))
                }
            }
            Value::Object(map) => {
                for (key, child) in map {
                    let len = pointer.len();
                    pointer.push('/');
                    push_token(pointer, key);
                    at(child, pointer)?;
                    pointer.truncate(len);
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    let len = pointer.len();
                    pointer.push_str(&format!("/{i}"));
                    // An array replaces whole: a marker inside it would be a
                    // value, which is surely not what was meant.
                    if child.as_object().is_some_and(|m| m.contains_key(UNSET)) {
                        return Err(format!("{pointer}: {UNSET} cannot stand in an array"));
                    }
                    at(child, pointer)?;
                    pointer.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    at(value, &mut String::new())
}

/// One name's effective value from its value in each layer, first to last
/// (`None`: the layer does not hold the name). `None` when no layer holds
/// it, or the last word on it is an unset.
pub fn merge<'v, I>(layers: I) -> Option<Value>
where
    I: IntoIterator<Item = (&'v str, Option<&'v Value>)>,
{
    let mut acc: Option<Value> = None;
    for (_, value) in layers {
        let Some(value) = value else { continue };
        acc = if is_unset(value) {
            None
        } else {
            Some(over(acc, value))
        };
    }
    acc
}

/// `upper` laid over `lower`.
fn over(lower: Option<Value>, upper: &Value) -> Value {
    match (lower, upper) {
        (Some(Value::Object(mut lower)), Value::Object(upper)) => {
            for (key, value) in upper {
                // In place: a field keeps the place the lowest layer gave
                // it, so that an override does not reorder the document.
                if is_unset(value) {
                    lower.shift_remove(key);
                } else if let Some(slot) = lower.get_mut(key) {
                    let below = std::mem::take(slot);
                    *slot = over(Some(below), value);
                } else {
                    lower.insert(key.clone(), over(None, value));
                }
            }
            Value::Object(lower)
        }
        // Nothing below to merge with: the value as it stands, its unsets
        // removing nothing.
        (_, upper) => without_unsets(upper),
    }
}

fn without_unsets(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !is_unset(v))
                .map(|(k, v)| (k.clone(), without_unsets(v)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

/// [`merge`], and the namespace each leaf of the result came from, by JSON
/// Pointer (`""` for a value that is itself a leaf). A leaf is anything but
/// a non-empty object: a field holds the value of the last layer that set
/// it, since a later replacement of a field above it would have removed it.
pub fn explain<'v, I>(layers: I) -> Option<(Value, BTreeMap<String, String>)>
where
    I: IntoIterator<Item = (&'v str, Option<&'v Value>)>,
    I::IntoIter: Clone,
{
    let layers = layers.into_iter();
    let value = merge(layers.clone())?;
    let mut origins = BTreeMap::new();
    let mut leaves = Vec::new();
    collect_leaves(&value, &mut String::new(), &mut leaves);
    for pointer in leaves {
        let origin = layers
            .clone()
            .filter_map(|(ns, v)| v.map(|v| (ns, v)))
            .filter(|(_, v)| v.pointer(&pointer).is_some_and(|at| !is_unset(at)))
            .last()
            .map(|(ns, _)| ns.to_owned());
        if let Some(origin) = origin {
            origins.insert(pointer, origin);
        }
    }
    Some((value, origins))
}

fn collect_leaves(value: &Value, pointer: &mut String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let len = pointer.len();
                pointer.push('/');
                push_token(pointer, key);
                collect_leaves(child, pointer, out);
                pointer.truncate(len);
            }
        }
        _ => out.push(pointer.clone()),
    }
}

/// A JSON Pointer reference token: `~` as `~0`, `/` as `~1` (RFC 6901).
fn push_token(pointer: &mut String, key: &str) {
    for c in key.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn chain<'a>(
        pairs: &'a [(&'a str, &'a [&'a str])],
    ) -> impl Fn(&str) -> Option<Vec<String>> + 'a {
        move |ns| {
            pairs
                .iter()
                .find(|(name, _)| *name == ns)
                .map(|(_, parents)| parents.iter().map(|p| (*p).to_owned()).collect())
        }
    }

    #[test]
    fn a_chain_reads_lowest_first_and_a_diamond_keeps_first_places() {
        let pairs: &[(&str, &[&str])] = &[
            ("base", &[]),
            ("prod", &["base"]),
            ("prod-eu", &["prod"]),
            ("eu", &["base"]),
            ("prod-eu-2", &["prod", "eu"]),
        ];
        assert_eq!(
            linearize("prod-eu", chain(pairs)).unwrap(),
            ["base", "prod", "prod-eu"]
        );
        // base comes in under prod and again under eu: it keeps its first
        // place, below both, so it never overrides prod.
        assert_eq!(
            linearize("prod-eu-2", chain(pairs)).unwrap(),
            ["base", "prod", "eu", "prod-eu-2"]
        );
        // A parent that is also a grandparent stays below the parent that
        // extends it.
        let pairs: &[(&str, &[&str])] = &[("q", &[]), ("p", &["q"]), ("a", &["p", "q"])];
        assert_eq!(linearize("a", chain(pairs)).unwrap(), ["q", "p", "a"]);
        assert_eq!(linearize("alone", |_| None).unwrap(), ["alone"]);
    }

    #[test]
    fn cycles_missing_parents_and_depth_nine_are_refused() {
        let pairs: &[(&str, &[&str])] = &[("a", &["b"]), ("b", &["c"]), ("c", &["a"])];
        let e = linearize("a", chain(pairs)).unwrap_err();
        assert_eq!(e.to_string(), "extends makes a cycle: a -> b -> c -> a");
        let e = linearize("x", chain(&[("x", &["self-missing"])])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "namespace \"x\" extends \"self-missing\", which does not exist"
        );
        let names: Vec<String> = (1..=9).map(|i| format!("n{i}")).collect();
        let deep = |ns: &str| {
            let i: usize = ns[1..].parse().ok()?;
            Some(if i < 9 {
                vec![format!("n{}", i + 1)]
            } else {
                vec![]
            })
        };
        let e = linearize(&names[0], deep).unwrap_err();
        assert_eq!(
            e.to_string(),
            "extends is 9 levels deep from \"n1\": at most 8"
        );
        // Eight levels are fine.
        assert_eq!(linearize("n2", deep).unwrap().len(), 8);
    }

    #[test]
    fn objects_merge_by_field_and_everything_else_replaces() {
        let base = json!({"a": {"x": 1, "y": [1, 2]}, "b": "s"});
        let prod = json!({"a": {"y": [3], "z": {"deep": true}}, "b": {"now": "object"}});
        assert_eq!(
            merge([("base", Some(&base)), ("prod", Some(&prod))]),
            Some(json!({"a": {"x": 1, "y": [3], "z": {"deep": true}}, "b": {"now": "object"}}))
        );
        assert_eq!(
            merge([("base", Some(&json!(1))), ("prod", Some(&json!({"k": 2})))]),
            Some(json!({"k": 2}))
        );
        assert_eq!(merge([("base", None), ("prod", None)]), None);
    }

    #[test]
    fn unset_removes_a_name_or_a_field_and_a_later_layer_brings_it_back() {
        let unset = json!({"$cfgd.unset": true});
        let base = json!({"a": 1, "b": 2});
        assert_eq!(merge([("base", Some(&base)), ("prod", Some(&unset))]), None);
        let field = json!({"b": {"$cfgd.unset": true}});
        assert_eq!(
            merge([("base", Some(&base)), ("prod", Some(&field))]),
            Some(json!({"a": 1}))
        );
        let back = json!({"c": 3});
        assert_eq!(
            merge([
                ("base", Some(&base)),
                ("prod", Some(&unset)),
                ("eu", Some(&back))
            ]),
            Some(json!({"c": 3}))
        );
        // An unset with nothing below removes nothing, and is not a value.
        assert_eq!(merge([("prod", Some(&field))]), Some(json!({})));
    }

    #[test]
    fn unset_beside_anything_is_refused_with_where() {
        assert!(check_unset(&json!({"a": {"$cfgd.unset": true}})).is_ok());
        assert_eq!(
            check_unset(&json!({"a": {"$cfgd.unset": true, "b": 1}})).unwrap_err(),
            "/a: $cfgd.unset must be alone and true: {\"$cfgd.unset\": true}"
        );
        assert!(check_unset(&json!({"$cfgd.unset": false})).is_err());
        assert!(check_unset(&json!({"l": [{"$cfgd.unset": true}]})).is_err());
    }

    #[test]
    fn explain_names_each_fields_layer() {
        let base = json!({"pool": {"size": 10, "timeout_ms": 500}, "tags": ["a"], "a/b": 1});
        let prod = json!({"pool": {"size": 40}, "tags": []});
        let (value, origins) = explain([("base", Some(&base)), ("prod", Some(&prod))]).unwrap();
        assert_eq!(value["pool"]["size"], 40);
        assert_eq!(origins["/pool/size"], "prod");
        assert_eq!(origins["/pool/timeout_ms"], "base");
        assert_eq!(origins["/tags"], "prod");
        assert_eq!(origins["/a~1b"], "base");
        let (_, origins) = explain([("base", Some(&json!(5)))]).unwrap();
        assert_eq!(origins[""], "base");
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-5i64..5).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
            Just(json!({"$cfgd.unset": true})),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The merge is a fold: merging the first layers, then laying the
        /// last over that, is merging them all.
        #[test]
        fn merging_is_a_fold(layers in prop::collection::vec(prop::option::of(json()), 1..5)) {
            let named: Vec<(&str, Option<&Value>)> =
                layers.iter().map(|v| ("ns", v.as_ref())).collect();
            let (last, rest) = named.split_last().unwrap();
            let below = merge(rest.iter().copied());
            let stepwise = merge(below.as_ref().map(|b| ("ns", Some(b))).into_iter().chain([*last]));
            prop_assert_eq!(merge(named.iter().copied()), stepwise);
        }

        /// Every leaf of the effective value has an origin, and that
        /// layer holds exactly that leaf there.
        #[test]
        fn every_leaf_has_the_origin_that_holds_it(layers in prop::collection::vec(prop::option::of(json()), 1..5)) {
            let names = ["l0", "l1", "l2", "l3", "l4"];
            let named: Vec<(&str, Option<&Value>)> =
                layers.iter().enumerate().map(|(i, v)| (names[i], v.as_ref())).collect();
            if let Some((value, origins)) = explain(named.iter().copied()) {
                let mut leaves = Vec::new();
                collect_leaves(&value, &mut String::new(), &mut leaves);
                for pointer in leaves {
                    let origin = origins.get(&pointer);
                    prop_assert!(origin.is_some(), "{} has no origin in {}", pointer, value);
                    let (_, layer) = named.iter().find(|(n, _)| Some(&n.to_string()) == origin).unwrap();
                    let held = layer.unwrap().pointer(&pointer).map(without_unsets);
                    prop_assert_eq!(held.as_ref(), value.pointer(&pointer));
                }
            }
        }
    }
}
