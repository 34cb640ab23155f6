//! `flag`: feature flags, their edits and their evaluation.

use serde_json::Value;

use crate::cli::FlagCommand;
use crate::exit::Invalid;
use crate::input::read_value;
use crate::output::{Format, Printer};

/// `flag list|export|import|get|set|enable|disable|rollout|eval`.
pub(super) async fn exec(
    client: &cfgd::Client,
    command: FlagCommand,
    out: &Printer,
) -> anyhow::Result<()> {
    let not_found = |name: &str| cfgd::Error::NotFound {
        key: client
            .flag_etcd_key(name)
            .unwrap_or_else(|_| name.to_owned()),
        revision: None,
    };
    match command {
        FlagCommand::List => {
            let flags = client.list_flags().await?;
            let document: serde_json::Map<String, Value> =
                flags.into_iter().map(|e| (e.name, e.value)).collect();
            out.document(&Value::Object(document))
        }
        FlagCommand::Export => out.document(&client.export_flags().await?),
        FlagCommand::Import { file, dry_run } => {
            let text = read_value(None, Some(file))?;
            let report = client.import_flags(&text, dry_run).await?;
            out.import(&report, dry_run)
        }
        FlagCommand::Get { name } => {
            let entry = client
                .get_flag(&name)
                .await?
                .ok_or_else(|| not_found(&name))?;
            out.value(&entry.value)
        }
        FlagCommand::Set {
            name,
            file,
            if_revision,
        } => {
            let text = read_value(None, Some(file))?;
            let definition: Value = serde_json::from_str(&text).map_err(|e| {
                Invalid(format!("flag {name:?}: definition is not valid JSON: {e}"))
            })?;
            let revision = match if_revision {
                Some(expected) => client.set_flag_if(&name, &definition, expected).await?,
                None => client.set_flag(&name, &definition).await?,
            };
            out.written(&name, revision, None)
        }
        // Read, change, write back only if nobody wrote in between (exit 4).
        FlagCommand::Enable { name } => {
            let revision = client.enable_flag(&name).await?;
            out.written(&name, revision, None)
        }
        FlagCommand::Disable { name } => {
            let revision = client.disable_flag(&name).await?;
            out.written(&name, revision, None)
        }
        FlagCommand::Rollout {
            name,
            steps: Some(steps),
            to,
            ..
        } => {
            let steps = cfgd::schedules::parse_steps(&steps, cfgd::schedules::now())?;
            let made = client
                .schedule_rollout(&name, to.as_deref(), &steps)
                .await?;
            let json = Printer::new(Format::Json);
            super::schedule::made(&json, &made)
        }
        FlagCommand::Rollout { name, variants, .. } => {
            let mut rollout = cfgd::Rollout::new();
            for pair in &variants {
                let (variant, weight) = pair.split_once('=').ok_or_else(|| {
                    Invalid(format!("--variant {pair:?}: expected VARIANT=WEIGHT"))
                })?;
                let weight: u32 = weight.trim().parse().map_err(|_| {
                    Invalid(format!("--variant {pair:?}: weight must be a whole number"))
                })?;
                rollout = rollout.variant(variant.trim(), weight);
            }
            let revision = client.set_rollout(&name, &rollout).await?;
            out.written(&name, revision, None)
        }
        FlagCommand::Eval { name, context } => {
            let context: Value = serde_json::from_str(&context)
                .map_err(|e| Invalid(format!("--context is not valid JSON: {e}")))?;
            if !context.is_object() {
                return Err(Invalid("--context must be a JSON object".into()).into());
            }
            let details = client
                .flags()?
                .details(&name, cfgd::flags::Json(Value::Null), &context);
            if details.error_code == Some(cfgd::flags::ErrorCode::FlagNotFound) {
                return Err(not_found(&name).into());
            }
            out.document(&serde_json::json!({
                "flag": details.flag_key,
                "value": details.value.0,
                "variant": details.variant,
                "reason": details.reason.as_str(),
                "error_code": details.error_code.map(|c| c.as_str()),
                "error_message": details.error_message,
            }))
        }
    }
}
