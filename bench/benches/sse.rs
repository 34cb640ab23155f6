//! 10,000 concurrent SSE clients on one cfgd: delivery latency after a put
//! (from etcd's answer to the client reading the event) and the server's
//! resident memory per client.
//!
//! The server runs in a child process (this same binary, re-executed), so
//! its memory is its own; the clients are tasks in this process. The same
//! clients then measure a floor: a bare tokio TCP server that writes one
//! etcd watch's events to every connection, with nothing of cfgd in it.
//!
//! Each server is measured in several rounds (`CFGD_BENCH_SSE_ROUNDS`, 5),
//! alternating which goes first, and the samples of its rounds pooled.
//!
//! Run: `cargo bench -p cfgd-bench --bench sse` (or `make bench`). Writes
//! `target/bench/sse.json`.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

const CLIENTS: usize = 10_000;
const PUTS: usize = 20;
const SERVER: &str = "CFGD_BENCH_SSE_SERVER";
const FLOOR: &str = "CFGD_BENCH_SSE_FLOOR";
const KEY: &str = "/cfgd/bench/config/feature.flags";

/// Lets this process hold as many sockets as the machine allows.
fn raise_fd_limit() {
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// The child: cfgd on a free port over the etcd named in `SERVER`.
fn serve(endpoint: String) {
    raise_fd_limit();
    support::runtime().block_on(async {
        let settings = cfgd_server::Settings {
            endpoints: vec![endpoint],
            no_auth: true,
            // Without tokens every client is the same caller, whose cap
            // (5,000 streams by default) would refuse half of them.
            max_streams_per_token: CLIENTS,
            ..Default::default()
        };
        settings.validate().expect("settings");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        let state = cfgd_server::AppState::new(settings);
        cfgd_server::run(listener, state, std::future::pending())
            .await
            .unwrap();
    });
}

/// The floor: no cfgd, just one etcd watch whose events are written to
/// every connection as SSE lines by a bare tokio TCP server. What a put
/// costs to reach 10,000 sockets on this machine, whatever the server.
fn serve_floor(endpoint: String) {
    raise_fd_limit();
    support::runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        let (send, _) = tokio::sync::broadcast::channel::<Arc<str>>(64);
        let events = send.clone();
        tokio::spawn(async move {
            let client = etcd_client::Client::connect([endpoint], None)
                .await
                .unwrap();
            let mut stream = client.watch_client().watch(KEY, None).await.expect("watch");
            while let Ok(Some(resp)) = stream.message().await {
                for event in resp.events() {
                    let value = event
                        .kv()
                        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
                    let _ = events.send(format!("data: {}\n\n", value.unwrap_or_default()).into());
                }
            }
        });
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let mut receive = send.subscribe();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.is_empty() {
                        break;
                    }
                }
                let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
                if write.write_all(head).await.is_err() {
                    return;
                }
                while let Ok(message) = receive.recv().await {
                    if write.write_all(message.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

fn main() {
    if let Ok(endpoint) = std::env::var(SERVER) {
        return serve(endpoint);
    }
    if let Ok(endpoint) = std::env::var(FLOOR) {
        return serve_floor(endpoint);
    }
    raise_fd_limit();
    // One run of each is at the machine's mercy (the floor alone moved by a
    // third between runs): several rounds, each server first in every other
    // one, their samples pooled.
    let rounds: usize = std::env::var("CFGD_BENCH_SSE_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let etcd = common::EtcdCluster::single();
    let mut delays = [Vec::new(), Vec::new()];
    let mut per_client = [Vec::new(), Vec::new()];
    let mut idle = [0, 0];
    let mut per_round = Vec::new();
    for round in 0..rounds {
        let mut p99 = [0.0; 2];
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let measured = run(&etcd, [SERVER, FLOOR][which]);
            p99[which] = support::summary(measured.delays.clone())["p99_ms"]
                .as_f64()
                .unwrap();
            delays[which].extend(measured.delays);
            per_client[which].push(measured.per_client);
            idle[which] = measured.idle;
        }
        let ratio = p99[0] / p99[1];
        println!(
            "SSE, {CLIENTS} clients, round {}: p99 cfgd {} ms, floor {} ms, ratio {ratio:.2}",
            round + 1,
            p99[0],
            p99[1]
        );
        per_round.push(json!({"cfgd_p99_ms": p99[0], "floor_p99_ms": p99[1], "ratio": ratio}));
    }
    let [cfgd, floor] = [0, 1].map(|which| {
        let mut result = support::summary(std::mem::take(&mut delays[which]));
        per_client[which].sort();
        result["clients"] = CLIENTS.into();
        result["puts"] = (PUTS * rounds).into();
        result["server_rss_idle_bytes"] = idle[which].into();
        // The median round's.
        result["server_rss_bytes_per_client"] = per_client[which][rounds / 2].into();
        result
    });
    let ratio = cfgd["p99_ms"].as_f64().unwrap() / floor["p99_ms"].as_f64().unwrap();
    println!("SSE, {CLIENTS} clients, cfgd, {rounds} rounds pooled: {cfgd}");
    println!("SSE, {CLIENTS} clients, bare fan-out floor, {rounds} rounds pooled: {floor}");
    println!("SSE, {CLIENTS} clients: p99 cfgd ÷ floor {ratio:.2}");
    support::write_results(
        "sse",
        &json!({"cfgd": cfgd, "floor": floor, "p99_ratio": ratio, "rounds": per_round}),
    );
}

/// One server's round: every delivery's delay, and its resident memory.
struct Measured {
    delays: Vec<Duration>,
    idle: u64,
    per_client: u64,
}

/// Starts the server this binary becomes under `mode`, connects the
/// clients, and times the puts.
fn run(etcd: &common::EtcdCluster, mode: &str) -> Measured {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env(mode, etcd.endpoint(0))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    common::dies_with_us(&mut command);
    let mut child = command.spawn().expect("start the server");
    let pid = child.id().to_string();
    let mut address = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    let address = address.trim().to_owned();
    let server = common::KillOnDrop(child);

    let result = support::runtime().block_on(async {
        let mut writer = etcd.raw().await;
        writer.put(KEY, "0", None).await.unwrap();
        // The server before any client: its namespace is loaded by the
        // first, so the per-client figure carries that small share too.
        let idle = support::rss_bytes(&pid);
        let seen = Arc::new(support::Round::new(CLIENTS));
        let opened = Arc::new(AtomicUsize::new(0));
        let connecting = Arc::new(tokio::sync::Semaphore::new(256));
        let mut tasks = Vec::with_capacity(CLIENTS);
        for id in 0..CLIENTS {
            let (seen, opened, connecting) = (seen.clone(), opened.clone(), connecting.clone());
            let address = address.clone();
            tasks.push(tokio::spawn(async move {
                let permit = connecting.acquire().await.unwrap();
                let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connect");
                stream
                    .write_all(b"GET /v1/namespaces/bench/watch?prefix=feature HTTP/1.1\r\nHost: cfgd\r\nAccept: text/event-stream\r\n\r\n")
                    .await
                    .unwrap();
                let mut lines = BufReader::new(stream).lines();
                while let Some(line) = lines.next_line().await.unwrap() {
                    if line.is_empty() {
                        break; // end of the response head
                    }
                }
                drop(permit);
                opened.fetch_add(1, Ordering::AcqRel);
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("data:") {
                        seen.saw(id);
                    }
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while opened.load(Ordering::Acquire) < CLIENTS {
            assert!(
                Instant::now() < deadline,
                "only {} of {CLIENTS} SSE clients connected in 120 s",
                opened.load(Ordering::Acquire)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let connected = support::rss_bytes(&pid);
        let round = &*seen;
        let delays = round
            .time(PUTS, |i| {
                let mut writer = writer.clone();
                async move {
                    writer.put(KEY, (i + 1).to_string(), None).await.unwrap();
                    round.now()
                }
            })
            .await;
        for task in tasks {
            task.abort();
        }
        Measured {
            delays,
            idle,
            per_client: connected.saturating_sub(idle) / CLIENTS as u64,
        }
    });
    drop(server);
    result
}
