//! Overlays, for gray releases (DESIGN, "Layered namespaces and overlays"):
//! the labels a client declares, an overlay's settings, and which overlays
//! a client sees.
//!
//! Like [`layers`](crate::layers), this is the rule on plain data; the
//! client applies it ([`ClientBuilder::labels`](crate::ClientBuilder::labels),
//! [`Client::get_entry_labeled`](crate::Client::get_entry_labeled),
//! [`Client::promote_overlay`](crate::Client::promote_overlay)). An overlay `{"selector": {"canary": "true"}, "percent": 10}` is seen
//! by a client whose labels include every pair of the selector and, with a
//! `percent`, whose `instance` label falls in that share of buckets, the
//! buckets of flagd's `fractional` ([`cfgd_flags::percent_bucket`]). A
//! client without labels sees no overlay.
//!
//! ```
//! use cfgd::overlays::{Labels, Overlay};
//!
//! let overlay = Overlay::parse(r#"{"selector": {"canary": "true"}}"#).unwrap();
//! let canary: Labels = "region=eu,canary=true".parse().unwrap();
//! let other: Labels = "region=eu".parse().unwrap();
//! assert!(overlay.selects("canary", &canary));
//! assert!(!overlay.selects("canary", &other));
//! assert!(!overlay.selects("canary", &Labels::default()));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The label whose value `percent` buckets.
pub const INSTANCE: &str = "instance";

/// Why labels or an overlay are refused: one line naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OverlayError(String);

fn valid_key(key: &str) -> Result<(), OverlayError> {
    let bytes = key.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b));
    if ok {
        Ok(())
    } else {
        Err(OverlayError(format!(
            "label {key:?}: a label is 1 to 63 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )))
    }
}

fn valid_value(key: &str, value: &str) -> Result<(), OverlayError> {
    let ok = value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(OverlayError(format!(
            "label {key:?}: value {value:?} is not at most 63 of A-Z a-z 0-9 . _ -"
        )))
    }
}

/// The labels a client declares: `region=eu,canary=true`, as the
/// `X-Cfgd-Labels` header and agent settings give them. Keys are unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// Labels from pairs, each checked as [`FromStr`] checks them.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, OverlayError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            let (key, value) = (key.into(), value.into());
            valid_key(&key)?;
            valid_value(&key, &value)?;
            if map.insert(key.clone(), value).is_some() {
                return Err(OverlayError(format!("label {key:?} is given twice")));
            }
        }
        Ok(Labels(map))
    }

    /// The value of `key`, if declared.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Whether no label is declared: such a client sees no overlay.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each label, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl FromStr for Labels {
    type Err = OverlayError;

    fn from_str(text: &str) -> Result<Self, OverlayError> {
        let pairs = text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.split_once('=')
                    .map(|(k, v)| (k.trim(), v.trim()))
                    .ok_or_else(|| OverlayError(format!("label {part:?}: give key=value")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Labels::from_pairs(pairs)
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

/// Checks an overlay's name: as a namespace's, `[a-z0-9][a-z0-9._-]{0,62}`.
pub fn validate_overlay_name(name: &str) -> Result<(), OverlayError> {
    crate::key::validate_namespace(name).map_err(|_| {
        OverlayError(format!(
            "overlay name {name:?}: 1 to 63 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        ))
    })
}

/// An overlay's settings, stored at `{root}/{ns}/overlays/{overlay}/meta`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
// A misspelt "selctor" must not make an overlay that selects everyone.
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Overlay {
    /// Labels a client must all have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Of the clients the selector takes, the share (0 to 100) whose
    /// `instance` label buckets below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
}

impl Overlay {
    /// An overlay from its JSON, checked: labels as [`Labels`] takes them,
    /// `percent` a whole number from 0 to 100, and a selector or a percent
    /// (an overlay of neither would take every labelled client).
    pub fn parse(json: &str) -> Result<Overlay, OverlayError> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| OverlayError(format!("not JSON: {e}")))?;
        let serde_json::Value::Object(mut fields) = value else {
            return Err(OverlayError("an overlay is a JSON object".into()));
        };
        // Checked here rather than by serde, to name the number.
        let percent = match fields.remove("percent") {
            None => None,
            Some(n) => match n.as_f64() {
                Some(p) if p.fract() == 0.0 && (0.0..=100.0).contains(&p) => Some(p as u8),
                _ => {
                    return Err(OverlayError(format!(
                        "percent {n}: give a whole number from 0 to 100"
                    )))
                }
            },
        };
        if fields
            .get("selector")
            .is_some_and(|s| s.as_object().is_some_and(|m| m.is_empty()))
        {
            return Err(OverlayError(
                "selector: give at least one label, or leave it out".into(),
            ));
        }
        let mut overlay: Overlay = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| OverlayError(e.to_string()))?;
        overlay.percent = percent;
        Labels::from_pairs(overlay.selector.clone())?;
        if overlay.selector.is_empty() && overlay.percent.is_none() {
            return Err(OverlayError(
                "give a selector, a percent or both: this overlay would take every labelled client"
                    .into(),
            ));
        }
        Ok(overlay)
    }

    /// Whether a client with `labels` sees overlay `name`.
    pub fn selects(&self, name: &str, labels: &Labels) -> bool {
        if labels.is_empty() {
            return false;
        }
        let selected = self
            .selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value.as_str()));
        match self.percent {
            None => selected,
            Some(percent) => {
                selected
                    && labels
                        .get(INSTANCE)
                        .is_some_and(|i| cfgd_flags::percent_bucket(name, i) < percent)
            }
        }
    }
}

