//! Webhook delivery and the workers' failover, on the release `cfgd`
//! binaries (two replicas, one elected) and a receiver in this process:
//! - a change from just before it is put to etcd until the receiver has the
//!   event (it answers 204 at once), p50 and p99, at 1 and at 100 changes
//!   per second, beside a library subscriber's delivery of the same changes
//!   (what etcd's watch alone takes); target: p99 at most 50 ms at 100/s;
//! - failover: from SIGKILL of the leader to the next delivery by the
//!   other replica, while changes flow; target: the lease TTL plus 2 s.
//!
//! Run: `cargo bench -p cfgd-bench --bench webhooks` (after `cargo build
//! --release -p cfgd-server -p cfgctl`; `make bench` does). Writes
//! `target/bench/webhooks.json`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

const TTL_SECS: u64 = 3;
const NS: &str = "hooks-bench";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn release(name: &str) -> std::path::PathBuf {
    let path = common::root().join("target/release").join(name);
    assert!(
        path.is_file(),
        "{} is missing: cargo build --release -p cfgd-server -p cfgctl (make bench does)",
        path.display()
    );
    path
}

/// A replica named `name`; its address.
fn replica(etcd: &common::EtcdCluster, dir: &std::path::Path, name: &str) -> (Proc, String) {
    let config = dir.join(format!("{name}.toml"));
    let key = dir.join("secret.key");
    std::fs::write(
        &config,
        format!(
            "no_auth = true\nsecret_key_file = {:?}\n[workers]\nttl = {TTL_SECS}\nreplica = {name:?}\n[webhooks]\nallow_loopback = true\n",
            key.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut command = Command::new(release("cfgd"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--endpoints",
            &etcd.endpoints_arg(),
        ])
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = common::dies_with_us(&mut command)
        .spawn()
        .expect("start cfgd");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("cfgd listening on http://")
        .expect("cfgd's first line")
        .to_owned();
    (Proc(child), address)
}

fn leads(address: &str) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let _ = write!(stream, "GET /readyz HTTP/1.0\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.contains("\"leader\":true")
}

/// What the receiver got: each event's revision, the replica that sent it,
/// and when.
type Got = Arc<Mutex<Vec<(i64, String, Instant)>>>;

/// An HTTP/1.1 receiver on a free port that answers 204 to everything.
async fn receiver() -> (
    u16,
    Got,
    tokio::sync::mpsc::UnboundedReceiver<(i64, String, Instant)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Got = Default::default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let kept = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (got, tx) = (kept.clone(), tx.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = tokio::io::BufReader::new(read);
                loop {
                    let (mut length, mut id, mut replica) = (0usize, String::new(), String::new());
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let header = line.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            match name.to_ascii_lowercase().as_str() {
                                "content-length" => length = value.trim().parse().unwrap_or(0),
                                "webhook-id" => id = value.trim().to_owned(),
                                "cfgd-replica" => replica = value.trim().to_owned(),
                                _ => {}
                            }
                        }
                    }
                    let at = Instant::now();
                    let mut body = vec![0; length];
                    if read.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if let Some(revision) = id.rsplit('-').next().and_then(|r| r.parse().ok()) {
                        got.lock().unwrap().push((revision, replica.clone(), at));
                        let _ = tx.send((revision, replica, at));
                    }
                    if write
                        .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, got, rx)
}

