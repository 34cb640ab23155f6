//! [`Settings`]: the agent's TOML file (`--config`), checked whole before
//! anything runs, so that a typo is one error line at start and not a
//! surprise at the first change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

/// Everything the agent is configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The cfgd server to read through (`http://cfgd:8080`); or give
    /// `endpoints` to read etcd directly.
    pub server: Option<String>,
    /// The bearer token for the server, in a file (a Kubernetes secret).
    pub token_file: Option<PathBuf>,
    /// etcd endpoints, for reading etcd directly through the library.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// etcd prefix above all namespaces.
    #[serde(default = "default_root")]
    pub root: String,
    /// etcd user, if etcd has auth on; the password in `etcd_password_file`.
    pub etcd_user: Option<String>,
    /// See `etcd_user`.
    pub etcd_password_file: Option<PathBuf>,
    /// TLS to etcd: the PEM CA of etcd's certificates.
    pub ca_file: Option<PathBuf>,
    /// The namespace rendered.
    pub namespace: String,
    /// The agent's labels, which choose the overlays it sees.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The last values read, for rendering while the source is down.
    pub snapshot: Option<PathBuf>,
    /// The key file that opens secrets (reading etcd directly), and seals
    /// them in the snapshot.
    pub secret_key_file: Option<PathBuf>,
    /// `/healthz`, `/readyz` and `/metrics` on this address.
    pub listen: Option<std::net::SocketAddr>,
    /// The quiescence every template gets unless it sets its own.
    #[serde(default)]
    pub wait: Wait,
    /// The child of `cfgd-agent exec`.
    #[serde(default)]
    pub exec: ExecSettings,
    /// One `[[template]]` per rendered file.
    #[serde(default, rename = "template")]
    pub templates: Vec<Template>,
    /// Where the file was read from: template sources are relative to it.
    #[serde(skip)]
    pub dir: PathBuf,
}

fn default_root() -> String {
    "/cfgd".into()
}

/// Render only once changes have stopped for `min`, but never later than
/// `max` after the first: a release of 100 keys is one render.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    #[serde(default, with = "duration")]
    pub min: Duration,
    #[serde(default, with = "duration::option")]
    pub max: Option<Duration>,
}

impl Default for Wait {
    fn default() -> Self {
        Wait {
            min: Duration::ZERO,
            max: None,
        }
    }
}

impl Wait {
    /// `max`, which defaults to four times `min` (as consul-template's does).
    pub fn max(&self) -> Duration {
        self.max.unwrap_or(self.min * 4)
    }
}

/// How `cfgd-agent exec` treats its child.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecSettings {
    /// The signal that stops the child for a restart or at shutdown.
    pub kill_signal: Signal,
    /// How long the child gets to exit after `kill_signal`, before SIGKILL.
    #[serde(with = "duration")]
    pub kill_timeout: Duration,
}

impl Default for ExecSettings {
    fn default() -> Self {
        ExecSettings {
            kill_signal: Signal(libc::SIGTERM),
            kill_timeout: Duration::from_secs(10),
        }
    }
}

