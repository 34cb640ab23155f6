//! The effective value of one name in a layered namespace, from what each
//! of its layers holds, by the rules of [`crate::layers`]:
//!
//! - config values merge field by field, and `{"$cfgd.unset": true}`
//!   removes a name or a field;
//! - a flag is the definition of the last layer that holds it (an unset
//!   marker there hides it); `$evaluators` merge by evaluator name;
//! - the schemas listed are the last layer's for each pattern (a write is
//!   checked against every layer's: see `client/reach.rs`);
//! - the policy joins every layer's: each `protected` and `secrets`
//!   pattern holds below where it is set, and `approvals` is the highest;
//! - the settings (`meta`) and who extends it are the namespace's own.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::flags::EVALUATORS;
use crate::key::Kind;
use crate::layers;
use crate::mirror::{Layer, Stored};
use crate::policy::Policy;
use crate::value::mentions_unset;

/// The effective value of `name`, and the namespace of the top layer that
/// gave it; `None` when no layer holds it or the last word is an unset.
pub(crate) fn effective(layers: &[Layer], kind: Kind, name: &str) -> Option<(Stored, Arc<str>)> {
    if matches!(kind, Kind::Meta | Kind::Children | Kind::Overlays) {
        let own = crate::mirror::own_layer(layers)?;
        let stored = own.sections[kind.index()].entries.get(name)?;
        return Some((stored.clone(), own.namespace.clone()));
    }
    let held: Vec<(&Arc<str>, &Stored)> = layers
        .iter()
        .filter_map(|l| {
            let stored = l.sections[kind.index()].entries.get(name)?;
            Some((&l.namespace, stored))
        })
        .collect();
    let &(top_ns, top) = held.last()?;
    let made = match kind {
        Kind::Config => merged(&held, |pairs| layers::merge(pairs)),
        Kind::Flags if name == EVALUATORS => merged(&held, by_name),
        Kind::Flags | Kind::Schemas => {
            if mentions_unset(&top.raw) && parses_to_unset(&top.raw) {
                return None;
            }
            Some(top.clone())
        }
        Kind::Policy => joined_policy(&held),
        Kind::Meta | Kind::Children | Kind::Overlays => unreachable!("answered above"),
    }?;
    Some((made, top_ns.clone()))
}

fn parses_to_unset(raw: &[u8]) -> bool {
    serde_json::from_slice::<Value>(raw).is_ok_and(|v| layers::is_unset(&v))
}

fn is_object(raw: &[u8]) -> bool {
    raw.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The layers' values merged by `merge`, as one stored value. A value that
/// nothing below can change (the only one, or one that is not an object
/// above the rest) is the top one as it stands, unparsed: the common case
/// costs a clone.
fn merged(
    held: &[(&Arc<str>, &Stored)],
    merge: impl for<'a> Fn(Vec<(&'a str, Option<&'a Value>)>) -> Option<Value>,
) -> Option<Stored> {
    let &(_, top) = held.last()?;
    if !mentions_unset(&top.raw) && (held.len() == 1 || !is_object(&top.raw)) {
        return Some(top.clone());
    }
    let values: Option<Vec<Value>> = held
        .iter()
        .map(|(_, s)| serde_json::from_slice(&s.raw).ok())
        .collect();
    // Text that is not JSON (written by another tool) cannot merge: the
    // top layer's stands, as it would in a namespace of one layer.
    let Some(values) = values else {
        return Some(top.clone());
    };
    let pairs: Vec<(&str, Option<&Value>)> = held
        .iter()
        .zip(&values)
        .map(|((ns, _), v)| (&***ns, Some(v)))
        .collect();
    let value = merge(pairs)?;
    let raw = serde_json::to_vec(&value).expect("a JSON value serializes");
    Some(combined(held, raw))
}

/// `$evaluators`: each layer's object laid over the ones below by
/// evaluator name; an unset marker removes an evaluator.
fn by_name<'v>(layers: Vec<(&'v str, Option<&'v Value>)>) -> Option<Value> {
    let mut out = Map::new();
    let mut any = false;
    for (_, value) in layers {
        match value {
            Some(v) if layers::is_unset(v) => {
                out.clear();
                any = false;
            }
            Some(Value::Object(map)) => {
                any = true;
                for (name, evaluator) in map {
                    if layers::is_unset(evaluator) {
                        out.remove(name);
                    } else {
                        out.insert(name.clone(), evaluator.clone());
                    }
                }
            }
            _ => {}
        }
    }
    any.then_some(Value::Object(out))
}

/// Every layer's policy, joined.
fn joined_policy(held: &[(&Arc<str>, &Stored)]) -> Option<Stored> {
    if held.len() == 1 {
        return Some(held[0].1.clone());
    }
    let mut joined = Policy::default();
    for (ns, stored) in held {
        let policy = Policy::from_stored(&format!("{ns}: policy"), &stored.raw);
        for pattern in policy.protected {
            if !joined.protected.contains(&pattern) {
                joined.protected.push(pattern);
            }
        }
        for pattern in policy.secrets {
            if !joined.secrets.contains(&pattern) {
                joined.secrets.push(pattern);
            }
        }
        joined.approvals = joined.approvals.max(policy.approvals);
    }
    let raw = serde_json::to_vec(&joined).expect("a policy serializes");
    Some(combined(held, raw))
}

