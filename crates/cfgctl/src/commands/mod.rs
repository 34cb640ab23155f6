//! One module per command group, as cargo's `commands/`: each turns a parsed
//! command into calls on one [`cfgd::Client`] and hands what comes back to
//! [`crate::output`].

mod config;
mod flag;
mod ns;
mod policy;
mod release;
mod request;
mod schedule;
mod schema;

use clap::CommandFactory;

use crate::cli::{AdminCommand, Cli, Command, NsCommand, OverlayCommand, SecretCommand};
use crate::connect::connect;
use crate::exit::Invalid;
use crate::output::{Format, Printer};

/// Runs the command `cli` parsed.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Printer::new(cli.output.unwrap_or(Format::Json));
    // The commands that need no etcd.
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "cfgctl", &mut std::io::stdout());
            return Ok(());
        }
        Command::Secret {
            command: SecretCommand::Keygen,
        } => {
            print!("{}", cfgd::secret::Keyring::generate());
            return Ok(());
        }
        _ => {}
    }
    let namespace = match &cli.command {
        Command::Admin {
            command: AdminCommand::Roles { namespace },
        }
        | Command::Ns {
            command:
                NsCommand::Get { namespace }
                | NsCommand::Set { namespace, .. }
                | NsCommand::Layers { namespace }
                | NsCommand::Delete { namespace, .. },
        } => namespace.as_deref(),
        _ => None,
    };
    let client = connect(&cli, namespace).await?;
    // `diff --against NS` reads a second namespace, over the same settings.
    let against = match &cli.command {
        Command::Diff {
            against: Some(namespace),
            ..
        } => Some(connect(&cli, Some(namespace)).await?),
        _ => None,
    };
    let format = cli.output;
    match cli.command {
        Command::Get {
            name,
            entry,
            labels: Some(labels),
            ..
        } => {
            let labels = labels
                .parse()
                .map_err(|e: cfgd::overlays::OverlayError| Invalid(format!("--labels: {e}")))?;
            match client.get_entry_labeled(&name, &labels).await? {
                Some(e) if entry || out.is_table() => out.entry(&e),
                Some(e) => out.value(&e.value),
                None => Err(cfgd::Error::NotFound {
                    key: client.etcd_key(&name)?,
                    revision: None,
                }
                .into()),
            }
        }
        Command::Get {
            name,
            default,
            revision,
            entry,
            explain,
            own,
            labels: None,
        } => {
            config::get(
                &client,
                &name,
                default,
                revision,
                (entry, explain, own),
                &out,
            )
            .await
        }
        Command::Overlay { command } => overlay(&client, command, &out).await,
        Command::Set {
            name,
            value,
            file,
            if_revision,
        } => config::set(&client, &name, value, file, if_revision, &out).await,
        Command::Delete { name, if_revision } => {
            config::delete(&client, &name, if_revision, &out).await
        }
        Command::List { prefix } => out.entries(&client.list::<serde_json::Value>(&prefix).await?),
        Command::History { name, limit, diff } => {
            config::history(&client, &name, limit, diff, format).await
        }
        Command::Rollback { name, to } => {
            let revision = client.rollback(&name, to).await?;
            out.written(&name, revision, Some(to))
        }
        Command::Watch { prefix, count } => config::watch(&client, &prefix, count).await,
        Command::Export { prefix } => {
            let document = client.export(&prefix).await?;
            out.document(&document)?;
            // The process ends next: freeing a namespace's worth of values
            // one by one would take a fifth of the command's time.
            std::mem::forget(document);
            Ok(())
        }
        Command::Import { file, dry_run } => config::import(&client, file, dry_run, &out).await,
        Command::Diff {
            target,
            exit_code,
            own,
            ..
        } => release::diff(&client, against.as_ref(), target, (exit_code, own), format).await,
        Command::Log {
            prefix,
            actor,
            limit,
        } => out.audit(&client.audit_log(&prefix, actor.as_deref(), limit).await?),
        Command::Apply {
            file,
            with,
            dry_run,
            ..
        } if !with.is_empty() => release::apply_chain(&client, file, with, dry_run, format).await,
        Command::Apply {
            file,
            flags,
            dry_run,
            ..
        } => release::apply(&client, file, flags, dry_run, format).await,
        Command::Release { command } => release::exec(&client, command, format).await,
        Command::Policy { command } => policy::exec(&client, command, &out).await,
        Command::Ns { command } => ns::exec(&client, command, &out).await,
        Command::Secret {
            command: SecretCommand::Rotate { .. },
        } => policy::rotate_secrets(&client).await,
        Command::Admin {
            command: AdminCommand::Roles { .. },
        } => out.value(&serde_json::to_value(client.create_roles().await?)?),
        Command::Request { command } => request::exec(&client, command, format).await,
        Command::Schedule { command } => schedule::exec(&client, command, format).await,
        Command::Webhook { command } => schedule::webhook(&client, command, format).await,
        Command::Schema { command } => schema::exec(&client, command, cli.force, &out).await,
        Command::Flag { command } => flag::exec(&client, command, &out).await,
        Command::Completions { .. }
        | Command::Secret {
            command: SecretCommand::Keygen,
        } => unreachable!("handled before connecting"),
    }
}