/// `count` changes at `rate` per second: from before each put to the
/// receiver's event, and to a library subscriber's.
async fn deliveries(
    writer: &cfgd::Client,
    watcher: &cfgd::Client,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<(i64, String, Instant)>,
    count: usize,
    rate: f64,
) -> Value {
    let mut subscription = watcher.subscribe("rate.").unwrap();
    let sent: Arc<Mutex<HashMap<i64, Instant>>> = Default::default();
    let seen: Arc<Mutex<HashMap<i64, Instant>>> = Default::default();
    let watching = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(change) = subscription.next().await {
                seen.lock()
                    .unwrap()
                    .insert(change.revision(), Instant::now());
            }
        })
    };
    while events.try_recv().is_ok() {}
    let every = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut revisions = Vec::new();
    for i in 0..count {
        tokio::time::sleep_until(start + every * i as u32).await;
        let before = Instant::now();
        let revision = writer
            .set(&format!("rate.n{}", i % 50), &(i as u64))
            .await
            .unwrap();
        sent.lock().unwrap().insert(revision, before);
        revisions.push(revision);
    }
    let mut delivered = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some((revision, _, at))) = tokio::time::timeout(left, events.recv()).await else {
            panic!("{} of {count} events delivered", delivered.len());
        };
        if sent.lock().unwrap().contains_key(&revision) {
            delivered.entry(revision).or_insert(at);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    watching.abort();
    let sent = sent.lock().unwrap();
    let seen = seen.lock().unwrap();
    let webhook: Vec<Duration> = revisions.iter().map(|r| delivered[r] - sent[r]).collect();
    let library: Vec<Duration> = revisions
        .iter()
        .filter_map(|r| Some(*seen.get(r)? - sent[r]))
        .collect();
    json!({"rate_per_s": rate, "changes": count, "webhook": support::summary(webhook), "library": support::summary(library)})
}

fn main() {
    let etcd = common::EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = Command::new(release("cfgctl"))
        .args(["secret", "keygen"])
        .output()
        .unwrap();
    std::fs::write(dir.path().join("secret.key"), key.stdout).unwrap();
    let mut replicas = [
        replica(&etcd, dir.path(), "r0"),
        replica(&etcd, dir.path(), "r1"),
    ];
    let runtime = support::runtime();
    runtime.block_on(async {
        let (port, got, mut events) = receiver().await;
        let client = cfgd::Client::builder()
            .endpoints(etcd.endpoints())
            .namespace(NS)
            .secret_key_file(dir.path().join("secret.key"))
            .live(false)
            .connect()
            .await
            .unwrap();
        let watcher = cfgd::Client::builder()
            .endpoints(etcd.endpoints())
            .namespace(NS)
            .connect()
            .await
            .unwrap();
        let spec = cfgd::webhooks::WebhookSpec {
            url: format!("http://127.0.0.1:{port}/in"),
            ..Default::default()
        };
        client.add_webhook(&spec, true).await.unwrap();
        // Warm up: the leader found the webhook and delivers.
        client.set("warm", &0).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(20), events.recv()).await.expect("a first delivery");
        let slow = deliveries(&client, &watcher, &mut events, 20, 1.0).await;
        println!("1/s: {slow}");
        let fast = deliveries(&client, &watcher, &mut events, 1000, 100.0).await;
        println!("100/s: {fast}");
        // Failover, three times: kill the leader while changes flow.
        let mut failovers = Vec::new();
        for round in 0..3 {
            let lead = (0..replicas.len()).find(|&i| leads(&replicas[i].1)).expect("a leader");
            let name = format!("r{lead}");
            let flowing = {
                let client = client.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let _ = client.set("flow", &(i as u64)).await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            };
            tokio::time::sleep(Duration::from_millis(500)).await;
            while events.try_recv().is_ok() {}
            let killed = Instant::now();
            unsafe { libc::kill(replicas[lead].0 .0.id() as i32, libc::SIGKILL) };
            let by_other = loop {
                let (_, replica, at) = tokio::time::timeout(Duration::from_secs(30), events.recv())
                    .await
                    .expect("no delivery within 30 s of the kill")
                    .unwrap();
                if replica != name && at > killed {
                    break at;
                }
            };
            flowing.abort();
            let took = by_other - killed;
            println!("failover {round}: {took:?}");
            failovers.push(took);
            replicas[lead] = replica(&etcd, dir.path(), &format!("r{lead}"));
        }
        let ms: Vec<f64> = failovers.iter().map(|d| (d.as_secs_f64() * 1e4).round() / 10.0).collect();
        let results = json!({
            "at_1_per_s": slow,
            "at_100_per_s": fast,
            "failover": {"ttl_s": TTL_SECS, "rounds_ms": ms, "max_ms": ms.iter().cloned().fold(0.0, f64::max)},
            "receiver_events": got.lock().unwrap().len(),
        });
        support::write_results("webhooks", &results);
    });
}
