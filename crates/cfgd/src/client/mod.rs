//! The config client: typed reads and writes of JSON values in one
//! namespace, live values, subscriptions and flags.
//!
//! Split by job, bottom to top: `handle` ([`Client`] and what its clones
//! share, live values and subscriptions), `reads`, `writes` (which reads
//! first where it must, and checks values against their schemas),
//! `history` (a name's past and the audit trail), `transfer` (export,
//! import and diffs of whole documents),
//! `schemas` (storing them), `flags` (flag operations on top of reads and
//! writes, and the [`Flags`] evaluator) and `builder` (settings, and
//! connecting).

mod builder;
mod chain;
mod flags;
mod handle;
mod history;
mod layered;
mod meta;
mod overlays;
mod policy;
mod reach;
mod reads;
pub(crate) mod releases;
mod request_types;
pub(crate) mod requests;
mod roles;
mod schemas;
mod secrets;
mod transfer;
mod writes;

pub use crate::flags::Rollout;
pub use builder::ClientBuilder;
pub use chain::{ChainPart, ChainRelease};
pub use flags::Flags;
pub use handle::{Client, Entry, ImportReport, Stats};
pub use layered::{Explained, LayerValue};
pub use overlays::OverlayEntry;
pub use releases::{Release, ReleasePlan, RELEASE_MAX};
pub use requests::{Approval, ChangeRequest, RequestReview, RequestState, REQUEST_MAX};
pub use roles::{RoleAccess, RoleGrant};
pub use secrets::ResealReport;
