//! Rendering one template from a [`State`]: a minijinja template with
//! cfgd's helpers, or a name prefix in a format. A render says which
//! names it missed and which secrets it used, so that the caller can
//! apply the template's `missing` policy and keep secrets out of
//! readable files.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use minijinja::value::{Object, Value as Jinja};
use minijinja::{Environment, Error as JinjaError, ErrorKind};
use serde_json::Value;

use crate::formats;
use crate::settings::Format;
use crate::state::State;

/// What a template is made of.
pub enum Body {
    Template(Box<Environment<'static>>),
    Prefix { prefix: String, format: Format },
}

/// One render's output.
#[derive(Debug, Default)]
pub struct Rendered {
    pub text: String,
    /// Names asked for that the namespace does not hold.
    pub missing: BTreeSet<String>,
    /// Secrets that went into `text` (names only).
    pub secrets: BTreeSet<String>,
    /// An `env` render's variables, for the `exec` child.
    pub env: Option<Vec<(String, String)>>,
    /// The template failed after asking for names it did not find: the
    /// `missing` policy speaks first (a missing `db` fails
    /// `value("db").host` too, and the names are what to fix).
    pub error: Option<String>,
}

const MAIN: &str = "template";
const SCOPE: &str = "__cfgd_scope";

impl Body {
    /// A minijinja template from its text; `origin` names it in errors.
    pub fn template(origin: &str, text: String) -> Result<Body> {
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        env.set_formatter(config_formatter);
        env.add_template_owned(MAIN, text)
            .map_err(|e| anyhow!("{origin}: {}", describe(&e)))?;
        env.add_function("value", value);
        env.add_function("values", values);
        env.add_function("flag", flag);
        env.add_filter("json", to_json);
        env.add_filter("yaml", to_yaml);
        env.add_filter("toml", to_toml);
        env.add_filter("env", to_env);
        Ok(Body::Template(Box::new(env)))
    }

    /// Renders from `state`.
    pub fn render(&self, state: &Arc<State>, namespace: &str) -> Result<Rendered> {
        match self {
            Body::Prefix { prefix, format } => {
                let mut out = Rendered::default();
                let entries: Vec<(&str, &Value)> = state
                    .under(prefix)
                    .map(|(name, item)| {
                        if item.secret {
                            out.secrets.insert(name.to_owned());
                        }
                        (formats::relative(prefix, name), &item.value)
                    })
                    .collect();
                if entries.is_empty() {
                    out.missing.insert(format!("{prefix}*"));
                }
                out.missing.extend(state.withheld_under(prefix).cloned());
                out.text = formats::render(*format, &entries)?;
                if *format == Format::Env {
                    out.env = Some(formats::env_pairs(&entries)?);
                }
                Ok(out)
            }
            Body::Template(env) => {
                let scope = Arc::new(Scope {
                    state: state.clone(),
                    seen: Mutex::default(),
                });
                let template = env.get_template(MAIN).expect("added at load");
                let context = minijinja::context! {
                    namespace => namespace,
                    revision => state.revision,
                    __cfgd_scope => Jinja::from_dyn_object(scope.clone()),
                };
                let text = template.render(context);
                let seen = std::mem::take(&mut *scope.seen.lock().unwrap());
                let (text, error) = match text {
                    Ok(text) => (text, None),
                    Err(e) if !seen.missing.is_empty() => (String::new(), Some(describe(&e))),
                    Err(e) => return Err(anyhow!("{}", describe(&e))),
                };
                Ok(Rendered {
                    text,
                    missing: seen.missing,
                    secrets: seen.secrets,
                    env: None,
                    error,
                })
            }
        }
    }
}

/// Values printed as config files spell them: `true`, not Python's
/// `True`; a list or map as JSON; none as nothing.
fn config_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Jinja,
) -> Result<(), JinjaError> {
    use minijinja::value::ValueKind;
    match value.kind() {
        ValueKind::Bool => out.write_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::None => Ok(()),
        ValueKind::Seq | ValueKind::Map => out.write_str(&as_json(value)?.to_string()),
        _ => return minijinja::escape_formatter(out, state, value),
    }
    .map_err(|_| JinjaError::new(ErrorKind::WriteFailure, "cannot write the output"))
}