/// A value made from several layers' entries. Its revision is the newest of
/// theirs (the namespace raises it to the change's own); it is a secret if
/// any part of it was, and then carries that part's envelope, so that it is
/// handled as one everywhere (never in a change's JSON form).
fn combined(held: &[(&Arc<str>, &Stored)], raw: Vec<u8>) -> Stored {
    let top = held.last().expect("at least one layer").1;
    let secret = held.iter().rev().find(|(_, s)| s.is_secret());
    Stored {
        raw: raw.into(),
        revision: held.iter().map(|(_, s)| s.revision).max().unwrap_or(0),
        create_revision: held
            .iter()
            .map(|(_, s)| s.create_revision)
            .min()
            .unwrap_or(0),
        version: top.version,
        origin: top.origin,
        decoded: Default::default(),
        sealed: secret.map(|(_, s)| Arc::from(s.as_stored())),
    }
}

/// Every name any layer holds in `kind`.
pub(crate) fn names(layers: &[Layer], kind: Kind) -> std::collections::HashSet<Arc<str>> {
    layers
        .iter()
        .flat_map(|l| l.sections[kind.index()].entries.keys().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(raw: &str, revision: i64) -> Stored {
        Stored {
            raw: raw.as_bytes().into(),
            revision,
            create_revision: revision,
            version: 1,
            origin: crate::types::Source::Cache,
            decoded: Default::default(),
            sealed: None,
        }
    }

    fn chain(values: &[(&str, Kind, &str, &str, i64)]) -> Vec<Layer> {
        let mut layers: Vec<Layer> = Vec::new();
        for &(ns, kind, name, raw, revision) in values {
            if layers.last().is_none_or(|l| &*l.namespace != ns) {
                layers.push(Layer::new(ns.into(), format!("/cfgd/{ns}/")));
            }
            let layer = layers.last_mut().unwrap();
            layer
                .section_mut(kind)
                .entries
                .insert(name.into(), stored(raw, revision));
        }
        layers
    }

    fn raw(layers: &[Layer], kind: Kind, name: &str) -> Option<(String, i64, String)> {
        effective(layers, kind, name).map(|(s, ns)| {
            (
                String::from_utf8(s.raw.to_vec()).unwrap(),
                s.revision,
                ns.to_string(),
            )
        })
    }

    #[test]
    fn config_merges_and_flags_replace() {
        let layers = chain(&[
            ("base", Kind::Config, "db", r#"{"pool":10,"url":"a"}"#, 2),
            ("base", Kind::Config, "only", r#"{"x":1}"#, 3),
            ("base", Kind::Flags, "f", r#"{"state":"ENABLED"}"#, 4),
            ("prod", Kind::Config, "db", r#"{"pool":40}"#, 5),
            ("prod", Kind::Config, "only", r#"{"$cfgd.unset":true}"#, 6),
            ("prod", Kind::Flags, "f", r#"{"state":"DISABLED"}"#, 7),
        ]);
        assert_eq!(
            raw(&layers, Kind::Config, "db"),
            Some((r#"{"pool":40,"url":"a"}"#.into(), 5, "prod".into()))
        );
        assert_eq!(raw(&layers, Kind::Config, "only"), None);
        assert_eq!(
            raw(&layers, Kind::Flags, "f").map(|r| r.0),
            Some(r#"{"state":"DISABLED"}"#.into())
        );
        assert_eq!(raw(&layers, Kind::Config, "absent"), None);
    }

    #[test]
    fn evaluators_merge_by_name_and_policies_join() {
        let layers = chain(&[
            (
                "base",
                Kind::Flags,
                EVALUATORS,
                r#"{"a":{"in":1},"b":{"in":2}}"#,
                2,
            ),
            (
                "base",
                Kind::Policy,
                "",
                r#"{"secrets":["db.*"],"approvals":2}"#,
                3,
            ),
            (
                "prod",
                Kind::Flags,
                EVALUATORS,
                r#"{"b":{"in":3},"a":{"$cfgd.unset":true}}"#,
                4,
            ),
            ("prod", Kind::Policy, "", r#"{"protected":["x"]}"#, 5),
        ]);
        assert_eq!(
            raw(&layers, Kind::Flags, EVALUATORS).map(|r| r.0),
            Some(r#"{"b":{"in":3}}"#.into())
        );
        let (policy, _, _) = raw(&layers, Kind::Policy, "").unwrap();
        let policy: Policy = serde_json::from_str(&policy).unwrap();
        assert_eq!(policy.secrets, ["db.*"]);
        assert_eq!(policy.protected, ["x"]);
        assert_eq!(policy.approvals, 2);
    }

    #[test]
    fn a_scalar_over_an_object_replaces_it_unparsed() {
        let layers = chain(&[
            ("base", Kind::Config, "v", r#"{"a":1}"#, 2),
            ("prod", Kind::Config, "v", "not json", 3),
        ]);
        assert_eq!(raw(&layers, Kind::Config, "v").unwrap().0, "not json");
    }
}