/// `overlay set|put|list|promote|abandon`.
async fn overlay(
    client: &cfgd::Client,
    command: OverlayCommand,
    out: &Printer,
) -> anyhow::Result<()> {
    match command {
        OverlayCommand::Set {
            overlay,
            selector,
            percent,
        } => {
            let mut settings = serde_json::Map::new();
            if let Some(selector) = selector {
                let labels: cfgd::overlays::Labels =
                    selector
                        .parse()
                        .map_err(|e: cfgd::overlays::OverlayError| {
                            Invalid(format!("--selector: {e}"))
                        })?;
                let pairs: serde_json::Map<String, serde_json::Value> = labels
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.into()))
                    .collect();
                settings.insert("selector".into(), pairs.into());
            }
            if let Some(percent) = percent {
                settings.insert("percent".into(), percent.into());
            }
            let json = serde_json::Value::Object(settings).to_string();
            let revision = client.set_overlay_json(&overlay, &json).await?;
            out.written(&overlay, revision, None)
        }
        OverlayCommand::Put {
            overlay,
            name,
            value,
        } => {
            let revision = client.set_in_overlay(&overlay, &name, &value).await?;
            out.written(&name, revision, None)
        }
        OverlayCommand::Flag {
            overlay,
            name,
            file,
        } => {
            let text = crate::input::read_value(None, Some(file))?;
            let definition: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Invalid(format!("flag {name:?}: definition is not valid JSON: {e}"))
            })?;
            let revision = client
                .set_flag_in_overlay(&overlay, &name, &definition)
                .await?;
            out.written(&name, revision, None)
        }
        OverlayCommand::List => out.document(&serde_json::to_value(client.overlays().await?)?),
        OverlayCommand::Promote { overlay } => match client.promote_overlay(&overlay).await? {
            Some(release) => {
                eprintln!(
                    "promoted {overlay:?}: release {} at revision {}",
                    release.id, release.revision
                );
                Ok(())
            }
            None => Err(not_overlay(client, &overlay)),
        },
        OverlayCommand::Abandon { overlay } => match client.abandon_overlay(&overlay).await? {
            Some(release) => {
                eprintln!("abandoned {overlay:?} at revision {}", release.revision);
                Ok(())
            }
            None => Err(not_overlay(client, &overlay)),
        },
    }
}

fn not_overlay(client: &cfgd::Client, overlay: &str) -> anyhow::Error {
    cfgd::Error::NotFound {
        key: format!(
            "{}/overlays/{overlay}",
            client
                .etcd_key("x")
                .unwrap_or_default()
                .trim_end_matches("/config/x")
        ),
        revision: None,
    }
    .into()
}
