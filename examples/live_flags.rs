//! Run with: `CFGD_ENDPOINTS=http://127.0.0.1:2379 cargo run --example live_flags`,
//! then flip a flag from another terminal:
//!
//! ```sh
//! cfgctl -n demo set feature.flags '{"dark_mode":true,"new_checkout":false}'
//! ```
//!
//! The everyday case: a service holds its feature flags as a live value and
//! reacts the moment they change. Reading them (`flags.get()`) costs an
//! atomic load, so it can sit on the hottest path; `flags.borrow()` skips
//! even the reference count, for a read that is done at once.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Flags {
    dark_mode: bool,
    new_checkout: bool,
}

#[tokio::main]
async fn main() -> cfgd::Result<()> {
    let endpoints = std::env::var("CFGD_ENDPOINTS").unwrap_or("http://127.0.0.1:2379".into());
    let namespace = std::env::var("CFGD_NAMESPACE").unwrap_or("demo".into());
    let client = cfgd::Client::builder()
        .endpoints(endpoints.split(','))
        .namespace(namespace)
        .connect()
        .await?;

    let mut flags = client.watch("feature.flags", Flags::default())?;
    println!(
        "feature.flags = {:?} ({:?})",
        flags.borrow(),
        flags.source()
    );
    loop {
        flags.changed().await;
        println!(
            "feature.flags changed at revision {}: {:?}",
            flags.revision(),
            flags.get()
        );
    }
}
