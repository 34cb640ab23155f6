//! The library's integration tests against real etcd processes (see
//! `common`, the harness shared by every crate's tests in `tests/common/`).
#![recursion_limit = "512"] // the differential test's flag document is one json! literal

#[path = "../../../tests/common/mod.rs"]
mod common;

#[path = "../../../tests/common/arbitrary.rs"]
mod arbitrary;

mod client;

mod bucketing;

mod differential;

mod examples;

mod flags;

mod governance;

mod layers;

mod layers_chaos;

mod overlays;

mod live;

mod properties;

mod secrets;

#[cfg(feature = "tls")]
mod tls;
