//! Integration tests against real etcd processes (see `common`).

mod common;

mod client;

mod examples;

mod flags;

mod live;
