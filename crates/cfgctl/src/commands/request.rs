//! `request`: change requests, from opening to merging.

use crate::cli::RequestCommand;
use crate::exit::Invalid;
use crate::input::read_value;
use crate::output::Format;
use crate::output::{self, diff_output, Printer};

/// `request create|list|show|approve|rebase|close|merge`.
pub(super) async fn exec(
    client: &cfgd::Client,
    command: RequestCommand,
    format: Option<Format>,
) -> anyhow::Result<()> {
    let out = Printer::new(format.unwrap_or(Format::Json));
    let done = |request: &cfgd::ChangeRequest, what: &str| {
        eprintln!("change request {} {what}", request.id);
        out.document(&serde_json::to_value(request)?)
    };
    match command {
        RequestCommand::Create { file, flags } => {
            let config = read_value(None, Some(file))?;
            let flags = flags.map(|f| read_value(None, Some(f))).transpose()?;
            let request = client.create_request(&config, flags.as_deref()).await?;
            done(&request, "opened")
        }
        RequestCommand::List { state, limit } => {
            let state = match state.as_str() {
                "all" => None,
                other => Some(
                    other
                        .parse::<cfgd::RequestState>()
                        .map_err(|e| Invalid(format!("--state: {e} (or all)")))?,
                ),
            };
            out.requests(&client.requests(state, limit).await?)
        }
        RequestCommand::Show { id } => {
            let review = client.review_request(&id).await?;
            let r = &review.request;
            match diff_output(format) {
                diff @ output::DiffPrinter::Text { .. } => {
                    let approvals: Vec<&str> =
                        r.approvals.iter().map(|a| a.actor.as_str()).collect();
                    println!(
                        "change request {} ({}) by {} via {}, approved by: {}",
                        r.id,
                        r.state.as_str(),
                        r.author,
                        r.via,
                        if approvals.is_empty() {
                            "nobody yet".to_owned()
                        } else {
                            approvals.join(", ")
                        }
                    );
                    if let Some(message) = &r.message {
                        println!("    {message}");
                    }
                    if let Some(release) = &r.release {
                        println!("merged as release {release}");
                    }
                    if !review.moved.is_empty() {
                        println!(
                            "changed since it was opened (rebase it): {}",
                            review.moved.join(", ")
                        );
                    }
                    diff.named(&review.changes)
                }
                output::DiffPrinter::Data(printer) => {
                    let mut body = serde_json::to_value(r)?;
                    body["changes"] = serde_json::to_value(&review.changes)?;
                    body["moved"] = serde_json::to_value(&review.moved)?;
                    printer.document(&body)
                }
            }
        }
        RequestCommand::Schedule { id, at } => {
            let at = cfgd::schedules::parse_time(&at, cfgd::schedules::now())?;
            super::schedule::made(&out, &[client.schedule_request(&id, at).await?])
        }
        RequestCommand::Approve { id } => done(&client.approve_request(&id).await?, "approved"),
        RequestCommand::Rebase { id } => done(&client.rebase_request(&id).await?, "rebased"),
        RequestCommand::Close { id } => done(&client.close_request(&id).await?, "closed"),
        RequestCommand::Merge { id } => {
            let release = client.merge_request(&id).await?;
            diff_output(format).named(&release.changes)?;
            eprintln!(
                "change request {id} merged as release {} at revision {}",
                release.id, release.revision
            );
            Ok(())
        }
    }
}
