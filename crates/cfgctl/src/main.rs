//! `cfgctl`: read and write cfgd configuration in etcd from a terminal or a script.

mod output;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use serde_json::Value;

use crate::output::{Format, Printer};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other error
  2  usage error or invalid input (bad flag, name, JSON or size)
  3  not found
  4  conflict (--if-revision did not match; a key moved under a release or request)
  5  etcd unreachable or not answering in time
  6  refused by the namespace policy (a protected name without --force, approving
     your own request, a request not open or short of approvals)
  7  a secret this client cannot open or seal (no --secret-key-file, or not its key)";

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
struct Cli {
    /// etcd endpoints, comma separated
    #[arg(
        long,
        env = "CFGCTL_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ',',
        global = true
    )]
    endpoints: Vec<String>,

    /// Namespace: an environment or an app (prod, user-service, ...)
    #[arg(
        short = 'n',
        long,
        env = "CFGCTL_NAMESPACE",
        default_value = "default",
        global = true
    )]
    namespace: String,

    /// etcd prefix above all namespaces
    #[arg(long, env = "CFGCTL_ROOT", default_value = cfgd::DEFAULT_ROOT, global = true)]
    root: String,

    /// etcd user name
    #[arg(long, env = "CFGCTL_USER", global = true)]
    user: Option<String>,

    /// etcd password (prefer the environment variable: arguments show in `ps`)
    #[arg(long, env = "CFGCTL_PASSWORD", hide_env_values = true, global = true)]
    password: Option<String>,

    /// TLS: PEM file of the CA that signs etcd's certificates (endpoints are then https://)
    #[arg(long, env = "CFGCTL_CACERT", value_name = "FILE", global = true)]
    cacert: Option<PathBuf>,

    /// TLS: PEM client certificate, for etcd's --client-cert-auth (with --key)
    #[arg(long, env = "CFGCTL_CERT", value_name = "FILE", global = true)]
    cert: Option<PathBuf>,

    /// TLS: PEM private key of --cert
    #[arg(long, env = "CFGCTL_KEY", value_name = "FILE", global = true)]
    key: Option<PathBuf>,

    /// Seal and open secrets (names the policy calls secrets) with the keys
    /// in this file; `cfgctl secret keygen` makes one
    #[arg(long, env = "CFGD_SECRET_KEY_FILE", value_name = "FILE", global = true)]
    secret_key_file: Option<PathBuf>,

    /// Why: kept with each write in the audit trail (`cfgctl log` shows it)
    #[arg(short = 'm', long, global = true, value_name = "TEXT")]
    message: Option<String>,

    /// Write past a guard rail: names the namespace policy protects (the
    /// audit record says forced), or, for `schema set`, stored values that
    /// fail the schema
    #[arg(long, global = true)]
    force: bool,

    /// Output format [default: json; for diffs, text]
    #[arg(short = 'o', long, value_enum, global = true)]
    output: Option<Format>,

    /// Give up connecting after this long (5s, 500ms, 1m)
    #[arg(long, value_parser = parse_duration, default_value = "5s", global = true)]
    connect_timeout: Duration,

    /// Give up on a request after this long
    #[arg(long, value_parser = parse_duration, default_value = "5s", global = true)]
    timeout: Duration,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a value
    #[command(after_help = "Examples:\n  cfgctl -n prod get database.config\n  \
        cfgctl get feature.limits --default '{\"max\":10}'")]
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
        Example:\n  cfgctl -n prod apply release.json --flags flags.json -m 'raise limits for the sale'"
    )]
    Apply {
        /// A JSON object of name → value (- for standard input)
        file: PathBuf,
        /// A flagd document ({"flags": {...}}) to publish in the same release
        #[arg(long, value_name = "FILE")]
        flags: Option<PathBuf>,
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
        (library, cfgctl, http, console), action, the names with their revisions before, \
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

#[derive(Subcommand)]
enum ReleaseCommand {
    /// Releases and reverts, newest first
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One release: its record, and what it changed
    Show { id: String },
    /// Restore every key of a release to its value before it, as a new
    /// release (refused if any of them changed since)
    Revert { id: String },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Print the policy (the default when none is stored)
    Get,
    /// Store the policy, after checking it
    Set {
        /// The policy (- for standard input)
        #[arg(short = 'f', long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete the policy: nothing is protected any more
    Delete,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Make the etcd roles and users of a namespace, and print them
    Roles {
        /// The namespace [default: -n]
        namespace: Option<String>,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Print a new random key file
    Keygen,
    /// Seal every secret of the namespace under the first key of --new-key,
    /// compare-and-set on each; run it again to finish an interrupted one.
    /// Give the key the secrets are under now with --secret-key-file
    Rotate {
        /// The new key file; its key seals, both open meanwhile
        #[arg(long, value_name = "FILE")]
        new_key: PathBuf,
    },
}

#[derive(Subcommand)]
enum RequestCommand {
    /// Open a request for a document of name → value (and flags); -m says why
    Create {
        /// A JSON object of name → value (- for standard input)
        file: PathBuf,
        /// A flagd document ({"flags": {...}}) to change in the same request
        #[arg(long, value_name = "FILE")]
        flags: Option<PathBuf>,
    },
    /// Requests, newest first
    List {
        /// open, merged, closed or all
        #[arg(long, default_value = "open")]
        state: String,
        /// At most this many requests
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One request, and what merging it would change now
    Show { id: String },
    /// Approve a request (not your own)
    Approve { id: String },
    /// Publish an approved request as one release
    Merge { id: String },
    /// Base a request on what is stored now (its approvals are dropped)
    Rebase { id: String },
    /// Close a request without merging it
    Close { id: String },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Store the JSON Schema (draft 2020-12) that values matching PATTERN must pass
    #[command(
        after_help = "PATTERN is a name (database.config) or a prefix ending in * \
        (payments/*, feature.*, * for every name); the most specific pattern governs a name.\n\
        Refused when values already stored that it would govern fail it, unless --force.\n\n\
        Example:\n  cfgctl -n prod schema set 'database.*' -f database.schema.json"
    )]
    Set {
        pattern: String,
        /// The schema (- for standard input)
        #[arg(short = 'f', long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the schema stored for PATTERN
    Get { pattern: String },
    /// Print every schema, as an object of pattern → schema
    List,
    /// Delete the schema for PATTERN
    Delete { pattern: String },
}

#[derive(Subcommand)]
enum FlagCommand {
    /// Print every flag definition
    List,
    /// Print one flag definition
    Get {
        /// Flag name, e.g. new-checkout
        name: String,
    },
    /// Store a flag definition from a file (- for standard input), after checking it
    #[command(
        after_help = "Example:\n  cfgctl flag set new-checkout -f new-checkout.json\n\n\
        The file holds one flagd flag: {\"state\", \"variants\", \"defaultVariant\", \"targeting\", \"metadata\"}."
    )]
    Set {
        name: String,
        /// The definition file
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
        /// Only if the flag is still at this revision (0: only if absent)
        #[arg(long, value_name = "N")]
        if_revision: Option<i64>,
    },
    /// Set state to ENABLED
    Enable { name: String },
    /// Set state to DISABLED (evaluations then give the caller's default)
    Disable { name: String },
    /// Replace the targeting with a percentage split over the targeting key
    #[command(after_help = "Example:\n  cfgctl flag rollout new-checkout --variant on=25,off=75")]
    Rollout {
        name: String,
        /// VARIANT=WEIGHT pairs, comma separated
        #[arg(
            long = "variant",
            value_delimiter = ',',
            required = true,
            value_name = "V=W"
        )]
        variants: Vec<String>,
    },
    /// Print every flag and the shared evaluators as one flagd document
    Export,
    /// Load a flagd document ({"flags": {...}, "$evaluators": {...}}), checked whole first
    #[command(
        after_help = "Every flag is checked before anything is written; only flags that differ are \
        written, in transactions of at most 128, each refused if a flag moved since it was read \
        (exit code 4). Flags the document does not name are kept."
    )]
    Import {
        /// The flagd JSON file (- for standard input)
        file: PathBuf,
        /// Show what would change, write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Evaluate a flag as a service would, and print value, variant and reason
    #[command(
        after_help = "Example:\n  cfgctl flag eval new-checkout --context '{\"targetingKey\":\"u1\"}'"
    )]
    Eval {
        name: String,
        /// Evaluation context as a JSON object
        #[arg(long, default_value = "{}")]
        context: String,
    },
}

