//! The subcommands of the command groups (`release`, `policy`, `ns`,
//! `admin`, `secret`, `request`, `schema`, `flag`).

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum ReleaseCommand {
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
    /// Publish a document of name → value (and flags) as one release, now
    /// or, with --at, at a time (`cfgctl apply` with a schedule)
    #[command(
        after_help = "TIME is RFC 3339 in UTC (2026-12-04T03:00:00Z) or + and a duration (+90s, +2h).
        A scheduled release is pinned to the revisions it was checked against: if any of
        its names changes before its time, it is suspended, naming them, and nothing is written.

        Examples:
  cfgctl -n prod release apply release.json --at 2026-12-05T02:00:00Z -m 'maintenance window'
          cfgctl -n prod schedule list"
    )]
    Apply {
        /// A JSON object of name → value (- for standard input)
        file: PathBuf,
        /// A flagd document ({"flags": {...}}) to publish with it
        #[arg(long, value_name = "FILE")]
        flags: Option<PathBuf>,
        /// Publish it then, rather than now
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Show what it would change; write nothing
        #[arg(long, conflicts_with = "at")]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Schedules, soonest first, with their state
    List,
    /// One schedule: what it sets, its bases, and what became of it
    Show { id: String },
    /// Cancel a pending schedule
    Cancel { id: String },
}

#[derive(Subcommand)]
pub(crate) enum WebhookCommand {
    /// Add a webhook; prints its id and signing secret (shown only now)
    #[command(
        after_help = "Event types: io.cfgd.config.changed, io.cfgd.release.published,
        io.cfgd.request.opened, io.cfgd.request.approved, io.cfgd.request.closed,
        io.cfgd.schedule.created, io.cfgd.schedule.suspended, io.cfgd.schedule.cancelled,
        io.cfgd.webhook.failed (none given: all).

