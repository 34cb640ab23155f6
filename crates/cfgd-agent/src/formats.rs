//! A name prefix rendered without a template: `json`, `yaml`, `toml`
//! (names nested at `.` and `/`), `env` and `properties` (flat).

use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};

use crate::settings::Format;

/// `name` below `prefix`, without the separator that follows it:
/// `database.url` under `database` is `url`.
/// A name that is the prefix itself keeps its whole name.
pub fn relative<'a>(prefix: &str, name: &'a str) -> &'a str {
    let rest = &name[prefix.len().min(name.len())..];
    match rest.strip_prefix(['.', '/']).unwrap_or(rest) {
        "" => name,
        rest => rest,
    }
}

/// The entries (relative name, value) rendered as `format`.
pub fn render(format: Format, entries: &[(&str, &Value)]) -> Result<String> {
    match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(&nest(entries)?)?;
            text.push('\n');
            Ok(text)
        }
        Format::Yaml => Ok(serde_norway::to_string(&nest(entries)?)?),
        Format::Toml => {
            let nested = nest(entries)?;
            if let Some(name) = first_null(&nested, String::new()) {
                bail!("{name} is null, which TOML cannot hold");
            }
            toml::to_string_pretty(&nested).map_err(|e| anyhow!("not expressible as TOML: {e}"))
        }
        Format::Env => Ok(env_pairs(entries)?
            .iter()
            .map(|(k, v)| format!("{k}={}\n", env_quote(v)))
            .collect()),
        Format::Properties => Ok(entries
            .iter()
            .map(|(name, value)| {
                format!(
                    "{}={}\n",
                    properties_escape(name, true),
                    properties_escape(&scalar_text(value), false)
                )
            })
            .collect()),
    }
}

/// A value as a flat file holds it: a string as itself, anything else as
/// its JSON text.
pub fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The variables of an `env` render: `pool.max-size` is `POOL_MAX_SIZE`.
pub fn env_pairs(entries: &[(&str, &Value)]) -> Result<Vec<(String, String)>> {
    let mut seen: std::collections::BTreeMap<String, &str> = Default::default();
    let mut out = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let var = env_name(name);
        if let Some(other) = seen.insert(var.clone(), name) {
            bail!("{other} and {name} are both the variable {var}");
        }
        out.push((var, scalar_text(value)));
    }
    Ok(out)
}

fn env_name(name: &str) -> String {
    let mut var: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' | '0'..='9' => c,
            _ => '_',
        })
        .collect();
    if var.is_empty() || var.starts_with(|c: char| c.is_ascii_digit()) {
        var.insert(0, '_');
    }
    var
}

/// Quoted for a shell's `.` and for env-file readers (docker, systemd,
/// python-dotenv) alike: single quotes unless nothing needs them.
pub fn env_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+,".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

fn properties_escape(text: &str, key: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '=' | ':' | '#' | '!' if key => {
                out.push('\\');
                out.push(c);
            }
            ' ' if key || i == 0 => out.push_str("\\ "),
            c if !c.is_ascii() || c.is_control() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Flat names nested at `.` and `/`: `pool.size` is `{"pool": {"size": …}}`.
pub fn nest(entries: &[(&str, &Value)]) -> Result<Value> {
    let mut root = Map::new();
    for (name, value) in entries {
        let parts: Vec<&str> = name.split(['.', '/']).collect();
        if parts.iter().any(|p| p.is_empty()) {
            bail!("{name:?} cannot be nested (an empty part between separators)");
        }
        let (last, parents) = parts.split_last().expect("split gives one part at least");
        let mut at = &mut root;
        for (depth, part) in parents.iter().enumerate() {
            let slot = at
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            at = match slot {
                Value::Object(map) if !is_leaf_marked(map) => map,
                _ => bail!(
                    "{} is a value and also the parent of {name}",
                    parts[..=depth].join(".")
                ),
            };
        }
        if at.contains_key(*last) {
            bail!("{name} is a value and also the parent of other names");
        }
        at.insert(last.to_string(), leaf(value));
    }
    Ok(unmark(Value::Object(root)))
}

// A value that is itself an object must not take children from a longer
// name: it is marked while nesting and unmarked after.
const LEAF: &str = "\u{0}cfgd-agent-leaf";

fn leaf(value: &Value) -> Value {
    match value {
        Value::Object(_) => {
            let mut map = Map::new();
            map.insert(LEAF.into(), value.clone());
            Value::Object(map)
        }
        other => other.clone(),
    }
}

fn is_leaf_marked(map: &Map<String, Value>) -> bool {
    map.contains_key(LEAF)
}

fn unmark(value: Value) -> Value {
    match value {
        Value::Object(mut map) => {
            if let Some(inner) = map.remove(LEAF) {
                return inner;
            }
            Value::Object(map.into_iter().map(|(k, v)| (k, unmark(v))).collect())
        }
        other => other,
    }
}

fn first_null(value: &Value, at: String) -> Option<String> {
    match value {
        Value::Null => Some(at),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            first_null(v, path)
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_null(v, format!("{at}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nesting_keeps_object_values_whole_and_refuses_a_value_with_children() {
        let limits = json!({"max": 10});
        let url = json!("postgres://db");
        let nested = nest(&[("limits", &limits), ("db.url", &url)]).unwrap();
        assert_eq!(
            nested,
            json!({"limits": {"max": 10}, "db": {"url": "postgres://db"}})
        );
        let err = nest(&[("limits", &limits), ("limits.min", &url)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "limits is a value and also the parent of limits.min"
        );
    }

    #[test]
    fn env_names_and_quoting() {
        let a = json!("it's here");
        let b = json!(30);
        let text = render(Format::Env, &[("pool.max-size", &b), ("motd", &a)]).unwrap();
        assert_eq!(text, "POOL_MAX_SIZE=30\nMOTD='it'\\''s here'\n");
        let err = env_pairs(&[("a.b", &b), ("a_b", &b)]).unwrap_err();
        assert_eq!(err.to_string(), "a.b and a_b are both the variable A_B");
    }

    #[test]
    fn properties_escape_keys_and_values() {
        let v = json!("line\nnext é");
        let text = render(Format::Properties, &[("a:b", &v)]).unwrap();
        assert_eq!(text, "a\\:b=line\\nnext \\u00e9\n");
    }

    #[test]
    fn toml_names_a_null() {
        let v = json!({"x": null});
        let err = render(Format::Toml, &[("db", &v)]).unwrap_err();
        assert_eq!(err.to_string(), "db.x is null, which TOML cannot hold");
    }

    #[test]
    fn relative_names() {
        assert_eq!(relative("database", "database.url"), "url");
        assert_eq!(relative("database.", "database.url"), "url");
        assert_eq!(relative("", "x/y"), "x/y");
        assert_eq!(relative("hot", "hot"), "hot");
    }
}
