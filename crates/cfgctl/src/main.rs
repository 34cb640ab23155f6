//! `cfgctl`: cfgd's configuration and feature flags from the terminal.
//! `main` parses the command line and runs the command; each command
//! group has its module under `commands/`, printing goes through `output`,
//! and `exit` maps failures to the exit codes `--help` documents.

mod cli;
mod commands;
mod connect;
mod exit;
mod input;
#[cfg(test)]
#[path = "../../../tests/common/kinds.rs"]
mod kinds;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // `diff --exit-code` found differences: already printed.
        Err(err) if err.downcast_ref::<exit::Differs>().is_some() => ExitCode::from(1),
        Err(err) => {
            output::error(&err);
            ExitCode::from(exit::code(&err))
        }
    }
}