/// A template: a minijinja `source`, or a `prefix` rendered in a `format`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// A minijinja template file (relative to the settings file).
    pub source: Option<PathBuf>,
    /// The names under this prefix, rendered as `format`.
    pub prefix: Option<String>,
    /// `json`, `yaml`, `toml`, `env` or `properties`, for `prefix`.
    pub format: Option<Format>,
    /// The file written. An `env` template of `exec` may have none: its
    /// variables go to the child's environment only.
    pub destination: Option<PathBuf>,
    /// Octal, as chmod takes it; `0644`, or `0600` for a file with a secret.
    #[serde(default, deserialize_with = "mode")]
    pub mode: Option<u32>,
    /// The file's owner and group, by name or number (the agent must be
    /// allowed to chown).
    pub owner: Option<String>,
    /// See `owner`.
    pub group: Option<String>,
    /// Write through the existing file (its inode), for a bind-mounted
    /// destination that a rename would detach. A reader may then see a
    /// partial file; the default rename never lets it.
    #[serde(default)]
    pub in_place: bool,
    /// A command run on the staged file before it replaces the old one;
    /// `{{ staged }}` names it. Non-zero keeps the old file.
    pub check: Option<String>,
    /// What follows a changed file.
    #[serde(default)]
    pub action: Action,
    /// Quiescence; the top-level `wait` unless given.
    pub wait: Option<Wait>,
    /// What a missing name does to the render.
    #[serde(default)]
    pub missing: Missing,
    /// Allow a secret into a file group or others can read.
    #[serde(default)]
    pub allow_secret_mode: bool,
    /// How long `check` and a command action may run.
    #[serde(default = "default_command_timeout", with = "duration")]
    pub command_timeout: Duration,
}

fn default_command_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The formats of a `prefix` template.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Yaml,
    Toml,
    Env,
    Properties,
}

/// What follows a changed file.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Action {
    #[default]
    None,
    /// Restart the `exec` child.
    Restart,
    /// A signal to the process in `pidfile`, or to the `exec` child
    /// without one.
    Signal {
        signal: Signal,
        pidfile: Option<PathBuf>,
    },
    /// A shell command.
    Command(String),
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum, whose one error ("did
        // not match any variant") would hide which field was wrong.
        struct Visit;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            signal: Option<Signal>,
            pidfile: Option<PathBuf>,
            command: Option<String>,
        }
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Action;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"none\", \"restart\", { signal = \"HUP\", pidfile = \"…\" } or { command = \"…\" }")
            }
            fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<Action, E> {
                match word {
                    "none" => Ok(Action::None),
                    "restart" => Ok(Action::Restart),
                    other => Err(E::custom(format!(
                        "action {other:?}: expected \"none\", \"restart\", {{ signal = \"HUP\", pidfile = \"…\" }} or {{ command = \"…\" }}"
                    ))),
                }
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<Action, M::Error> {
                use serde::de::Error;
                let table = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                match table {
                    Table { signal: Some(signal), pidfile, command: None } => Ok(Action::Signal { signal, pidfile }),
                    Table { signal: None, pidfile: None, command: Some(c) } => Ok(Action::Command(c)),
                    _ => Err(M::Error::custom(
                        "action: give either { signal = \"HUP\", pidfile = \"…\" } or { command = \"…\" }",
                    )),
                }
            }
        }
        d.deserialize_any(Visit)
    }
}

/// What a missing name does to a render.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// The render fails, naming every missing name; the old file stays.
    #[default]
    Fail,
    /// Not rendered until every name is there.
    Wait,
    /// Rendered with nothing in its place.
    Empty,
}

/// A signal by name (`HUP`, `SIGHUP`) or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(pub i32);

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("TERM", libc::SIGTERM),
    ("WINCH", libc::SIGWINCH),
];

impl std::str::FromStr for Signal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let name = s.trim().to_ascii_uppercase();
        let name = name.strip_prefix("SIG").unwrap_or(&name);
        if let Ok(n) = name.parse::<i32>() {
            return Ok(Signal(n));
        }
        SIGNALS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, n)| Signal(n))
            .ok_or_else(|| {
                let known: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
                format!("unknown signal {s:?} (known: {})", known.join(", "))
            })
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match SIGNALS.iter().find(|(_, n)| *n == self.0) {
            Some((name, _)) => write!(f, "SIG{name}"),
            None => write!(f, "signal {}", self.0),
        }
    }
}

fn mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let text = String::deserialize(d)?;
    let digits = text.strip_prefix("0o").unwrap_or(&text);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 => Ok(Some(m)),
        _ => Err(serde::de::Error::custom(format!(
            "mode {text:?}: expected octal such as \"0644\""
        ))),
    }
}

