//! Propagation latency and etcd's cost of fan-out, cfgd against its peers in
//! one run:
//! - cfgd: one client, N subscribers (`Client::subscribe`, a stream each)
//!   in this process; and the same N as callbacks (`Client::on_change`);
//! - N direct etcd watchers through etcd-client, on etcd itself;
//! - the same N watchers through etcd's gRPC proxy (`etcd grpc-proxy`),
//!   which coalesces watchers of one key;
//! - dynamic-config-etcd: one watch feeding one config type (its model has
//!   one watch per type, so it is measured at N = 1 only).
//!
//! Latency runs from the moment the writer has etcd's answer to its put, to
//! the moment each subscriber's code sees the change (0 if the change came
//! first). etcd's side is read from its own `/metrics`
//! (`etcd_debugging_mvcc_watcher_total`, `..._watch_stream_total`) and its
//! CPU time (`/proc/<pid>/stat`) over the puts.
//!
//! Run: `cargo bench -p cfgd-bench --bench propagation` (or `make bench`).
//! Writes `target/bench/propagation.json`.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::WatchOptions;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_stream::StreamExt;

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use support::{summary, Round};

const KEY: &str = "feature.flags";
const SIZES: [usize; 3] = [1, 100, 10_000];

/// Puts `rounds` new values through `writer` and collects, for each, the
/// delay from the put's answer to every subscriber seeing it.
async fn measure(
    writer: &etcd_client::Client,
    key: &str,
    rounds: usize,
    round: &Round,
) -> Vec<Duration> {
    round
        .time(rounds, |i| {
            let mut writer = writer.clone();
            let value = json!({"dark_mode": i % 2 == 0, "round": i}).to_string();
            async move {
                writer.put(key, value, None).await.expect("put");
                round.now()
            }
        })
        .await
}

/// etcd's CPU time so far (user + system), from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read etcd's /proc stat");
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Puts per size: enough that one stall of the machine does not decide a
/// small size's p99 (100 puts at 100 subscribers did).
fn rounds_for(subscribers: usize) -> usize {
    if subscribers >= 10_000 {
        20
    } else {
        500
    }
}

/// etcd's watcher gauges and its CPU time over the measured puts.
struct EtcdSide<'a> {
    etcd: &'a common::EtcdCluster,
    cpu_before: Duration,
}

impl<'a> EtcdSide<'a> {
    fn start(etcd: &'a common::EtcdCluster) -> Self {
        EtcdSide {
            etcd,
            cpu_before: cpu_time(etcd.pid(0).unwrap()),
        }
    }

    fn finish(self) -> Value {
        let cpu = cpu_time(self.etcd.pid(0).unwrap()) - self.cpu_before;
        json!({
            "watchers": self.etcd.metric(0, "etcd_debugging_mvcc_watcher_total"),
            "watch_streams": self.etcd.metric(0, "etcd_debugging_mvcc_watch_stream_total"),
            "cpu_ms": cpu.as_millis() as u64,
        })
    }
}

/// Counts the heap in use, so that the bytes each subscriber costs are
/// exact: RSS moves by whole pages and lags the allocator.
struct Counting;

