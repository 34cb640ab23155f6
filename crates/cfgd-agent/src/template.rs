//! One template's life: wait for quiet, render, apply the `missing`
//! policy and the secret rule, check the staged file, swap it in, act.
//! Each template follows the state on a task of its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use tokio::sync::{mpsc, watch};

use crate::exec::{self, Control, Environment};
use crate::ops::Ops;
use crate::render::{Body, Rendered};
use crate::settings::{Action, Format, Missing, Settings, Template, Wait};
use crate::state::Shared;
use crate::write::{self, Target};

/// A template ready to render: its body loaded, its owner resolved.
pub struct Prepared {
    pub index: usize,
    /// The destination, or `env (template N)` for an environment-only one.
    pub name: String,
    body: Body,
    destination: Option<Target>,
    /// Given in the settings; otherwise 0644, or 0600 with a secret.
    mode: Option<u32>,
    check: Option<String>,
    pub action: Action,
    wait: Wait,
    pub missing: Missing,
    allow_secret_mode: bool,
    command_timeout: Duration,
    /// An `env` render's variables go to the `exec` child.
    env: bool,
}

impl Prepared {
    pub fn all(settings: &Settings) -> Result<Vec<Prepared>> {
        settings
            .templates
            .iter()
            .enumerate()
            .map(|(index, t)| {
                Self::one(settings, index, t).map_err(|e| anyhow!("template {}: {e:#}", index + 1))
            })
            .collect()
    }

    fn one(settings: &Settings, index: usize, t: &Template) -> Result<Prepared> {
        let body = match (settings.source_path(t), &t.prefix, t.format) {
            (Some(path), _, _) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
                Body::template(&path.display().to_string(), text)?
            }
            (None, Some(prefix), Some(format)) => {
                cfgd::validate_prefix(prefix).map_err(|e| anyhow!("prefix {prefix:?}: {e}"))?;
                Body::Prefix {
                    prefix: prefix.clone(),
                    format,
                }
            }
            _ => unreachable!("checked with the settings"),
        };
        let destination = match &t.destination {
            Some(path) => Some(Target {
                path: path.clone(),
                mode: t.mode.unwrap_or(0o644),
                owner: t.owner.as_deref().map(write::uid).transpose()?,
                group: t.group.as_deref().map(write::gid).transpose()?,
                in_place: t.in_place,
            }),
            None => None,
        };
        Ok(Prepared {
            index,
            name: t
                .destination
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| format!("env (template {})", index + 1)),
            body,
            destination,
            mode: t.mode,
            check: t.check.clone(),
            action: t.action.clone(),
            wait: t.wait.unwrap_or(settings.wait),
            missing: t.missing,
            allow_secret_mode: t.allow_secret_mode,
            command_timeout: t.command_timeout,
            env: t.format == Some(Format::Env),
        })
    }
}

/// What every template shares.
#[derive(Clone)]
pub struct Context {
    pub ops: Arc<Ops>,
    pub namespace: String,
    /// The `exec` child, in exec mode.
    pub child: Option<mpsc::UnboundedSender<Control>>,
    pub env: Arc<EnvParts>,
    /// Off for `render --once`: what an action would reach is not running
    /// yet in an init container.
    pub actions: bool,
}

/// One `env` render's variables, in order.
type Vars = Vec<(String, String)>;

/// Each `env` template's variables, merged for the child.
pub struct EnvParts {
    parts: Mutex<Vec<Option<Vars>>>,
    merged: watch::Sender<Environment>,
}

impl EnvParts {
    pub fn new(templates: usize) -> Arc<EnvParts> {
        Arc::new(EnvParts {
            parts: Mutex::new(vec![None; templates]),
            merged: watch::channel(Environment::new()).0,
        })
    }

    pub fn receiver(&self) -> watch::Receiver<Environment> {
        self.merged.subscribe()
    }

