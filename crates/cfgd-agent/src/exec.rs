//! `cfgd-agent exec -- CMD…`: the child runs with the rendered
//! environment; signals to the agent reach it; a change restarts or
//! signals it as the templates say; the agent exits with its code.

use std::collections::BTreeMap;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::settings::ExecSettings;

/// What a template asks of the child.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    Restart,
    Signal(i32),
}

/// The variables every `env` template gives the child, merged in
/// template order.
pub type Environment = BTreeMap<String, String>;

/// Runs `command` once `ready` says every template rendered, until it
/// exits on its own or by a signal the agent was sent; its exit code.
pub async fn supervise(
    command: Vec<String>,
    settings: ExecSettings,
    mut env: watch::Receiver<Environment>,
    mut ready: watch::Receiver<bool>,
    mut control: mpsc::UnboundedReceiver<Control>,
) -> Result<i32> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    tokio::select! {
        r = ready.wait_for(|r| *r) => { r.map_err(|_| anyhow!("the templates stopped"))?; }
        _ = term.recv() => return Ok(128 + libc::SIGTERM),
        _ = int.recv() => return Ok(128 + libc::SIGINT),
    }
    // What the first renders asked for is in the child's start already;
    // drained before the environment is read, so that nothing asked after
    // it is lost.
    while control.try_recv().is_ok() {}
    let mut child = spawn(&command, &env.borrow_and_update())?;
    loop {
        let forward = tokio::select! {
            status = child.wait() => return Ok(code(status?)),
            _ = term.recv() => libc::SIGTERM,
            _ = int.recv() => libc::SIGINT,
            _ = hup.recv() => libc::SIGHUP,
            _ = quit.recv() => libc::SIGQUIT,
            _ = usr1.recv() => libc::SIGUSR1,
            _ = usr2.recv() => libc::SIGUSR2,
            asked = control.recv() => match asked {
                Some(Control::Signal(s)) => s,
                Some(Control::Restart) => {
                    stop(&mut child, &settings).await?;
                    while control.try_recv().is_ok() {}
                    child = spawn(&command, &env.borrow_and_update())?;
                    tracing::info!(pid = child.id(), "restarted the child");
                    continue;
                }
                None => continue,
            },
        };
        send(&child, forward);
    }
}

fn spawn(command: &[String], env: &Environment) -> Result<Child> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| anyhow!("exec: give the command after --"))?;
    let child = Command::new(program)
        .args(args)
        .envs(env)
        .spawn()
        .with_context(|| format!("exec: cannot start {program}"))?;
    tracing::info!(pid = child.id(), command = %program, "started the child");
    Ok(child)
}

fn send(child: &Child, signal: i32) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid, which `wait` has not
        // reaped (its id is gone once it has).
        unsafe { libc::kill(pid as i32, signal) };
    }
}

/// The child stopped: `kill_signal`, then SIGKILL after `kill_timeout`.
async fn stop(child: &mut Child, settings: &ExecSettings) -> Result<()> {
    send(child, settings.kill_signal.0);
    match tokio::time::timeout(settings.kill_timeout, child.wait()).await {
        Ok(status) => {
            status?;
        }
        Err(_) => {
            tracing::warn!(after = ?settings.kill_timeout, "the child did not stop; killing it");
            child.kill().await?;
        }
    }
    Ok(())
}

/// A shell's way of saying how a process ended: its code, or 128 plus
/// the signal that ended it.
pub fn code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// A command run by `sh -c`, within `timeout`: its failure in one line.
pub async fn shell(command: &str, timeout: Duration) -> Result<()> {
    let child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {command:?}"))?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("{command:?} did not finish within {timeout:?}"))??;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said
        .lines()
        .chain(String::from_utf8_lossy(&out.stdout).lines())
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned();
    Err(anyhow!(
        "{command:?} exited with {}{}",
        code(out.status),
        if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        }
    ))
}
