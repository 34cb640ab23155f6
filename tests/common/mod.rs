//! Real etcd processes for tests: one node or a cluster on free 127.0.0.1
//! ports, with temporary data dirs, killed and removed on drop.
//!
//! There is no fallback: if `etcd` cannot be started, the test fails and says
//! why.
#![allow(dead_code)] // each test binary uses a different part of it

pub mod pki;
pub mod proxy;
pub mod secrets;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a member may take to become healthy on a loaded 2-core machine.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
    /// Server certificate, key and client CA, when clients must use TLS.
    tls: Option<[PathBuf; 3]>,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Plain HTTP `/health` and `/metrics`, whatever the client port speaks.
    metrics_port: u16,
    child: Option<Child>,
}

impl EtcdCluster {
    /// One etcd node, healthy.
    pub fn single() -> Self {
        Self::start(1)
    }

    /// `size` members forming one cluster, healthy.
    pub fn start(size: usize) -> Self {
        Self::start_with(size, None)
    }

    /// One etcd node whose clients must speak TLS and present a
    /// certificate signed by `pki`'s CA (`--client-cert-auth`).
    pub fn single_tls(pki: &pki::Pki) -> Self {
        Self::start_with(1, Some([pki.server_cert(), pki.server_key(), pki.ca()]))
    }

    fn start_with(size: usize, tls: Option<[PathBuf; 3]>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cfgd-etcd-")
            .tempdir()
            .expect("create a temp dir for etcd");
        let members = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                metrics_port: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster { members, dir, tls };
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster.wait_healthy();
        cluster
    }

    /// Client URLs of all members.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Client URLs of all members, comma separated, as `--endpoints` takes them.
    pub fn endpoints_arg(&self) -> String {
        self.endpoints().join(",")
    }

    pub fn endpoint(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Kills member `i` with SIGKILL, as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops member `i` with SIGTERM and waits for it to exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            // Our own child, by its pid: never anything we did not start.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its old ports and data dir.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i);
    }

    /// Waits until every running member reports healthy.
    pub fn wait_healthy(&mut self) {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            loop {
                self.check_alive(i);
                let body = http_get(self.members[i].metrics_port, "/health");
                if body.as_deref().is_some_and(|b| b.contains("\"true\"")) {
                    break;
                }
                if Instant::now() > deadline {
                    panic!(
                        "etcd member {i} not healthy within {HEALTHY_WITHIN:?}; log:\n{}",
                        self.log_tail(i)
                    );
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
    }

    /// Index of the current leader, asking each running member in turn.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            for i in 0..self.members.len() {
                if self.members[i].child.is_none() {
                    continue;
                }
                let ask = async {
                    let mut c = etcd_client::Client::connect([self.endpoint(i)], None)
                        .await
                        .ok()?;
                    let status = c.status().await.ok()?;
                    let me = status.header()?.member_id();
                    Some(status.leader() == me)
                };
                if let Ok(Some(true)) = tokio::time::timeout(Duration::from_secs(2), ask).await {
                    return i;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no etcd leader within {HEALTHY_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn spawn(&mut self, i: usize) {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let m = &self.members[i];
        let client = self.endpoint(i);
        let metrics = format!("http://127.0.0.1:{}", m.metrics_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = std::fs::File::create(self.log_path(i)).expect("create etcd log file");
        let mut cmd = Command::new(etcd_binary());
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.dir.path().join(&m.name))
            .args(["--listen-client-urls", &client])
            .args(["--listen-metrics-urls", &metrics])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args([
                "--initial-cluster-token",
                // One token for the whole cluster (it seeds the cluster ID),
                // unique among clusters running side by side.
                &format!("cfgd-test-{}", self.members[0].peer_port),
            ])
            // Short election times so leader-loss tests finish quickly.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some([cert, key, ca]) = &self.tls {
            cmd.arg("--cert-file")
                .arg(cert)
                .arg("--key-file")
                .arg(key)
                .arg("--trusted-ca-file")
                .arg(ca)
                .arg("--client-cert-auth");
        }
        dies_with_us(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start etcd as {:?} ({e}). Install it with `make test` \
                 (it runs scripts/install-deps.sh) or your package manager (etcd-server), \
                 or point CFGD_TEST_ETCD at an etcd binary.",
                etcd_binary()
            )
        });
        self.members[i].child = Some(child);
    }

    fn check_alive(&mut self, i: usize) {
        let exited = self.members[i]
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            self.members[i].child = None;
            panic!(
                "etcd member {i} exited ({status}); log:\n{}",
                self.log_tail(i)
            );
        }
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A raw etcd-client connection, for checking what really is in etcd.
    pub async fn raw(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.endpoints(), None)
            .await
            .expect("raw etcd client")
    }

    /// etcd's current revision: unchanged means nothing at all was written.
    pub async fn revision(&self) -> i64 {
        let resp = self
            .raw()
            .await
            .get("/", Some(etcd_client::GetOptions::new().with_count_only()))
            .await
            .expect("read etcd revision");
        resp.header().expect("header").revision()
    }

