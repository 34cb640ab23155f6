//! Structural diffs of JSON values: what was added, removed or changed,
//! path by path, rather than lines of pretty-printed text.
//!
//! Paths are JSON Pointers (RFC 6901): `/pool_size`, `/servers/0/host`, and
//! `""` for the whole value. Objects are compared key by key; arrays index
//! by index, so an element inserted at the front shows as every later
//! element changed plus one added at the end, as a reviewer reading by
//! position would see it.

use serde::Serialize;
use serde_json::{Map, Value};

/// One difference between two JSON values.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Difference {
    /// `path` exists only in the new value.
    Added {
        /// Where, as a JSON Pointer.
        path: String,
        /// The new value there.
        value: Value,
    },
    /// `path` exists only in the old value.
    Removed {
        /// Where, as a JSON Pointer.
        path: String,
        /// The old value there.
        value: Value,
    },
    /// `path` holds another value (or another type of value).
    Changed {
        /// Where, as a JSON Pointer.
        path: String,
        /// The old value.
        from: Value,
        /// The new value.
        to: Value,
    },
}

impl Difference {
    /// The JSON Pointer this difference is at.
    pub fn path(&self) -> &str {
        match self {
            Difference::Added { path, .. }
            | Difference::Removed { path, .. }
            | Difference::Changed { path, .. } => path,
        }
    }
}

impl std::fmt::Display for Difference {
    /// One line: `+ /a: 1`, `- /a: 1` or `~ /a: 1 → 2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |path: &str| {
            if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            }
        };
        match self {
            Difference::Added { path, value } => write!(f, "+ {}: {value}", at(path)),
            Difference::Removed { path, value } => write!(f, "- {}: {value}", at(path)),
            Difference::Changed { path, from, to } => write!(f, "~ {}: {from} → {to}", at(path)),
        }
    }
}

/// The differences of one name, between two sets of named values.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NamedDiff {
    /// The name within the namespace.
    pub name: String,
    /// What differs; a name only one side has is one difference at path
    /// `""`, added or removed.
    pub differences: Vec<Difference>,
}

impl NamedDiff {
    /// Replaces every value shown with `replacement`, keeping the paths:
    /// what a secret's diff shows.
    pub fn redact(&mut self, replacement: &str) {
        let hidden = || Value::String(replacement.to_owned());
        for difference in &mut self.differences {
            match difference {
                Difference::Added { value, .. } | Difference::Removed { value, .. } => {
                    *value = hidden()
                }
                Difference::Changed { from, to, .. } => {
                    *from = hidden();
                    *to = hidden();
                }
            }
        }
    }
}

