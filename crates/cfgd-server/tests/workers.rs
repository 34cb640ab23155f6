//! What the workers' tests share: cfgd replicas that may lead, a real
//! webhook receiver (tests/python/webhook_receiver.py, which verifies with
//! `standardwebhooks` and parses with `cloudevents`), cfgctl and etcdctl.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::*;
use crate::common::{self, EtcdCluster, KillOnDrop};

/// The signing secret every test webhook uses (Standard Webhooks' example).
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A secrets key file (webhook secrets are sealed with it), in `dir`.
pub(crate) fn key_file(dir: &std::path::Path) -> PathBuf {
    let out = Command::new(cfgctl())
        .args(["secret", "keygen"])
        .output()
        .unwrap();
    let path = dir.join("secret.key");
    std::fs::write(&path, out.stdout).unwrap();
    path
}

/// A replica named `name`, with a lease of `ttl` seconds and quick retries
/// (`extra` adds `[webhooks]` keys).
pub(crate) fn replica(
    etcd: &EtcdCluster,
    key: &std::path::Path,
    name: &str,
    ttl: u32,
    hooks: &str,
) -> Server {
    let settings = format!(
        "secret_key_file = {:?}\n[workers]\nttl = {ttl}\nreplica = {name:?}\n[webhooks]\nallow_loopback = true\n{hooks}\n",
        key.to_str().unwrap()
    );
    start_with_settings(etcd, &settings, &[])
}

/// The pid of a replica.
pub(crate) fn pid(server: &Server) -> i32 {
    server._child.0.id() as i32
}

/// Whether a replica's `/readyz` says it leads.
pub(crate) fn leads(server: &Server) -> bool {
    let reply = http(server, "GET", "/readyz", &[], "");
    serde_json::from_str::<Value>(&reply.body).is_ok_and(|v| v["leader"] == true)
}

/// Waits for exactly one of `servers` to lead, and says which.
pub(crate) fn leader(servers: &[&Server], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let leading: Vec<usize> = (0..servers.len()).filter(|&i| leads(servers[i])).collect();
        if let [only] = leading[..] {
            return only;
        }
        assert!(
            Instant::now() < deadline,
            "no single leader within {within:?}: {leading:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A metric's value on a replica.
pub(crate) fn metric(server: &Server, series: &str) -> f64 {
    let reply = http(server, "GET", "/metrics", &[], "");
    sample(&parse_metrics(&reply.body), series)
}

/// The webhook receiver, on `port` (0: any).
pub(crate) struct Receiver {
    child: Option<KillOnDrop>,
    pub(crate) port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("events.jsonl");
        let mut receiver = Receiver {
            child: None,
            port: 0,
            out,
            _dir: dir,
        };
        receiver.up();
        receiver
    }

    /// Starts it (again, on the same port).
    pub(crate) fn up(&mut self) {
        let mut child = Command::new(common::python());
        child
            .arg(common::root().join("tests/python/webhook_receiver.py"))
            .arg(SECRET)
            .arg(&self.out)
            .arg(self.port.to_string())
            .stdout(Stdio::piped());
        let mut child = common::dies_with_us(&mut child)
            .spawn()
            .expect("start the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("receiver said {line:?}"));
        self.child = Some(KillOnDrop(child));
    }

    /// Stops it: connections to its port are refused.
    pub(crate) fn down(&mut self) {
        self.child = None;
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// `{"status": 500}`, `{"delay": 2}` or `{}`.
    pub(crate) fn mode(&self, mode: &str) {
        let out = Command::new("curl")
            .args(["-sf", "-X", "POST", "--data-binary", mode])
            .arg(format!("http://127.0.0.1:{}/_mode", self.port))
            .status()
            .unwrap();
        assert!(out.success(), "set mode {mode}");
    }

    /// Everything it received, in order.
    pub(crate) fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until `check` holds for what it received.
    pub(crate) fn wait(
        &self,
        within: Duration,
        what: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let records = self.records();
            if check(&records) {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; the receiver has {} records",
                records.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Adds a webhook through `server`'s REST API as admin; its id.
pub(crate) fn add_webhook(server: &Server, ns: &str, body: Value) -> String {
    let reply = http(
        server,
        "POST",
        &format!("/v1/namespaces/{ns}/webhooks"),
        &[ADMIN],
        &body.to_string(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let added: Value = serde_json::from_str(&reply.body).unwrap();
    added["id"].as_str().unwrap().to_owned()
}

/// A cfgctl command on `etcd`, with the secrets key: its exit status,
/// stdout and stderr.
pub(crate) fn cfgctl_run(
    etcd: &EtcdCluster,
    key: &std::path::Path,
    args: &[&str],
) -> (bool, String, String) {
    let out = Command::new(cfgctl())
        .args(args)
        .env("CFGCTL_ENDPOINTS", etcd.endpoints_arg())
        .env("CFGD_SECRET_KEY_FILE", key)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A write's revision from what cfgctl or etcdctl printed as JSON.
pub(crate) fn revision_of(printed: &str) -> i64 {
    let v: Value = serde_json::from_str(printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
    v["revision"]
        .as_i64()
        .or_else(|| v["header"]["revision"].as_i64())
        .unwrap_or_else(|| panic!("no revision in {printed}"))
}

/// The revision of a record's change (`cfgd-{ns}-{revision}`).
pub(crate) fn record_revision(record: &Value) -> Option<i64> {
    record["data"]["revision"].as_i64()
}

pub(crate) fn signal(server: &Server, signal: i32) {
    assert_eq!(
        unsafe { libc::kill(pid(server), signal) },
        0,
        "signal {signal}"
    );
}

/// A replica's log so far.
pub(crate) fn log_of(server: &Server) -> String {
    std::fs::read_to_string(server._dir.path().join("cfgd.log")).unwrap_or_default()
}
