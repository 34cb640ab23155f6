//! HTTP reads: cfgd's `GET /v1/namespaces/{ns}/config/{name}` against etcd's
//! own JSON gateway (`POST /v3/kv/range` on the client port), which is what
//! a non-Rust service without cfgd would call. Both are loaded by `wrk` at
//! the same concurrency, one after the other, in one run.
//!
//! Run: `cargo bench -p cfgd-bench --bench http` (or `make bench`, which
//! installs wrk). Writes `target/bench/http.json`.

use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Value};

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

const CONNECTIONS: &str = "64";
const DURATION: &str = "5s";
const VALUE: &str = r#"{"max_items": 10, "timeout_ms": 250, "regions": ["eu", "us"]}"#;

/// Runs wrk and returns its requests per second; every answer must be 2xx.
fn wrk(url: &str, script: Option<&std::path::Path>) -> f64 {
    let mut command = Command::new("wrk");
    command.args(["-t1", "-c", CONNECTIONS, "-d", DURATION, "--latency"]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let out = command
        .arg(url)
        .output()
        .expect("run wrk (make bench installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk {url}: {text}");
    assert!(
        !text.contains("Non-2xx"),
        "wrk {url}: some answers were not 2xx:\n{text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"))
}

fn main() {
    let etcd = common::EtcdCluster::single();
    let rt = support::runtime();
    let (address, key) = rt.block_on(async {
        let writer = cfgd::Client::builder()
            .endpoints(etcd.endpoints())
            .namespace("bench")
            .live(false)
            .connect()
            .await
            .expect("connect");
        writer.set_json("limits", VALUE).await.expect("write");
        let settings = cfgd_server::Settings {
            endpoints: etcd.endpoints(),
            no_auth: true,
            ..Default::default()
        };
        settings.validate().expect("settings");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = cfgd_server::AppState::new(settings);
        tokio::spawn(cfgd_server::run(
            listener,
            Arc::clone(&state),
            std::future::pending(),
        ));
        (address, writer.etcd_key("limits").unwrap())
    });
    let cfgd_url = format!("http://{address}/v1/namespaces/bench/config/limits");
    // Both answer the same value before anything is timed: cfgd stores
    // JSON compact, and hands out exactly that.
    let compact = serde_json::from_str::<Value>(VALUE).unwrap().to_string();
    let got = Command::new("curl")
        .args(["-sf", &cfgd_url])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout), compact);

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("range.lua");
    let encoded = base64(key.as_bytes());
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = '{{\"key\": \"{encoded}\"}}'\n"
        ),
    )
    .unwrap();
    let gateway_url = format!("{}/v3/kv/range", etcd.endpoint(0));
    let got = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            "-d",
            &format!("{{\"key\": \"{encoded}\"}}"),
            &gateway_url,
        ])
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&got.stdout).expect("the gateway answers JSON");
    assert_eq!(
        answer["kvs"][0]["value"],
        json!(base64(compact.as_bytes())),
        "{answer}"
    );

    let cfgd_rps = wrk(&cfgd_url, None);
    let gateway_rps = wrk(&gateway_url, Some(&script));
    let ratio = cfgd_rps / gateway_rps;
    println!("HTTP reads, wrk -t1 -c{CONNECTIONS} -d{DURATION}");
    println!("cfgd GET            {cfgd_rps:>10.0} req/s");
    println!("etcd JSON gateway   {gateway_rps:>10.0} req/s");
    println!("ratio               {ratio:>10.2}x");
    let results = json!({"connections": CONNECTIONS, "duration": DURATION,
        "cfgd_rps": cfgd_rps, "gateway_rps": gateway_rps, "ratio": ratio});
    support::write_results("http", &results);
    drop(rt);
}

/// Standard base64, as etcd's gateway wants keys: a few lines, not a crate.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
