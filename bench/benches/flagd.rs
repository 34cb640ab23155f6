//! flagd's protocols on cfgd, side by side in one run:
//! - propagation: from sending a flag write (a REST PUT) to a
//!   configuration-changed event in 100 in-process and 100 RPC-mode
//!   `@openfeature/flagd-provider`s, and to the event on 100 SSE streams;
//! - resolve throughput: the RPC provider over gRPC against OFREP over HTTP,
//!   on the same server, with the same concurrency;
//! - the server's resident memory per open sync stream.
//!
//! The server is this binary re-executed (so its memory is its own); the
//! providers run in Node (tests/flagd/bench.mjs), on the same 2 cores.
//!
//! Run: `cargo bench -p cfgd-bench --bench flagd` (or `make bench`). Writes
//! `target/bench/flagd.json`.

use std::io::BufRead;
use std::process::{Command, Stdio};

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

const SERVER: &str = "CFGD_BENCH_FLAGD_SERVER";

/// The child: cfgd with its gRPC listener, namespace "bench" open.
fn serve(endpoint: String) {
    support::runtime().block_on(async {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let settings = cfgd_server::Settings {
            endpoints: vec![endpoint],
            no_auth: true,
            grpc_listen: Some(grpc.local_addr().unwrap()),
            grpc: cfgd_server::GrpcSettings {
                namespaces: vec!["bench".into()],
                default_namespace: Some("bench".into()),
            },
            ..Default::default()
        };
        settings.validate().expect("settings");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "{} {}",
            listener.local_addr().unwrap(),
            grpc.local_addr().unwrap()
        );
        let state = cfgd_server::AppState::new(settings);
        tokio::spawn(cfgd_server::grpc::serve(grpc, state.clone()));
        cfgd_server::run(listener, state, std::future::pending())
            .await
            .unwrap();
    });
}

fn main() {
    if let Ok(endpoint) = std::env::var(SERVER) {
        return serve(endpoint);
    }
    let etcd = common::EtcdCluster::single();
    support::runtime().block_on(async {
        let client = cfgd::Client::builder()
            .endpoints(etcd.endpoints())
            .namespace("bench")
            .live(false)
            .connect()
            .await
            .unwrap();
        client
            .set_flag(
                "toggle",
                &serde_json::json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
            )
            .await
            .unwrap();
    });
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env(SERVER, etcd.endpoint(0))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    common::dies_with_us(&mut command);
    let mut child = command.spawn().expect("start the server");
    let pid = child.id().to_string();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut addresses = line.split_whitespace();
    let (http, grpc) = (addresses.next().unwrap(), addresses.next().unwrap());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("node")
        .arg(root.join("tests/flagd/bench.mjs"))
        .env("CFGD_URL", format!("http://{http}"))
        .env("CFGD_GRPC", grpc)
        .env("CFGD_PID", &pid)
        .stderr(Stdio::inherit())
        .output()
        .expect("run node (scripts/install-deps.sh --test)");
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the Node side failed:\n{text}");
    let results: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    println!("{}", serde_json::to_string_pretty(&results).unwrap());
    support::write_results("flagd", &results);
}