/// minijinja's error in one line, with where in the template.
fn describe(e: &JinjaError) -> String {
    let mut text = e.to_string();
    if let Some(line) = e.line() {
        if !text.contains("line") {
            text.push_str(&format!(" (line {line})"));
        }
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[derive(Debug)]
struct Scope {
    state: Arc<State>,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    missing: BTreeSet<String>,
    secrets: BTreeSet<String>,
}

impl Object for Scope {}

fn scope(state: &minijinja::State) -> Result<Arc<Scope>, JinjaError> {
    state
        .lookup(SCOPE)
        .and_then(|v| v.downcast_object::<Scope>())
        .ok_or_else(|| JinjaError::new(ErrorKind::InvalidOperation, "not rendered by cfgd-agent"))
}

/// `value("database.url")`, or `value("database.url", "fallback")`: a
/// missing name without a fallback counts as missing.
fn value(
    state: &minijinja::State,
    name: &str,
    default: Option<Jinja>,
) -> Result<Jinja, JinjaError> {
    let scope = scope(state)?;
    match scope.state.values.get(name) {
        Some(item) => {
            if item.secret {
                scope.seen.lock().unwrap().secrets.insert(name.to_owned());
            }
            Ok(Jinja::from_serialize(&item.value))
        }
        None => match default {
            Some(default) => Ok(default),
            None => {
                scope.seen.lock().unwrap().missing.insert(name.to_owned());
                Ok(Jinja::UNDEFINED)
            }
        },
    }
}

/// `values("database.")`: the names under a prefix and their values, by
/// full name; `values("database.", true)` by the name below it.
fn values(
    state: &minijinja::State,
    prefix: Option<String>,
    strip: Option<bool>,
) -> Result<Jinja, JinjaError> {
    let scope = scope(state)?;
    let prefix = prefix.unwrap_or_default();
    let mut map = serde_json::Map::new();
    let mut seen = scope.seen.lock().unwrap();
    seen.missing
        .extend(scope.state.withheld_under(&prefix).cloned());
    for (name, item) in scope.state.under(&prefix) {
        if item.secret {
            seen.secrets.insert(name.to_owned());
        }
        let key = match strip.unwrap_or(false) {
            true => formats::relative(&prefix, name),
            false => name,
        };
        map.insert(key.to_owned(), item.value.clone());
    }
    Ok(Jinja::from_serialize(&map))
}

/// `flag("new-checkout", {"targetingKey": "eu-1"}, false)`: the flag's
/// value for that context, as flagd evaluates it; the default (or, with
/// none, missing) for a flag that is not there.
fn flag(
    state: &minijinja::State,
    key: &str,
    context: Option<Jinja>,
    default: Option<Jinja>,
) -> Result<Jinja, JinjaError> {
    let scope = scope(state)?;
    let context: Value = match context {
        Some(c) => serde_json::to_value(&c).map_err(bad)?,
        None => Value::Object(Default::default()),
    };
    if !scope.state.flags.contains_key(key) {
        return match default {
            Some(d) => Ok(d),
            None => {
                scope
                    .seen
                    .lock()
                    .unwrap()
                    .missing
                    .insert(format!("flag {key}"));
                Ok(Jinja::UNDEFINED)
            }
        };
    }
    let fallback = match &default {
        Some(d) => serde_json::to_value(d).map_err(bad)?,
        None => Value::Null,
    };
    let details = scope
        .state
        .flag_set()
        .evaluate(key, cfgd::flags::Json(fallback), &context);
    Ok(Jinja::from_serialize(&details.value.0))
}

fn bad(e: impl std::fmt::Display) -> JinjaError {
    JinjaError::new(ErrorKind::InvalidOperation, e.to_string())
}

fn as_json(value: &Jinja) -> Result<Value, JinjaError> {
    serde_json::to_value(value).map_err(bad)
}

/// `{{ value("limits") | json }}`: compact JSON.
fn to_json(value: Jinja) -> Result<String, JinjaError> {
    Ok(as_json(&value)?.to_string())
}

/// `{{ value("db") | yaml }}`: a YAML document of the value.
fn to_yaml(value: Jinja) -> Result<String, JinjaError> {
    serde_norway::to_string(&as_json(&value)?).map_err(bad)
}

/// `{{ value("db") | toml }}`: a TOML table of an object value.
fn to_toml(value: Jinja) -> Result<String, JinjaError> {
    toml::to_string(&as_json(&value)?).map_err(|e| bad(format!("not expressible as TOML: {e}")))
}

/// `DB_URL={{ value("db.url") | env }}`: quoted for env files and shells.
fn to_env(value: Jinja) -> Result<String, JinjaError> {
    Ok(formats::env_quote(&formats::scalar_text(&as_json(&value)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Item;
    use serde_json::json;

    fn state() -> Arc<State> {
        let mut state = State::default();
        for (name, value, secret) in [
            ("db.url", json!("postgres://db"), false),
            ("db.password", json!("hunter2"), true),
            ("limits", json!({"max": 10}), false),
        ] {
            let item = Item {
                value,
                secret,
                revision: 1,
            };
            state.values.insert(name.into(), item);
        }
        state.flags.insert(
            "checkout".into(),
            (json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                    "targeting": {"if": [{"==": [{"var": "region"}, "eu"]}, "on", "off"]}}), 1),
        );
        Arc::new(state)
    }

    fn render(text: &str) -> Rendered {
        Body::template("t", text.into())
            .unwrap()
            .render(&state(), "prod")
            .unwrap()
    }

    #[test]
    fn helpers_read_values_flags_and_name_what_is_missing() {
        let out = render(
            "{{ value('db.url') }} {{ value('limits') | json }} {{ value('nope', 'x') }} {{ value('gone') }}{{ value('also.gone') }} {{ flag('checkout', {'region': 'eu'}, false) }} {{ flag('checkout', {}, false) }}\n",
        );
        assert_eq!(out.text, "postgres://db {\"max\":10} x  true false\n");
        assert_eq!(
            out.missing.into_iter().collect::<Vec<_>>(),
            ["also.gone", "gone"]
        );
        assert!(out.secrets.is_empty());
    }

    #[test]
    fn a_secret_used_is_named() {
        let out = render("{{ value('db.password') | env }} {% for k, v in values('db.', true) | items %}{{ k }};{% endfor %}");
        assert_eq!(out.text, "hunter2 password;url;");
        assert_eq!(out.secrets.into_iter().collect::<Vec<_>>(), ["db.password"]);
    }

    #[test]
    fn a_template_failing_on_a_missing_name_names_it() {
        let out = render("{{ value('gone').host }}{{ value('also') }}");
        assert_eq!(out.missing.into_iter().collect::<Vec<_>>(), ["gone"]);
        assert!(out.error.is_some());
        let mut withheld = (*state()).clone();
        withheld.withheld.insert("db.token".into());
        let out = Body::template("t", "{{ values('db.') | length }}".into())
            .unwrap()
            .render(&Arc::new(withheld), "prod")
            .unwrap();
        assert_eq!(
            out.missing.into_iter().collect::<Vec<_>>(),
            ["db.token"],
            "a secret it cannot open"
        );
    }

    #[test]
    fn a_broken_template_is_one_line_naming_its_file() {
        let Err(e) = Body::template("nginx.conf.j2", "{% if %}".into()) else {
            panic!("parsed")
        };
        let text = e.to_string();
        assert!(text.starts_with("nginx.conf.j2: syntax error"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}
