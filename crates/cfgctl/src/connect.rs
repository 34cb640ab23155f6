//! From the global flags to a connected [`cfgd::Client`].

use crate::cli::{Cli, Command, FlagCommand, SecretCommand};
use crate::exit::Invalid;

/// Connects to the namespace of `-n`, or to `namespace`.
pub(crate) async fn connect(cli: &Cli, namespace: Option<&str>) -> anyhow::Result<cfgd::Client> {
    let mut builder = cfgd::Client::builder()
        .endpoints(
            cli.endpoints
                .iter()
                .map(|e| e.trim())
                .filter(|e| !e.is_empty()),
        )
        .namespace(namespace.unwrap_or(&cli.namespace))
        .root(&cli.root)
        // The audit trail names the etcd user, or the OS user@host.
        .actor(cli.user.clone().unwrap_or_else(cfgd::audit::local_actor))
        .via(cfgd::audit::Via::Cfgctl)
        .connect_timeout(cli.connect_timeout)
        .request_timeout(cli.timeout)
        // One-shot commands read etcd directly; only `watch` needs the
        // namespace in memory and a standing watch.
        .live(matches!(
            cli.command,
            Command::Watch { .. }
                | Command::Flag {
                    command: FlagCommand::Eval { .. }
                }
        ));
    match (&cli.user, &cli.password) {
        (Some(user), Some(password)) => builder = builder.user(user, password),
        (Some(_), None) => {
            return Err(Invalid("--user needs --password (or CFGCTL_PASSWORD)".into()).into())
        }
        (None, Some(_)) => {
            return Err(Invalid("--password needs --user (or CFGCTL_USER)".into()).into())
        }
        (None, None) => {}
    }
    if let Some(ca) = &cli.cacert {
        builder = builder.ca_file(ca);
    }
    match (&cli.cert, &cli.key) {
        (Some(cert), Some(key)) => builder = builder.client_cert(cert, key),
        (None, None) => {}
        _ => return Err(Invalid("--cert and --key go together".into()).into()),
    }
    let keyring = match (&cli.secret_key_file, &cli.command) {
        (
            current,
            Command::Secret {
                command: SecretCommand::Rotate { new_key },
            },
        ) => {
            let new = cfgd::secret::Keyring::load(new_key)?;
            Some(match current {
                Some(path) => cfgd::secret::Keyring::load(path)?.rotating_to(new),
                None => new,
            })
        }
        (Some(path), _) => Some(cfgd::secret::Keyring::load(path)?),
        (None, _) => None,
    };
    if let Some(keyring) = keyring {
        builder = builder.keyring(keyring);
    }
    let mut client = builder.connect().await?;
    if let Some(message) = &cli.message {
        client = client.with_message(message);
    }
    Ok(if cli.force { client.forced() } else { client })
}
