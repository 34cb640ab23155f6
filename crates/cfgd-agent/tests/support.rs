//! What the agent's tests share: the real `cfgd` server and `cfgctl`
//! binaries (built beside this test by `cargo test --workspace`), the
//! agent started as a process with its settings, and a child program
//! (`child.py`) that records what it read.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, EtcdCluster, KillOnDrop};

/// A workspace binary beside this test's own (`target/debug/NAME`).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::current_exe().unwrap();
    let path = dir.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.is_file(),
        "{} is not built: the agent's tests run the real {name}; build it first (cargo build -p cfgd-server -p cfgctl; `make test` and `cargo test --workspace` do)",
        path.display()
    );
    path
}

pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cfgd-agent"))
}

/// Polls `check` until it holds; fails the test naming `what` after `within`.
pub fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A cfgd server on real etcd.
pub struct Server {
    child: Option<KillOnDrop>,
    pub address: String,
    dir: tempfile::TempDir,
    endpoints: String,
}

pub const AGENT_TOKEN: &str = "agent-secret";
/// A token of the read scope only: secrets are refused to it.
pub const READER_TOKEN: &str = "reader-secret";

impl Server {
    pub fn start(etcd: &EtcdCluster, secret_key: Option<&Path>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        if let Some(key) = secret_key {
            text.push_str(&format!("secret_key_file = {:?}\n", key.to_str().unwrap()));
        }
        text.push_str(&format!(
            "[[tokens]]\nname = \"agent\"\nsecret = \"{AGENT_TOKEN}\"\nscopes = {{ \"*\" = \"secrets\" }}\n\n[[tokens]]\nname = \"reader\"\nsecret = \"{READER_TOKEN}\"\nscopes = {{ \"*\" = \"read\" }}\n"
        ));
        std::fs::write(dir.path().join("cfgd.toml"), text).unwrap();
        let mut server = Server {
            child: None,
            address: String::new(),
            dir,
            endpoints: etcd.endpoints_arg(),
        };
        server.spawn("127.0.0.1:0");
        server
    }

    fn spawn(&mut self, listen: &str) {
        let mut command = Command::new(bin("cfgd"));
        command
            .args(["serve", "--listen", listen, "--endpoints", &self.endpoints])
            .arg("--config")
            .arg(self.dir.path().join("cfgd.toml"))
            .env_remove("CFGD_NO_AUTH")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.dir.path().join("cfgd.log")).unwrap());
        let mut child = common::dies_with_us(&mut command)
            .spawn()
            .expect("start cfgd");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        self.address = first
            .trim()
            .strip_prefix("cfgd listening on http://")
            .unwrap_or_else(|| panic!("cfgd said {first:?}"))
            .to_owned();
        self.child = Some(KillOnDrop(child));
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops the server (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Our own child, by its pid.
            unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.0.wait();
        }
    }

    /// Starts it again on the same address.
    pub fn restart(&mut self) {
        let address = self.address.clone();
        self.spawn(&address);
    }
}

/// `cfgctl -n NS ARGS…` against `etcd`, which must succeed; its stdout.
pub fn cfgctl(etcd: &EtcdCluster, ns: &str, args: &[&str]) -> String {
    cfgctl_with(etcd, ns, args, &[])
}

pub fn cfgctl_with(etcd: &EtcdCluster, ns: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut command = Command::new(bin("cfgctl"));
    command
        .args(["--endpoints", &etcd.endpoints_arg(), "-n", ns])
        .args(args)
        .env_remove("CFGD_SECRET_KEY_FILE");
    for (k, v) in env {
        command.env(k, v);
    }
    common::stdout_of(format!("cfgctl {args:?}"), command.output().unwrap())
}

/// Where an agent reads from.
pub enum Via<'a> {
    Server(&'a Server),
    /// The server, with another token.
    ServerAs(&'a Server, &'a str),
    Etcd(&'a EtcdCluster),
}

impl Via<'_> {
    fn settings(&self, dir: &Path) -> String {
        match self {
            Via::Server(server) => Via::ServerAs(server, AGENT_TOKEN).settings(dir),
            Via::ServerAs(server, secret) => {
                let token = dir.join("token");
                std::fs::write(&token, secret).unwrap();
                format!("server = {:?}\ntoken_file = {:?}\n", server.url(), token)
            }
            Via::Etcd(etcd) => format!("endpoints = {:?}\n", etcd.endpoints()),
        }
    }
}

/// A running cfgd-agent.
pub struct Agent {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub listen: String,
    log: PathBuf,
}

impl Agent {
    /// `cfgd-agent ARGS…` with settings `top` (namespace and so on) and
    /// `templates` after the source's lines; files live under `dir`.
    pub fn start(from: &Via, dir: &Path, top: &str, templates: &str, args: &[&str]) -> Agent {
        let port = common::free_port();
        let listen = format!("127.0.0.1:{port}");
        let settings = format!(
            "{}listen = {listen:?}\nsnapshot = {:?}\n{top}\n{templates}",
            from.settings(dir),
            dir.join("snapshot.json")
        );
        let config = dir.join("agent.toml");
        std::fs::write(&config, settings).unwrap();
        let log = dir.join(format!("agent-{port}.log"));
        let mut command = Command::new(agent_bin());
        command
            .arg("--config")
            .arg(&config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = common::dies_with_us(&mut command)
            .spawn()
            .expect("start cfgd-agent");
        Agent {
            child: Some(child),
            dir: dir.to_owned(),
            listen,
            log,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on the agent's ops listener: (status, body); status 0 while it
    /// is not listening yet.
    pub fn get(&self, path: &str) -> (u16, String) {
        let Ok(mut stream) = TcpStream::connect(&self.listen) else {
            return (0, String::new());
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: agent\r\n\r\n").unwrap();
        let mut raw = String::new();
        let _ = stream.read_to_string(&mut raw);
        let Some((head, body)) = raw.split_once("\r\n\r\n") else {
            return (0, raw);
        };
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, body.to_owned())
    }

    pub fn status(&self) -> serde_json::Value {
        let (_, body) = self.get("/status");
        serde_json::from_str(&body).unwrap_or_default()
    }

    /// The value of the metric series `series` (`name{labels}` as printed).
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    pub fn wait_ready(&self) {
        wait_until(Duration::from_secs(30), "the agent is ready", || {
            self.get("/readyz").0 == 200
        });
    }

    /// SIGTERM, then its exit code.
    pub fn stop(&mut self) -> i32 {
        let mut child = self.child.take().expect("running");
        // Our own child, by its pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = child.wait().unwrap();
        status.code().unwrap_or(-1)
    }

    /// Waits for it to exit on its own; its exit code.
    pub fn wait(&mut self, within: Duration) -> i32 {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the agent did not exit within {within:?}:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The test child: `python3 child.py RECORD FILES…`.
pub fn child_command(record: &Path, files: &[&Path]) -> Vec<String> {
    let mut command = vec![
        "python3".to_owned(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/child.py").to_owned(),
        record.display().to_string(),
    ];
    command.extend(files.iter().map(|f| f.display().to_string()));
    command
}

/// The child started on its own (for a pidfile action), killed on drop.
pub fn start_child(record: &Path, files: &[&Path]) -> KillOnDrop {
    let argv = child_command(record, files);
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    let child = common::dies_with_us(&mut command)
        .spawn()
        .expect("start python3");
    let pidfile = PathBuf::from(format!("{}.pid", record.display()));
    wait_until(Duration::from_secs(10), "the child wrote its pid", || {
        pidfile.exists()
    });
    KillOnDrop(child)
}

/// What the child recorded, one JSON object per event.
pub fn records(record: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