/// What differs, name by name, from `before` to `after` (each name →
/// value), sorted by name. `None` on a side means it lacks the name.
pub fn diff_named<'a>(
    pairs: impl IntoIterator<Item = (&'a str, Option<&'a Value>, Option<&'a Value>)>,
) -> Vec<NamedDiff> {
    let mut out: Vec<NamedDiff> = pairs
        .into_iter()
        .filter_map(|(name, before, after)| {
            let differences = match (before, after) {
                (Some(before), Some(after)) => diff(before, after),
                (None, Some(value)) => vec![Difference::Added {
                    path: String::new(),
                    value: value.clone(),
                }],
                (Some(value), None) => vec![Difference::Removed {
                    path: String::new(),
                    value: value.clone(),
                }],
                (None, None) => Vec::new(),
            };
            (!differences.is_empty()).then(|| NamedDiff {
                name: name.to_owned(),
                differences,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What differs from `before` to `after`; empty when they are equal.
///
/// ```
/// use cfgd::diff::{diff, Difference};
/// use serde_json::json;
///
/// let before = json!({"pool_size": 20, "legacy": true});
/// let after = json!({"pool_size": 30, "timeout": 5});
/// assert_eq!(
///     diff(&before, &after),
///     [
///         Difference::Changed { path: "/pool_size".into(), from: json!(20), to: json!(30) },
///         Difference::Removed { path: "/legacy".into(), value: json!(true) },
///         Difference::Added { path: "/timeout".into(), value: json!(5) },
///     ]
/// );
/// ```
pub fn diff(before: &Value, after: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    walk(&mut String::new(), before, after, &mut out);
    out
}

fn walk(path: &mut String, before: &Value, after: &Value, out: &mut Vec<Difference>) {
    match (before, after) {
        (Value::Object(old), Value::Object(new)) => objects(path, old, new, out),
        (Value::Array(old), Value::Array(new)) => {
            for (i, pair) in old.iter().zip(new).enumerate() {
                within(path, &i.to_string(), |path| walk(path, pair.0, pair.1, out));
            }
            for (i, value) in old.iter().enumerate().skip(new.len()) {
                within(path, &i.to_string(), |path| {
                    out.push(Difference::Removed {
                        path: path.clone(),
                        value: value.clone(),
                    })
                });
            }
            for (i, value) in new.iter().enumerate().skip(old.len()) {
                within(path, &i.to_string(), |path| {
                    out.push(Difference::Added {
                        path: path.clone(),
                        value: value.clone(),
                    })
                });
            }
        }
        _ if before == after => {}
        _ => out.push(Difference::Changed {
            path: path.clone(),
            from: before.clone(),
            to: after.clone(),
        }),
    }
}

/// Keys of `old` in its order (changed or removed), then keys only `new`
/// has, in its order.
fn objects(
    path: &mut String,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    out: &mut Vec<Difference>,
) {
    for (key, value) in old {
        within(path, key, |path| match new.get(key) {
            Some(now) => walk(path, value, now, out),
            None => out.push(Difference::Removed {
                path: path.clone(),
                value: value.clone(),
            }),
        });
    }
    for (key, value) in new.iter().filter(|(key, _)| !old.contains_key(*key)) {
        within(path, key, |path| {
            out.push(Difference::Added {
                path: path.clone(),
                value: value.clone(),
            })
        });
    }
}

/// `before` with `differences` (as [`diff`] made them from `before`)
/// applied: `apply(&a, &diff(&a, &b)) == b`. Refused, naming the path, when
/// a difference does not fit `before` (made from another value).
///
/// ```
/// use serde_json::json;
/// let (a, b) = (json!({"pool": 20, "hosts": ["x"]}), json!({"pool": 30, "hosts": ["x", "y"]}));
/// assert_eq!(cfgd::diff::apply(&a, &cfgd::diff::diff(&a, &b)).unwrap(), b);
/// ```
pub fn apply(before: &Value, differences: &[Difference]) -> Result<Value, String> {
    let mut value = before.clone();
    // Arrays lose or gain elements at their end only: removals go last
    // first, additions first first, each after every change in place.
    let of = |changed: bool| {
        differences
            .iter()
            .filter(move |d| matches!(d, Difference::Changed { .. }) == changed)
    };
    let removed = of(false).filter(|d| matches!(d, Difference::Removed { .. }));
    let added = of(false).filter(|d| matches!(d, Difference::Added { .. }));
    for difference in of(true).chain(removed.rev()).chain(added) {
        apply_one(&mut value, difference)?;
    }
    Ok(value)
}

fn apply_one(root: &mut Value, difference: &Difference) -> Result<(), String> {
    let path = difference.path();
    let misfit = || format!("{difference}: does not fit the value");
    let Some((parent, last)) = path.rsplit_once('/') else {
        *root = match difference {
            Difference::Changed { to, .. } => to.clone(),
            Difference::Added { value, .. } if root.is_null() => value.clone(),
            _ => return Err(misfit()),
        };
        return Ok(());
    };
    let unescape = |token: &str| token.replace("~1", "/").replace("~0", "~");
    let mut at = &mut *root;
    for token in parent.split('/').skip(1) {
        at = match at {
            Value::Object(map) => map.get_mut(&unescape(token)),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(misfit)?;
    }
    let key = unescape(last);
    match (at, difference) {
        (Value::Object(map), Difference::Changed { to: value, .. }) if map.contains_key(&key) => {
            map.insert(key, value.clone());
        }
        (Value::Object(map), Difference::Added { value, .. }) if !map.contains_key(&key) => {
            map.insert(key, value.clone());
        }
        (Value::Object(map), Difference::Removed { .. }) if map.contains_key(&key) => {
            map.shift_remove(&key);
        }
        (Value::Array(items), difference) => {
            let i: usize = key.parse().map_err(|_| misfit())?;
            match difference {
                Difference::Changed { to, .. } if i < items.len() => items[i] = to.clone(),
                Difference::Removed { .. } if i + 1 == items.len() => {
                    items.pop();
                }
                Difference::Added { value, .. } if i == items.len() => items.push(value.clone()),
                _ => return Err(misfit()),
            }
        }
        _ => return Err(misfit()),
    }
    Ok(())
}

/// Runs `f` with `token` appended to `path` (escaped as RFC 6901 says).
fn within(path: &mut String, token: &str, f: impl FnOnce(&mut String)) {
    let len = path.len();
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
    f(path);
    path.truncate(len);
}

#[cfg(test)]
#[path = "../../../tests/common/arbitrary.rs"]
#[allow(dead_code)] // `name` serves the integration tests
mod arbitrary;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        /// Diff then apply reproduces the target, for any two values.
        #[test]
        fn diff_then_apply_reproduces_the_target(
            a in super::arbitrary::json(),
            b in super::arbitrary::json(),
        ) {
            prop_assert_eq!(apply(&a, &diff(&a, &b)).unwrap(), b.clone());
            prop_assert!(diff(&b, &apply(&a, &diff(&a, &b)).unwrap()).is_empty());
        }
    }

    #[test]
    fn a_difference_that_does_not_fit_is_refused() {
        let d = diff(&json!({"a": [1, 2]}), &json!({"a": [1]}));
        let err = apply(&json!({"b": 1}), &d).unwrap_err();
        assert!(err.contains("/a/1"), "{err}");
    }

    #[test]
    fn nested_arrays_types_and_escaping() {
        let before = json!({"db": {"hosts": ["a", "b", "c"], "port": 5432}, "a/b": 1, "t~": "x"});
        let after = json!({"db": {"hosts": ["a", "z"], "port": "5432"}, "a/b": 2, "t~": "x"});
        let lines: Vec<String> = diff(&before, &after)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                r#"~ /db/hosts/1: "b" → "z""#,
                r#"- /db/hosts/2: "c""#,
                r#"~ /db/port: 5432 → "5432""#,
                "~ /a~1b: 1 → 2",
            ]
        );
        assert!(diff(&before, &before).is_empty());
        assert_eq!(diff(&json!(1), &json!([1]))[0].path(), "");
        assert_eq!(diff(&json!(1), &json!(2))[0].to_string(), "~ /: 1 → 2");
        let added = diff(&json!([]), &json!([{"k": 1}]));
        assert_eq!(
            serde_json::to_value(&added).unwrap(),
            json!([{"op": "added", "path": "/0", "value": {"k": 1}}])
        );
    }
}
