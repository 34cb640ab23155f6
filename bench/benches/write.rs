//! Write latency: what the audit record and the schema check cost a `set`.
//!
//! Side by side in one run, on one etcd, the same small value written:
//! - a plain set, the baseline: what a live client's `set` was before the
//!   audit trail, one etcd put, on a key in the namespace that client
//!   watches (a live client always watches the key it sets, and etcd does
//!   more for a watched put: it sends the event, and the client takes it
//!   in);
//! - the same put on a key nobody watches, shown too, as the lowest floor;
//! - `Client::set` from a live client, with a JSON Schema governing the name
//!   and a policy protecting other names (one transaction: compare on the
//!   revision the mirror knows, the put, the audit record; the schema and
//!   the policy checked in memory);
//! - the same with no schema and no policy;
//! - `Client::set` from a `live(false)` client, as cfgctl writes: it reads
//!   the schemas, the policy and the key's revision in one request first;
//! - etcd alone doing what a live `set` asks of it: one transaction of the
//!   same shape (a compare, the put, a 400-byte record), on a watched key.
//!   What is left between this and the live `set` is cfgd's own cost.
//!
//! The variants take turns in blocks of 100, each block starting the turn
//! at the next variant, so that the machine's drift, and whatever one
//! variant leaves behind for the next, fall on all of them alike. Target:
//! the live client's set with audit and schema at most 1.3x the plain set.
//!
//! Run: `cargo bench -p cfgd-bench --bench write` (or `make bench`). It starts
//! its own etcd on free ports, from the `etcd` on PATH.

use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde_json::json;

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

const BLOCKS: usize = 40;
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
            "plain set: etcd put, on a watched key",
            "etcd put, on a key nobody watches",
            "cfgd set, live, schema + policy + audit",
            "cfgd set, live, audit",
            "cfgd set, live(false), schema + policy + audit",
            "etcd txn of a set's shape, on a watched key",
        ];
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
        let mut records = 0u64;
        for block in 0..BLOCKS {
            for turn in 0..names.len() {
                let variant = (block + turn) % names.len();
                for _ in 0..PER_BLOCK {
                    let start = Instant::now();
                    match variant {
                        0 => {
                            // In the namespace `without` watches.
                            raw.put("/cfgd/bench-plain/config/plain", VALUE, None)
                                .await
                                .unwrap();
                        }
                        1 => {
                            raw.put("/cfgd/bench-raw/config/limits", VALUE, None)
                                .await
                                .unwrap();
                        }
                        2 => {
                            with_schema.set_json("limits", VALUE).await.unwrap();
                        }
                        3 => {
                            without.set_json("limits", VALUE).await.unwrap();
                        }
                        4 => {
                            one_shot.set_json("limits", VALUE).await.unwrap();
                        }
                        _ => {
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
                    times[variant].push(start.elapsed());
                }
            }
        }
        let p50 = |t: &[Duration]| {
            let mut t = t.to_vec();
            t.sort();
            t[t.len() / 2]
        };
        let base = p50(&times[0]).as_secs_f64();
        let unwatched = p50(&times[1]).as_secs_f64();
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let rows: Vec<serde_json::Value> = names
            .iter()
            .zip(times)
            .map(|(name, t)| {
                let median = p50(&t);
                let ratio = median.as_secs_f64() / base;
                let to_unwatched = median.as_secs_f64() / unwatched;
                let summary = support::summary(t);
                println!(
                    "{name:46} p50 {median:>10.1?}  {ratio:.2}x the plain set  \
                     {to_unwatched:.2}x the unwatched put  {summary}"
                );
                json!({"name": name, "latency": summary, "ratio": round(ratio),
                       "ratio_unwatched_put": round(to_unwatched)})
            })
            .collect();
        json!({"writes_per_variant": BLOCKS * PER_BLOCK, "rows": rows})
    });
    support::write_results("write", &results);
}
