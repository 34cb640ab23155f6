//! `diff`, `apply` and `release`: what a document or another namespace
//! would change, and releases, published and reverted whole.

use std::path::PathBuf;

use crate::cli::ReleaseCommand;
use crate::exit::{Differs, Invalid};
use crate::input::read_value;
use crate::output::Format;
use crate::output::{self, diff_output};

/// `diff FILE` or `diff --against NS [PREFIX]`, with `--exit-code`.
pub(super) async fn diff(
    client: &cfgd::Client,
    against: Option<&cfgd::Client>,
    target: Option<String>,
    (exit_code, own): (bool, bool),
    format: Option<Format>,
) -> anyhow::Result<()> {
    let differences = match against {
        Some(other) if own => {
            client
                .diff_own_layers(other, target.as_deref().unwrap_or(""))
                .await?
        }
        Some(other) => {
            client
                .diff_namespace(other, target.as_deref().unwrap_or(""))
                .await?
        }
        None => {
            let file =
                target.ok_or_else(|| Invalid("diff needs a FILE, or --against NS".into()))?;
            let text = read_value(None, Some(PathBuf::from(file)))?;
            client.diff_document(&text).await?
        }
    };
    diff_output(format).named(&differences)?;
    if exit_code && !differences.is_empty() {
        return Err(Differs.into());
    }
    Ok(())
}

/// `apply FILE [--flags FILE] [--dry-run]`.
pub(super) async fn apply(
    client: &cfgd::Client,
    file: PathBuf,
    flags: Option<PathBuf>,
    dry_run: bool,
    format: Option<Format>,
) -> anyhow::Result<()> {
    let config = read_value(None, Some(file))?;
    let flags = flags.map(|f| read_value(None, Some(f))).transpose()?;
    let (plan, release) = client.apply(&config, flags.as_deref(), dry_run).await?;
    let diff = diff_output(format);
    match (&release, &diff) {
        (Some(release), output::DiffPrinter::Text { .. }) => {
            diff.named(&release.changes)?;
            eprintln!("release {} at revision {}", release.id, release.revision);
            Ok(())
        }
        (Some(release), output::DiffPrinter::Data(printer)) => printer.document(
            &serde_json::json!({"id": release.id, "revision": release.revision, "changes": release.changes}),
        ),
        (None, _) => {
            diff.named(&plan.changes)?;
            if !dry_run {
                eprintln!("nothing differs; nothing written");
            }
            Ok(())
        }
    }
}

/// `apply FILE --with NS=FILE…`: one release over namespaces of a chain.
pub(super) async fn apply_chain(
    client: &cfgd::Client,
    file: PathBuf,
    with: Vec<String>,
    dry_run: bool,
    format: Option<Format>,
) -> anyhow::Result<()> {
    let mut documents = vec![(client.namespace().to_owned(), read_value(None, Some(file))?)];
    for part in with {
        let (namespace, path) = part
            .split_once('=')
            .ok_or_else(|| Invalid(format!("--with {part:?}: give NS=FILE")))?;
        documents.push((
            namespace.to_owned(),
            read_value(None, Some(PathBuf::from(path)))?,
        ));
    }
    let release = client.apply_chain(&documents, dry_run).await?;
    let diff = diff_output(format);
    match &diff {
        output::DiffPrinter::Text { .. } => {
            for part in &release.parts {
                eprintln!("{}:", part.namespace);
                diff.named(&part.changes)?;
            }
            match release.revision {
                0 if !dry_run => eprintln!("nothing differs; nothing written"),
                0 => {}
                revision => eprintln!("release at revision {revision}"),
            }
            Ok(())
        }
        output::DiffPrinter::Data(printer) => printer.document(&serde_json::json!({
            "revision": release.revision,
            "parts": release.parts.iter().map(|p| serde_json::json!({
                "namespace": p.namespace, "id": p.id, "changes": p.changes,
            })).collect::<Vec<_>>(),
        })),
    }
}

/// `release list|show|revert`.
pub(super) async fn exec(
    client: &cfgd::Client,
    command: ReleaseCommand,
    format: Option<Format>,
) -> anyhow::Result<()> {
    let out = output::Printer::new(format.unwrap_or(Format::Json));
    match command {
        ReleaseCommand::List { limit } => out.audit(&client.releases(limit).await?),
        ReleaseCommand::Show { id } => {
            let (record, changes) = client.release(&id).await?;
            match diff_output(format) {
                diff @ output::DiffPrinter::Text { .. } => {
                    let who = format!("{} via {}", record.actor, record.via);
                    println!(
                        "release {} at revision {} by {who}",
                        record.id, record.revision
                    );
                    if let Some(message) = &record.message {
                        println!("    {message}");
                    }
                    diff.named(&changes)
                }
                output::DiffPrinter::Data(printer) => {
                    let mut record_json = serde_json::to_value(&record)?;
                    record_json["changes"] = serde_json::to_value(&changes)?;
                    printer.document(&record_json)
                }
            }
        }
        ReleaseCommand::Apply {
            file,
            flags,
            at: Some(at),
            ..
        } => {
            let at = cfgd::schedules::parse_time(&at, cfgd::schedules::now())?;
            let config = read_value(None, Some(file))?;
            let flags = flags.map(|f| read_value(None, Some(f))).transpose()?;
            let schedule = client
                .schedule_release(&config, flags.as_deref(), at)
                .await?;
            super::schedule::made(&out, &[schedule])
        }
        ReleaseCommand::Apply {
            file,
            flags,
            dry_run,
            at: None,
        } => apply(client, file, flags, dry_run, format).await,
        ReleaseCommand::Revert { id } => {
            let release = client.revert_release(&id).await?;
            diff_output(format).named(&release.changes)?;
            eprintln!(
                "release {} at revision {} reverts {id}",
                release.id, release.revision
            );
            Ok(())
        }
    }
}
