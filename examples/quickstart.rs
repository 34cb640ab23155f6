//! Run with: `make run` (it runs this against its local etcd), or
//! `CFGD_ENDPOINTS=http://127.0.0.1:2379 cargo run --example quickstart`.
//!
//! The everyday case: read typed config with a default that never fails,
//! then store a new value.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Database {
    url: String,
    pool_size: u32,
}

#[tokio::main]
async fn main() -> cfgd::Result<()> {
    let endpoints = std::env::var("CFGD_ENDPOINTS").unwrap_or("http://127.0.0.1:2379".into());
    let client = cfgd::Client::builder()
        .endpoints(endpoints.split(','))
        .namespace("quickstart")
        .connect()
        .await?;
    // Start from a missing key, so every run shows the fallback first.
    client.delete("database.config").await?;

    let default = Database {
        url: "postgres://localhost/app".into(),
        pool_size: 5,
    };
    let db = client.get_or("database.config", default).await;
    println!("missing key, get_or gives the default: {db:?}");

    let stored = Database {
        url: "postgres://db.internal/app".into(),
        pool_size: 20,
    };
    let revision = client.set("database.config", &stored).await?;
    println!("set database.config at revision {revision}");

    let fallback = Database {
        url: "postgres://localhost/app".into(),
        pool_size: 5,
    };
    let db = client.get_or("database.config", fallback).await;
    println!("get_or now gives the stored value: {db:?}");
    Ok(())
}
