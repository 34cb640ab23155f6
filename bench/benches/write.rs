//! Write latency: what the audit record and the schema check cost a `set`.
//!
//! Side by side in one run, on one etcd, the same small value written:
//! - a plain etcd put through etcd-client (what a `set` was before the audit
//!   trail: one put);
//! - `Client::set` from a live client, with a JSON Schema governing the name
//!   and a policy protecting other names (one transaction: compare on the
//!   revision the mirror knows, the put, the audit record; the schema and
//!   the policy checked in memory);
//! - the same with no schema and no policy;
//! - `Client::set` from a `live(false)` client, as cfgctl writes: it reads
//!   the schemas, the policy and the key's revision in one request first;
//! - etcd alone doing what a live `set` asks of it: one transaction of the
//!   same shape (a compare, the put, a 400-byte record), on a key that a
//!   live client watches, as a `set`'s key is. What is left between this
//!   and the live `set` is cfgd's own cost.
//!
//! The variants take turns in blocks, so that the machine's drift falls on
//! all of them alike. Target: the live client's set with audit and schema
//! at most 1.3x the plain put.
//!
//! Run: `cargo bench -p cfgd-bench --bench write` (or `make bench`). It starts
//! its own etcd on free ports, from the `etcd` on PATH.

use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde_json::json;

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

const BLOCKS: usize = 20;
const PER_BLOCK: usize = 100;
const VALUE: &str = r#"{"max_items": 10, "timeout_ms": 250, "regions": ["eu", "us"]}"#;

fn main() {
    let etcd = common::EtcdCluster::single();
    let rt = support::runtime();
    let results = rt.block_on(async {
        let endpoint = etcd.endpoint(0);
        let connect = |namespace: &'static str, live: bool| {
            let endpoint = endpoint.clone();
            async move {
                cfgd::Client::builder()
                    .endpoints([endpoint])
                    .namespace(namespace)
                    .live(live)
                    .connect()
                    .await
                    .expect("connect cfgd")
            }
        };
        let schema = json!({"type": "object", "properties": {
            "max_items": {"type": "integer", "minimum": 1},
            "timeout_ms": {"type": "integer"},
            "regions": {"type": "array", "items": {"type": "string"}}},
            "required": ["max_items"]});
        let with_schema = connect("bench-schema", true).await;
        with_schema
            .set_schema("limits", &schema, false)
            .await
            .unwrap();
        let without = connect("bench-plain", true).await;
        let one_shot = connect("bench-oneshot", false).await;
        one_shot.set_schema("limits", &schema, false).await.unwrap();
        // Patterns that do not cover "limits": the check runs, and passes.
        let policy = r#"{"protected": ["payments/*", "flags/*", "database.main"]}"#;
        for client in [&with_schema, &one_shot] {
            client.set_policy_json(policy).await.unwrap();
        }
        let mut raw = etcd_client::Client::connect([endpoint.clone()], None)
            .await
            .expect("connect etcd");

        let names = [
            "etcd put",
            "cfgd set, live, schema + policy + audit",
            "cfgd set, live, audit",
            "cfgd set, live(false), schema + policy + audit",
            "etcd txn of a set's shape, on a watched key",
        ];
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
        let mut records = 0u64;
        for _ in 0..BLOCKS {
            for (i, times) in times.iter_mut().enumerate() {
                for _ in 0..PER_BLOCK {
                    let start = Instant::now();
                    match i {
                        0 => {
                            raw.put("/cfgd/bench-raw/config/limits", VALUE, None)
                                .await
                                .unwrap();
                        }
                        1 => {
                            with_schema.set_json("limits", VALUE).await.unwrap();
                        }
                        2 => {
                            without.set_json("limits", VALUE).await.unwrap();
                        }
                        3 => {
                            one_shot.set_json("limits", VALUE).await.unwrap();
                        }
                        _ => {
                            // In the namespace `without` watches.
                            let key = "/cfgd/bench-plain/config/txn";
                            records += 1;
                            let record = format!("/cfgd/bench-plain/audit/{records:020}");
                            let txn = Txn::new()
                                .when([Compare::mod_revision(key, CompareOp::Less, i64::MAX)])
                                .and_then([
                                    TxnOp::put(key, VALUE, None),
                                    TxnOp::put(record, "r".repeat(400), None),
                                ]);
                            raw.txn(txn).await.unwrap();
                        }
                    }
                    times.push(start.elapsed());
                }
            }
        }
        let p50 = |t: &mut Vec<Duration>| {
            t.sort();
            t[t.len() / 2]
        };
        let base = p50(&mut times[0].clone());
        let rows: Vec<serde_json::Value> = names
            .iter()
            .zip(times.iter_mut())
            .map(|(name, t)| {
                let median = p50(t);
                let summary = support::summary(t.clone());
                let ratio = median.as_secs_f64() / base.as_secs_f64();
                println!("{name:40} p50 {median:>10.1?}  {ratio:.2}x the etcd put  {summary}");
                json!({"name": name, "latency": summary, "ratio": (ratio * 100.0).round() / 100.0})
            })
            .collect();
        json!({"writes_per_variant": BLOCKS * PER_BLOCK, "rows": rows})
    });
    support::write_results("write", &results);
}
