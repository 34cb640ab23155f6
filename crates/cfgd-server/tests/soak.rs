//! Several cfgd replicas on a 3-member etcd cluster, under load, through a
//! replica kill and an etcd leader kill: no SSE client or library
//! subscriber loses, repeats or reorders a change.
//!
//! `make test` runs a short version; `make soak` the full one
//! (`CFGD_SOAK_SECONDS`, `CFGD_SOAK_SSE`, `CFGD_SOAK_WRITES_PER_SEC`).

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::{self, EtcdCluster, KillOnDrop};

const TOKEN: &str = "soak-secret";
const NAMESPACE: &str = "soak";
const REPLICAS: usize = 3;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One cfgd replica, on a fixed port so that it restarts where it was.
struct Replica {
    port: u16,
    config: std::path::PathBuf,
    endpoints: String,
    child: Option<KillOnDrop>,
}

impl Replica {
    fn start(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cfgd"))
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--endpoints", &self.endpoints, "--config"])
            .arg(&self.config)
            .env_remove("CFGD_NO_AUTH")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cfgd");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.contains("listening"), "cfgd said {first:?}");
        self.child = Some(KillOnDrop(child));
    }

    /// SIGKILL, as a crash would (our own child, by its pid).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.0.kill();
            let _ = child.0.wait();
        }
    }
}

/// The phase of the run, for error rates per fault.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Phase {
    Steady,
    ReplicaKilled,
    LeaderKilled,
    Restarted,
}

const PHASES: [Phase; 4] = [
    Phase::Steady,
    Phase::ReplicaKilled,
    Phase::LeaderKilled,
    Phase::Restarted,
];

#[derive(Default)]
struct Tally {
    attempts: AtomicU64,
    failures: AtomicU64,
    /// How the first few failed, for the report.
    why: Mutex<Vec<String>>,
}

impl Tally {
    fn failed(&self, why: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut list = self.why.lock().unwrap();
        if list.len() < 3 && !list.contains(&why) {
            list.push(why);
        }
    }
}

struct Shared {
    phase: Mutex<Phase>,
    stop: AtomicBool,
    /// Acknowledged writes: revision → when the write was sent.
    acked: Mutex<BTreeMap<i64, Instant>>,
    writes: HashMap<Phase, Tally>,
    evaluations: HashMap<Phase, Tally>,
    alive: Mutex<[bool; REPLICAS]>,
    ports: [u16; REPLICAS],
}

impl Shared {
    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap()
    }

    /// The replica to use for attempt `n`: a live one, round robin.
    fn replica(&self, n: usize) -> u16 {
        let alive = *self.alive.lock().unwrap();
        let live: Vec<usize> = (0..REPLICAS).filter(|i| alive[*i]).collect();
        self.ports[live[n % live.len()]]
    }
}

/// What one subscriber (SSE client or library subscription) saw.
#[derive(Default)]
struct Seen {
    /// Revisions in the order received, with when.
    events: Vec<(i64, Instant)>,
    reconnects: u32,
}

async fn request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nX-Cfgd-Namespace: {NAMESPACE}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    let mut reply = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut reply)
        .await
        .ok()?;
    let status = reply.split(' ').nth(1)?.parse().ok()?;
    let body = reply.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

async fn writer(shared: Arc<Shared>, id: usize, every: Duration) {
    let mut tick = tokio::time::interval(every);
    let mut n = 0usize;
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let phase = shared.phase();
        let tally = &shared.writes[&phase];
        tally.attempts.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let port = shared.replica(n + id);
        let path = format!("/v1/namespaces/{NAMESPACE}/config/k/w{id}");
        let body = json!({"writer": id, "n": n}).to_string();
        let reply =
            tokio::time::timeout(Duration::from_secs(10), request(port, "PUT", &path, &body)).await;
        match reply {
            Ok(Some((200, body))) => {
                let revision = serde_json::from_str::<Value>(&body).unwrap()["revision"]
                    .as_i64()
                    .unwrap();
                shared.acked.lock().unwrap().insert(revision, sent);
            }
            Ok(Some((status, body))) => tally.failed(format!("{status} {}", body.trim())),
            Ok(None) => tally.failed("connection failed".into()),
            Err(_) => tally.failed("no answer in 10 s".into()),
        }
    }
}

async fn evaluator(shared: Arc<Shared>, id: usize) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut n = 0usize;
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let tally = &shared.evaluations[&shared.phase()];
        tally.attempts.fetch_add(1, Ordering::Relaxed);
        let port = shared.replica(n + id);
        let path = "/ofrep/v1/evaluate/flags/soak-flag";
        let body = json!({"context": {"targetingKey": format!("user-{n}")}}).to_string();
        match tokio::time::timeout(Duration::from_secs(5), request(port, "POST", path, &body)).await
        {
            Ok(Some((200, _))) => {}
            Ok(Some((status, body))) => tally.failed(format!("{status} {}", body.trim())),
            Ok(None) => tally.failed("connection failed".into()),
            Err(_) => tally.failed("no answer in 5 s".into()),
        }
    }
}

