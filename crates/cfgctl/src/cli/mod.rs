//! The command line: every command, flag and its help, as clap parses it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::exit::EXIT_CODES;

mod groups;

use crate::output::Format;
pub(crate) use groups::*;

#[derive(Parser)]
#[command(
    name = "cfgctl",
    version,
    about = "Read and write cfgd configuration in etcd",
    long_about = "Read and write cfgd configuration in etcd.\n\n\
        Values are JSON, stored under /cfgd/<namespace>/config/<name>, so etcdctl \
        sees the same data.",
    after_help = EXIT_CODES,
)]
pub(crate) struct Cli {
    /// etcd endpoints, comma separated
    #[arg(
        long,
        env = "CFGCTL_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ',',
        global = true
    )]
    pub(crate) endpoints: Vec<String>,

    /// Namespace: an environment or an app (prod, user-service, ...)
    #[arg(
        short = 'n',
        long,
        env = "CFGCTL_NAMESPACE",
        default_value = "default",
        global = true
    )]
    pub(crate) namespace: String,

    /// etcd prefix above all namespaces
    #[arg(long, env = "CFGCTL_ROOT", default_value = cfgd::DEFAULT_ROOT, global = true)]
    pub(crate) root: String,

    /// etcd user name
    #[arg(long, env = "CFGCTL_USER", global = true)]
    pub(crate) user: Option<String>,

    /// etcd password (prefer the environment variable: arguments show in `ps`)
    #[arg(long, env = "CFGCTL_PASSWORD", hide_env_values = true, global = true)]
    pub(crate) password: Option<String>,

    /// TLS: PEM file of the CA that signs etcd's certificates (endpoints are then https://)
    #[arg(long, env = "CFGCTL_CACERT", value_name = "FILE", global = true)]
    pub(crate) cacert: Option<PathBuf>,

    /// TLS: PEM client certificate, for etcd's --client-cert-auth (with --key)
    #[arg(long, env = "CFGCTL_CERT", value_name = "FILE", global = true)]
    pub(crate) cert: Option<PathBuf>,

    /// TLS: PEM private key of --cert
    #[arg(long, env = "CFGCTL_KEY", value_name = "FILE", global = true)]
    pub(crate) key: Option<PathBuf>,

    /// Seal and open secrets (names the policy calls secrets) with the keys
    /// in this file; `cfgctl secret keygen` makes one
    #[arg(long, env = "CFGD_SECRET_KEY_FILE", value_name = "FILE", global = true)]
    pub(crate) secret_key_file: Option<PathBuf>,

    /// Why: kept with each write in the audit trail (`cfgctl log` shows it)
    #[arg(short = 'm', long, global = true, value_name = "TEXT")]
    pub(crate) message: Option<String>,

    /// Write past a guard rail: names the namespace policy protects (the
    /// audit record says forced), or, for `schema set`, stored values that
    /// fail the schema
    #[arg(long, global = true)]
    pub(crate) force: bool,

    /// Output format [default: json; for diffs, text]
    #[arg(short = 'o', long, value_enum, global = true)]
    pub(crate) output: Option<Format>,

    /// Give up connecting after this long (5s, 500ms, 1m)
    #[arg(long, value_parser = parse_duration, default_value = "5s", global = true)]
    pub(crate) connect_timeout: Duration,

    /// Give up on a request after this long
    #[arg(long, value_parser = parse_duration, default_value = "5s", global = true)]
    pub(crate) timeout: Duration,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Print a value
    #[command(after_help = "Examples:\n  cfgctl -n prod get database.config\n  \
        cfgctl get feature.limits --default '{\"max\":10}'\n  \
        cfgctl -n prod-eu get database.config --explain   # where each field came from")]
    Get {
        /// Name of the value, e.g. database.config or payments/limits
        name: String,
        /// JSON printed when the key does not exist (instead of exit code 3)
        #[arg(long, value_name = "JSON")]
        default: Option<String>,
        /// Print the value as it was at this etcd revision
        #[arg(long, value_name = "N")]
        revision: Option<i64>,
        /// Print name, revision and version along with the value
        #[arg(long)]
        entry: bool,
        /// In a namespace that extends others: each layer's value, and the
        /// namespace every field of the effective value came from
        #[arg(long, conflicts_with_all = ["revision", "entry", "own"])]
        explain: bool,
        /// Only this namespace's own layer, without what it inherits
        #[arg(long, conflicts_with = "revision")]
        own: bool,
        /// Read as a client with these labels (k=v,k=v): with the overlays they select
        #[arg(long, value_name = "K=V,K=V", conflicts_with_all = ["revision", "own", "explain"])]
        labels: Option<String>,
    },
    /// Store a JSON value
    #[command(
        after_help = "Examples:\n  cfgctl set database.config '{\"url\":\"postgres://db/app\",\"pool\":20}'\n  \
        cfgctl set database.config -f db.json\n  echo 42 | cfgctl set answer -\n  \
        cfgctl set greeting '\"hello\"'          # a JSON string needs its quotes\n  \
        cfgctl set counter 8 --if-revision 41   # only if nobody wrote since 41"
    )]
    Set {
        /// Name of the value
        name: String,
        /// The JSON value, or - to read it from standard input
        #[arg(value_name = "JSON", conflicts_with = "file")]
        value: Option<String>,
        /// Read the JSON value from this file (- for standard input)
        #[arg(short = 'f', long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Only write if the key is still at this revision (0: only if absent)
        #[arg(long, value_name = "N")]
        if_revision: Option<i64>,
    },
    /// Delete a value
    Delete {
        /// Name of the value
        name: String,
        /// Only delete if the key is still at this revision
        #[arg(long, value_name = "N")]
        if_revision: Option<i64>,
    },
    /// List values whose names start with PREFIX
    List {
        /// Name prefix, e.g. payments/ (all values when omitted)
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Show earlier values of a key, newest first
    History {
        /// Name of the value
        name: String,
        /// Show at most this many revisions
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Show each revision as what it changed from the one before
        #[arg(long)]
        diff: bool,
    },
    /// Show what differs, path by path: a file against the namespace (what
    /// `import` would change), or another namespace against this one
    #[command(after_help = "Examples:\n  \
        cfgctl -n prod diff release.json\n  \
        cfgctl -n staging diff --against prod payments/   # what promoting staging would change in prod\n\n\
        Lines: '+ /path: value' added, '- /path: value' removed, '~ /path: old → new' changed;\n\
        a whole name added or removed is one line at path /. -o json or -o yaml prints the same\n\
        as data: [{\"name\", \"differences\": [{\"op\", \"path\", ...}]}].")]
    Diff {
        /// Without --against: a JSON object of name → value (- for standard
        /// input). With --against: a name prefix (all names when omitted)
        target: Option<String>,
        /// The namespace to compare with: it is the "before" side, this
        /// namespace (-n) the "after" side
        #[arg(long, value_name = "NS")]
        against: Option<String>,
        /// Exit with 1 when something differs and 0 when nothing does, as
        /// `git diff --exit-code`
        #[arg(long)]
        exit_code: bool,
        /// With --against: compare the two namespaces' own layers, not
        /// their effective values (what each inherits left out)
        #[arg(long, requires = "against")]
        own: bool,
    },
    /// Write an earlier value again, as a new revision
    Rollback {
        /// Name of the value
        name: String,
        /// The revision whose value to restore (see `cfgctl history`)
        #[arg(long, value_name = "N")]
        to: i64,
    },
    /// Print one JSON line per change under PREFIX, until interrupted
    #[command(
        after_help = "Each line: {\"name\", \"kind\": \"put\"|\"delete\", \"value\", \"revision\", \"resync\"}.\n\
        resync is true for changes found after a reconnect or compaction rather than seen live.\n\
        Connection losses are reported on stderr; the watch resumes where it stopped."
    )]
    Watch {
        /// Name prefix (all values when omitted)
        #[arg(default_value = "")]
        prefix: String,
        /// Exit after this many changes
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Print values under PREFIX as one JSON object of name → value
    Export {
        /// Name prefix (all values when omitted)
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Write a JSON object of name → value (as `export` prints it)
    #[command(
        after_help = "Everything is validated before anything is written; only changed \
        names are written, in transactions of at most 128, each refused if a key moved since \
        it was read (exit code 4)."
    )]
    Import {
        /// The JSON file (- for standard input)
        file: PathBuf,
        /// Show what would change, write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Publish a document of name → value (and flags) as one release
    #[command(
        after_help = "Everything is checked first (names, JSON, schemas, flag definitions), \
        compared with what is stored, and only what differs is written: in one etcd transaction, \
        compare-and-set on every key, so watchers see it at one revision and a concurrent change \
        to any of its keys fails it whole (exit code 4). At most 127 changes: one transaction.\n\n\
        Example:\n  cfgctl -n prod apply release.json --flags flags.json -m 'raise limits for the sale'\n  \
        cfgctl -n prod-eu apply eu.json --with base=base.json --with prod=prod.json   # one release over a chain"
    )]
    Apply {
        /// A JSON object of name → value (- for standard input)
        file: PathBuf,
        /// A flagd document ({"flags": {...}}) to publish in the same release
        #[arg(long, value_name = "FILE", conflicts_with = "with")]
        flags: Option<PathBuf>,
        /// Also publish FILE to namespace NS, a layer of this one, in the
        /// same transaction (repeatable)
        #[arg(long = "with", value_name = "NS=FILE")]
        with: Vec<String>,
        /// Show what would change, write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Releases: list them, show one with its diff, revert one
    Release {
        #[command(subcommand)]
        command: ReleaseCommand,
    },
    /// Show the audit trail, newest first: who changed what, how, and why
    #[command(
        after_help = "Each record: revision, actor (token, etcd user or user@host), via \
        (library, cfgctl, http, console, schedule), action, the names with their revisions before, \
        the message.\nA change made without cfgd (etcdctl) shows with actor 'unattributed'.\n\n\
        Examples:\n  cfgctl -n prod log database. --limit 5 -o table\n  cfgctl -n prod log --actor alice"
    )]
    Log {
        /// Only writes that touched a name starting with PREFIX
        #[arg(default_value = "")]
        prefix: String,
        /// Only writes by this actor (`unattributed` for changes made without cfgd)
        #[arg(long)]
        actor: Option<String>,
        /// At most this many records
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// The namespace policy: protected names, approvals, secrets
    #[command(after_help = "The policy is one JSON object:\n  \
        {\"protected\": [\"payments/*\", \"flags/checkout\"], \"approvals\": 1, \"secrets\": [\"keys/*\"]}\n\
        protected: patterns (a name, or a prefix ending in *; flags as flags/NAME) that change only\n\
        through a change request, or a write with --force; approvals: how many people other than\n\
        the author approve a request before it merges (at least 1); secrets: patterns whose values\n\
        release and request diffs show as \"<redacted>\".\n\n\
        Example:\n  cfgctl -n prod policy set -f policy.json")]
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Namespace settings: what it extends, how fractional rollouts bucket
    #[command(
        after_help = "The settings are one JSON object at {root}/{namespace}/meta, every field optional:\n  \
        {\"extends\": [\"base\"], \"fractional\": \"v3\"}\n\
        extends: the namespaces it inherits values from, lowest first (see docs/layers.md).\n\
        fractional: how flagd's fractional operator buckets users in this namespace's own evaluations\n\
        (library, cfgctl flag eval, OFREP, flagd's gRPC evaluation): v2 (the default; flagd and the\n\
        Node flagd-core publish it) or v3 (flagd's hashing-consistency ADR; openfeature-flagd-core 2.x,\n\
        which the Python flagd provider uses in-process). See docs/flags.md.\n\n\
        Before `ns set --fractional` writes, it counts how many of 10,000 sample users change variant\n\
        in each fractional flag of the namespace, and writes only with --yes when any do.\n\n\
        Examples:\n  cfgctl ns get prod\n  cfgctl ns set prod --fractional v3 --yes"
    )]
    Ns {
        #[command(subcommand)]
        command: NsCommand,
    },
    /// Overlays for gray releases: values that clients with matching labels see
    #[command(
        after_help = "An overlay lies above the namespace's own layer for the clients whose labels its selector\n\
        matches (and, with --percent, whose `instance` label buckets into that share). Clients declare\n\
        labels: the library's labels(..), REST's X-Cfgd-Labels header.\n\n\
        Examples:\n  cfgctl -n prod overlay set canary --selector canary=true\n  \
        cfgctl -n prod overlay put canary limits '{\"max\": 50}'\n  \
        cfgctl -n prod overlay put canary legacy '{\"$cfgd.unset\": true}'   # a gray deletion\n  \
        cfgctl -n prod get limits --labels canary=true\n  \
        cfgctl -n prod overlay promote canary        # one release; then everyone sees it"
    )]
    Overlay {
        #[command(subcommand)]
        command: OverlayCommand,
    },
    /// Change requests (four-eyes): open, review, approve, merge
    #[command(
        after_help = "A request holds a changeset and the revisions it was based on. People other than\n\
        its author approve it; merging publishes it as one release, compare-and-set on those\n\
        revisions: if any name moved since, the merge is refused (exit 4) until it is rebased.\n\n\
        Example:\n  cfgctl -n prod request create limits.json -m 'raise limits for the sale'\n  \
        cfgctl -n prod request show 7\n  \
        CFGCTL_USER=bob CFGCTL_PASSWORD=… cfgctl -n prod request approve 7   # as another person\n  \
        cfgctl -n prod request merge 7"
    )]
    Request {
        #[command(subcommand)]
        command: RequestCommand,
    },
    /// Scheduled releases: list them, show one, cancel one (`release apply
    /// --at`, `request schedule` and `flag rollout --steps` make them)
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Webhooks: signed CloudEvents to a receiver on every change, sent by
    /// the elected cfgd server
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// JSON Schemas that values must pass before they are stored
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Feature flags (flagd's flag format): list, get, set, enable, disable, rollout, eval
    Flag {
        #[command(subcommand)]
        command: FlagCommand,
    },
    /// etcd users and roles for least privilege (run as etcd's root user)
    #[command(
        after_help = "roles NS makes three etcd roles and users for the namespace, and prints them with\n\
        the new users' passwords (shown once; a user that exists keeps its password):\n  \
        cfgd-NS-read    services: read config, flags, schemas and the policy; not the audit\n                  \
        trail, not another namespace\n  \
        cfgd-NS-write   people and tools: also write values, flags and change requests\n  \
        cfgd-NS-server  cfgd serve: the whole namespace (serving several namespaces, it\n                  \
        also needs read on the whole root, which its one watch then covers)\n\n\
        Example:\n  cfgctl --user root --password \"$ROOT_PW\" admin roles prod"
    )]
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Secret keys: make one, rotate the namespace's secrets to a new one
    #[command(
        after_help = "Names the policy lists under \"secrets\" are stored encrypted (XChaCha20-Poly1305)\n\
        under the first key of --secret-key-file; reads open them with any key of the file.\n\n\
        Examples:\n  cfgctl secret keygen > /etc/cfgd/secret.key\n  \
        cfgctl -n prod --secret-key-file old.key secret rotate --new-key new.key"
    )]
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Print a shell completion script
    #[command(after_help = "Example:\n  cfgctl completions bash > /etc/bash_completion.d/cfgctl")]
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

/// `5s`, `500ms`, `2m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 5s or 500ms"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