    /// Sets one template's variables; whether the child's environment changed.
    fn set(&self, index: usize, vars: Vars) -> bool {
        let mut parts = self.parts.lock().unwrap();
        parts[index] = Some(vars);
        let merged: Environment = parts.iter().flatten().flatten().cloned().collect();
        self.merged.send_if_modified(|now| {
            let changed = *now != merged;
            *now = merged;
            changed
        })
    }
}

/// How one render went.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Wrote,
    Unchanged,
    Waiting(Vec<String>),
    Failed(String),
}

/// Follows the states for as long as the agent runs: each state the feed
/// publishes renders differently from the one before, so each is
/// rendered (after the quiet period).
pub async fn follow(p: Prepared, mut states: watch::Receiver<Option<Shared>>, cx: Context) {
    let mut waiting_logged = false;
    loop {
        let state = states.borrow_and_update().clone();
        if let Some(state) = state {
            match render_once(&p, &state, &cx).await {
                Outcome::Waiting(names) => {
                    if !waiting_logged {
                        tracing::info!(template = %p.name, missing = ?names, "waiting for names to appear");
                        waiting_logged = true;
                    }
                }
                _ => waiting_logged = false,
            }
        }
        if states.changed().await.is_err() {
            return;
        }
        quiesce(&p.wait, &mut states).await;
    }
}

/// Returns once changes have stopped for `min`, or `max` after the first.
async fn quiesce(wait: &Wait, states: &mut watch::Receiver<Option<Shared>>) {
    if wait.min.is_zero() {
        return;
    }
    let deadline = tokio::time::Instant::now() + wait.max();
    loop {
        let quiet = (tokio::time::Instant::now() + wait.min).min(deadline);
        tokio::select! {
            changed = states.changed() => {
                if changed.is_err() || tokio::time::Instant::now() >= deadline {
                    return;
                }
            }
            _ = tokio::time::sleep_until(quiet) => return,
        }
    }
}

/// One render of `p` from `state`, with its log line and its metrics.
pub async fn render_once(p: &Prepared, state: &Shared, cx: &Context) -> Outcome {
    let started = Instant::now();
    let mut render_ms = 0.0;
    let (reason, result) = attempt(p, state, cx, &mut render_ms).await;
    let took = started.elapsed().as_secs_f64() * 1000.0;
    match &result {
        Outcome::Wrote | Outcome::Unchanged => {
            let changed = result == Outcome::Wrote;
            cx.ops.rendered(p.index, changed);
            tracing::info!(template = %p.name, revision = state.revision, changed, ms = took, render_ms, "rendered");
        }
        Outcome::Waiting(names) => cx.ops.waiting(p.index, names.clone()),
        Outcome::Failed(error) => {
            cx.ops.failed(p.index, reason, error);
            tracing::error!(template = %p.name, revision = state.revision, reason, error = %error, "render failed; the old file stays");
        }
    }
    result
}

async fn attempt(
    p: &Prepared,
    state: &Shared,
    cx: &Context,
    render_ms: &mut f64,
) -> (&'static str, Outcome) {
    let started = Instant::now();
    let rendered = p.body.render(state, &cx.namespace);
    *render_ms = started.elapsed().as_secs_f64() * 1000.0;
    let rendered = match rendered {
        Ok(r) => r,
        Err(e) => return ("render", Outcome::Failed(format!("{e:#}"))),
    };
    if !rendered.missing.is_empty() {
        let names: Vec<String> = rendered.missing.iter().cloned().collect();
        match p.missing {
            Missing::Fail => {
                return (
                    "missing",
                    Outcome::Failed(format!("missing: {}", names.join(", "))),
                )
            }
            Missing::Wait => return ("missing", Outcome::Waiting(names)),
            Missing::Empty => {}
        }
    }
    if let Some(error) = rendered.error {
        return ("render", Outcome::Failed(error));
    }
    let changed_env = match (&rendered.env, p.env && cx.child.is_some()) {
        (Some(vars), true) => cx.env.set(p.index, vars.clone()),
        _ => false,
    };
    let wrote = match &p.destination {
        Some(target) => match place(p, target, &rendered, state).await {
            Ok(wrote) => wrote,
            Err((reason, e)) => return (reason, Outcome::Failed(e)),
        },
        None => changed_env,
    };
    if !wrote {
        return ("", Outcome::Unchanged);
    }
    if !cx.actions {
        return ("", Outcome::Wrote);
    }
    if let Err(e) = act(p, cx).await {
        // The file is in place; only its follow-up failed.
        let error = format!("{e:#}");
        tracing::error!(template = %p.name, error = %error, "the action failed");
        cx.ops.action_failed(p.index, &error);
    }
    ("", Outcome::Wrote)
}