/// An SSE client: starts on replica `first`, moves to the next live one
/// whenever its stream ends, resuming with `Last-Event-ID`.
async fn sse_client(shared: Arc<Shared>, first: usize, seen: Arc<Mutex<Seen>>) {
    let mut last: Option<i64> = None;
    let mut attempt = first;
    // Until aborted: the last changes arrive after the writers stop.
    loop {
        let port = shared.replica(attempt);
        attempt += 1;
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let resume = last.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        let head = format!(
            "GET /v1/namespaces/{NAMESPACE}/watch?prefix=k/ HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer {TOKEN}\r\n{resume}\r\n"
        );
        if stream.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut lines = BufReader::new(stream).lines();
        match lines.next_line().await {
            Ok(Some(status)) if status.contains(" 200 ") => {}
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let mut id = None;
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse::<i64>().ok();
            } else if line.starts_with("data:") {
                if let Some(revision) = id.take() {
                    seen.lock().unwrap().events.push((revision, Instant::now()));
                    last = Some(revision);
                }
            }
        }
        seen.lock().unwrap().reconnects += 1;
    }
}

struct Report {
    acked: usize,
    lost: usize,
    duplicated: usize,
    out_of_order: usize,
    latencies: Vec<Duration>,
}

/// Checks one subscriber against the acknowledged writes after `from`.
fn check(seen: &Seen, acked: &BTreeMap<i64, Instant>, from: i64, report: &mut Report) {
    let mut previous = 0;
    let mut got = std::collections::HashSet::new();
    for (revision, at) in &seen.events {
        if *revision <= previous {
            if got.contains(revision) {
                report.duplicated += 1;
            } else {
                report.out_of_order += 1;
            }
        }
        previous = previous.max(*revision);
        got.insert(*revision);
        if let Some(sent) = acked.get(revision) {
            report.latencies.push(at.saturating_duration_since(*sent));
        }
    }
    let missing: Vec<i64> = acked
        .range(from + 1..)
        .map(|(r, _)| *r)
        .filter(|r| !got.contains(r))
        .collect();
    if !missing.is_empty() {
        let around: Vec<i64> = seen
            .events
            .iter()
            .map(|(r, _)| *r)
            .filter(|r| (missing[0] - 5..=missing[missing.len() - 1] + 5).contains(r))
            .collect();
        println!(
            "soak: a subscriber ({} reconnects) missed {missing:?}; it saw {around:?} around them",
            seen.reconnects
        );
    }
    report.lost += missing.len();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_lose_nothing_through_a_replica_kill_and_a_leader_kill() {
    common::logs();
    let seconds = setting("CFGD_SOAK_SECONDS", 24);
    let sse = setting("CFGD_SOAK_SSE", 30) as usize;
    let rate = setting("CFGD_SOAK_WRITES_PER_SEC", 20);
    let mut etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfgd.toml");
    std::fs::write(
        &config,
        format!(
            "stream_secret = \"soak-shared-stream-secret\"\n\
             [[tokens]]\nname = \"soak\"\nsecret = \"{TOKEN}\"\nscopes = {{ \"*\" = \"write\" }}\n"
        ),
    )
    .unwrap();
    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|_| Replica {
            port: common::free_port(),
            config: config.clone(),
            endpoints: etcd.endpoints_arg(),
            child: None,
        })
        .collect();
    for replica in &mut replicas {
        replica.start();
    }
    let phase_tallies = || PHASES.iter().map(|p| (*p, Tally::default())).collect();
    let shared = Arc::new(Shared {
        phase: Mutex::new(Phase::Steady),
        stop: AtomicBool::new(false),
        acked: Mutex::new(BTreeMap::new()),
        writes: phase_tallies(),
        evaluations: phase_tallies(),
        alive: Mutex::new([true; REPLICAS]),
        ports: std::array::from_fn(|i| replicas[i].port),
    });
    // The flag the evaluators ask for, and each namespace's client warm.
    let flag =
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                      "targeting": {"fractional": [["on", 50], ["off", 50]]}})
        .to_string();
    for port in shared.ports {
        let put = request(
            port,
            "PUT",
            &format!("/v1/namespaces/{NAMESPACE}/flags/soak-flag"),
            &flag,
        )
        .await;
        assert!(matches!(put, Some((200, _))), "{put:?}");
    }
    let start_revision = etcd.revision().await;

    // Library subscribers, straight on etcd.
    let mut library = Vec::new();
    for _ in 0..2 {
        let client = cfgd::Client::builder()
            .endpoints(etcd.endpoints())
            .namespace(NAMESPACE)
            .connect()
            .await
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut changes = client.subscribe("k/").unwrap();
        let s = seen.clone();
        let task = tokio::spawn(async move {
            use tokio_stream::StreamExt;
            // Until aborted: the last changes arrive after the writers stop.
            while let Some(change) = changes.next().await {
                s.lock()
                    .unwrap()
                    .events
                    .push((change.revision(), Instant::now()));
            }
        });
        library.push((client, seen, task));
    }
    let mut clients = Vec::new();
    for i in 0..sse {
        let seen = Arc::new(Mutex::new(Seen::default()));
        clients.push((
            seen.clone(),
            tokio::spawn(sse_client(shared.clone(), i, seen)),
        ));
    }
    // Every stream open before the first write counts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writers = 4;
    let every = Duration::from_micros(1_000_000 * writers / rate.max(1));
    let mut load = Vec::new();
    for id in 0..writers as usize {
        load.push(tokio::spawn(writer(shared.clone(), id, every)));
    }
    for id in 0..2 {
        load.push(tokio::spawn(evaluator(shared.clone(), id)));
    }

    let quarter = Duration::from_secs(seconds / 4);
    let set_phase = |p| *shared.phase.lock().unwrap() = p;
    tokio::time::sleep(quarter).await;
    // A replica dies; its clients move to the others.
    set_phase(Phase::ReplicaKilled);
    shared.alive.lock().unwrap()[0] = false;
    replicas[0].kill();
    tokio::time::sleep(quarter).await;
    // The etcd leader dies.
    set_phase(Phase::LeaderKilled);
    let leader = etcd.leader().await;
    etcd.kill(leader);
    tokio::time::sleep(quarter).await;
    // Both come back.
    set_phase(Phase::Restarted);
    tokio::task::block_in_place(|| {
        etcd.restart(leader);
        etcd.wait_healthy();
    });
    replicas[0].start();
    shared.alive.lock().unwrap()[0] = true;
    tokio::time::sleep(quarter).await;

    // Stop writing, then give the last changes time to arrive.
    shared.stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let acked = shared.acked.lock().unwrap().clone();
    let last = *acked.keys().last().expect("some write was acknowledged");
    let everyone = || {
        clients
            .iter()
            .map(|(s, _)| s)
            .chain(library.iter().map(|(_, s, _)| s))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && everyone().any(|s| {
            s.lock()
                .unwrap()
                .events
                .last()
                .is_none_or(|(r, _)| *r < last)
        })
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (_, task) in &clients {
        task.abort();
    }
    for (_, _, task) in &library {
        task.abort();
    }

    let mut report = Report {
        acked: acked.len(),
        lost: 0,
        duplicated: 0,
        out_of_order: 0,
        latencies: Vec::new(),
    };
    let mut per_client = Vec::new();
    let mut reconnects = 0;
    for seen in everyone() {
        let seen = seen.lock().unwrap();
        check(&seen, &acked, start_revision, &mut report);
        per_client.push(seen.events.len());
        reconnects += seen.reconnects;
    }
    report.latencies.sort();
    let percentile = |p: f64| {
        let i = ((report.latencies.len() as f64 - 1.0) * p).round() as usize;
        report.latencies.get(i).copied().unwrap_or_default()
    };
    per_client.sort_unstable();
    println!("soak: {seconds} s, {REPLICAS} cfgd replicas on 3 etcd members, {sse} SSE clients, 2 library subscribers, {rate} writes/s");
    println!(
        "soak: writes acknowledged {}; events per subscriber min {} median {} max {}; SSE reconnects {reconnects}",
        report.acked,
        per_client[0],
        per_client[per_client.len() / 2],
        per_client[per_client.len() - 1]
    );
    println!(
        "soak: lost {}, duplicated {}, out of order {}",
        report.lost, report.duplicated, report.out_of_order
    );
    println!(
        "soak: delivery latency p50 {:.1} ms, p99 {:.1} ms",
        percentile(0.5).as_secs_f64() * 1e3,
        percentile(0.99).as_secs_f64() * 1e3
    );
    for phase in PHASES {
        let rate = |t: &Tally| {
            let (a, f) = (
                t.attempts.load(Ordering::Relaxed),
                t.failures.load(Ordering::Relaxed),
            );
            let why = t.why.lock().unwrap().join("; ");
            format!(
                "{f}/{a} ({:.1}%){}",
                100.0 * f as f64 / a.max(1) as f64,
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" [{why}]")
                }
            )
        };
        println!(
            "soak: {phase:?}: write errors {}, OFREP errors {}",
            rate(&shared.writes[&phase]),
            rate(&shared.evaluations[&phase])
        );
    }
    assert!(
        report.acked as u64 > seconds * rate / 4,
        "too few writes went through"
    );
    assert!(
        reconnects >= (sse / REPLICAS) as u32,
        "the killed replica's clients did not move"
    );
    assert_eq!(
        (report.lost, report.duplicated, report.out_of_order),
        (0, 0, 0),
        "changes lost, duplicated or out of order"
    );
}
