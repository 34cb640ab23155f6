//! Read latency, cfgd against its peers in one run (criterion):
//! - `Live<T>::get()` and `Live<T>::borrow()` against a `dynamic-config`
//!   read (arc-swap all three);
//! - a cached `Client::get::<T>` against an etcd round trip through
//!   etcd-client, linearizable and serializable: what a naive config manager
//!   does on a cache miss, and what hand-written glue does on every read.
//!
//! Run: `cargo bench -p cfgd-bench --bench read` (or `make bench`). It starts
//! its own etcd on free ports, from the `etcd` on PATH.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use serde::Deserialize;

#[path = "../../tests/common/mod.rs"]
mod common;

/// The document every reader reads: a small, typical config value.
const LIMITS: &str = r#"{"max_items": 10, "timeout_ms": 250, "regions": ["eu", "us"]}"#;

#[derive(Debug, Default, Clone, Deserialize)]
#[allow(dead_code)] // read for its cost, not its fields
struct Limits {
    max_items: u32,
    timeout_ms: u64,
    regions: Vec<String>,
}

#[dynamic_config::dynamic_config]
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct PeerLimits {
    max_items: u32,
    timeout_ms: u64,
    regions: Vec<String>,
}

fn reads(c: &mut Criterion) {
    let etcd = common::EtcdCluster::single();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let endpoint = etcd.endpoint(0);

    let client = rt.block_on(async {
        let client = cfgd::Client::builder()
            .endpoints([endpoint.clone()])
            .namespace("bench")
            .connect()
            .await
            .expect("connect cfgd");
        client.set_json("limits", LIMITS).await.expect("write");
        client
    });
    let live = client
        .watch("limits", Limits::default())
        .expect("a live value");
    let mut raw = rt.block_on(async {
        etcd_client::Client::connect([endpoint.clone()], None)
            .await
            .expect("connect etcd-client")
    });
    let key = client.etcd_key("limits").unwrap();
    rt.block_on(async {
        // The peer reads one key holding the whole document.
        let source = dynamic_config_etcd::Etcd::new([endpoint.as_str()], key.as_str())
            .await
            .expect("dynamic-config-etcd source")
            .with_format(dynamic_config::Format::Json);
        PeerLimits::set_remote_async(source);
        PeerLimits::refresh_remote_async()
            .await
            .expect("dynamic-config fetch");
        PeerLimits::builder("limits")
            .whole_document()
            .init_async()
            .await
            .expect("dynamic-config init");
    });
    // Both hold the value before timing starts.
    assert_eq!(live.get().max_items, 10);
    assert_eq!(PeerLimits::current().max_items, 10);

    let mut group = c.benchmark_group("read");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("cfgd Live::get", |b| b.iter(|| black_box(live.get())));
    // The same value without a reference count: what a hot path reads.
    group.bench_function("cfgd Live::borrow", |b| {
        b.iter(|| black_box(black_box(live.borrow()).max_items))
    });
    group.bench_function("dynamic-config current()", |b| {
        b.iter(|| black_box(PeerLimits::current()))
    });
    group.bench_function("cfgd Client::get (cached)", |b| {
        b.iter(|| {
            // The cached path never waits, so polling it once is the read.
            let read = client.get::<Limits>("limits").now_or_never();
            black_box(read.expect("a cached read is ready at once"))
        })
    });
    // The floor under any read that hands out an owned value.
    let value = live.get();
    group.bench_function("clone of the value alone", |b| {
        b.iter(|| black_box(Limits::clone(black_box(&value))))
    });
    group.bench_function("etcd range, linearizable", |b| {
        b.iter(|| black_box(rt.block_on(raw.get(key.as_str(), None)).expect("get")))
    });
    let serializable = etcd_client::GetOptions::new().with_serializable();
    group.bench_function("etcd range, serializable", |b| {
        b.iter(|| {
            let options = Some(serializable.clone());
            black_box(rt.block_on(raw.get(key.as_str(), options)).expect("get"))
        })
    });
    group.finish();
    drop(etcd);
}

criterion_group!(benches, reads);
criterion_main!(benches);