mod duration {
    use serde::Deserialize;
    use std::time::Duration;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "duration {text:?}: {e} (write it as \"500ms\", \"5s\" or \"1m\")"
            ))
        })
    }

    pub mod option {
        use std::time::Duration;
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// Which source the settings name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    Server(String),
    Etcd,
}

impl Settings {
    /// The settings in `path`, checked.
    pub fn load(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the settings file {}", path.display()))?;
        let mut settings: Settings = toml::from_str(&text)
            .map_err(|e| anyhow!("{}: {}", path.display(), one_line(&e.to_string())))?;
        settings.dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        settings
            .check()
            .with_context(|| format!("{}", path.display()))?;
        Ok(settings)
    }

    /// The source: the server, or etcd.
    pub fn source(&self) -> SourceKind {
        match &self.server {
            Some(url) => SourceKind::Server(url.clone()),
            None => SourceKind::Etcd,
        }
    }

    /// A template's source file, relative to the settings file.
    pub fn source_path(&self, template: &Template) -> Option<PathBuf> {
        template.source.as_ref().map(|p| self.dir.join(p))
    }

    fn check(&self) -> Result<()> {
        match (&self.server, self.endpoints.is_empty()) {
            (Some(_), false) => bail!("give either server or endpoints, not both"),
            (None, true) => {
                bail!("give server = \"http://cfgd:8080\" or endpoints = [\"http://etcd:2379\"]")
            }
            (Some(url), true) => {
                if !url.starts_with("http://") {
                    bail!("server {url:?}: only http:// is supported (put TLS in front, or read etcd directly)")
                }
            }
            (None, false) => {
                if self.token_file.is_some() {
                    bail!("token_file is for server; etcd takes etcd_user and etcd_password_file")
                }
            }
        }
        cfgd::validate_namespace(&self.namespace)
            .map_err(|e| anyhow!("namespace {:?}: {e}", self.namespace))?;
        if self.templates.is_empty() {
            bail!("no [[template]]: nothing to render");
        }
        let mut destinations = std::collections::BTreeSet::new();
        for (i, t) in self.templates.iter().enumerate() {
            let at = |what: String| anyhow!("template {}: {what}", i + 1);
            match (&t.source, &t.prefix, t.format) {
                (Some(_), None, None) => {}
                (None, Some(_), Some(_)) => {}
                (None, Some(_), None) => {
                    return Err(at(
                        "prefix needs a format (json, yaml, toml, env or properties)".into(),
                    ))
                }
                (Some(_), _, _) => {
                    return Err(at(
                        "give either source or prefix and format, not both".into()
                    ))
                }
                (None, None, _) => {
                    return Err(at(
                        "give source (a minijinja file) or prefix and format".into()
                    ))
                }
            }
            if let Some(source) = self.source_path(t) {
                if !source.is_file() {
                    return Err(at(format!("source {} is not a file", source.display())));
                }
            }
            match &t.destination {
                None if t.format != Some(Format::Env) => {
                    return Err(at(
                        "destination is missing (only an env template of exec may go without one)"
                            .into(),
                    ))
                }
                None => {}
                Some(d) => {
                    if !destinations.insert(d.clone()) {
                        return Err(at(format!(
                            "{} is the destination of another template too",
                            d.display()
                        )));
                    }
                    if d.file_name().is_none() {
                        return Err(at(format!("destination {} names no file", d.display())));
                    }
                }
            }
            if t.destination.is_none() && t.check.is_some() {
                return Err(at("check needs a destination".into()));
            }
            if let Some(w) = t.wait.unwrap_or(self.wait).max {
                if w < t.wait.unwrap_or(self.wait).min {
                    return Err(at("wait: max is shorter than min".into()));
                }
            }
        }
        Ok(())
    }
}

/// toml's errors span lines with a caret drawing; one line is enough here.
fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with('|') && !l.chars().all(|c| c == '^' || c == ' ')
        })
        .collect::<Vec<_>>()
        .join(": ")
}
