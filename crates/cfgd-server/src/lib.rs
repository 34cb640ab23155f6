//! The `cfgd` HTTP server: the library over HTTP, for services in any
//! language. [`app`] builds the router, [`run`] serves it until shutdown.
//!
//! - Settings from flags, `CFGD_*` variables or a TOML file ([`Settings`]).
//! - Bearer tokens with read, write and admin scopes per namespace, and
//!   single sign-on with an OpenID Connect issuer (`[oidc]`): the console
//!   signs in with it, and the API takes its JWT access tokens.
//! - REST: config and flags with ETags and compare-and-set, lists, history.
//! - Server-Sent Events: every change under a prefix, resumable with
//!   `Last-Event-ID`.
//! - OFREP: flag evaluation for any OpenFeature SDK's OFREP provider.
//! - Operations: `/healthz`, `/readyz`, `/metrics`, HTTPS, graceful shutdown.
//! - `/openapi.json`: the REST API as OpenAPI 3.1 ([`openapi::document`]),
//!   generated from the handlers, to generate clients from.
//! - The web console at `/ui/`, embedded in the binary.
//! - Webhooks and scheduled releases, run by one replica at a time,
//!   elected through etcd, every write fenced (`workers`).

mod audit;
mod auth;
mod bodies;
mod conditional;
pub(crate) mod conn;
mod diff;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
mod labels;
mod layers;
mod leadership;
mod limits;
mod meta;
mod metrics;
mod observe;
mod ofrep;
mod oidc;
mod overlays;
mod params;
mod releases;
mod requests;
mod rest;
mod routes;
mod schedules;
mod schemas;
mod secs;
mod serve;
mod settings;
pub(crate) mod sse;
mod state;
mod timer;
mod tls;
mod ui;
mod webhooks;
mod worker_metrics;
mod workers;

pub use auth::{Scope, Token};
pub use error::{http_status, ApiError};
pub use grpc::grpc_code;
pub use oidc::OidcSettings;
pub use routes::{app, openapi, Access, Route, ROUTES};
pub use serve::run;
pub use settings::{GrpcSettings, Settings};
pub use state::AppState;

#[cfg(test)]
#[path = "../../../tests/common/kinds.rs"]
mod kinds;

#[cfg(test)]
mod error_kind_tests {
    /// The HTTP status and gRPC code of every error kind are those the
    /// docs' table states.
    #[test]
    fn every_error_kind_maps_to_the_documented_status_and_code() {
        for (kind, row) in crate::kinds::documented() {
            assert_eq!(
                super::http_status(kind).as_u16().to_string(),
                row.http,
                "{kind:?}"
            );
            let code = format!("{:?}", super::grpc_code(kind));
            // tonic names codes in CamelCase, the table as the gRPC spec does.
            let spec: String = code
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    let sep = (i > 0 && c.is_uppercase()).then_some('_');
                    sep.into_iter().chain(c.to_uppercase())
                })
                .collect();
            assert_eq!(spec, row.grpc, "{kind:?}");
        }
    }
}