    /// The process id of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// A gauge or counter from member `i`'s Prometheus `/metrics`, such as
    /// `etcd_debugging_mvcc_watcher_total`.
    pub fn metric(&self, i: usize, name: &str) -> f64 {
        let text =
            http_get(self.members[i].metrics_port, "/metrics").expect("read etcd's /metrics");
        text.lines()
            .find_map(|line| {
                let value = line.strip_prefix(name)?.strip_prefix(' ')?;
                value.trim().parse().ok()
            })
            .unwrap_or_else(|| panic!("etcd's /metrics has no {name}"))
    }

    /// Requests member `i` has answered on etcd's KV service (Range, Put,
    /// Txn, ...), from its gRPC counters: round trips, counted exactly.
    pub fn kv_requests(&self, i: usize) -> f64 {
        let text =
            http_get(self.members[i].metrics_port, "/metrics").expect("read etcd's /metrics");
        text.lines()
            .filter(|l| {
                l.starts_with("grpc_server_handled_total{")
                    && l.contains("grpc_service=\"etcdserverpb.KV\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Compacts (physically) everything before the current revision, which
    /// it returns: older revisions are gone from then on.
    pub async fn compact_now(&self) -> i64 {
        let revision = self.revision().await;
        self.raw()
            .await
            .compact(
                revision,
                Some(etcd_client::CompactionOptions::new().with_physical()),
            )
            .await
            .expect("compact etcd");
        revision
    }

    /// Number of keys under a prefix.
    pub async fn count(&self, prefix: &str) -> i64 {
        self.raw()
            .await
            .get(
                prefix,
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_count_only(),
                ),
            )
            .await
            .expect("count keys")
            .count()
    }

    /// Turns on etcd authentication with a `root` user, and adds `user`
    /// with read-write access to the keys under `prefix` only.
    pub async fn enable_auth(&self, root_password: &str, user: &str, password: &str, prefix: &str) {
        use etcd_client::{Permission, PermissionType};
        let client = self.raw().await;
        let mut auth = client.auth_client();
        auth.user_add("root", root_password, None)
            .await
            .expect("add root");
        auth.user_grant_role("root", "root")
            .await
            .expect("grant root");
        let role = format!("{user}-rw");
        auth.role_add(role.as_str()).await.expect("add role");
        auth.role_grant_permission(
            role.as_str(),
            Permission::new(PermissionType::Readwrite, prefix).with_prefix(),
        )
        .await
        .expect("grant permission");
        auth.user_add(user, password, None).await.expect("add user");
        auth.user_grant_role(user, role.as_str())
            .await
            .expect("grant role");
        auth.auth_enable().await.expect("enable auth");
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// A child process that is killed when dropped, so a failing test leaves
/// nothing running. Until it is waited for, its pid is still ours.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `check` until it holds, failing the test after `within`.
pub async fn eventually<F, Fut>(within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends the library's logs to the test's captured output, shown when it
/// fails.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();
}

/// Makes the kernel kill the child when this process ends, however it ends
/// (SIGKILL and abort included, which skip every drop): no etcd, proxy or
/// server outlives the test or bench that started it.
pub fn dies_with_us(command: &mut Command) -> &mut Command {
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
}

/// A namespace no other test uses.
pub fn namespace(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("t-{tag}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A free port on 127.0.0.1, from a range below the kernel's ephemeral
/// ports so that no outgoing connection can take it between this check and
/// etcd binding it.
pub fn free_port() -> u16 {
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000; // up to 32000, under Linux's ephemeral 32768
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Test binaries running side by side start at different places.
    let offset = (std::process::id() % 60) as u16 * 200;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        let port = LOW + (offset + n) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// A bare HTTP/1.0 GET, enough for etcd's `/health` without an HTTP client.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The standard output of a finished command that must have succeeded; if
/// it did not, the test fails naming `what`, with both its outputs.
pub fn stdout_of(what: impl std::fmt::Display, out: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The etcd the tests start: `CFGD_TEST_ETCD` (a path, as `make test`
/// sets it to run the suite against etcd 3.5 too), else `etcd` from PATH.
/// Says once per test binary which etcd that is.
pub fn etcd_binary() -> PathBuf {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let binary = std::env::var_os("CFGD_TEST_ETCD").map_or_else(|| "etcd".into(), PathBuf::from);
    ONCE.call_once(|| {
        let version = Command::new(&binary)
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .unwrap_or_else(|e| format!("cannot run it: {e}"));
        eprintln!("tests use etcd {binary:?}: {version}");
    });
    binary
}

/// `etcdctl` beside the etcd the tests use, else from PATH.
pub fn etcdctl_binary() -> PathBuf {
    let beside = etcd_binary().with_file_name("etcdctl");
    if beside.is_file() {
        beside
    } else {
        "etcdctl".into()
    }
}

/// Runs etcd's own `etcdctl` against `endpoints` and returns its stdout.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(etcdctl_binary())
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .output()
        .expect("run etcdctl (installed with etcd by `make test`)");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The repository's top directory, whichever crate's tests ask.
pub fn root() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").exists())
        .unwrap_or(manifest)
        .to_owned()
}

/// The Python of the virtualenv `scripts/install-deps.sh --test` makes
/// from tests/python/requirements.txt (`make test` does).
pub fn python() -> PathBuf {
    let python = root().join("target/pyenv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-deps.sh --test (make test does), which makes the \
         virtualenv with tests/python/requirements.txt",
        python.display()
    );
    python
}
