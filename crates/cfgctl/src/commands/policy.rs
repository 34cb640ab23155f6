//! `policy`, and `secret rotate`: the namespace policy and its secrets.

use crate::cli::PolicyCommand;
use crate::exit::Invalid;
use crate::input::read_value;
use crate::output::Printer;

/// `policy get|set|delete`.
pub(super) async fn exec(
    client: &cfgd::Client,
    command: PolicyCommand,
    out: &Printer,
) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Get => out.document(&serde_json::to_value(client.policy().await?)?),
        PolicyCommand::Set { file } => {
            let text = read_value(None, Some(file))?;
            let revision = client.set_policy_json(&text).await?;
            out.written("policy", revision, None)
        }
        PolicyCommand::Delete => {
            let revision = client
                .delete_policy()
                .await?
                .ok_or_else(|| Invalid("no policy is stored".into()))?;
            out.written("policy", revision, None)
        }
    }
}

/// `secret rotate --new-key FILE`: reseals every secret under the new key.
pub(super) async fn rotate_secrets(client: &cfgd::Client) -> anyhow::Result<()> {
    let report = client
        .reseal_secrets(|name| println!("resealed {name}"))
        .await?;
    eprintln!(
        "{} resealed, {} already under the new key",
        report.resealed.len(),
        report.current.len()
    );
    Ok(())
}
