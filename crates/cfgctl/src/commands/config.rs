//! `get`, `set`, `delete`, `history`, `watch`, `import`: one value or a
//! namespace's values.

use std::path::PathBuf;

use serde_json::Value;

use crate::exit::Invalid;
use crate::input::{looks_like_bare_string, parse_json, read_value};
use crate::output::Format;
use crate::output::{self, diff_output, Printer};

/// `get NAME [--default JSON] [--revision N] [--entry]`.
pub(super) async fn get(
    client: &cfgd::Client,
    name: &str,
    default: Option<String>,
    revision: Option<cfgd::Revision>,
    (entry, explain, own): (bool, bool, bool),
    out: &Printer,
) -> anyhow::Result<()> {
    let default = default.map(|d| parse_json("--default", &d)).transpose()?;
    if explain {
        let explained = client.explain(name).await?;
        if explained.layers.iter().all(|l| l.value.is_none()) {
            return Err(cfgd::Error::NotFound {
                key: client.etcd_key(name)?,
                revision: None,
            }
            .into());
        }
        return out.explained(&explained);
    }
    let found = match (revision, own) {
        (Some(r), _) => client.get_entry_at::<Value>(name, r).await?,
        (None, true) => client.get_own_entry(name).await?,
        (None, false) => client.get_entry::<Value>(name).await?,
    };
    match (found, default) {
        (Some(e), _) if entry || out.is_table() => out.entry(&e),
        (Some(e), _) => out.value(&e.value),
        (None, Some(default)) => out.value(&default),
        (None, None) => Err(cfgd::Error::NotFound {
            key: client.etcd_key(name)?,
            revision,
        }
        .into()),
    }
}

/// `set NAME [JSON | -f FILE | -] [--if-revision N]`.
pub(super) async fn set(
    client: &cfgd::Client,
    name: &str,
    value: Option<String>,
    file: Option<PathBuf>,
    if_revision: Option<cfgd::Revision>,
    out: &Printer,
) -> anyhow::Result<()> {
    let text = read_value(value, file)?;
    let written = match if_revision {
        Some(expected) => client.set_json_if(name, &text, expected).await,
        None => client.set_json(name, &text).await,
    };
    match written {
        Ok(revision) => out.written(name, revision, None),
        Err(e @ cfgd::Error::InvalidJson { .. }) if looks_like_bare_string(&text) => {
            let quoted = serde_json::to_string(text.trim())?;
            Err(Invalid(format!("{e} (to store a string, quote it: '{quoted}')")).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// `delete NAME [--if-revision N]`.
pub(super) async fn delete(
    client: &cfgd::Client,
    name: &str,
    if_revision: Option<cfgd::Revision>,
    out: &Printer,
) -> anyhow::Result<()> {
    let revision = match if_revision {
        Some(expected) => client.delete_if(name, expected).await?,
        None => client
            .delete(name)
            .await?
            .ok_or_else(|| cfgd::Error::NotFound {
                key: client.etcd_key(name).unwrap_or_default(),
                revision: None,
            })?,
    };
    out.written(name, revision, None)
}

/// `history NAME [--limit N] [--diff]`.
pub(super) async fn history(
    client: &cfgd::Client,
    name: &str,
    limit: usize,
    diff: bool,
    format: Option<Format>,
) -> anyhow::Result<()> {
    if diff {
        let history = client.history_diff(name, limit).await?;
        if history.is_empty() {
            return Err(cfgd::Error::NotFound {
                key: client.etcd_key(name)?,
                revision: None,
            }
            .into());
        }
        diff_output(format).history(&history)
    } else {
        let history = client.history(name, limit).await?;
        if history.is_empty() {
            return Err(cfgd::Error::NotFound {
                key: client.etcd_key(name)?,
                revision: None,
            }
            .into());
        }
        Printer::new(format.unwrap_or(Format::Json)).history(&history)
    }
}

/// `import FILE [--dry-run]`.
pub(super) async fn import(
    client: &cfgd::Client,
    file: PathBuf,
    dry_run: bool,
    out: &Printer,
) -> anyhow::Result<()> {
    let text = read_value(None, Some(file))?;
    let report = client.import(&text, dry_run).await?;
    out.import(&report, dry_run)
}

/// Prints changes as JSON lines; reports connection losses on stderr.
pub(super) async fn watch(
    client: &cfgd::Client,
    prefix: &str,
    count: Option<u64>,
) -> anyhow::Result<()> {
    use tokio_stream::StreamExt;
    let mut changes = client.subscribe(prefix)?;
    let mut status = client.status_changes()?;
    // On stderr, so stdout stays pure JSON lines; also tells scripts that
    // every change from here on will be printed.
    eprintln!(
        "cfgctl: watching {:?} in namespace {} from revision {}",
        prefix,
        client.namespace(),
        client.status().revision()
    );
    let mut printed = 0;
    loop {
        tokio::select! {
            change = changes.next() => {
                let Some(change) = change else { return Ok(()) };
                if !output::line(change.to_json())? {
                    return Ok(()); // stdout closed
                }
                printed += 1;
                if count.is_some_and(|n| printed >= n) {
                    return Ok(());
                }
            }
            Ok(()) = status.changed() => {
                match &*status.borrow_and_update() {
                    cfgd::Status::Reconnecting { .. } => eprintln!("cfgctl: etcd connection lost; reconnecting"),
                    cfgd::Status::Connected { revision } => eprintln!("cfgctl: reconnected at revision {revision}"),
                    other => eprintln!("cfgctl: {other:?}"),
                }
            }
        }
    }
}
