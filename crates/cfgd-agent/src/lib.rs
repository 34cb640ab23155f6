//! `cfgd-agent`: a cfgd namespace rendered into files and environment
//! variables, kept current, for processes that embed nothing.
//!
//! The binary is `main.rs` over [`start`]; the guide is
//! `docs/agent.md`. Layers, lowest first: [`settings`] ← `state` ←
//! `source` (server or etcd) ← `formats`, `render` ← `write` ← `exec`,
//! `ops` ← `template` ← here.

pub mod settings;

mod exec;
mod formats;
mod ops;
mod render;
mod source;
mod state;
mod template;
mod write;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use settings::{Action, Missing, Settings, SourceKind};
use source::{Feed, SourceStatus};
use template::{Context, EnvParts, Outcome, Prepared};

/// How the agent runs.
pub enum Mode {
    /// A daemon: renders until SIGTERM or SIGINT.
    Run,
    /// Runs the command with the rendered environment and files.
    Exec(Vec<String>),
    /// Renders every template once and exits: 0 when all were written.
    Once { timeout: Duration },
}

/// The exit code when a render fails (`render --once`).
pub const EXIT_RENDER: i32 = 1;
/// The exit code when the source gave nothing to render.
pub const EXIT_SOURCE: i32 = 3;

/// The settings' templates loaded and parsed, their owners resolved, and
/// the source's settings checked, without reading any source.
pub fn check(settings: &Settings) -> Result<()> {
    Prepared::all(settings)?;
    match settings.source() {
        SourceKind::Server(_) => source::server::server(settings, false).map(drop),
        SourceKind::Etcd => source::etcd::builder(settings).map(drop),
    }
}

/// Runs the agent; its exit code.
pub async fn start(settings: Settings, mode: Mode) -> Result<i32> {
    let templates = Prepared::all(&settings)?;
    if !matches!(mode, Mode::Exec(_)) {
        if let Some(t) = settings
            .templates
            .iter()
            .position(|t| t.destination.is_none())
        {
            bail!("template {}: an env template without a destination gives its variables to the child of cfgd-agent exec only; give a destination, or run exec", t + 1);
        }
        for t in &templates {
            if matches!(
                t.action,
                Action::Restart | Action::Signal { pidfile: None, .. }
            ) {
                bail!("template {}: that action acts on the child of cfgd-agent exec; give a pidfile, or run exec", t.index + 1);
            }
        }
    }
    let keyring = match &settings.secret_key_file {
        Some(path) => Some(Arc::new(
            cfgd::secret::Keyring::load(path).map_err(|e| anyhow!("{e}"))?,
        )),
        None => None,
    };
    let feed = Feed::new(&settings.namespace, settings.snapshot.clone(), keyring);
    let kind = match settings.source() {
        SourceKind::Server(_) => {
            let server = source::server::server(&settings, true)?;
            tokio::spawn(source::server::follow(
                server,
                settings.namespace.clone(),
                feed.clone(),
            ));
            "server"
        }
        SourceKind::Etcd => {
            let builder = source::etcd::builder(&settings)?;
            tokio::spawn(source::etcd::follow(builder, feed.clone()));
            "etcd"
        }
    };
    if !matches!(mode, Mode::Once { .. }) {
        feed.keep_snapshot();
    }
    let ops = ops::Ops::new(
        templates.iter().map(|t| t.name.clone()).collect(),
        kind,
        feed.clone(),
    );
    if let Some(address) = settings.listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| anyhow!("listen {address}: {e}"))?;
        tracing::info!(address = %listener.local_addr()?, "serving /healthz, /readyz, /status and /metrics");
        tokio::spawn(ops::serve(listener, ops.clone()));
    }
    let env = EnvParts::new(templates.len());
    let mut context = Context {
        ops: ops.clone(),
        namespace: settings.namespace.clone(),
        child: None,
        env: env.clone(),
        actions: !matches!(mode, Mode::Once { .. }),
    };
    match mode {
        Mode::Once { timeout } => once(templates, &feed, &context, timeout).await,
        Mode::Run => {
            for t in templates {
                tokio::spawn(template::follow(t, feed.states(), context.clone()));
            }
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stopping: the files stay as they are");
            Ok(0)
        }
        Mode::Exec(command) => {
            let (tx, rx) = mpsc::unbounded_channel();
            context.child = Some(tx);
            for t in templates {
                tokio::spawn(template::follow(t, feed.states(), context.clone()));
            }
            let code = exec::supervise(
                command,
                settings.exec.clone(),
                env.receiver(),
                ops.ready_signal(),
                rx,
            )
            .await?;
            tracing::info!(code, "the child exited");
            Ok(code)
        }
    }
}

/// `render --once`: every template from the first state (the source's,
/// or the snapshot's while the source is unreachable).
async fn once(
    templates: Vec<Prepared>,
    feed: &Feed,
    cx: &Context,
    timeout: Duration,
) -> Result<i32> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut states = feed.states();
    let mut statuses = feed.statuses();
    loop {
        let usable = match &*statuses.borrow_and_update() {
            SourceStatus::Live { .. } => true,
            SourceStatus::Unreachable { from_snapshot, .. } => *from_snapshot,
            SourceStatus::Starting => false,
        };
        if usable && states.borrow().is_some() {
            break;
        }
        tokio::select! {
            _ = statuses.changed() => {}
            _ = states.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {
                let why = match feed.status() {
                    SourceStatus::Unreachable { reason, .. } => reason,
                    _ => "no answer".into(),
                };
                eprintln!("cfgd-agent: nothing to render within {timeout:?}: {why} (and no snapshot to render from)");
                return Ok(EXIT_SOURCE);
            }
        }
    }
    let mut failed = 0;
    for t in &templates {
        loop {
            let state = states.borrow_and_update().clone().expect("checked above");
            match template::render_once(t, &state, cx).await {
                Outcome::Wrote | Outcome::Unchanged => break,
                Outcome::Waiting(names) if t.missing == Missing::Wait => {
                    tokio::select! {
                        _ = states.changed() => continue,
                        _ = tokio::time::sleep_until(deadline) => {
                            eprintln!("cfgd-agent: {}: still missing after {timeout:?}: {}", t.name, names.join(", "));
                            failed += 1;
                            break;
                        }
                    }
                }
                Outcome::Waiting(_) => unreachable!("only the wait policy waits"),
                Outcome::Failed(error) => {
                    eprintln!("cfgd-agent: {}: {error}", t.name);
                    failed += 1;
                    break;
                }
            }
        }
    }
    Ok(if failed == 0 { 0 } else { EXIT_RENDER })
}
