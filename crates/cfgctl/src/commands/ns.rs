//! `ns`: a namespace's settings (`{root}/{ns}/meta`).

use cfgd::flags::{Bucketing, FlagSet, Json};
use serde_json::{Map, Value};

use crate::cli::NsCommand;
use crate::exit::Invalid;
use crate::output::Printer;

/// How many synthetic users `ns set --fractional` buckets both ways.
const SAMPLE: usize = 10_000;

/// `ns get|set`.
pub(super) async fn exec(
    client: &cfgd::Client,
    command: NsCommand,
    out: &Printer,
) -> anyhow::Result<()> {
    match command {
        NsCommand::Get { .. } => out.document(&serde_json::to_value(client.meta().await?)?),
        NsCommand::Layers { .. } => {
            let layers = client.layers().await?;
            let extended_by = client.descendants().await?;
            out.document(&serde_json::json!({"layers": layers, "extended_by": extended_by}))
        }
        NsCommand::Delete { yes, .. } => {
            if !yes {
                return Err(Invalid(format!(
                    "not deleted: this deletes every key of namespace {:?}, its audit trail included; pass --yes",
                    client.namespace()
                ))
                .into());
            }
            let deleted = client.delete_namespace().await?;
            eprintln!("deleted namespace {:?}: {deleted} keys", client.namespace());
            Ok(())
        }
        NsCommand::Set {
            fractional,
            extends,
            yes,
            ..
        } => {
            if fractional.is_none() && extends.is_none() {
                return Err(Invalid(
                    "nothing to set: give --extends NS,NS and/or --fractional v2|v3".into(),
                )
                .into());
            }
            let mut current = client.meta().await?;
            if let Some(extends) = extends {
                let parents = extends.split(',').map(str::trim).filter(|p| !p.is_empty());
                current = current.with_extends(parents);
            }
            let Some(fractional) = fractional else {
                let revision = client.set_meta(&current).await?;
                return out.written("meta", revision, None);
            };
            let fractional: Bucketing = fractional.parse().map_err(Invalid)?;
            if current.fractional != fractional {
                let moved = impact(client, current.fractional, fractional).await?;
                if moved > 0 && !yes {
                    anyhow::bail!(
                        "not written: {moved} sample user evaluations change variant; \
                         pass --yes to switch to {fractional} anyway"
                    );
                }
            }
            let revision = client
                .set_meta(&current.with_fractional(fractional))
                .await?;
            out.written("meta", revision, None)
        }
    }
}

/// Prints, for each flag that uses `fractional`, how many of [`SAMPLE`]
/// synthetic users get another variant under `to` than under `from`;
/// answers the total.
async fn impact(client: &cfgd::Client, from: Bucketing, to: Bucketing) -> anyhow::Result<usize> {
    let document = client.export_flags().await?;
    let text = document.to_string();
    let (before, after) = (
        FlagSet::from_document_with(&text, from)?,
        FlagSet::from_document_with(&text, to)?,
    );
    let evaluators = document.get("$evaluators").map(Value::to_string);
    let uses_fractional = |definition: &Value| {
        let text = definition.to_string();
        text.contains("\"fractional\"")
            || (text.contains("\"$ref\"")
                && evaluators
                    .as_ref()
                    .is_some_and(|e| e.contains("\"fractional\"")))
    };
    let flags = document["flags"].as_object().cloned().unwrap_or_default();
    let mut total = 0;
    let mut checked = 0;
    for (name, definition) in flags.iter().filter(|(_, d)| uses_fractional(d)) {
        checked += 1;
        let mut attributes = Vec::new();
        read_vars(definition, &mut attributes);
        let moved = (0..SAMPLE)
            .filter(|i| {
                let user = sample_user(*i, &attributes);
                let variant = |set: &FlagSet| set.evaluate(name, Json(Value::Null), &user).variant;
                variant(&before) != variant(&after)
            })
            .count();
        eprintln!("{name}: {moved} of {SAMPLE} sample users change variant ({from} → {to})");
        total += moved;
    }
    if checked == 0 {
        eprintln!("no flag of the namespace uses fractional: no user changes variant");
    }
    Ok(total)
}

/// The attribute names a rule reads with `var` (but `$flagd.*`, which the
/// evaluator sets).
fn read_vars(rule: &Value, names: &mut Vec<String>) {
    match rule {
        Value::Object(map) => {
            if let Some(var) = map.get("var") {
                let name = match var {
                    Value::Array(items) => items.first().and_then(Value::as_str),
                    other => other.as_str(),
                };
                if let Some(name) = name.filter(|n| !n.is_empty() && !n.starts_with("$flagd")) {
                    names.push(name.to_owned());
                }
            }
            map.values().for_each(|v| read_vars(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| read_vars(v, names)),
        _ => {}
    }
}

/// Synthetic user `i`: a targeting key, and every attribute the flag reads
/// (dotted names as nested objects) set to that same text.
fn sample_user(i: usize, attributes: &[String]) -> Value {
    let key = format!("user-{i}");
    let mut user = Map::new();
    for name in attributes {
        let mut at = &mut user;
        let mut parts = name.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                at.insert(part.to_owned(), Value::from(key.clone()));
            } else {
                let next = at
                    .entry(part.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !next.is_object() {
                    *next = Value::Object(Map::new());
                }
                at = next.as_object_mut().expect("an object");
            }
        }
    }
    user.insert("targetingKey".into(), Value::from(key));
    Value::Object(user)
}
