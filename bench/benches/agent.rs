//! cfgd-agent against the library's own propagation, in one run:
//! - a change put to etcd until the agent's rendered file is renamed into
//!   place (inotify's moved-to), through the server and through etcd
//!   directly, beside the moment a library subscriber in this process sees
//!   the same change (target: p99 at most 5 ms more than the library's);
//! - one render of a 1,000-name template (a minijinja loop and a `json`
//!   prefix), as the agent's own log line times it.
//!
//! The agents and the server are the release binaries, as processes:
//! `make bench` builds them first. Run: `cargo bench -p cfgd-bench --bench
//! agent`. Writes `target/bench/agent.json`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use notify::Watcher;
use serde_json::{json, Value};

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

const ROUNDS: usize = 300;
const NAMES: usize = 1000;

fn release(name: &str) -> PathBuf {
    let path = common::root().join("target/release").join(name);
    assert!(
        path.is_file(),
        "{} is missing: cargo build --release -p cfgd-server -p cfgd-agent (make bench does)",
        path.display()
    );
    path
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server(etcd: &common::EtcdCluster) -> (Proc, String) {
    let mut command = Command::new(release("cfgd"));
    command
        .args([
            "serve",
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--endpoints",
            &etcd.endpoints_arg(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = common::dies_with_us(&mut command)
        .spawn()
        .expect("start cfgd");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let address = line
        .trim()
        .strip_prefix("cfgd listening on http://")
        .expect("cfgd's first line")
        .to_owned();
    (Proc(child), address)
}

/// An agent rendering `templates` from `source`, logging to `dir/agent.log`.
fn agent(dir: &Path, source: &str, ns: &str, templates: &str) -> Proc {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!("{source}\nnamespace = {ns:?}\n{templates}"),
    )
    .unwrap();
    let mut command = Command::new(release("cfgd-agent"));
    command
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("agent.log")).unwrap());
    Proc(
        common::dies_with_us(&mut command)
            .spawn()
            .expect("start cfgd-agent"),
    )
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "not within 60 s: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// When each of `files` was renamed into place, as inotify tells it.
fn renames(files: &[PathBuf]) -> (notify::RecommendedWatcher, mpsc::Receiver<(usize, Instant)>) {
    let (tx, rx) = mpsc::channel();
    let wanted: Vec<PathBuf> = files.to_vec();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let at = Instant::now();
        if !matches!(
            event.kind,
            notify::EventKind::Modify(notify::event::ModifyKind::Name(_))
                | notify::EventKind::Create(_)
        ) {
            return;
        }
        for path in &event.paths {
            if let Some(i) = wanted.iter().position(|w| w == path) {
                let _ = tx.send((i, at));
            }
        }
    })
    .expect("inotify");
    for file in files {
        watcher
            .watch(file.parent().unwrap(), notify::RecursiveMode::NonRecursive)
            .expect("watch a directory");
    }
    (watcher, rx)
}

async fn propagation(etcd: &common::EtcdCluster, server_address: &str) -> Value {
    let ns = "agent-bench";
    let mut raw = etcd.raw().await;
    let key = format!("/cfgd/{ns}/config/hot");
    raw.put(key.as_str(), json!({"round": -1}).to_string(), None)
        .await
        .unwrap();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let files: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.path().join("out").join("hot.json"))
        .collect();
    for f in &files {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    }
    let template = |file: &Path| {
        format!("[[template]]\nprefix = \"hot\"\nformat = \"json\"\ndestination = {file:?}\n")
    };
    let _through_server = agent(
        dirs[0].path(),
        &format!("server = \"http://{server_address}\""),
        ns,
        &template(&files[0]),
    );
    let _through_etcd = agent(
        dirs[1].path(),
        &format!("endpoints = {:?}", etcd.endpoints()),
        ns,
        &template(&files[1]),
    );
    for f in &files {
        wait_for("the first render", || f.exists());
    }
    let client = cfgd::Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(ns)
        .connect()
        .await
        .expect("connect");
    let mut changes = client.subscribe("hot").unwrap();
    let (_watcher, renamed) = renames(&files);
    let mut delays: [Vec<Duration>; 3] = Default::default();
    for round in 0..ROUNDS {
        while renamed.try_recv().is_ok() {}
        let text = json!({"round": round}).to_string();
        let start = Instant::now();
        let revision = raw
            .put(key.as_str(), text, None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        loop {
            let change = tokio::time::timeout(Duration::from_secs(30), changes.next())
                .await
                .unwrap()
                .unwrap();
            if change.revision() >= revision {
                delays[0].push(start.elapsed());
                break;
            }
        }
        let mut seen = [false; 2];
        while !(seen[0] && seen[1]) {
            let (i, at) =
                tokio::task::block_in_place(|| renamed.recv_timeout(Duration::from_secs(30)))
                    .expect("both agents rename the file within 30 s");
            let holds = std::fs::read_to_string(&files[i])
                .is_ok_and(|t| t.contains(&format!("\"round\": {round}\n")));
            if holds && !seen[i] {
                seen[i] = true;
                delays[1 + i].push(at.saturating_duration_since(start));
            }
        }
    }
    let [library, server, etcd_direct] = delays.map(support::summary);
    let p99 = |v: &Value| v["p99_ms"].as_f64().unwrap();
    json!({
        "rounds": ROUNDS,
        "library": library,
        "agent_server": server,
        "agent_etcd": etcd_direct,
        "server_p99_over_library_ms": p99(&server) - p99(&library),
        "etcd_p99_over_library_ms": p99(&etcd_direct) - p99(&library),
    })
}