/// The overlays a client with `labels` sees, by name: the order they lie
/// in above the namespace's own layer, the last on top.
pub fn selected<'o>(
    overlays: impl IntoIterator<Item = (&'o str, &'o Overlay)>,
    labels: &Labels,
) -> Vec<&'o str> {
    let mut names: Vec<&str> = overlays
        .into_iter()
        .filter(|(name, overlay)| overlay.selects(name, labels))
        .map(|(name, _)| name)
        .collect();
    names.sort_unstable();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_refuse_with_one_line() {
        let labels: Labels = " region=eu , canary=true ,".parse().unwrap();
        assert_eq!(labels.get("region"), Some("eu"));
        assert_eq!(labels.to_string(), "canary=true,region=eu");
        assert!("".parse::<Labels>().unwrap().is_empty());
        for (text, says) in [
            ("region", "give key=value"),
            ("a=1,a=2", "given twice"),
            ("bad key=1", "a label is 1 to 63"),
            ("k=v v", "is not at most 63"),
            ("=v", "a label is 1 to 63"),
        ] {
            let e = text.parse::<Labels>().unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn bad_overlays_are_refused_naming_what() {
        for (json, says) in [
            (
                r#"{"percent": 101}"#,
                "percent 101: give a whole number from 0 to 100",
            ),
            (r#"{"percent": -1}"#, "percent -1"),
            (r#"{"percent": 2.5}"#, "percent 2.5"),
            (r#"{"percent": "10"}"#, "percent \"10\""),
            (r#"{"selctor": {"a": "b"}}"#, "unknown field `selctor`"),
            (r#"{"selector": {"a b": "c"}}"#, "label \"a b\""),
            (r#"{"selector": {}}"#, "selector: give at least one label"),
            (
                r#"{"selector": {}, "percent": 5}"#,
                "selector: give at least one label",
            ),
            ("{}", "give a selector, a percent or both"),
            (r#"{"percent": null}"#, "percent null"),
            ("[]", "a JSON object"),
            ("{", "not JSON"),
        ] {
            let e = Overlay::parse(json).unwrap_err().to_string();
            assert!(e.contains(says), "{json}: {e}");
        }
        let whole = Overlay::parse(r#"{"percent": 10.0}"#).unwrap();
        assert_eq!(whole.percent, Some(10));
        // As stored, it parses back the same.
        let stored = serde_json::to_string(&whole).unwrap();
        assert_eq!(Overlay::parse(&stored).unwrap(), whole, "{stored}");
    }

    #[test]
    fn a_selector_takes_clients_with_all_its_labels() {
        let overlay =
            Overlay::parse(r#"{"selector": {"canary": "true", "region": "eu"}}"#).unwrap();
        let labels = |text: &str| text.parse::<Labels>().unwrap();
        assert!(overlay.selects("o", &labels("canary=true,region=eu,zone=a")));
        assert!(!overlay.selects("o", &labels("canary=true")));
        assert!(!overlay.selects("o", &labels("canary=false,region=eu")));
    }

    #[test]
    fn ten_percent_of_a_thousand_instances_are_about_a_hundred_and_always_the_same() {
        let overlay = Overlay::parse(r#"{"selector": {"app": "web"}, "percent": 10}"#).unwrap();
        let instances: Vec<Labels> = (0..1000)
            .map(|i| format!("app=web,instance=host-{i}").parse().unwrap())
            .collect();
        let picked: Vec<bool> = instances
            .iter()
            .map(|l| overlay.selects("canary", l))
            .collect();
        let count = picked.iter().filter(|p| **p).count();
        assert!((80..=120).contains(&count), "{count} of 1000");
        let again: Vec<bool> = instances
            .iter()
            .map(|l| overlay.selects("canary", l))
            .collect();
        assert_eq!(picked, again);
        // Another overlay's 10% is another draw.
        let other: Vec<bool> = instances
            .iter()
            .map(|l| overlay.selects("beta", l))
            .collect();
        assert_ne!(picked, other);
        // Without an instance label, a percent takes nobody.
        assert!(!overlay.selects("canary", &"app=web".parse().unwrap()));
        let all = Overlay::parse(r#"{"percent": 100}"#).unwrap();
        assert!(instances.iter().all(|l| all.selects("canary", l)));
        let none = Overlay::parse(r#"{"percent": 0}"#).unwrap();
        assert!(!instances.iter().any(|l| none.selects("canary", l)));
    }

    #[test]
    fn the_selected_overlays_come_by_name() {
        let a = Overlay::parse(r#"{"selector": {"canary": "true"}}"#).unwrap();
        let b = Overlay::parse(r#"{"selector": {"region": "eu"}}"#).unwrap();
        let overlays = [("zeta", &a), ("alpha", &b), ("mid", &a)];
        let labels: Labels = "canary=true,region=eu".parse().unwrap();
        assert_eq!(selected(overlays, &labels), ["alpha", "mid", "zeta"]);
        assert!(selected(overlays, &Labels::default()).is_empty());
    }
}
