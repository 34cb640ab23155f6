//! Layered namespaces against flat ones, side by side in one run:
//! - a cached `get::<T>` and `Live::get` in the leaf of a three-level chain
//!   (the value merged from all three) against the same reads in a flat
//!   namespace (target: at most 1.1×);
//! - one parent change reaching 1,000 `on_change` subscribers spread over
//!   100 child namespaces, against one change reaching 1,000 subscribers of
//!   one namespace (target: p99 at most 1.5×);
//! - connecting to the leaf of a three-level chain of 10,000 names against
//!   a flat namespace of 10,000 (target: at most 1.5×).
//!
//! Run: `cargo bench -p cfgd-bench --bench layers` (or `make bench`).
//! Writes `target/bench/layers.json`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Txn, TxnOp};
use serde_json::{json, Value};

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use support::Round;

const NAMES: usize = 10_000;
const PER_TXN: usize = 128;

async fn put_all(raw: &mut etcd_client::Client, entries: Vec<(String, String)>) {
    for chunk in entries.chunks(PER_TXN) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|(k, v)| TxnOp::put(k.as_str(), v.as_str(), None))
            .collect();
        raw.txn(Txn::new().and_then(ops)).await.expect("write keys");
    }
}

fn meta(parent: &str) -> String {
    json!({"extends": [parent]}).to_string()
}

async fn connect(etcd: &common::EtcdCluster, ns: &str) -> cfgd::Client {
    cfgd::Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(ns)
        .connect()
        .await
        .expect("connect")
}

/// Median nanoseconds per call of `f` over interleaved batches.
fn per_call(batches: &mut [Vec<f64>], which: usize, calls: u32, mut f: impl FnMut()) {
    let start = Instant::now();
    for _ in 0..calls {
        f();
    }
    batches[which].push(start.elapsed().as_nanos() as f64 / f64::from(calls));
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Reads: the same merged value in a chain's leaf and a flat namespace.
async fn reads(etcd: &common::EtcdCluster, raw: &mut etcd_client::Client) -> Value {
    let value = json!({"url": "postgres://db/app", "pool": {"size": 20, "idle": 2}, "tls": true});
    put_all(
        raw,
        vec![
            ("/cfgd/flat/config/db".into(), value.to_string()),
            (
                "/cfgd/r-base/config/db".into(),
                json!({"url": "postgres://db/app", "pool": {"size": 10, "idle": 2}}).to_string(),
            ),
            ("/cfgd/r-prod/meta".into(), meta("r-base")),
            (
                "/cfgd/r-prod/config/db".into(),
                json!({"pool": {"size": 20}}).to_string(),
            ),
            ("/cfgd/r-eu/meta".into(), meta("r-prod")),
            (
                "/cfgd/r-eu/config/db".into(),
                json!({"tls": true}).to_string(),
            ),
        ],
    )
    .await;
    let flat = connect(etcd, "flat").await;
    let leaf = connect(etcd, "r-eu").await;
    assert_eq!(leaf.get::<Value>("db").await.unwrap(), Some(value.clone()));
    let (flat_live, leaf_live) = (
        flat.watch("db", Value::Null).unwrap(),
        leaf.watch("db", Value::Null).unwrap(),
    );
    let (mut get, mut live) = (vec![Vec::new(), Vec::new()], vec![Vec::new(), Vec::new()]);
    for _ in 0..31 {
        for (which, client) in [(0, &flat), (1, &leaf)] {
            let start = Instant::now();
            for _ in 0..20_000 {
                std::hint::black_box(client.get::<Value>("db").await.unwrap());
            }
            get[which].push(start.elapsed().as_nanos() as f64 / 20_000.0);
        }
        for (which, cell) in [(0, &flat_live), (1, &leaf_live)] {
            per_call(&mut live, which, 200_000, || {
                std::hint::black_box(cell.get());
            });
        }
    }
    let [flat_get, leaf_get] = [0, 1].map(|i| median(get[i].clone()));
    let [flat_live, leaf_live] = [0, 1].map(|i| median(live[i].clone()));
    json!({
        "get_flat_ns": flat_get, "get_layered_ns": leaf_get, "get_ratio": leaf_get / flat_get,
        "live_flat_ns": flat_live, "live_layered_ns": leaf_live, "live_ratio": leaf_live / flat_live,
    })
}

/// One change reaching `clients`' callbacks, `per_client` each; p99 and
/// the rest of [`support::summary`].
async fn fan_out(
    writer: &etcd_client::Client,
    key: &str,
    clients: &[cfgd::Client],
    per_client: usize,
    rounds: usize,
) -> Value {
    let round = Arc::new(Round::new(clients.len() * per_client));
    let mut keep = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        for s in 0..per_client {
            let round = round.clone();
            let index = c * per_client + s;
            keep.push(client.on_change("hot", move |_| round.saw(index)).unwrap());
        }
    }
    let delays = round
        .time(rounds, |i| {
            let mut writer = writer.clone();
            let key = key.to_owned();
            let round = round.clone();
            async move {
                writer
                    .put(key, json!({"round": i}).to_string(), None)
                    .await
                    .expect("put");
                round.now()
            }
        })
        .await;
    drop(keep);
    support::summary(delays)
}