/// The `render_ms` of the agent's `rendered` log lines for `template`.
fn render_times(log: &Path, template: &Path) -> Vec<f64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "rendered" && v["template"] == template.display().to_string())
        .filter_map(|v| v["render_ms"].as_f64())
        .collect()
}

async fn big_render(etcd: &common::EtcdCluster) -> Value {
    let ns = "agent-bench-big";
    let mut raw = etcd.raw().await;
    for chunk in (0..NAMES).collect::<Vec<_>>().chunks(100) {
        let ops: Vec<etcd_client::TxnOp> = chunk
            .iter()
            .map(|i| {
                let value = json!({"max": i, "unit": "requests", "enabled": true}).to_string();
                etcd_client::TxnOp::put(format!("/cfgd/{ns}/config/big.k{i:04}"), value, None)
            })
            .collect();
        raw.txn(etcd_client::Txn::new().and_then(ops))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (jinja, json_file) = (dir.path().join("big.conf"), dir.path().join("big.json"));
    let source = dir.path().join("big.j2");
    std::fs::write(
        &source,
        "{% for name, v in values('big.') | items %}{{ name }} max={{ v.max }} unit={{ v.unit }} on={{ v.enabled }}\n{% endfor %}",
    )
    .unwrap();
    let templates = format!(
        "[[template]]\nsource = {source:?}\ndestination = {jinja:?}\n\n[[template]]\nprefix = \"big.\"\nformat = \"json\"\ndestination = {json_file:?}\n"
    );
    let _agent = agent(
        dir.path(),
        &format!("endpoints = {:?}", etcd.endpoints()),
        ns,
        &templates,
    );
    let log = dir.path().join("agent.log");
    wait_for("the first renders", || {
        render_times(&log, &jinja).len() == 1 && render_times(&log, &json_file).len() == 1
    });
    let renders = 30;
    for i in 0..renders {
        raw.put(
            format!("/cfgd/{ns}/config/big.k0000"),
            json!({"max": -i, "unit": "requests", "enabled": true}).to_string(),
            None,
        )
        .await
        .unwrap();
        wait_for("the render", || {
            render_times(&log, &jinja).len() == i as usize + 2
                && render_times(&log, &json_file).len() == i as usize + 2
        });
    }
    let stats = |mut v: Vec<f64>| {
        v.remove(0); // the first, cold
        v.sort_by(f64::total_cmp);
        json!({"renders": v.len(), "median_ms": v[v.len() / 2], "max_ms": v[v.len() - 1]})
    };
    json!({
        "names": NAMES,
        "template": stats(render_times(&log, &jinja)),
        "json_prefix": stats(render_times(&log, &json_file)),
        "bytes": std::fs::metadata(&jinja).unwrap().len(),
    })
}

fn main() {
    let etcd = common::EtcdCluster::single();
    let (_server, address) = server(&etcd);
    let runtime = support::runtime();
    let result = runtime.block_on(async {
        let propagation = propagation(&etcd, &address).await;
        let render = big_render(&etcd).await;
        json!({"propagation": propagation, "render": render})
    });
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    support::write_results("agent", &result);
}
