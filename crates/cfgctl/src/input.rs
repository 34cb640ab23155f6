//! What commands read besides their flags: values, files, standard input.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use crate::exit::Invalid;

/// The value of `set`: an argument, a file, or standard input (`-`).
pub(crate) fn read_value(value: Option<String>, file: Option<PathBuf>) -> anyhow::Result<String> {
    let from_stdin = || -> anyhow::Result<String> {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the value from standard input")?;
        Ok(text)
    };
    match (value, file) {
        (Some(v), _) if v == "-" => from_stdin(),
        (Some(v), _) => Ok(v),
        (None, Some(path)) if path.as_os_str() == "-" => from_stdin(),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| Invalid(format!("cannot read {}: {e}", path.display())).into()),
        (None, None) => Err(Invalid(
            "no value given: pass JSON as an argument, -f FILE, or - to read standard input".into(),
        )
        .into()),
    }
}

/// `hello` rather than `"hello"`: the commonest mistake with `set`.
pub(crate) fn looks_like_bare_string(text: &str) -> bool {
    let t = text.trim();
    t.chars().next().is_some_and(|c| c.is_alphabetic()) && !t.contains(['{', '[', '"'])
}

pub(crate) fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).map_err(|e| Invalid(format!("{what} is not valid JSON: {e}")).into())
}
