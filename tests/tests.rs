//! Integration tests against real etcd processes (see `common`).
#![recursion_limit = "512"] // the differential test's flag document is one json! literal

mod common;

#[path = "common/arbitrary.rs"]
mod arbitrary;

mod client;

mod differential;

mod examples;

mod flags;

#[cfg(feature = "fuzzing")]
mod fuzz_cases;

mod governance;

mod live;

mod properties;

mod secrets;

#[cfg(feature = "server")]
mod console;

#[cfg(feature = "server")]
mod flagd_grpc;

#[cfg(feature = "server")]
mod limits;

#[cfg(feature = "server")]
mod server;

#[cfg(feature = "server")]
mod soak;

#[cfg(feature = "tls")]
mod tls;