static HEAP: AtomicUsize = AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One cfgd client with `n` subscribers, made by `subscribe` (each is told
/// its index and the round to report to).
async fn cfgd<S>(
    etcd: &common::EtcdCluster,
    n: usize,
    subscribe: impl Fn(&cfgd::Client, usize, Arc<Round>) -> S,
) -> Value {
    let client = cfgd::Client::builder()
        .endpoints(etcd.endpoints())
        .namespace("bench")
        .connect()
        .await
        .expect("connect cfgd");
    let key = client.etcd_key(KEY).unwrap();
    let round = Arc::new(Round::new(n));
    let heap_before = HEAP.load(Ordering::Relaxed);
    let subscribers: Vec<S> = (0..n)
        .map(|id| subscribe(&client, id, round.clone()))
        .collect();
    let per_subscriber = HEAP.load(Ordering::Relaxed).saturating_sub(heap_before) / n;
    let mut result = puts_and_etcd_side(etcd, &key, n, &round).await;
    drop(subscribers);
    result["heap_bytes_per_subscriber"] = per_subscriber.into();
    result
}

/// A subscriber as a stream: a task that awaits its `Subscription`.
fn stream(client: &cfgd::Client, id: usize, round: Arc<Round>) -> AbortOnDrop {
    let mut sub = client.subscribe(KEY).expect("subscribe");
    AbortOnDrop(tokio::spawn(async move {
        while sub.next().await.is_some() {
            round.saw(id);
        }
    }))
}

/// A subscriber as a callback: no task, no channel.
fn callback(client: &cfgd::Client, id: usize, round: Arc<Round>) -> cfgd::OnChange {
    client
        .on_change(KEY, move |_| round.saw(id))
        .expect("on_change")
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The measured puts and etcd's side of them.
async fn puts_and_etcd_side(
    etcd: &common::EtcdCluster,
    key: &str,
    n: usize,
    round: &Round,
) -> Value {
    let writer = etcd.raw().await;
    let side = EtcdSide::start(etcd);
    let delays = measure(&writer, key, rounds_for(n), round).await;
    json!({"latency": summary(delays), "etcd": side.finish()})
}

async fn direct(etcd: &common::EtcdCluster, endpoint: &str, n: usize) -> Value {
    let key = format!("/direct/{KEY}");
    let watcher = etcd_client::Client::connect([endpoint], None)
        .await
        .expect("connect");
    let round = Arc::new(Round::new(n));
    let mut tasks = Vec::with_capacity(n);
    for id in 0..n {
        let mut watch = watcher.watch_client();
        let mut stream = watch
            .watch(key.as_str(), Some(WatchOptions::new()))
            .await
            .expect("open a watch");
        let round = round.clone();
        tasks.push(AbortOnDrop(tokio::spawn(async move {
            while let Ok(Some(resp)) = stream.message().await {
                for _ in resp.events() {
                    round.saw(id);
                }
            }
        })));
    }
    puts_and_etcd_side(etcd, &key, n, &round).await
}

/// The floor under any design with a task per subscriber: a unit value
/// sent on a tokio broadcast channel to `n` tasks, on this runtime, with no
/// etcd and no cfgd in the way. Timed from the send.
async fn floor(n: usize) -> Value {
    let (send, _) = tokio::sync::broadcast::channel::<usize>(16);
    let round = Arc::new(Round::new(n));
    let mut tasks = Vec::with_capacity(n);
    for id in 0..n {
        let mut receive = send.subscribe();
        let round = round.clone();
        tasks.push(tokio::spawn(async move {
            while receive.recv().await.is_ok() {
                round.saw(id);
            }
        }));
    }
    // Every task is parked on its receiver before the first send.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let delays = round
        .time(rounds_for(n), |i| {
            let sent = round.now();
            send.send(i).expect("receivers");
            async move { sent }
        })
        .await;
    for task in tasks {
        task.abort();
    }
    json!({"latency": summary(delays)})
}

#[dynamic_config::dynamic_config]
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Flags {
    dark_mode: bool,
    round: u64,
}

async fn dynamic_config(etcd: &common::EtcdCluster) -> Value {
    let key = format!("/dynamic/{KEY}.json");
    let mut writer = etcd.raw().await;
    writer
        .put(key.as_str(), r#"{"dark_mode": false, "round": 0}"#, None)
        .await
        .unwrap();
    let source = || async {
        dynamic_config_etcd::Etcd::new(etcd.endpoints(), key.as_str())
            .await
            .expect("dynamic-config-etcd source")
    };
    Flags::set_remote_async(source().await);
    Flags::refresh_remote_async().await.expect("fetch");
    Flags::builder("flags")
        .whole_document()
        .init_async()
        .await
        .expect("init");
    let sink = Flags::remote_sink();
    let round = Arc::new(Round::new(1));
    let watcher = source().await;
    let seen = round.clone();
    let task = tokio::spawn(async move {
        let _ = watcher
            .watch(move |document| {
                let applied = sink.apply(document);
                seen.saw(0);
                applied
            })
            .await;
    });
    // Let its watch open before the first put.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let side = EtcdSide::start(etcd);
    let delays = measure(&writer, &key, rounds_for(1), &round).await;
    let etcd_side = side.finish();
    task.abort();
    json!({"latency": summary(delays), "etcd": etcd_side})
}

/// `etcd grpc-proxy start` in front of `etcd`, on a free port.
fn grpc_proxy(etcd: &common::EtcdCluster) -> (common::KillOnDrop, String) {
    let port = common::free_port();
    let mut command = Command::new("etcd");
    command
        .args(["grpc-proxy", "start", "--endpoints", &etcd.endpoints_arg()])
        .args(["--listen-addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    common::dies_with_us(&mut command);
    let child = command
        .spawn()
        .expect("start etcd grpc-proxy (the etcd binary on PATH)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "grpc-proxy did not listen within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        common::KillOnDrop(child),
        format!("http://127.0.0.1:{port}"),
    )
}

fn main() {
    let rt = support::runtime();
    let mut results = serde_json::Map::new();
    // CFGD_BENCH_SIZES=10000 runs one size only, when working on one.
    let sizes: Vec<usize> = match std::env::var("CFGD_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|n| n.trim().parse().expect("a number"))
            .collect(),
        Err(_) => SIZES.to_vec(),
    };
    for n in sizes {
        // A fresh etcd per size, so that watcher gauges and CPU time are
        // this size's alone.
        let result = rt.block_on(floor(n));
        println!("{n:>6} subscribers  {:<16} {result}", "floor (tokio)");
        results.insert(format!("tokio broadcast floor / {n}"), result);
        for peer in ["cfgd", "cfgd on_change", "etcd direct", "etcd grpc-proxy"] {
            let etcd = common::EtcdCluster::single();
            let result = rt.block_on(async {
                match peer {
                    "cfgd" => cfgd(&etcd, n, stream).await,
                    "cfgd on_change" => cfgd(&etcd, n, callback).await,
                    "etcd direct" => direct(&etcd, &etcd.endpoint(0), n).await,
                    _ => {
                        let (_proxy, endpoint) = grpc_proxy(&etcd);
                        direct(&etcd, &endpoint, n).await
                    }
                }
            });
            println!("{n:>6} subscribers  {peer:<16} {result}");
            results.insert(format!("{peer} / {n}"), result);
        }
    }
    let etcd = common::EtcdCluster::single();
    let result = rt.block_on(dynamic_config(&etcd));
    println!("{:>6} subscribers  {:<16} {result}", 1, "dynamic-config");
    results.insert("dynamic-config-etcd / 1".into(), result);

    support::write_results("propagation", &Value::Object(results));
}
