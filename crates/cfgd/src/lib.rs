//! # cfgd: dynamic configuration and feature flags on etcd
//!
//! cfgd keeps typed JSON configuration in etcd, one namespace per environment
//! or application, and gives it back to Rust services with defaults that never
//! fail. Values are plain compact JSON under `/cfgd/{namespace}/config/{name}`,
//! so `etcdctl` and any other etcd tool read and write the same data.
//!
//! ## Components
//!
//! - [`Client`]: connect with [`Client::builder`], then read with
//!   [`get_or`](Client::get_or), [`get`](Client::get) and
//!   [`get_entry`](Client::get_entry); write with [`set`](Client::set) and
//!   the compare-and-set [`set_if`](Client::set_if); look back with
//!   [`history`](Client::history) and [`rollback`](Client::rollback); move
//!   whole namespaces with [`export`](Client::export) and
//!   [`import`](Client::import).
//! - Live mode (the default): [`Client::subscribe`] gives a [`Subscription`],
//!   a stream of every [`Change`] under a prefix, in revision order;
//!   [`Client::watch`] gives a [`Live`] value whose `get()` is an atomic load;
//!   [`Client::status`] tells whether the client is [`Status::Connected`].
//! - Feature flags in flagd's format: [`Client::set_flag`] stores a checked
//!   definition, [`Client::enable_flag`], [`Client::disable_flag`] and
//!   [`Client::set_rollout`] (a [`Rollout`]) edit one with compare-and-set,
//!   [`Client::flags`] evaluates live ([`Flags::bool`], [`Flags::details`],
//!   ...); [`flags`] holds the evaluator itself. A namespace's settings
//!   ([`meta`], [`Client::set_meta`]) choose how `fractional` buckets
//!   ([`flags::Bucketing`]).
//! - Layers: a namespace `extends` others ([`meta::Meta::extends`]) and
//!   every read gives the effective value merged from them
//!   ([`layers`] has the rules); [`Client::explain`] tells where each field
//!   came from, [`Client::get_own_entry`] reads the own layer, and
//!   [`Change::layer`] names the layer a change was written in.
//! - Governance: [`Client::set_schema`] stores a JSON Schema for a name
//!   pattern, and every write is checked against it
//!   ([`Error::SchemaViolation`]); every write puts its [`audit`] record
//!   in the same transaction; [`Client::apply`] publishes a release as one
//!   transaction; [`diff`] and [`Client::diff_document`],
//!   [`Client::diff_namespace`], [`Client::history_diff`] show changes path
//!   by path; a [`policy`] protects names ([`Error::Protected`]), which
//!   then change through change requests: [`Client::create_request`],
//!   approved by another actor ([`Client::approve_request`]) and merged as
//!   one release ([`Client::merge_request`]).
//! - Hardening: names the policy calls secrets are stored encrypted
//!   ([`secret`], [`ClientBuilder::secret_key_file`],
//!   [`Client::reseal_secrets`] to rotate the key), and
//!   [`Client::create_roles`] makes least-privilege etcd roles for a
//!   namespace.
//! - Reaching out: [`webhooks`] (definitions, each webhook's cursor and
//!   attempt log, [`Client::change_feed`], a namespace's changes joined to
//!   their audit records) and [`schedules`] (a release, an approved change
//!   request or a rollout's steps applied at a time, compare-and-set on what
//!   was scheduled), which the `cfgd` server's elected worker runs; the
//!   [`election`] that picks it, and the fence ([`Client::fenced`]) every
//!   write of a worker compares.
//! - [`sessions`]: sign-in sessions every replica of a server sees, on
//!   leases (the `cfgd` server's SSO sessions).
//! - [`Entry`]: a value with its etcd revision and [`Source`].
//! - [`Error`]: one enum, every variant naming the etcd key concerned.
//! - `cfgctl`, the command-line tool (crate `cfgctl`), built on this crate.
//!
//! ## Quick start
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! struct Database {
//!     url: String,
//!     pool_size: u32,
//! }
//!
//! #[tokio::main]
//! async fn main() -> cfgd::Result<()> {
//!     let client = cfgd::Client::builder()
//!         .endpoints(["http://127.0.0.1:2379"])
//!         .namespace("prod")
//!         .connect()
//!         .await?;
//!
//!     // Never fails: a missing key, bad JSON or an etcd outage gives the default.
//!     let default = Database { url: "postgres://localhost/app".into(), pool_size: 5 };
//!     let db = client.get_or("database.config", default).await;
//!     println!("{db:?}");
//!
//!     let revision = client
//!         .set("database.config", &Database { url: "postgres://db/app".into(), pool_size: 20 })
//!         .await?;
//!     // Compare-and-set: only if nobody wrote since `revision`.
//!     client.set_if("database.config", &Database { url: "postgres://db/app".into(), pool_size: 30 }, revision).await?;
//!     Ok(())
//! }
//! ```
//!
//! ## Live mode
//!
//! A live client reads its namespace once at connect and then follows it with
//! one etcd watch, whatever the number of subscribers; clients of other
//! namespaces built with [`ClientBuilder::share`] ride on the same watch.
//! Reads are served from memory. The watch resumes at the last applied revision after any failure
//! (with capped, jittered backoff), notices a silent stream within seconds,
//! and after compaction re-reads the namespace and emits the differences as
//! changes flagged [`Change::is_resync`]. Optional extras:
//! [`snapshot`](ClientBuilder::snapshot) (start while etcd is down) and
//! [`defaults_file`](ClientBuilder::defaults_file) (defaults edited live).
//!
//! ```no_run
//! # async fn demo(client: cfgd::Client) -> cfgd::Result<()> {
//! use tokio_stream::StreamExt;
//!
//! let mut dark_mode = client.watch("feature.dark_mode", false)?;
//! if *dark_mode.get() { /* … */ }
//! if *dark_mode.borrow() { /* … */ } // no reference count: hold it briefly
//! dark_mode.changed().await;
//!
//! // A callback on the watch's task: the cheapest way to follow changes.
//! let _keep = client.on_change("feature.", |change| println!("{} changed", change.name()))?;
//!
//! let mut changes = client.subscribe("feature.")?;
//! while let Some(change) = changes.next().await {
//!     println!("{} is now {:?}", change.name(), change.value::<serde_json::Value>()?);
//! }
//! # Ok(()) }
//! ```
//!
//! ## Rules for names and values
//!
//! - Namespace: `[a-z0-9][a-z0-9._-]{0,62}`.
//! - Name: segments of `[A-Za-z0-9._-]+` joined by `/`, at most 256 bytes, no
//!   `.` or `..` segment, no leading or trailing `/`.
//! - Value: JSON, at most 1 MiB ([`MAX_VALUE_LEN`]) once compacted.
//!
//! Anything else is refused with an [`Error`] before a request is sent.
//!
//! ## How the crate is built
//!
//! Each module uses only those below it (`scripts/check-cycles.py`, run by
//! `make test`, keeps the files free of import cycles). Top to bottom:
//!
//! - `client/`: the public [`Client`], split by job: `handle` (the client,
//!   what its clones share, live values, subscriptions and status),
//!   `reads`, `writes` (each checked against schemas and the policy),
//!   `history`, `transfer` (export, import, document diffs), `schemas`,
//!   `policy`, `meta`, `secrets`, `releases`, `requests` and `request_types`
//!   (change requests), `roles`, `flags` (flag edits and the [`Flags`]
//!   evaluator), and `builder` ([`ClientBuilder`], connecting).
//! - `live_value`: [`Live<T>`], a typed value read without a lock; and
//!   `subscription`: [`Subscription`] streams and [`OnChange`] callbacks.
//! - `hub`: the one etcd watch of a connection and the task that keeps it
//!   standing, resuming after failures and re-reading after compaction.
//! - `namespace`: a live namespace, its mirror kept current, and the
//!   fan-out of each change to live values, subscriptions and callbacks;
//!   it keeps the namespace's flags and JSON Schemas compiled, and its
//!   policy and settings read. `namespace/load` holds its loading and its [`Status`].
//! - `cells`: the per-(name, type) cells that hold a value decoded once per
//!   change, behind every `Live<T>` of that name and type.
//! - `etcd`: the connection to etcd (endpoints, user, TLS), request
//!   timeouts, the one paged range reader, and the mapping of etcd's
//!   failures to [`Error`]; `snapshot` and `defaults`: the snapshot file
//!   and the defaults file.
//! - `change`: [`Change`] and its one JSON form, [`Change::to_json`].
//! - `mirror`: the in-memory copy of a namespace, with tombstones of recent
//!   deletes.
//! - [`layers`] and [`overlays`]: the rules of layered namespaces (which
//!   layers, how one name's values merge, where each field came from) and
//!   of overlays (labels, selectors, percent), on plain JSON; not yet
//!   wired into reads.
//! - [`diff`]: structural diffs of JSON values, path by path; [`audit`]:
//!   the audit record; [`meta`]: the namespace's settings; [`policy`]: the
//!   namespace policy and its patterns,
//!   over [`schema`]: JSON Schemas by name pattern, compiled.
//! - `value`: JSON encoding and limits, which refuses ciphertext posing as
//!   a value; [`secret`]: sealing and opening secrets, and the one source
//!   of randomness.
//! - `key`, `error`, `types`: the key layout and its rules, [`Error`] and
//!   [`ErrorKind`], and the plain types ([`Revision`], [`Source`],
//!   [`Status`]).
//!
//! Beside them, [`flags`] is the flagd evaluator, the crate `cfgd-flags`
//! (used by `namespace` to compile a namespace's flags; it depends on no
//! cfgd crate), and `openfeature` sits on top, using only the public API.
//!
//! The workspace's other crates sit above this one and see only what it
//! exports, which the compiler checks: `cfgd-server` (the `cfgd` binary:
//! REST, SSE, OFREP, flagd's gRPC, the console) and `cfgctl`.
//!
//! One change, followed through: etcd's watch response reaches the `hub`,
//! which hands each event to the namespace it belongs to. The `namespace`
//! applies the batch to its `mirror` under one lock, then publishes each
//! change: to the `cells` of its name (so every [`Live<T>`] of it sees the
//! new value, decoded once), to the ring of recent changes and the channel
//! that every [`Subscription`] reads, and to the [`OnChange`] callbacks. In
//! the server, an SSE stream is a `Subscription`; it sends an event made
//! once per change with [`Change::encoded`] and shared by every stream, with
//! the revision as the event id.
//!
//! ## Errors
//!
//! Every fallible call returns [`Error`], whose variants name the etcd key
//! concerned. [`Error::kind`] sorts them into a few [`ErrorKind`]s; `cfgctl`'s
//! exit codes, the server's HTTP statuses and its gRPC codes each map from
//! the kind in one table, which [`ErrorKind`] shows. A dependency's error is
//! never a public field: etcd's comes as [`Error::source`](std::error::Error::source).
//!
//! ## Words
//!
//! - *namespace*: an environment or application, `/cfgd/{namespace}/…` in
//!   etcd; a *live namespace* is one a live client mirrors in memory.
//! - *live*: a client that mirrors its namespace and follows it with one
//!   etcd watch (the default), as opposed to `live(false)`, which reads etcd
//!   every time; a [`Live<T>`] is one value of it, typed.
//! - *watch*: etcd's watch, the one per connection that the hub keeps
//!   standing. A [`Subscription`] is a stream of changes under a prefix; a
//!   [`Live<T>`] comes from [`Client::watch`] (named for what callers ask:
//!   to watch a value).
//! - *mirror*: the in-memory copy of a namespace; *cells*: the per-(name,
//!   type) slots behind every `Live<T>`.
//! - *redact*: showing a secret's value as `"<redacted>"`, never its
//!   plaintext or ciphertext; *seal*/*open*: encrypting and decrypting it.
//!
//! ## Feature flags (cargo)
//!
//! - `openfeature` (default): [`openfeature::CfgdProvider`], a provider for
//!   the `open-feature` crate.
//! - `tls`: TLS to etcd ([`ClientBuilder::ca_file`],
//!   [`ClientBuilder::client_cert`]), with rustls.
//! - `openapi`: [`openapi`], JSON Schemas of namespaces, names and patterns
//!   for the server's OpenAPI document, and `utoipa::ToSchema` on the
//!   bodies it describes (policy, audit records, diffs, change requests).
//! - `fuzzing`: entry points for the fuzz targets in `fuzz/` (not an API).
#![deny(missing_docs)]

// rustfmt sorts these; the order that matters, top to bottom, is in "How
// the crate is built" above.
pub mod audit;
mod cells;
mod change;
mod client;
mod defaults;
pub mod diff;
mod effective;
pub mod election;
mod error;
mod etcd;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod hub;
mod key;
pub mod layers;
mod live_value;
pub mod meta;
mod mirror;
mod namespace;
#[cfg(feature = "openapi")]
pub mod openapi;
#[cfg(feature = "openfeature")]
pub mod openfeature;
pub mod overlays;
pub mod policy;
pub mod schedules;
pub mod schema;
pub mod secret;
pub mod sessions;
mod snapshot;
mod subscription;
mod types;
mod value;
pub mod webhooks;

pub use cfgd_flags as flags;

/// The guides' Rust blocks, compiled (and, unless marked `no_run`, run) as
/// doc tests so they cannot rot. Only under `cargo test --doc`: the guides
/// live outside the crate and are not packaged with it.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../../../README.md")]
    mod readme {}
    #[doc = include_str!("../README.md")]
    mod crate_readme {}
    #[doc = include_str!("../../../docs/library.md")]
    mod library {}
    #[doc = include_str!("../../../docs/live-values.md")]
    mod live_values {}
    #[doc = include_str!("../../../docs/flags.md")]
    mod flags {}
    #[doc = include_str!("../../../docs/governance.md")]
    mod governance {}
    #[doc = include_str!("../../../docs/secrets.md")]
    mod secrets {}
    #[doc = include_str!("../../../docs/server.md")]
    mod server {}
    #[doc = include_str!("../../../docs/production.md")]
    mod production {}
    #[doc = include_str!("../../../docs/cfgctl.md")]
    mod cfgctl {}
    #[doc = include_str!("../../../docs/console.md")]
    mod console {}
    #[doc = include_str!("../../../docs/testing.md")]
    mod testing {}
}
pub use change::{Change, ChangeKind};
pub use client::{
    Approval, ChainPart, ChainRelease, ChangeRequest, Client, ClientBuilder, Entry, Explained,
    Flags, ImportReport, LayerValue, OverlayEntry, Release, ReleasePlan, RequestReview,
    RequestState, ResealReport, RoleAccess, RoleGrant, Rollout, Stats, RELEASE_MAX, REQUEST_MAX,
};
pub use error::{Cause, Error, ErrorKind, Result, SchemaFailure, TlsSetting};
pub use key::{
    validate_name, validate_namespace, validate_prefix, validate_root, DEFAULT_ROOT, MAX_NAME_LEN,
};
pub use live_value::{Live, LiveRef};
pub use snapshot::namespaces as snapshot_namespaces;
pub use subscription::{OnChange, Subscription};
pub use types::{whole_number, Revision, Source, Status};
pub use value::MAX_VALUE_LEN;
