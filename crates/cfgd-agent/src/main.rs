//! The `cfgd-agent` binary: arguments and logging, then
//! [`cfgd_agent::start`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use cfgd_agent::settings::Settings;
use cfgd_agent::Mode;

/// Renders a cfgd namespace into files and environment variables and keeps
/// them current: for nginx, a Java service's application.yml, a Python
/// worker's environment, any process that embeds nothing.
///
/// Exit codes: 0 done; 1 a render failed (render --once); 2 bad settings
/// or arguments; 3 nothing to render (source unreachable, no snapshot);
/// exec: the child's code.
#[derive(Parser)]
#[command(
    name = "cfgd-agent",
    version,
    after_help = "Settings: docs/agent.md. Example:\n  cfgd-agent --config /etc/cfgd-agent/agent.toml run"
)]
struct Cli {
    /// The settings file (TOML: the source, the namespace, one [[template]]
    /// per file).
    #[arg(
        long,
        short,
        env = "CFGD_AGENT_CONFIG",
        default_value = "/etc/cfgd-agent/agent.toml",
        global = true
    )]
    config: PathBuf,
    /// `json` (one line per event, the default) or `text`.
    #[arg(
        long,
        env = "CFGD_AGENT_LOG_FORMAT",
        default_value = "json",
        global = true
    )]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render, then re-render on every change until SIGTERM.
    Run,
    /// Run CMD with the rendered environment and files; signals to the
    /// agent reach it, and the agent exits with its code.
    Exec {
        /// The command and its arguments, after `--`.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Render every template once and exit (init containers, CI): non-zero,
    /// naming every missing name, when one could not be written.
    Render {
        /// Render once and exit (the only way `render` runs).
        #[arg(long, required = true)]
        once: bool,
        /// How long to wait for the source (and for names a template waits
        /// for).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Check the settings and the templates' syntax without reading any
    /// source.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(
            std::env::var("CFGD_AGENT_LOG")
                .ok()
                .and_then(|l| l.parse().ok())
                .unwrap_or(tracing::Level::INFO),
        );
    match cli.log_format.as_str() {
        "json" => builder.json().flatten_event(true).init(),
        "text" => builder.init(),
        other => {
            eprintln!("cfgd-agent: --log-format {other:?}: give json or text");
            return ExitCode::from(2);
        }
    }
    let settings = match Settings::load(&cli.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cfgd-agent: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mode = match cli.command {
        Command::Run => Mode::Run,
        Command::Exec { command } => Mode::Exec(command),
        Command::Render { timeout, .. } => Mode::Once { timeout },
        Command::Check => match cfgd_agent::check(&settings) {
            Ok(()) => {
                println!(
                    "{}: settings and {} template(s) are valid",
                    cli.config.display(),
                    settings.templates.len()
                );
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("cfgd-agent: {e:#}");
                return ExitCode::from(2);
            }
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(cfgd_agent::start(settings, mode)) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("cfgd-agent: {e:#}");
            ExitCode::from(2)
        }
    }
}