/// The rendered file checked and in place; whether it changed.
async fn place(
    p: &Prepared,
    target: &Target,
    rendered: &Rendered,
    state: &Shared,
) -> Result<bool, (&'static str, String)> {
    let mut target = target.clone();
    if !rendered.secrets.is_empty() {
        let names: Vec<&str> = rendered.secrets.iter().map(String::as_str).collect();
        match p.mode {
            None => target.mode = 0o600,
            Some(mode) if mode & 0o077 != 0 && !p.allow_secret_mode => {
                return Err((
                    "secret_mode",
                    format!(
                        "renders the secret {} into mode {mode:04o}, which others can read: give mode = \"0600\" (or allow_secret_mode = true)",
                        names.join(", ")
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    let bytes = rendered.text.as_bytes();
    if write::unchanged(&target, bytes) {
        return Ok(false);
    }
    let staged = write::stage(&target, bytes).map_err(|e| ("write", format!("{e:#}")))?;
    if let Some(check) = &p.check {
        let path = staged.path().display().to_string();
        let command = check
            .replace("{{ staged }}", &crate::formats::env_quote(&path))
            .replace("{{staged}}", &crate::formats::env_quote(&path));
        exec::shell(&command, p.command_timeout)
            .await
            .map_err(|e| {
                // A check's output may quote the file, secrets and all.
                let said = redact(&format!("check failed: {e:#}"), state, &rendered.secrets);
                ("check", said)
            })?;
    }
    staged.commit().map_err(|e| ("write", format!("{e:#}")))?;
    Ok(true)
}

/// `text` with the text of each secret in `names` replaced.
fn redact(text: &str, state: &Shared, names: &std::collections::BTreeSet<String>) -> String {
    let mut text = text.to_owned();
    for name in names {
        if let Some(item) = state.values.get(name) {
            let plain = crate::formats::scalar_text(&item.value);
            if !plain.is_empty() {
                text = text.replace(&plain, cfgd::policy::REDACTED);
            }
        }
    }
    text
}

async fn act(p: &Prepared, cx: &Context) -> Result<()> {
    let asked = match &p.action {
        Action::None => return Ok(()),
        Action::Command(command) => {
            exec::shell(command, p.command_timeout).await?;
            None
        }
        Action::Signal {
            signal,
            pidfile: Some(pidfile),
        } => {
            let text = std::fs::read_to_string(pidfile)
                .map_err(|e| anyhow!("pidfile {}: {e}", pidfile.display()))?;
            let pid: i32 = text
                .trim()
                .parse()
                .map_err(|_| anyhow!("pidfile {} holds no pid", pidfile.display()))?;
            // SAFETY: kill(2) with a pid read from the configured pidfile.
            if unsafe { libc::kill(pid, signal.0) } != 0 {
                return Err(anyhow!(
                    "{signal} to pid {pid}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            None
        }
        Action::Signal {
            signal,
            pidfile: None,
        } => Some(Control::Signal(signal.0)),
        Action::Restart => Some(Control::Restart),
    };
    if let (Some(control), Some(child)) = (asked, &cx.child) {
        let _ = child.send(control);
    }
    cx.ops.acted(p.index);
    Ok(())
}