        Example:
  cfgctl -n prod webhook add http://hooks.example/cfgd --events io.cfgd.release.published --prefix payments/"
    )]
    Add {
        /// The receiver's http:// or https:// URL
        url: String,
        /// Event types, comma separated (none: all)
        #[arg(long, value_delimiter = ',', value_name = "TYPE")]
        events: Vec<String>,
        /// Only changes of names starting with this
        #[arg(long, default_value = "")]
        prefix: String,
        /// cloudevents or slack
        #[arg(long, default_value = "cloudevents")]
        format: String,
        /// The signing secret (whsec_…); made when not given
        #[arg(long, env = "CFGCTL_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Allow a receiver on loopback or link-local addresses (the cfgd
        /// server must allow it too: [webhooks] allow_loopback)
        #[arg(long)]
        allow_loopback: bool,
    },
    /// The namespace's webhooks
    List,
    /// One webhook, its cursor and the events it gave up on
    Show { id: String },
    /// Remove a webhook
    Rm { id: String },
    /// Its last 100 delivery attempts, newest first
    Deliveries { id: String },
    /// Deliver again every change from a revision on
    Replay {
        id: String,
        /// The first revision to deliver again
        #[arg(long)]
        from: i64,
    },
    /// Have the elected cfgd server send a test event now, and print what
    /// the receiver answered
    Test { id: String },
}

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
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
pub(crate) enum NsCommand {
    /// Print a namespace's settings, with the defaults filled in
    Get {
        /// The namespace [default: -n]
        namespace: Option<String>,
    },
    /// Change a namespace's settings; what is not given keeps its value
    #[command(
        after_help = "Examples:\n  cfgctl ns set prod --extends base           # prod inherits base's values\n  \
        cfgctl ns set prod-eu --extends prod,eu     # lowest first: eu's values win over prod's\n  \
        cfgctl ns set prod --extends ''             # inherit nothing again\n  \
        cfgctl ns set prod --fractional v3 --yes"
    )]
    Set {
        /// The namespace [default: -n]
        namespace: Option<String>,
        /// The namespaces this one inherits from, lowest first, comma
        /// separated ('' for none). Each must exist; no cycle, at most 8 levels
        #[arg(long, value_name = "NS,NS")]
        extends: Option<String>,
        /// How fractional rollouts bucket: v2 (flagd's published hashing) or
        /// v3 (flagd's hashing-consistency ADR)
        #[arg(long, value_parser = ["v2", "v3"])]
        fractional: Option<String>,
        /// Write even when sample users change variant
        #[arg(long)]
        yes: bool,
    },
    /// Print a namespace's layers, lowest first, and the namespaces that extend it
    Layers {
        /// The namespace [default: -n]
        namespace: Option<String>,
    },
    /// Delete a whole namespace: values, flags, schemas, policy, settings, audit trail
    #[command(
        after_help = "Refused while other namespaces extend it (change their --extends first)."
    )]
    Delete {
        /// The namespace [default: -n]
        namespace: Option<String>,
        /// Really delete it
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum AdminCommand {
    /// Make the etcd roles and users of a namespace, and print them
    Roles {
        /// The namespace [default: -n]
        namespace: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum SecretCommand {
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
pub(crate) enum RequestCommand {
    /// Open a request for a document of name → value (and flags); -m says why
    Create {
        /// A JSON object of name → value (- for standard input)
        file: PathBuf,
        /// A flagd document ({"flags": {...}}) to change in the same request
        #[arg(long, value_name = "FILE")]
        flags: Option<PathBuf>,
    },
    /// Merge an approved request at a time, as it is now (if it changes
    /// before then, the schedule is suspended)
    #[command(
        after_help = "Example:\n  cfgctl -n prod request schedule 7 --at 2026-12-05T02:00:00Z"
    )]
    Schedule {
        id: String,
        /// When: RFC 3339 in UTC (2026-12-04T03:00:00Z) or +DURATION (+2h)
        #[arg(long, value_name = "TIME")]
        at: String,
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
pub(crate) enum SchemaCommand {
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
pub(crate) enum FlagCommand {
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
    /// Replace the targeting with a percentage split over the targeting
    /// key, now (--variant) or in scheduled steps (--steps)
    #[command(
        after_help = "Examples:\n  cfgctl flag rollout new-checkout --variant on=25,off=75\n  \
        cfgctl flag rollout new-checkout --steps '10%@+1h,50%@2026-12-05T08:00:00Z,100%@2026-12-06T08:00:00Z'\n\n\
        With --steps each step sets PERCENT% of --to (for a flag of two variants, the one that is\n\
        not the default) and the rest the default variant, at its TIME (RFC 3339 in UTC or +DURATION).\n\
        A step applies only after the one before it did; if the flag is changed otherwise, the\n\
        step is suspended and the rollout goes no further."
    )]
    Rollout {
        name: String,
        /// VARIANT=WEIGHT pairs, comma separated
        #[arg(
            long = "variant",
            value_delimiter = ',',
            required_unless_present = "steps",
            conflicts_with = "steps",
            value_name = "V=W"
        )]
        variants: Vec<String>,
        /// PERCENT%@TIME steps, comma separated: one schedule each
        #[arg(long, value_name = "STEPS")]
        steps: Option<String>,
        /// The variant the steps roll out
        #[arg(long, requires = "steps", value_name = "VARIANT")]
        to: Option<String>,
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

#[derive(Subcommand)]
pub(crate) enum OverlayCommand {
    /// Create an overlay, or change who sees it
    Set {
        overlay: String,
        /// Labels a client must all have: k=v,k=v
        #[arg(long, value_name = "K=V,K=V")]
        selector: Option<String>,
        /// Of those, the share (0-100) whose instance label buckets below it
        #[arg(long, value_name = "N")]
        percent: Option<u8>,
    },
    /// Store a value in an overlay ({"$cfgd.unset": true} hides the name from its clients)
    Put {
        overlay: String,
        name: String,
        /// The JSON value
        #[arg(value_name = "JSON")]
        value: String,
    },
    /// Store a flag's definition in an overlay (flagd's format; {"$cfgd.unset": true} hides the flag)
    Flag {
        overlay: String,
        name: String,
        /// The definition (- for standard input)
        #[arg(short = 'f', long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Print every overlay: who sees it, its values and flags
    List,
    /// Write the overlay's values to the namespace's own layer and remove it, as one release
    Promote { overlay: String },
    /// Remove the overlay and its values
    Abandon { overlay: String },
}