/// A mistake in what the user typed (not a failure of etcd): exit code 2.
#[derive(Debug)]
struct Invalid(String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// `diff --exit-code` found something: exit 1, with nothing more to say.
#[derive(Debug)]
struct Differs;

impl std::fmt::Display for Differs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the two sides differ")
    }
}

impl std::error::Error for Differs {}

/// Diffs print as text for people (the default, and `-o table`) unless
/// `-o json` or `-o yaml` asks for data.
fn diff_output(format: Option<Format>) -> output::DiffPrinter {
    match format {
        None | Some(Format::Table) => output::DiffPrinter::text(),
        Some(format) => output::DiffPrinter::data(Printer::new(format)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // `diff --exit-code` found differences: already printed.
        Err(err) if err.downcast_ref::<Differs>().is_some() => ExitCode::from(1),
        Err(err) => {
            match err.downcast_ref::<cfgd::Error>() {
                // One line per failure, each naming the pointer and rule.
                Some(cfgd::Error::SchemaViolation {
                    key,
                    pattern,
                    failures,
                }) => {
                    eprintln!("cfgctl: {key}: does not match schema {pattern:?}:");
                    for failure in failures {
                        eprintln!("  {failure}");
                    }
                }
                // `{:#}` keeps the context chain on the one line scripts grep.
                _ => eprintln!("cfgctl: {err:#}{}", hint(&err)),
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

/// The flags that supply a setting the library says is missing.
fn hint(err: &anyhow::Error) -> &'static str {
    match err.downcast_ref::<cfgd::Error>() {
        Some(cfgd::Error::Tls {
            needs: Some(cfgd::TlsSetting::CaFile),
            ..
        }) => " (--cacert)",
        Some(cfgd::Error::Tls {
            needs: Some(cfgd::TlsSetting::ClientCert),
            ..
        }) => " (--cert and --key)",
        Some(cfgd::Error::Protected { .. }) => " (cfgctl request create FILE, or --force)",
        _ => "",
    }
}

fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<Invalid>().is_some() {
        return 2;
    }
    if err.downcast_ref::<Differs>().is_some() {
        return 1;
    }
    match err.downcast_ref::<cfgd::Error>() {
        Some(cfgd::Error::NotFound { .. }) => 3,
        Some(
            cfgd::Error::Conflict { .. }
            | cfgd::Error::ReleaseMoved { .. }
            | cfgd::Error::RequestMoved { .. },
        ) => 4,
        Some(
            cfgd::Error::Protected { .. }
            | cfgd::Error::SelfApproval { .. }
            | cfgd::Error::RequestState { .. },
        ) => 6,
        Some(cfgd::Error::Secret { .. }) => 7,
        Some(e) if e.is_unreachable() => 5,
        Some(e) if e.is_invalid_input() => 2,
        _ => 1,
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Printer::new(cli.output.unwrap_or(Format::Json));
    if let Command::Completions { shell } = cli.command {
        let mut cmd = Cli::command();
        clap_complete::generate(shell, &mut cmd, "cfgctl", &mut std::io::stdout());
        return Ok(());
    }
    if let Command::Secret {
        command: SecretCommand::Keygen,
    } = cli.command
    {
        print!("{}", cfgd::secret::Keyring::generate());
        return Ok(());
    }
    let namespace = match &cli.command {
        Command::Admin {
            command: AdminCommand::Roles { namespace },
        } => namespace.as_deref(),
        _ => None,
    };
    let client = connect(&cli, namespace).await?;
    // `diff --against NS` reads a second namespace, over the same settings.
    let against = match &cli.command {
        Command::Diff {
            against: Some(namespace),
            ..
        } => Some(connect(&cli, Some(namespace)).await?),
        _ => None,
    };
    match cli.command {
        Command::Get {
            name,
            default,
            revision,
            entry,
        } => {
            let default = default.map(|d| parse_json("--default", &d)).transpose()?;
            let found = match revision {
                Some(r) => client.get_entry_at::<Value>(&name, r).await?,
                None => client.get_entry::<Value>(&name).await?,
            };
            match (found, default) {
                (Some(e), _) if entry || out.is_table() => out.entry(&e),
                (Some(e), _) => out.value(&e.value),
                (None, Some(default)) => out.value(&default),
                (None, None) => Err(cfgd::Error::NotFound {
                    key: client.etcd_key(&name)?,
                    revision,
                }
                .into()),
            }
        }
        Command::Set {
            name,
            value,
            file,
            if_revision,
        } => {
            let text = read_value(value, file)?;
            let written = match if_revision {
                Some(expected) => client.set_json_if(&name, &text, expected).await,
                None => client.set_json(&name, &text).await,
            };
            match written {
                Ok(revision) => out.written(&name, revision, None),
                Err(e @ cfgd::Error::InvalidJson { .. }) if looks_like_bare_string(&text) => {
                    let quoted = serde_json::to_string(text.trim())?;
                    Err(Invalid(format!("{e} (to store a string, quote it: '{quoted}')")).into())
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Delete { name, if_revision } => {
            let revision = match if_revision {
                Some(expected) => client.delete_if(&name, expected).await?,
                None => client
                    .delete(&name)
                    .await?
                    .ok_or_else(|| cfgd::Error::NotFound {
                        key: client.etcd_key(&name).unwrap_or_default(),
                        revision: None,
                    })?,
            };
            out.written(&name, revision, None)
        }
        Command::List { prefix } => out.entries(&client.list::<Value>(&prefix).await?),
        Command::History {
            name,
            limit,
            diff: true,
        } => {
            let history = client.history_diff(&name, limit).await?;
            if history.is_empty() {
                return Err(cfgd::Error::NotFound {
                    key: client.etcd_key(&name)?,
                    revision: None,
                }
                .into());
            }
            diff_output(cli.output).history(&history)
        }
        Command::History { name, limit, .. } => {
            let history = client.history(&name, limit).await?;
            if history.is_empty() {
                return Err(cfgd::Error::NotFound {
                    key: client.etcd_key(&name)?,
                    revision: None,
                }
                .into());
            }
            out.history(&history)
        }
        Command::Rollback { name, to } => {
            let revision = client.rollback(&name, to).await?;
            out.written(&name, revision, Some(to))
        }
        Command::Watch { prefix, count } => watch(&client, &prefix, count).await,
        Command::Export { prefix } => out.document(&client.export(&prefix).await?),
        Command::Import { file, dry_run } => {
            let text = read_value(None, Some(file))?;
            let report = client.import(&text, dry_run).await?;
            out.import(&report, dry_run)
        }
        Command::Diff {
            target, exit_code, ..
        } => {
            let differences = match against {
                Some(other) => {
                    client
                        .diff_namespace(&other, target.as_deref().unwrap_or(""))
                        .await?
                }
                None => {
                    let file = target
                        .ok_or_else(|| Invalid("diff needs a FILE, or --against NS".into()))?;
                    let text = read_value(None, Some(PathBuf::from(file)))?;
                    client.diff_document(&text).await?
                }
            };
            diff_output(cli.output).named(&differences)?;
            if exit_code && !differences.is_empty() {
                return Err(Differs.into());
            }
            Ok(())
        }
        Command::Log {
            prefix,
            actor,
            limit,
        } => out.audit(&client.audit_log(&prefix, actor.as_deref(), limit).await?),
        Command::Apply {
            file,
            flags,
            dry_run,
        } => {
            let config = read_value(None, Some(file))?;
            let flags = flags.map(|f| read_value(None, Some(f))).transpose()?;
            let (plan, release) = client.apply(&config, flags.as_deref(), dry_run).await?;
            let diff = diff_output(cli.output);
            match (&release, &diff) {
                (Some(release), output::DiffPrinter::Text { .. }) => {
                    diff.named(&release.changes)?;
                    eprintln!("release {} at revision {}", release.id, release.revision);
                    Ok(())
                }
                (Some(release), output::DiffPrinter::Data(printer)) => printer.document(
                    &serde_json::json!({"id": release.id, "revision": release.revision, "changes": release.changes}),
                ),
                (None, _) => {
                    diff.named(&plan.changes)?;
                    if !dry_run {
                        eprintln!("nothing differs; nothing written");
                    }
                    Ok(())
                }
            }
        }
        Command::Release { command } => match command {
            ReleaseCommand::List { limit } => out.audit(&client.releases(limit).await?),
            ReleaseCommand::Show { id } => {
                let (record, changes) = client.release(&id).await?;
                match diff_output(cli.output) {
                    diff @ output::DiffPrinter::Text { .. } => {
                        let who = format!("{} via {}", record.actor, record.via);
                        println!(
                            "release {} at revision {} by {who}",
                            record.id, record.revision
                        );
                        if let Some(message) = &record.message {
                            println!("    {message}");
                        }
                        diff.named(&changes)
                    }
                    output::DiffPrinter::Data(printer) => {
                        let mut record_json = serde_json::to_value(&record)?;
                        record_json["changes"] = serde_json::to_value(&changes)?;
                        printer.document(&record_json)
                    }
                }
            }
            ReleaseCommand::Revert { id } => {
                let release = client.revert_release(&id).await?;
                diff_output(cli.output).named(&release.changes)?;
                eprintln!(
                    "release {} at revision {} reverts {id}",
                    release.id, release.revision
                );
                Ok(())
            }
        },
        Command::Policy { command } => policy(&client, command, &out).await,
        Command::Secret {
            command: SecretCommand::Rotate { .. },
        } => {
            let report = client
                .reseal_secrets(|name| println!("resealed {name}"))
                .await?;
            eprintln!(
                "{} resealed, {} already under the new key",
                report.resealed.len(),
                report.current.len()
            );
            Ok(())
        }
        Command::Secret {
            command: SecretCommand::Keygen,
        } => unreachable!("handled before connecting"),
        Command::Admin {
            command: AdminCommand::Roles { .. },
        } => out.value(&serde_json::to_value(client.create_roles().await?)?),
        Command::Request { command } => request(&client, command, cli.output).await,
        Command::Schema { command } => schema(&client, command, cli.force, &out).await,
        Command::Flag { command } => flag(&client, command, &out).await,
        Command::Completions { .. } => unreachable!("handled before connecting"),
    }
}

async fn policy(
    client: &cfgd::Client,
    command: PolicyCommand,
    out: &Printer,
) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Get => out.document(&serde_json::to_value(client.policy().await?)?),
        PolicyCommand::Set { file } => {
            let text = read_value(None, Some(file))?;
            let revision = client.set_policy_json(&text).await?;
            out.written("policy", revision, None)
        }
        PolicyCommand::Delete => {
            let revision = client
                .delete_policy()
                .await?
                .ok_or_else(|| Invalid("no policy is stored".into()))?;
            out.written("policy", revision, None)
        }
    }
}

async fn request(
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
                "open" => Some(cfgd::RequestState::Open),
                "merged" => Some(cfgd::RequestState::Merged),
                "closed" => Some(cfgd::RequestState::Closed),
                other => {
                    return Err(Invalid(format!(
                        "--state must be open, merged, closed or all, not {other:?}"
                    ))
                    .into())
                }
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

async fn schema(
    client: &cfgd::Client,
    command: SchemaCommand,
    force: bool,
    out: &Printer,
) -> anyhow::Result<()> {
    let not_found = |pattern: &str| cfgd::Error::NotFound {
        key: client
            .schema_etcd_key(pattern)
            .unwrap_or_else(|_| pattern.to_owned()),
        revision: None,
    };
    match command {
        SchemaCommand::Set { pattern, file } => {
            let text = read_value(None, Some(file))?;
            let schema: Value = serde_json::from_str(&text)
                .map_err(|e| Invalid(format!("schema {pattern:?}: not valid JSON: {e}")))?;
            let revision = client.set_schema(&pattern, &schema, force).await?;
            out.written(&pattern, revision, None)
        }
        SchemaCommand::Get { pattern } => {
            let entry = client
                .get_schema(&pattern)
                .await?
                .ok_or_else(|| not_found(&pattern))?;
            out.value(&entry.value)
        }
        SchemaCommand::List => {
            let schemas: serde_json::Map<String, Value> = client
                .list_schemas()
                .await?
                .into_iter()
                .map(|e| (e.name, e.value))
                .collect();
            out.document(&Value::Object(schemas))
        }
        SchemaCommand::Delete { pattern } => {
            let revision = client
                .delete_schema(&pattern)
                .await?
                .ok_or_else(|| not_found(&pattern))?;
            out.written(&pattern, revision, None)
        }
    }
}

async fn flag(client: &cfgd::Client, command: FlagCommand, out: &Printer) -> anyhow::Result<()> {
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
        FlagCommand::Rollout { name, variants } => {
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

/// Prints changes as JSON lines; reports connection losses on stderr.
async fn watch(client: &cfgd::Client, prefix: &str, count: Option<u64>) -> anyhow::Result<()> {
    use tokio_stream::StreamExt;
    let mut changes = client.subscribe(prefix)?;
    let mut status = client.status_changes()?;
    // On stderr, so stdout stays pure JSON lines; also tells scripts that
    // every change from here on will be printed.
    eprintln!(
        "cfgctl: watching {:?} in namespace {} from revision {}",
        prefix,
        client.namespace(),
        client.status().revision()
    );
    let mut printed = 0;
    loop {
        tokio::select! {
            change = changes.next() => {
                let Some(change) = change else { return Ok(()) };
                if !output::line(change.to_json())? {
                    return Ok(()); // stdout closed
                }
                printed += 1;
                if count.is_some_and(|n| printed >= n) {
                    return Ok(());
                }
            }
            Ok(()) = status.changed() => {
                match &*status.borrow_and_update() {
                    cfgd::Status::Reconnecting { .. } => eprintln!("cfgctl: etcd connection lost; reconnecting"),
                    cfgd::Status::Connected { revision } => eprintln!("cfgctl: reconnected at revision {revision}"),
                    other => eprintln!("cfgctl: {other:?}"),
                }
            }
        }
    }
}

/// Connects to the namespace of `-n`, or to `namespace`.
async fn connect(cli: &Cli, namespace: Option<&str>) -> anyhow::Result<cfgd::Client> {
    let mut builder = cfgd::Client::builder()
        .endpoints(
            cli.endpoints
                .iter()
                .map(|e| e.trim())
                .filter(|e| !e.is_empty()),
        )
        .namespace(namespace.unwrap_or(&cli.namespace))
        .root(&cli.root)
        // The audit trail names the etcd user, or the OS user@host.
        .actor(cli.user.clone().unwrap_or_else(cfgd::audit::local_actor))
        .via(cfgd::audit::Via::Cfgctl)
        .connect_timeout(cli.connect_timeout)
        .request_timeout(cli.timeout)
        // One-shot commands read etcd directly; only `watch` needs the
        // namespace in memory and a standing watch.
        .live(matches!(
            cli.command,
            Command::Watch { .. }
                | Command::Flag {
                    command: FlagCommand::Eval { .. }
                }
        ));
    match (&cli.user, &cli.password) {
        (Some(user), Some(password)) => builder = builder.user(user, password),
        (Some(_), None) => {
            return Err(Invalid("--user needs --password (or CFGCTL_PASSWORD)".into()).into())
        }
        (None, Some(_)) => {
            return Err(Invalid("--password needs --user (or CFGCTL_USER)".into()).into())
        }
        (None, None) => {}
    }
    if let Some(ca) = &cli.cacert {
        builder = builder.ca_file(ca);
    }
    match (&cli.cert, &cli.key) {
        (Some(cert), Some(key)) => builder = builder.client_cert(cert, key),
        (None, None) => {}
        _ => return Err(Invalid("--cert and --key go together".into()).into()),
    }
    let keyring = match (&cli.secret_key_file, &cli.command) {
        (
            current,
            Command::Secret {
                command: SecretCommand::Rotate { new_key },
            },
        ) => {
            let new = cfgd::secret::Keyring::load(new_key)?;
            Some(match current {
                Some(path) => cfgd::secret::Keyring::load(path)?.rotating_to(new),
                None => new,
            })
        }
        (Some(path), _) => Some(cfgd::secret::Keyring::load(path)?),
        (None, _) => None,
    };
    if let Some(keyring) = keyring {
        builder = builder.keyring(keyring);
    }
    let mut client = builder.connect().await?;
    if let Some(message) = &cli.message {
        client = client.with_message(message);
    }
    Ok(if cli.force { client.forced() } else { client })
}

/// The value of `set`: an argument, a file, or standard input (`-`).
fn read_value(value: Option<String>, file: Option<PathBuf>) -> anyhow::Result<String> {
    let from_stdin = || -> anyhow::Result<String> {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the value from standard input")?;
        Ok(text)
    };
    match (value, file) {
        (Some(v), _) if v == "-" => from_stdin(),
        (Some(v), _) => Ok(v),
        (None, Some(path)) if path.as_os_str() == "-" => from_stdin(),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| Invalid(format!("cannot read {}: {e}", path.display())).into()),
        (None, None) => Err(Invalid(
            "no value given: pass JSON as an argument, -f FILE, or - to read standard input".into(),
        )
        .into()),
    }
}

/// `hello` rather than `"hello"`: the commonest mistake with `set`.
fn looks_like_bare_string(text: &str) -> bool {
    let t = text.trim();
    t.chars().next().is_some_and(|c| c.is_alphabetic()) && !t.contains(['{', '[', '"'])
}

fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).map_err(|e| Invalid(format!("{what} is not valid JSON: {e}")).into())
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