async fn propagation(etcd: &common::EtcdCluster, raw: &mut etcd_client::Client) -> Value {
    let mut entries = vec![("/cfgd/p-flat/config/hot".to_owned(), "0".to_owned())];
    entries.push(("/cfgd/p-base/config/hot".into(), "0".into()));
    for i in 0..100 {
        entries.push((format!("/cfgd/p-child{i}/meta"), meta("p-base")));
    }
    put_all(raw, entries).await;
    let first = connect(etcd, "p-flat").await;
    let flat = vec![first.clone()];
    let mut children = Vec::new();
    for i in 0..100 {
        let child = cfgd::Client::builder()
            .share(&first)
            .namespace(format!("p-child{i}"))
            .connect()
            .await
            .expect("connect child");
        children.push(child);
    }
    let rounds = 200;
    // Interleaved halves, so that a stall of the machine lands on both.
    let mut flat_runs = Vec::new();
    let mut layered_runs = Vec::new();
    for _ in 0..2 {
        flat_runs.push(fan_out(raw, "/cfgd/p-flat/config/hot", &flat, 1000, rounds / 2).await);
        layered_runs.push(fan_out(raw, "/cfgd/p-base/config/hot", &children, 10, rounds / 2).await);
    }
    let p99 = |runs: &[Value]| {
        runs.iter()
            .map(|r| r["p99_ms"].as_f64().unwrap())
            .fold(0.0, f64::max)
    };
    let (flat_p99, layered_p99) = (p99(&flat_runs), p99(&layered_runs));
    json!({
        "flat": flat_runs, "layered": layered_runs,
        "flat_p99_ms": flat_p99, "layered_p99_ms": layered_p99,
        "p99_ratio": if flat_p99 > 0.0 { layered_p99 / flat_p99 } else { 0.0 },
        "etcd_watchers_hint": "one watch for the 101 namespaces",
    })
}

async fn loading(etcd: &common::EtcdCluster, raw: &mut etcd_client::Client) -> Value {
    let value = |i: usize| json!({"max": i, "unit": "requests", "enabled": true}).to_string();
    let mut entries = Vec::with_capacity(2 * NAMES + 2);
    for i in 0..NAMES {
        let name = format!("svc{}.limit.{i}", i % 50);
        entries.push((format!("/cfgd/l-flat/config/{name}"), value(i)));
        // The chain holds the same 10,000 names in base, and a tenth of
        // them overridden field by field in each level above.
        entries.push((format!("/cfgd/l-base/config/{name}"), value(i)));
        match i % 10 {
            0 => entries.push((
                format!("/cfgd/l-prod/config/{name}"),
                json!({"max": i + 1}).to_string(),
            )),
            1 => entries.push((
                format!("/cfgd/l-eu/config/{name}"),
                json!({"unit": "calls"}).to_string(),
            )),
            _ => {}
        }
    }
    entries.push(("/cfgd/l-prod/meta".into(), meta("l-base")));
    entries.push(("/cfgd/l-eu/meta".into(), meta("l-prod")));
    put_all(raw, entries).await;
    let (mut flat, mut layered) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        for (ns, out) in [("l-flat", &mut flat), ("l-eu", &mut layered)] {
            let start = Instant::now();
            let client = connect(etcd, ns).await;
            out.push(start.elapsed().as_secs_f64() * 1e3);
            assert_eq!(client.list::<Value>("").await.unwrap().len(), NAMES, "{ns}");
        }
    }
    let (flat, layered) = (median(flat), median(layered));
    json!({"names": NAMES, "flat_ms": flat, "layered_ms": layered, "ratio": layered / flat})
}

fn main() {
    let etcd = common::EtcdCluster::single();
    let rt = support::runtime();
    let result = rt.block_on(async {
        let mut raw = etcd.raw().await;
        let reads = reads(&etcd, &mut raw).await;
        println!("reads: {reads}");
        let propagation = propagation(&etcd, &mut raw).await;
        println!("propagation: {propagation}");
        let loading = loading(&etcd, &mut raw).await;
        println!("loading: {loading}");
        tokio::time::sleep(Duration::from_millis(10)).await;
        json!({"reads": reads, "propagation": propagation, "loading": loading})
    });
    support::write_results("layers", &result);
}
