//! `schedule list|show|cancel` and `webhook add|list|show|rm|deliveries|
//! replay|test`: the elected cfgd server's work, as stored in etcd.

use std::time::Duration;

use crate::cli::{ScheduleCommand, WebhookCommand};
use crate::output::{Format, Printer};

/// `schedule list|show|cancel`.
pub(super) async fn exec(
    client: &cfgd::Client,
    command: ScheduleCommand,
    format: Option<Format>,
) -> anyhow::Result<()> {
    let out = Printer::new(format.unwrap_or(Format::Json));
    match command {
        ScheduleCommand::List => out.document(&serde_json::to_value(client.schedules().await?)?),
        ScheduleCommand::Show { id } => {
            out.document(&serde_json::to_value(client.schedule(&id).await?)?)
        }
        ScheduleCommand::Cancel { id } => {
            let schedule = client.cancel_schedule(&id).await?;
            eprintln!("schedule {id} cancelled");
            out.document(&serde_json::to_value(schedule)?)
        }
    }
}

/// Prints schedules just made, and says when they apply.
pub(super) fn made(out: &Printer, schedules: &[cfgd::schedules::Schedule]) -> anyhow::Result<()> {
    for schedule in schedules {
        let step = schedule
            .percent
            .map(|p| format!(" ({p}%)"))
            .unwrap_or_default();
        eprintln!(
            "schedule {}{step} applies at {}",
            schedule.id,
            cfgd::schedules::format_time(schedule.at_ms)
        );
    }
    out.document(&serde_json::to_value(schedules)?)
}

/// `webhook add|list|show|rm|deliveries|replay|test`.
pub(super) async fn webhook(
    client: &cfgd::Client,
    command: WebhookCommand,
    format: Option<Format>,
) -> anyhow::Result<()> {
    let out = Printer::new(format.unwrap_or(Format::Json));
    match command {
        WebhookCommand::Add {
            url,
            events,
            prefix,
            format,
            secret,
            allow_loopback,
        } => {
            let spec = cfgd::webhooks::WebhookSpec {
                url,
                events,
                prefix,
                format: format.parse()?,
                secret,
            };
            let (webhook, secret) = client.add_webhook(&spec, allow_loopback).await?;
            eprintln!(
                "webhook {} added; its signing secret is shown only now",
                webhook.id
            );
            out.document(
                &serde_json::json!({ "id": webhook.id, "secret": secret, "webhook": webhook }),
            )
        }
        WebhookCommand::List => out.document(&serde_json::to_value(client.webhooks().await?)?),
        WebhookCommand::Show { id } => {
            out.document(&serde_json::to_value(client.webhook(&id).await?)?)
        }
        WebhookCommand::Rm { id } => {
            client.remove_webhook(&id).await?;
            eprintln!("webhook {id} removed");
            Ok(())
        }
        WebhookCommand::Deliveries { id } => out.document(&serde_json::to_value(
            client.webhook_deliveries(&id).await?,
        )?),
        WebhookCommand::Replay { id, from } => {
            client.replay_webhook(&id, from).await?;
            eprintln!("webhook {id}: the elected cfgd server delivers again from revision {from}");
            Ok(())
        }
        WebhookCommand::Test { id } => {
            let attempt = client.test_webhook(&id, Duration::from_secs(10)).await?;
            let told = match (attempt.status, &attempt.error) {
                (Some(status), _) => format!("the receiver answered {status}"),
                (None, Some(error)) => format!("not delivered: {error}"),
                (None, None) => "not delivered".to_owned(),
            };
            eprintln!(
                "webhook {id}: test event sent by {}: {told} in {:.1} ms",
                attempt.replica, attempt.latency_ms
            );
            out.document(&serde_json::to_value(&attempt)?)?;
            if attempt.delivered() {
                Ok(())
            } else {
                Err(crate::exit::Invalid(format!("webhook {id}: {told}")).into())
            }
        }
    }
}
