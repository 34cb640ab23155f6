//! One module per command group, as cargo's `commands/`: each turns a parsed
//! command into calls on one [`cfgd::Client`] and hands what comes back to
//! [`crate::output`].

mod config;
mod flag;
mod ns;
mod policy;
mod release;
mod request;
mod schema;

use clap::CommandFactory;

use crate::cli::{AdminCommand, Cli, Command, NsCommand, SecretCommand};
use crate::connect::connect;
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
            default,
            revision,
            entry,
            explain,
            own,
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
            target, exit_code, ..
        } => release::diff(&client, against.as_ref(), target, exit_code, format).await,
        Command::Log {
            prefix,
            actor,
            limit,
        } => out.audit(&client.audit_log(&prefix, actor.as_deref(), limit).await?),
        Command::Apply {
            file,
            flags,
            dry_run,
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
        Command::Schema { command } => schema::exec(&client, command, cli.force, &out).await,
        Command::Flag { command } => flag::exec(&client, command, &out).await,
        Command::Completions { .. }
        | Command::Secret {
            command: SecretCommand::Keygen,
        } => unreachable!("handled before connecting"),
    }
}
