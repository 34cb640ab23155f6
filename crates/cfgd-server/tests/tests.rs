//! The server's end-to-end tests: the `cfgd` binary on real etcd processes
//! (see `common`, the harness shared by every crate's tests in
//! `tests/common/`).

#[path = "../../../tests/common/mod.rs"]
mod common;

mod bucketing;

mod console;

mod flagd_grpc;

#[cfg(feature = "fuzzing")]
mod fuzz_cases;

mod layers;

mod limits;

mod routes;

mod schedules;

mod schemathesis;

mod secrets;

mod webhooks;

mod workers;

mod examples;

mod harness;

mod ofrep;

mod oidc;

mod openapi;

mod openapi_found;

mod ops;

mod rest;

mod sse;

mod soak;
