//! Memory: the resident set a live client adds for 100,000 keys, mirrored
//! and each read once (so its decoded value is kept too).
//!
//! Run: `cargo bench -p cfgd-bench --bench memory` (or `make bench`).
//! Writes `target/bench/memory.json`. Bytes per in-process subscriber come
//! from the propagation bench, which holds 10,000 of them.

use etcd_client::{Txn, TxnOp};
use serde_json::{json, Value};

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

const KEYS: usize = 100_000;
/// etcd's default `--max-txn-ops`.
const PER_TXN: usize = 128;

fn main() {
    let etcd = common::EtcdCluster::single();
    let rt = support::runtime();
    let result = rt.block_on(async {
        // A typical small value per key: about 60 bytes of JSON.
        let mut raw = etcd.raw().await;
        let names: Vec<String> = (0..KEYS)
            .map(|i| format!("svc{}.limit.{i}", i % 50))
            .collect();
        let mut value_bytes = 0;
        for chunk in names.chunks(PER_TXN) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|name| {
                    let value =
                        json!({"max": name.len(), "unit": "requests", "enabled": true}).to_string();
                    value_bytes += value.len();
                    TxnOp::put(format!("/cfgd/bench/config/{name}"), value, None)
                })
                .collect();
            raw.txn(Txn::new().and_then(ops)).await.expect("write keys");
        }
        let before = support::rss_bytes("self");
        let client = cfgd::Client::builder()
            .endpoints(etcd.endpoints())
            .namespace("bench")
            .cache_capacity(KEYS as u64)
            .connect()
            .await
            .expect("connect");
        let mirrored = support::rss_bytes("self");
        for name in &names {
            assert!(client.get::<Value>(name).await.unwrap().is_some(), "{name}");
        }
        let read = support::rss_bytes("self");
        let per_key = |bytes: u64| bytes.saturating_sub(before) as f64 / KEYS as f64;
        json!({
            "keys": KEYS,
            "value_bytes_per_key": value_bytes as f64 / KEYS as f64,
            "rss_added_mirrored_bytes": mirrored.saturating_sub(before),
            "rss_added_after_reading_all_bytes": read.saturating_sub(before),
            "bytes_per_key_mirrored": per_key(mirrored),
            "bytes_per_key_read": per_key(read),
        })
    });
    println!("memory, {KEYS} keys: {result}");
    support::write_results("memory", &result);
}
