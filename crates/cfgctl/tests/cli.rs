//! Every cfgctl command, run as the built binary against a real etcd.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::EtcdCluster;
use serde_json::{json, Value};

/// Writes `text` to file `name` in `dir`, and gives its path.
fn file_in(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Runs cfgctl against one etcd and namespace (a small `TestCommand`).
struct Ctl {
    endpoints: String,
    namespace: String,
    env: Vec<(String, String)>,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ctl {
    fn new(etcd: &EtcdCluster, tag: &str) -> Self {
        Ctl {
            endpoints: etcd.endpoints_arg(),
            namespace: common::namespace(tag),
            env: Vec::new(),
        }
    }

    fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with_stdin(args, None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut child = self.spawn(args);
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).unwrap();
        }
        drop(pipe);
        let out = child.wait_with_output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// Starts cfgctl with all three standard streams piped.
    fn spawn(&self, args: &[&str]) -> std::process::Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cfgctl"));
        // A clean slate: the developer's own CFGCTL_* must not leak in.
        for var in [
            "CFGCTL_ENDPOINTS",
            "CFGCTL_NAMESPACE",
            "CFGCTL_USER",
            "CFGCTL_PASSWORD",
        ] {
            cmd.env_remove(var);
        }
        cmd.args(["--endpoints", &self.endpoints]);
        if !self.namespace.is_empty() {
            cmd.args(["-n", &self.namespace]);
        }
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().expect("run cfgctl")
    }

    fn key(&self, name: &str) -> String {
        format!("/cfgd/{}/config/{name}", self.namespace)
    }
}

impl Out {
    #[track_caller]
    fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        self
    }

    /// Asserts the exit code and that the error is one line naming `needle`.
    #[track_caller]
    fn fails(&self, code: i32, needle: &str) -> &Self {
        assert_eq!(
            self.code, code,
            "stdout: {} stderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "one line: {:?}",
            self.stderr
        );
        assert!(self.stderr.starts_with("cfgctl: "), "{}", self.stderr);
        assert!(
            self.stderr.contains(needle),
            "{needle:?} in {}",
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

#[tokio::test]
async fn set_get_and_output_formats() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "get");
    let set = ctl.run(&[
        "set",
        "database.config",
        r#"{"url": "postgres://db/app", "pool": 20}"#,
    ]);
    let revision = set.ok().json()["revision"].as_i64().unwrap();
    assert_eq!(set.json()["name"], "database.config");

    let value = json!({"url": "postgres://db/app", "pool": 20});
    assert_eq!(ctl.run(&["get", "database.config"]).ok().json(), value);
    let entry = ctl.run(&["get", "database.config", "--entry"]).ok().json();
    assert_eq!(entry["revision"], revision);
    assert_eq!(entry["value"], value);

    let yaml = ctl.run(&["get", "database.config", "-o", "yaml"]);
    assert_eq!(yaml.ok().stdout, "url: postgres://db/app\npool: 20\n");
    let table = ctl.run(&["-o", "table", "get", "database.config"]);
    let lines: Vec<&str> = table.ok().stdout.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("REVISION"));
    assert!(lines[1].contains(&revision.to_string()));

    ctl.run(&["get", "missing"]).fails(3, &ctl.key("missing"));
    let fallback = ctl.run(&["get", "missing", "--default", r#"{"pool":5}"#]);
    assert_eq!(fallback.ok().json(), json!({"pool": 5}));
    ctl.run(&["get", "missing", "--default", "{oops"])
        .fails(2, "--default");

    ctl.run(&["set", "database.config", r#"{"pool":30}"#]).ok();
    let old = ctl.run(&[
        "get",
        "database.config",
        "--revision",
        &revision.to_string(),
    ]);
    assert_eq!(old.ok().json(), value);
    ctl.run(&["get", "database.config", "--revision", "99999"])
        .fails(1, "future");
}

#[tokio::test]
async fn set_reads_files_and_stdin() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "input");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limits.json");
    std::fs::write(&file, "{\n  \"max\": 10\n}\n").unwrap();
    ctl.run(&["set", "limits", "-f", file.to_str().unwrap()])
        .ok();
    assert_eq!(ctl.run(&["get", "limits"]).ok().json(), json!({"max": 10}));

    ctl.run_with_stdin(&["set", "answer", "-"], Some("42\n"))
        .ok();
    assert_eq!(ctl.run(&["get", "answer"]).ok().json(), json!(42));
    ctl.run_with_stdin(&["set", "list", "-f", "-"], Some("[1, 2]"))
        .ok();
    assert_eq!(ctl.run(&["get", "list"]).ok().json(), json!([1, 2]));

    ctl.run(&["set", "limits", "-f", "/no/such/file.json"])
        .fails(2, "/no/such/file.json");
    ctl.run(&["set", "limits"]).fails(2, "no value given");
}

#[tokio::test]
async fn compare_and_set_conflicts_exit_4() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "cas");
    let r = ctl
        .run(&["set", "counter", "1", "--if-revision", "0"])
        .ok()
        .json()["revision"]
        .as_i64()
        .unwrap();
    ctl.run(&["set", "counter", "2", "--if-revision", "0"])
        .fails(4, "conflict");
    let stale = (r - 1).to_string();
    ctl.run(&["set", "counter", "2", "--if-revision", &stale])
        .fails(4, &format!("it is {r}"));
    assert_eq!(ctl.run(&["get", "counter"]).ok().json(), json!(1));
    ctl.run(&["set", "counter", "2", "--if-revision", &r.to_string()])
        .ok();

    ctl.run(&["delete", "counter", "--if-revision", &r.to_string()])
        .fails(4, "conflict");
    let current = ctl.run(&["get", "counter", "--entry"]).ok().json()["revision"]
        .as_i64()
        .unwrap();
    ctl.run(&["delete", "counter", "--if-revision", &current.to_string()])
        .ok();
    ctl.run(&["delete", "counter"]).fails(3, "not found");
}

#[tokio::test]
async fn delete_list_and_namespace_isolation() {
    let etcd = EtcdCluster::single();
    let app = Ctl::new(&etcd, "app");
    let app2 = Ctl::new(&etcd, "app2");
    app.run(&["set", "payments/limit", "100"]).ok();
    app.run(&["set", "payments/currency", r#""EUR""#]).ok();
    app.run(&["set", "search", "true"]).ok();
    app2.run(&["set", "payments/limit", "5"]).ok();

    let all = app.run(&["list"]).ok().json();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["payments/currency", "payments/limit", "search"]);
    let payments = app.run(&["list", "payments/"]).ok().json();
    assert_eq!(payments.as_array().unwrap().len(), 2);
    assert_eq!(payments[1]["value"], 100);
    assert_eq!(app2.run(&["list"]).ok().json().as_array().unwrap().len(), 1);
    let table = app.run(&["list", "-o", "table"]);
    assert_eq!(table.ok().stdout.lines().count(), 4);

    let via_env = Ctl {
        endpoints: app.endpoints.clone(),
        namespace: String::new(),
        env: vec![],
    }
    .env("CFGCTL_NAMESPACE", &app2.namespace);
    assert_eq!(
        via_env.run(&["get", "payments/limit"]).ok().json(),
        json!(5)
    );

    app.run(&["delete", "search"]).ok();
    app.run(&["get", "search"]).fails(3, "not found");
    assert_eq!(app.run(&["list"]).ok().json().as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn history_and_rollback() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "hist");
    let mut revisions = Vec::new();
    for v in ["1", "2", "3"] {
        let out = ctl.run(&["set", "retries", v]);
        revisions.push(out.ok().json()["revision"].as_i64().unwrap());
    }
    let history = ctl.run(&["history", "retries"]).ok().json();
    let seen: Vec<(i64, i64)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["revision"].as_i64().unwrap(),
                e["value"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [(revisions[2], 3), (revisions[1], 2), (revisions[0], 1)]
    );
    let limited = ctl.run(&["history", "retries", "--limit", "1"]).ok().json();
    assert_eq!(limited.as_array().unwrap().len(), 1);
    ctl.run(&["history", "never.set"]).fails(3, "not found");

    let back = ctl.run(&["rollback", "retries", "--to", &revisions[0].to_string()]);
    let back = back.ok().json();
    assert_eq!(back["restored_from"], revisions[0]);
    assert!(back["revision"].as_i64().unwrap() > revisions[2]);
    assert_eq!(ctl.run(&["get", "retries"]).ok().json(), json!(1));
    assert_eq!(
        ctl.run(&["history", "retries"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        4
    );
    ctl.run(&["rollback", "retries", "--to", "1"])
        .fails(3, "not found at revision 1");
}

/// Each bad input exits 2 with one line naming the problem, and etcd's
/// revision shows that nothing was written.
#[tokio::test]
async fn invalid_input_exits_2_and_writes_nothing() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "bad");
    ctl.run(&["set", "port", "8080"]).ok();
    let before = etcd.revision().await;

    ctl.run(&["set", "port", "{\"a\":"])
        .fails(2, "not valid JSON");
    ctl.run(&["set", "greeting", "hello"])
        .fails(2, r#"quote it: '"hello"'"#);
    for name in ["/abs", "a//b", "a/../b", "sp ace", "trailing/"] {
        ctl.run(&["set", name, "1"]).fails(2, "invalid name");
    }
    let big = format!("\"{}\"", "x".repeat(cfgd::MAX_VALUE_LEN));
    ctl.run_with_stdin(&["set", "port", "-"], Some(&big))
        .fails(2, "over the limit");
    let bad_ns = Ctl {
        endpoints: ctl.endpoints.clone(),
        namespace: "Not_Valid".into(),
        env: vec![],
    };
    bad_ns.run(&["set", "x", "1"]).fails(2, "invalid namespace");
    assert_eq!(ctl.run(&["get", "port", "--timeout", "soon"]).code, 2);

    assert_eq!(etcd.revision().await, before, "nothing was written");
    assert_eq!(ctl.run(&["get", "port"]).ok().json(), json!(8080));
}

#[tokio::test]
async fn values_from_other_tools_are_reported_not_hidden() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "foreign");
    etcd.raw()
        .await
        .put(ctl.key("plain"), "not json", None)
        .await
        .unwrap();
    ctl.run(&["get", "plain"]).fails(1, "not valid JSON");
}

#[tokio::test]
async fn etcdctl_interop_both_ways() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "interop");
    ctl.run(&["set", "flags.ui", "{ \"dark\" : true, \"n\": [1, 2] }"])
        .ok();
    let printed = common::etcdctl(
        &ctl.endpoints,
        &["get", &ctl.key("flags.ui"), "--print-value-only"],
    );
    assert_eq!(printed.trim_end(), r#"{"dark":true,"n":[1,2]}"#);

    common::etcdctl(
        &ctl.endpoints,
        &["put", &ctl.key("from.etcdctl"), r#"{"x":"y"}"#],
    );
    assert_eq!(
        ctl.run(&["get", "from.etcdctl"]).ok().json(),
        json!({"x": "y"})
    );
}

#[tokio::test]
async fn unreachable_etcd_exits_5_within_the_timeout() {
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", silent.local_addr().unwrap());
    for endpoint in [closed, silent] {
        let ctl = Ctl {
            endpoints: endpoint.clone(),
            namespace: "default".into(),
            env: vec![],
        };
        let started = Instant::now();
        ctl.run(&["--connect-timeout", "1s", "get", "x"])
            .fails(5, &format!("etcd unreachable at {endpoint}"));
        // Generous bound: it must give up rather than hang, not be fast.
        assert!(started.elapsed() < Duration::from_secs(15));
    }
}

#[tokio::test]
async fn user_and_password_authentication() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "auth");
    etcd.enable_auth(
        "rootpw",
        "svc",
        "svcpw",
        &format!("/cfgd/{}/", ctl.namespace),
    )
    .await;

    ctl.run(&[
        "--user",
        "svc",
        "--password",
        "svcpw",
        "set",
        "token.ttl",
        "300",
    ])
    .ok();
    let env_ctl = Ctl {
        endpoints: ctl.endpoints.clone(),
        namespace: ctl.namespace.clone(),
        env: vec![],
    }
    .env("CFGCTL_USER", "svc")
    .env("CFGCTL_PASSWORD", "svcpw");
    assert_eq!(env_ctl.run(&["get", "token.ttl"]).ok().json(), json!(300));

    ctl.run(&["--user", "svc", "--password", "nope", "get", "token.ttl"])
        .fails(1, "authentication failed for user \"svc\"");
    ctl.run(&["--user", "svc", "get", "token.ttl"])
        .fails(2, "--user needs --password");
    ctl.run(&["get", "token.ttl"])
        .fails(1, "requires authentication");
    let other = Ctl {
        endpoints: ctl.endpoints.clone(),
        namespace: "other".into(),
        env: vec![],
    };
    other
        .run(&["--user", "svc", "--password", "svcpw", "get", "x"])
        .fails(1, "permission denied");
}

#[tokio::test]
async fn tls_with_client_certificates() {
    let pki = common::pki::Pki::new();
    let etcd = EtcdCluster::single_tls(&pki);
    let ctl = Ctl::new(&etcd, "tls");
    let (ca, cert, key) = (pki.ca(), pki.client_cert(), pki.client_key());
    let [ca, cert, key] = [&ca, &cert, &key].map(|p| p.to_str().unwrap());
    ctl.run(&[
        "--cacert", ca, "--cert", cert, "--key", key, "set", "limit", "7",
    ])
    .ok();
    let env_ctl = Ctl {
        endpoints: ctl.endpoints.clone(),
        namespace: ctl.namespace.clone(),
        env: vec![],
    }
    .env("CFGCTL_CACERT", ca)
    .env("CFGCTL_CERT", cert)
    .env("CFGCTL_KEY", key);
    assert_eq!(env_ctl.run(&["get", "limit"]).ok().json(), json!(7));

    ctl.run(&["--cacert", ca, "get", "limit"])
        .fails(2, "wants a client certificate");
    ctl.run(&["get", "limit"])
        .fails(2, "need the CA that signs etcd's certificates");
    ctl.run(&["--cacert", ca, "--cert", cert, "get", "limit"])
        .fails(2, "--cert and --key go together");
}

#[test]
fn completions_and_help() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cfgctl"))
            .args(args)
            .output()
            .unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(bash.status.success());
    assert!(String::from_utf8_lossy(&bash.stdout).contains("_cfgctl()"));
    let help = run(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "Exit codes",
        "CFGCTL_ENDPOINTS",
        "CFGCTL_NAMESPACE",
        "rollback",
    ] {
        assert!(help.contains(needle), "{needle} in --help");
    }
    let usage = run(&["get"]);
    assert_eq!(usage.status.code(), Some(2));
}

/// A running cfgctl whose output lines arrive on channels, so a test can
/// wait for a line with a timeout; killed on drop if still running.
struct Running {
    child: std::process::Child,
    stdout: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn new(mut child: std::process::Child) -> Self {
        fn lines(pipe: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        }
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Running {
            child,
            stdout,
            stderr,
        }
    }

    #[track_caller]
    fn line(from: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
        from.recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{what}: no line ({e})"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Not yet waited for, so the pid is still our child's.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_prints_json_lines_and_survives_an_etcd_restart() {
    let mut etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "watch");
    ctl.run(&["set", "feature.flags", r#"{"dark":false}"#]).ok();
    let mut watch = Running::new(ctl.spawn(&["watch", "feature", "--count", "3"]));
    let ready = Running::line(&watch.stderr, "watch start");
    assert!(ready.contains("watching \"feature\""), "{ready}");

    ctl.run(&["set", "feature.flags", r#"{"dark":true}"#]).ok();
    ctl.run(&["set", "other", "1"]).ok(); // outside the prefix
    let line: Value = serde_json::from_str(&Running::line(&watch.stdout, "first change")).unwrap();
    assert_eq!(line["name"], "feature.flags");
    assert_eq!(line["kind"], "put");
    assert_eq!(line["value"], json!({"dark": true}));
    assert_eq!(line["resync"], false);
    assert!(line["revision"].as_i64().unwrap() > 0);

    etcd.kill(0);
    let lost = Running::line(&watch.stderr, "connection lost");
    assert!(lost.contains("reconnecting"), "{lost}");
    etcd.restart(0);
    etcd.wait_healthy();
    ctl.run(&["set", "feature.beta", "[1,2]"]).ok();
    ctl.run(&["delete", "feature.flags"]).ok();
    let beta: Value = serde_json::from_str(&Running::line(&watch.stdout, "after restart")).unwrap();
    assert_eq!(
        (beta["name"].as_str(), &beta["value"]),
        (Some("feature.beta"), &json!([1, 2]))
    );
    let gone: Value = serde_json::from_str(&Running::line(&watch.stdout, "delete")).unwrap();
    assert_eq!(gone["kind"], "delete");
    assert_eq!(gone["value"], Value::Null);
    assert!(gone["revision"].as_i64() > beta["revision"].as_i64());

    let status = watch.child.wait().unwrap();
    assert!(status.success(), "--count 3 ends the watch");
}

#[test]
fn export_then_import_round_trips() {
    let etcd = EtcdCluster::single();
    let source = Ctl::new(&etcd, "export");
    for (name, value) in [
        ("db.url", r#""postgres://db/app""#),
        ("feature.flags", r#"{"dark":true}"#),
        ("feature.limits", "[1,2,3]"),
    ] {
        source.run(&["set", name, value]).ok();
    }
    let all = source.run(&["export"]).ok().json();
    assert_eq!(
        all,
        json!({
            "db.url": "postgres://db/app",
            "feature.flags": {"dark": true},
            "feature.limits": [1, 2, 3],
        })
    );
    let features = source.run(&["export", "feature"]).ok().json();
    assert_eq!(features.as_object().unwrap().len(), 2);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    std::fs::write(&file, source.run(&["export"]).stdout).unwrap();
    let file = file.to_str().unwrap();

    let target = Ctl::new(&etcd, "import");
    target
        .run(&["set", "feature.flags", r#"{"dark":false}"#])
        .ok();
    target.run(&["set", "feature.limits", "[1,2,3]"]).ok();

    let report = target.run(&["import", file, "--dry-run"]).ok().json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["created"], json!(["db.url"]));
    assert_eq!(report["updated"], json!(["feature.flags"]));
    assert_eq!(report["unchanged"], json!(["feature.limits"]));
    assert_eq!(target.run(&["export"]).json().as_object().unwrap().len(), 2);

    let report = target.run(&["import", file]).ok().json();
    assert_eq!(report["created"], json!(["db.url"]));
    assert!(report["revision"].as_i64().unwrap() > 0);
    assert_eq!(target.run(&["export"]).json(), all);

    let again = target.run(&["import", file]).ok().json();
    assert_eq!(again["unchanged"].as_array().unwrap().len(), 3);
    assert_eq!(again["revision"], Value::Null, "nothing written");
}

#[tokio::test]
async fn import_checks_everything_first_and_batches_big_documents() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "bigimport");
    let dir = tempfile::tempdir().unwrap();

    // More than etcd's 128 operations per transaction.
    let big: serde_json::Map<String, Value> =
        (0..300).map(|i| (format!("k{i:03}"), json!(i))).collect();
    let big = file_in(&dir, "big.json", &Value::Object(big).to_string());
    let report = ctl.run(&["import", &big]).ok().json();
    assert_eq!(report["created"].as_array().unwrap().len(), 300);
    assert_eq!(etcd.count(&ctl.key("")).await, 300);

    let before = etcd.revision().await;
    let bad_name = file_in(&dir, "bad_name.json", r#"{"k000": 1, "bad name": 2}"#);
    ctl.run(&["import", &bad_name]).fails(2, "bad name");
    let not_object = file_in(&dir, "list.json", "[1, 2]");
    ctl.run(&["import", &not_object]).fails(2, "JSON");
    let broken = file_in(&dir, "broken.json", r#"{"k000": 1, "k001": "#);
    ctl.run(&["import", &broken]).fails(2, "JSON");
    let big_value = format!(r#"{{"k000": 1, "huge": "{}"}}"#, "x".repeat(2 << 20));
    let too_big = file_in(&dir, "huge.json", &big_value);
    ctl.run(&["import", &too_big]).fails(2, "huge");
    ctl.run(&["import", "/nonexistent/file.json"])
        .fails(2, "/nonexistent/file.json");
    assert_eq!(etcd.revision().await, before, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_commands_check_every_write_and_reach_running_clients() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "flags");
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let service = cfgd::Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(&ctl.namespace)
        .connect()
        .await
        .unwrap();
    let flags = service.flags().unwrap();
    let ctx = json!({"targetingKey": "user-7"});

    let good = file(
        "good.json",
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}"#,
    );
    ctl.run(&["flag", "set", "dark-mode", "-f", &good]).ok();
    wait_for(|| flags.bool("dark-mode", false, &ctx)).await;

    ctl.run(&["flag", "disable", "dark-mode"]).ok();
    wait_for(|| !flags.bool("dark-mode", false, &ctx)).await;
    let details = flags.details("dark-mode", false, &ctx);
    assert_eq!(details.reason.as_str(), "DISABLED");

    ctl.run(&["flag", "enable", "dark-mode"]).ok();
    ctl.run(&["flag", "rollout", "dark-mode", "--variant", "on=0,off=100"])
        .ok();
    wait_for(|| flags.details("dark-mode", true, &ctx).variant.as_deref() == Some("off")).await;
    let eval = ctl
        .run(&[
            "flag",
            "eval",
            "dark-mode",
            "--context",
            r#"{"targetingKey": "user-7"}"#,
        ])
        .ok()
        .json();
    assert_eq!(eval["value"], false);
    assert_eq!(eval["variant"], "off");
    assert_eq!(eval["reason"], "TARGETING_MATCH");

    let before = etcd.revision().await;
    for (name, text, needle) in [
        (
            "default.json",
            r#"{"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "off"}"#,
            "defaultVariant",
        ),
        (
            "mixed.json",
            r#"{"state": "ENABLED", "variants": {"on": true, "off": "no"}, "defaultVariant": "on"}"#,
            "mix types",
        ),
        (
            "operator.json",
            r#"{"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": {"like": [1, 2]}}"#,
            "unknown operator \"like\"",
        ),
        (
            "ref.json",
            r#"{"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": {"$ref": "nope"}}"#,
            "\"nope\"",
        ),
        (
            "broken.json",
            r#"{"state": "ENABLED", "variants": {"#,
            "not valid JSON",
        ),
    ] {
        let path = file(name, text);
        ctl.run(&["flag", "set", "dark-mode", "-f", &path])
            .fails(2, needle);
    }
    assert_eq!(etcd.revision().await, before, "nothing was written");
    ctl.run(&["flag", "get", "missing"])
        .fails(3, "flags/missing");
    ctl.run(&[
        "flag",
        "set",
        "dark-mode",
        "-f",
        &good,
        "--if-revision",
        "1",
    ])
    .fails(4, "conflict");
}

/// Waits (a bounded while) for a flag evaluation to come true.
async fn wait_for(check: impl Fn() -> bool) {
    common::eventually(Duration::from_secs(20), || {
        let ok = check();
        async move { ok }
    })
    .await;
}

#[tokio::test]
async fn a_flagd_document_round_trips_through_import_and_export() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "flagdoc");
    let document = json!({
        "$evaluators": {
            "staff": {"ends_with": [{"var": "email"}, "@example.com"]}
        },
        "flags": {
            "new-checkout": {
                "state": "ENABLED",
                "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "targeting": {"if": [{"$ref": "staff"}, "on",
                    {"fractional": [{"var": "targetingKey"}, ["on", 10], ["off", 90]]}]},
                "metadata": {"owner": "payments", "ticket": 42}
            },
            "banner-text": {
                "state": "DISABLED",
                "variants": {"short": "Hi", "long": "Hello there"},
                "defaultVariant": "short"
            },
            "limits": {
                "state": "ENABLED",
                "variants": {"low": {"rps": 10}, "high": {"rps": 1000}},
                "defaultVariant": "low",
                "targeting": {"if": [{"sem_ver": [{"var": "version"}, ">=", "2.1.0"]}, "high", null]}
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, document.to_string()).unwrap();
    let path = path.to_str().unwrap();

    let before = etcd.revision().await;
    let dry = ctl.run(&["flag", "import", path, "--dry-run"]).ok().json();
    assert_eq!(dry["created"].as_array().unwrap().len(), 4, "{dry}");
    assert_eq!(etcd.revision().await, before);

    let report = ctl.run(&["flag", "import", path]).ok().json();
    assert_eq!(
        report["created"],
        json!(["$evaluators", "banner-text", "limits", "new-checkout"])
    );
    let exported = ctl.run(&["flag", "export"]).ok().json();
    assert_eq!(exported, document);
    let again = ctl.run(&["flag", "import", path]).ok().json();
    assert_eq!(again["revision"], Value::Null, "nothing to write");

    // An invalid document is refused whole.
    let mut broken = document.clone();
    broken["flags"]["limits"]["defaultVariant"] = json!("medium");
    broken["flags"]["extra"] =
        json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"});
    std::fs::write(dir.path().join("broken.json"), broken.to_string()).unwrap();
    let settled = etcd.revision().await;
    ctl.run(&[
        "flag",
        "import",
        dir.path().join("broken.json").to_str().unwrap(),
    ])
    .fails(2, "medium");
    assert_eq!(etcd.revision().await, settled, "nothing was written");
}

/// No Docker engine runs in CI, so docker-compose.yml is checked here: it
/// parses, and what it refers to exists and fits together.
#[test]
fn docker_compose_file_is_consistent() {
    let root = &crate::common::root();
    let text = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let mut doc: serde_norway::Value = serde_norway::from_str(&text).expect("valid YAML");
    doc.apply_merge().expect("merge keys resolve");
    let doc: Value = serde_json::to_value(&doc).unwrap();
    let services = doc["services"].as_object().expect("services");
    let volumes = doc["volumes"].as_object().expect("named volumes");
    for name in [
        "etcd1",
        "etcd2",
        "etcd3",
        "cfgd1",
        "cfgd2",
        "cfgd",
        "order-service",
    ] {
        assert!(services.contains_key(name), "service {name}");
    }
    let mut clusters = Vec::new();
    for (name, service) in services {
        assert!(
            service.get("image").is_some() || service.get("build").is_some(),
            "{name}: image or build"
        );
        let test = &service["healthcheck"]["test"];
        assert!(
            test.as_array().is_some_and(|t| t.len() > 1),
            "{name}: health check"
        );
        for mount in service["volumes"].as_array().into_iter().flatten() {
            let source = mount.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with('.') {
                assert!(root.join(source).exists(), "{name}: {source} exists");
            } else {
                assert!(
                    volumes.contains_key(source),
                    "{name}: volume {source} is declared"
                );
            }
        }
        if let Some(deps) = service["depends_on"].as_object() {
            for dep in deps.keys() {
                assert!(
                    services.contains_key(dep),
                    "{name}: depends on unknown {dep}"
                );
            }
        }
        for arg in service["command"].as_array().into_iter().flatten() {
            if let Some(cluster) = arg
                .as_str()
                .and_then(|a| a.strip_prefix("--initial-cluster="))
            {
                clusters.push(cluster.to_owned());
                assert!(
                    cluster.contains(&format!("{name}=http://{name}:2380")),
                    "{name} in its cluster"
                );
            }
        }
    }
    assert_eq!(clusters.len(), 3);
    assert!(
        clusters.windows(2).all(|w| w[0] == w[1]),
        "one initial cluster"
    );
    // Two replicas of one build, on the whole cluster, sharing the stream
    // secret; nginx in front, sending to both.
    assert!(root.join("Dockerfile").exists());
    for replica in ["cfgd1", "cfgd2"] {
        let service = &services[replica];
        assert_eq!(service["build"], ".", "{replica}");
        let endpoints = service["environment"]["CFGD_ENDPOINTS"].as_str().unwrap();
        assert_eq!(endpoints.split(',').count(), 3, "{replica}");
        assert_eq!(
            service["environment"]["CFGD_STREAM_SECRET"],
            services["cfgd1"]["environment"]["CFGD_STREAM_SECRET"]
        );
    }
    assert!(services["cfgd"]["image"]
        .as_str()
        .unwrap()
        .starts_with("nginx:"));
    let proxy = std::fs::read_to_string(root.join("deploy/nginx.conf")).unwrap();
    for line in [
        "server cfgd1:8080",
        "server cfgd2:8080",
        "proxy_buffering off;",
    ] {
        assert!(proxy.contains(line), "deploy/nginx.conf: {line}");
    }
}

#[test]
fn diff_shows_paths_against_a_file_a_namespace_and_history() {
    let etcd = EtcdCluster::single();
    let prod = Ctl::new(&etcd, "diff-prod");
    prod.run(&[
        "set",
        "db",
        r#"{"pool": 20, "legacy": true, "hosts": ["a", "b"]}"#,
    ])
    .ok();
    prod.run(&["set", "gone", "1"]).ok();
    prod.run(&["set", "same", "true"]).ok();

    // A file against the namespace: what import would change.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.json");
    std::fs::write(
        &file,
        r#"{"db": {"pool": 30, "hosts": ["a", "c"], "timeout": 5}, "same": true, "new/one": "x"}"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let text = prod.run(&["diff", file]).ok().stdout.clone();
    assert_eq!(
        text,
        "~ db\n    ~ /pool: 20 → 30\n    - /legacy: true\n    ~ /hosts/1: \"b\" → \"c\"\n    \
         + /timeout: 5\n+ new/one: \"x\"\n",
        "piped, so no colors"
    );
    let data = prod.run(&["diff", file, "-o", "json"]).ok().json();
    assert_eq!(data[0]["name"], "db");
    assert_eq!(
        data[0]["differences"][0],
        json!({"op": "changed", "path": "/pool", "from": 20, "to": 30})
    );
    assert_eq!(
        data[1],
        json!({"name": "new/one", "differences": [{"op": "added", "path": "", "value": "x"}]})
    );
    // --exit-code: 1 when something differs, 0 when nothing does.
    assert_eq!(prod.run(&["diff", file, "--exit-code"]).code, 1);
    prod.run(&["import", file]).ok();
    let none = prod.run(&["diff", file, "--exit-code"]);
    assert_eq!((none.code, none.stdout.as_str()), (0, ""));

    // Another namespace (the before side) against this one (the after side).
    let staging = Ctl::new(&etcd, "diff-staging");
    staging
        .run(&[
            "set",
            "db",
            r#"{"pool": 30, "hosts": ["a", "c"], "timeout": 9}"#,
        ])
        .ok();
    staging.run(&["set", "same", "true"]).ok();
    let against = ["diff", "--against", &prod.namespace];
    let text = staging.run(&against).ok().stdout.clone();
    assert_eq!(
        text,
        "~ db\n    ~ /timeout: 5 → 9\n- gone: 1\n- new/one: \"x\"\n"
    );
    assert_eq!(
        staging.run(&[&against[..], &["--exit-code"]].concat()).code,
        1
    );
    let under_db = staging
        .run(&[&against[..], &["db"]].concat())
        .ok()
        .stdout
        .clone();
    assert_eq!(under_db, "~ db\n    ~ /timeout: 5 → 9\n");
    staging
        .run(&["diff", "--against", "Not A Namespace"])
        .fails(2, "invalid namespace");
    staging
        .run(&["diff"])
        .fails(2, "diff needs a FILE, or --against NS");

    // History as diffs, newest first.
    let history = prod
        .run(&["history", "db", "--diff", "-o", "json"])
        .ok()
        .json();
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[0]["differences"][0]["path"], "/pool");
    assert_eq!(history[1]["differences"][0]["op"], "added");
    let text = prod.run(&["history", "db", "--diff"]).ok().stdout.clone();
    assert!(text.starts_with("revision "), "{text}");
    assert!(text.contains("    ~ /pool: 20 → 30\n"), "{text}");
}

#[tokio::test]
async fn schemas_guard_every_cfgctl_write() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "schema");
    let dir = tempfile::tempdir().unwrap();
    let schema = file_in(
        &dir,
        "db.schema.json",
        r#"{"properties": {"pool_size": {"minimum": 1}, "url": {"type": "string"}}}"#,
    );
    ctl.run(&["set", "db.main", r#"{"pool_size": 0}"#]).ok();
    ctl.run(&["schema", "set", "db.*", "-f", &schema])
        .fails(2, "stored values would fail this schema: db.main");
    ctl.run(&["schema", "set", "db.*", "-f", &schema, "--force"])
        .ok();
    ctl.run(&[
        "schema",
        "set",
        "x",
        "-f",
        &file_in(&dir, "bad.json", r#"{"type": 5}"#),
    ])
    .fails(2, "invalid JSON Schema");

    let before = etcd.revision().await;
    let refused = ctl.run(&["set", "db.main", r#"{"pool_size": 0, "url": 5}"#]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    let key = ctl.key("db.main");
    assert_eq!(
        refused.stderr,
        format!(
            "cfgctl: {key}: does not match schema \"db.*\":\n  \
             /pool_size: 0 is less than the minimum of 1\n  /url: 5 is not of type \"string\"\n"
        )
    );
    let import = file_in(
        &dir,
        "import.json",
        r#"{"db.new": {"pool_size": -3}, "fine": 1}"#,
    );
    assert_eq!(ctl.run(&["import", &import]).code, 2);
    assert_eq!(etcd.revision().await, before, "nothing was written");

    ctl.run(&["set", "db.main", r#"{"pool_size": 3}"#]).ok();
    assert_eq!(
        ctl.run(&["schema", "get", "db.*"]).ok().json()["properties"]["pool_size"],
        json!({"minimum": 1})
    );
    let all = ctl.run(&["schema", "list"]).ok().json();
    assert_eq!(
        all.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["db.*"]
    );
    ctl.run(&["schema", "delete", "db.*"]).ok();
    ctl.run(&["schema", "get", "db.*"]).fails(3, "not found");
    ctl.run(&["set", "db.main", r#"{"pool_size": 0}"#]).ok();
}

#[tokio::test]
async fn writes_are_in_the_log_with_their_actor_and_message() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "log")
        .env("USER", "tester")
        .env("HOSTNAME", "box");
    let first = ctl
        .run(&["set", "db", "1", "-m", "first value"])
        .ok()
        .json()["revision"]
        .clone();
    ctl.run(&["set", "db", "2"]).ok();
    common::etcdctl(&ctl.endpoints, &["put", &ctl.key("db"), "3"]);

    let log = ctl.run(&["log"]).ok().json();
    let rows: Vec<(&str, &str, &str)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap(),
                r["via"].as_str().unwrap(),
                r["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("unattributed", "", "unknown"),
            ("tester@box", "cfgctl", "set"),
            ("tester@box", "cfgctl", "set")
        ]
    );
    assert_eq!(log[2]["message"], "first value");
    assert_eq!(log[2]["revision"], first);
    assert_eq!(log[1]["names"][0]["before"], first);
    assert_eq!(
        ctl.run(&["log", "--actor", "tester@box"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        ctl.run(&["log", "--limit", "1"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(ctl
        .run(&["log", "nothing."])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .is_empty());
    let table = ctl.run(&["log", "-o", "table"]).ok().stdout.clone();
    assert!(table.starts_with("REVISION"), "{table}");
    assert!(table.contains("first value"), "{table}");

    // With an etcd user, the record names that user.
    etcd.enable_auth(
        "rootpw",
        "svc",
        "svcpw",
        &format!("/cfgd/{}/", ctl.namespace),
    )
    .await;
    let as_svc = ["--user", "svc", "--password", "svcpw"];
    ctl.run(&[&as_svc[..], &["set", "db", "4"]].concat()).ok();
    let log = ctl
        .run(&[&as_svc[..], &["log", "--limit", "1"]].concat())
        .ok()
        .json();
    assert_eq!(
        (log[0]["actor"].as_str(), log[0]["via"].as_str()),
        (Some("svc"), Some("cfgctl"))
    );
}

#[test]
fn apply_publishes_one_release_that_can_be_shown_and_reverted() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "apply");
    ctl.run(&["set", "db", r#"{"pool": 20}"#]).ok();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.json");
    std::fs::write(&file, r#"{"db": {"pool": 30}, "cache": {"ttl": 60}}"#).unwrap();
    let file = file.to_str().unwrap();

    let dry = ctl.run(&["apply", file, "--dry-run"]).ok().stdout.clone();
    assert_eq!(dry, "+ cache: {\"ttl\":60}\n~ db\n    ~ /pool: 20 → 30\n");
    assert_eq!(
        ctl.run(&["get", "db"]).ok().json(),
        json!({"pool": 20}),
        "dry run wrote nothing"
    );

    let applied = ctl
        .run(&["apply", file, "-m", "bigger pool", "-o", "json"])
        .ok()
        .json();
    let id = applied["id"].as_str().unwrap().to_owned();
    assert_eq!(applied["changes"].as_array().unwrap().len(), 2);
    assert_eq!(ctl.run(&["get", "db"]).ok().json(), json!({"pool": 30}));
    let again = ctl.run(&["apply", file]);
    assert!(again.stderr.contains("nothing differs"), "{}", again.stderr);

    let list = ctl.run(&["release", "list"]).ok().json();
    assert_eq!(
        (list[0]["id"].as_str(), list[0]["message"].as_str()),
        (Some(id.as_str()), Some("bigger pool"))
    );
    let shown = ctl.run(&["release", "show", &id]).ok().stdout.clone();
    assert!(
        shown.starts_with(&format!("release {id} at revision ")),
        "{shown}"
    );
    assert!(
        shown.contains("    bigger pool\n") && shown.contains("    ~ /pool: 20 → 30\n"),
        "{shown}"
    );
    ctl.run(&["release", "show", "nope"]).fails(3, "not found");

    ctl.run(&["release", "revert", &id]).ok();
    assert_eq!(ctl.run(&["get", "db"]).ok().json(), json!({"pool": 20}));
    ctl.run(&["get", "cache"]).fails(3, "not found");

    // Moved since: refused, naming it (exit 4).
    let second = ctl.run(&["apply", file, "-o", "json"]).ok().json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ctl.run(&["set", "cache", r#"{"ttl": 1}"#]).ok();
    ctl.run(&["release", "revert", &second])
        .fails(4, "changed since: cache");

    // More than one transaction: refused, naming the limit (exit 2).
    let big: serde_json::Map<String, Value> =
        (0..130).map(|i| (format!("n{i}"), json!(i))).collect();
    std::fs::write(dir.path().join("big.json"), Value::Object(big).to_string()).unwrap();
    ctl.run(&["apply", dir.path().join("big.json").to_str().unwrap()])
        .fails(2, "at most 127");
}

#[test]
fn requests_need_another_person_and_protected_names_need_force() {
    let etcd = EtcdCluster::single();
    let alice = Ctl::new(&etcd, "request")
        .env("USER", "alice")
        .env("HOSTNAME", "box");
    let mut bob = Ctl::new(&etcd, "request")
        .env("USER", "bob")
        .env("HOSTNAME", "box");
    bob.namespace = alice.namespace.clone();
    alice.run(&["set", "payments/limits", "1"]).ok();
    let dir = tempfile::tempdir().unwrap();

    let bad = file_in(
        &dir,
        "bad.json",
        r#"{"protected": ["payments/*"], "aprovals": 2}"#,
    );
    alice
        .run(&["policy", "set", "-f", &bad])
        .fails(2, "unknown field `aprovals`");
    let policy = file_in(&dir, "policy.json", r#"{"protected": ["payments/*"]}"#);
    alice.run(&["policy", "set", "-f", &policy]).ok();
    assert_eq!(
        alice.run(&["policy", "get"]).ok().json()["protected"],
        json!(["payments/*"])
    );

    // A direct write is refused (exit 6), pointing at the two ways.
    alice
        .run(&["set", "payments/limits", "2"])
        .fails(6, "cfgctl request create FILE, or --force");
    let change = file_in(&dir, "change.json", r#"{"payments/limits": 2}"#);
    alice.run(&["apply", &change]).fails(6, "protected");

    // The request: alice opens it, cannot approve it; bob approves; merged.
    let opened = alice
        .run(&["request", "create", &change, "-m", "sale"])
        .ok()
        .json();
    let id = opened["id"].as_str().unwrap().to_owned();
    assert_eq!(opened["author"], "alice@box");
    alice
        .run(&["request", "approve", &id])
        .fails(6, "alice@box opened it and cannot approve it");
    alice
        .run(&["request", "merge", &id])
        .fails(6, "needs 1 approval(s) and has 0");
    let shown = bob.run(&["request", "show", &id]).ok().stdout.clone();
    assert!(
        shown.starts_with(&format!(
            "change request {id} (open) by alice@box via cfgctl, approved by: nobody yet\n    sale\n"
        )),
        "{shown}"
    );
    assert!(
        shown.contains("~ payments/limits\n    ~ /: 1 → 2\n"),
        "{shown}"
    );
    bob.run(&["request", "approve", &id]).ok();
    let table = bob
        .run(&["request", "list", "-o", "table"])
        .ok()
        .stdout
        .clone();
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..5],
        [
            id.as_str(),
            "open",
            "alice@box",
            "bob@box",
            "payments/limits"
        ],
        "{table}"
    );
    let merged = alice.run(&["request", "merge", &id]);
    merged.ok();
    assert!(
        merged.stderr.contains("merged as release"),
        "{}",
        merged.stderr
    );
    assert_eq!(alice.run(&["get", "payments/limits"]).ok().json(), json!(2));
    alice
        .run(&["request", "close", &id])
        .fails(6, "it is merged already");

    // A request whose base moved: refused with exit 4, until rebased.
    let later = file_in(&dir, "later.json", r#"{"payments/limits": 3}"#);
    let second = alice.run(&["request", "create", &later]).ok().json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.run(&["request", "approve", &second]).ok();
    let forced = bob.run(&["set", "payments/limits", "9", "--force", "-m", "incident"]);
    forced.ok();
    bob.run(&["request", "merge", &second])
        .fails(4, "changed since it was opened: payments/limits");
    alice.run(&["request", "rebase", &second]).ok();
    bob.run(&["request", "approve", &second]).ok();
    bob.run(&["request", "merge", &second]).ok();
    assert_eq!(alice.run(&["get", "payments/limits"]).ok().json(), json!(3));

    // The log tells the whole story, the forced write marked.
    let log = alice.run(&["log", "payments/"]).ok().json();
    let rows: Vec<(&str, &str, bool)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["actor"].as_str().unwrap(),
                r["forced"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("request.merge", "bob@box", false),
            ("request.approve", "bob@box", false),
            ("request.rebase", "alice@box", false),
            ("set", "bob@box", true),
            ("request.approve", "bob@box", false),
            ("request.create", "alice@box", false),
            ("request.merge", "alice@box", false),
            ("request.approve", "bob@box", false),
            ("request.create", "alice@box", false),
            ("set", "alice@box", false),
        ]
    );
}

#[tokio::test]
async fn secrets_round_trip_and_an_interrupted_rotation_resumes() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "rotate");
    let dir = tempfile::tempdir().unwrap();
    let old = file_in(&dir, "old.key", &ctl.run(&["secret", "keygen"]).ok().stdout);
    let new = file_in(&dir, "new.key", &ctl.run(&["secret", "keygen"]).ok().stdout);
    let id = |path: &str| {
        let text = std::fs::read_to_string(path).unwrap();
        let line = text.lines().find(|l| !l.starts_with('#')).unwrap();
        line.split_whitespace().nth(1).unwrap().to_owned()
    };
    let (old_id, new_id) = (id(&old), id(&new));
    let policy = file_in(&dir, "policy.json", r#"{"secrets": ["s/*"]}"#);
    ctl.run(&["policy", "set", "-f", &policy]).ok();

    // Round trip, and a clear error without the key (exit 7).
    ctl.run(&["--secret-key-file", &old, "set", "s/one", r#""pa55word""#])
        .ok();
    let got = ctl.run(&["--secret-key-file", &old, "get", "s/one"]);
    assert_eq!(got.ok().stdout.trim(), r#""pa55word""#);
    ctl.run(&["get", "s/one"])
        .fails(7, "s/one is a secret sealed under key");
    ctl.run(&["set", "s/two", "2"])
        .fails(7, "writing it needs a secret key");
    let stored = common::etcdctl(
        &ctl.endpoints,
        &["get", "--print-value-only", &ctl.key("s/one")],
    );
    assert!(
        stored.contains(&old_id) && !stored.contains("pa55word"),
        "{stored}"
    );

    // Many secrets, so that a rotation killed after its first one is
    // midway.
    let document: serde_json::Map<String, Value> = (0..400)
        .map(|i| (format!("s/{i:03}"), json!(format!("value {i}"))))
        .collect();
    let document = file_in(&dir, "secrets.json", &Value::Object(document).to_string());
    ctl.run(&["--secret-key-file", &old, "import", &document])
        .ok();
    let under = |id: &str| {
        common::etcdctl(
            &ctl.endpoints,
            &["get", "--prefix", "--print-value-only", &ctl.key("s/")],
        )
        .matches(&format!("\"key\":\"{id}\""))
        .count()
    };
    assert_eq!((under(&old_id), under(&new_id)), (401, 0));

    let rotate = [
        "--secret-key-file",
        &old,
        "secret",
        "rotate",
        "--new-key",
        &new,
    ];
    let mut child = ctl.spawn(&rotate);
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("resealed s/"), "{first:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let (left, done) = (under(&old_id), under(&new_id));
    assert!(
        left > 0 && done > 0 && left + done == 401,
        "{left} old, {done} new"
    );

    // Running it again finishes the job, skipping what is done.
    let again = ctl.run(&rotate);
    again.ok();
    assert!(
        again.stderr.contains(&format!(
            "{left} resealed, {done} already under the new key"
        )),
        "{}",
        again.stderr
    );
    assert_eq!((under(&old_id), under(&new_id)), (0, 401));
    let got = ctl.run(&["--secret-key-file", &new, "get", "s/123"]);
    assert_eq!(got.ok().stdout.trim(), r#""value 123""#);
    ctl.run(&["--secret-key-file", &old, "get", "s/123"])
        .fails(7, "not in the secret key file");
}

#[tokio::test]
async fn admin_roles_give_each_job_least_privilege_in_etcd() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "roles");
    let ns = ctl.namespace.clone();
    ctl.run(&["set", "app.mode", r#""fast""#]).ok();
    {
        let mut auth = etcd.raw().await.auth_client();
        auth.user_add("root", "rootpw", None).await.unwrap();
        auth.user_grant_role("root", "root").await.unwrap();
        auth.auth_enable().await.unwrap();
    }
    let as_root = ["--user", "root", "--password", "rootpw"];
    let made = ctl
        .run(&[&as_root[..], &["admin", "roles", &ns]].concat())
        .ok()
        .json();
    let password = |job: &str| {
        let user = format!("cfgd-{ns}-{job}");
        let grant = made
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["user"] == user.as_str())
            .unwrap_or_else(|| panic!("{user} in {made}"));
        (user, grant["password"].as_str().unwrap().to_owned())
    };
    let (service, service_pw) = password("read");
    let (writer, writer_pw) = password("write");

    // At the etcd level: the service user reads its namespace's values and
    // flags, and writes nothing, reads no audit record and no other
    // namespace.
    let options =
        etcd_client::ConnectOptions::new().with_user(service.as_str(), service_pw.as_str());
    let mut svc = etcd_client::Client::connect(etcd.endpoints(), Some(options))
        .await
        .unwrap();
    let value = svc
        .get(format!("/cfgd/{ns}/config/app.mode"), None)
        .await
        .unwrap();
    assert_eq!(value.kvs()[0].value(), br#""fast""#);
    svc.get(format!("/cfgd/{ns}/flags/x"), None).await.unwrap();
    let denied = |r: Result<(), etcd_client::Error>, what: &str| {
        let e = r.expect_err(what).to_string();
        assert!(e.contains("permission denied"), "{what}: {e}");
    };
    denied(
        svc.put(format!("/cfgd/{ns}/config/app.mode"), "1", None)
            .await
            .map(drop),
        "put",
    );
    denied(
        svc.delete(format!("/cfgd/{ns}/config/app.mode"), None)
            .await
            .map(drop),
        "delete",
    );
    let audit = etcd_client::GetOptions::new().with_prefix();
    denied(
        svc.get(format!("/cfgd/{ns}/audit/"), Some(audit))
            .await
            .map(drop),
        "audit",
    );
    denied(
        svc.get("/cfgd/other/config/app.mode", None).await.map(drop),
        "other namespace",
    );

    // Through cfgd as that user: a live client runs (reads, watches), and
    // every write is refused by etcd.
    let service_ctl = |args: &[&str]| {
        ctl.run(
            &[
                &[
                    "--user",
                    service.as_str(),
                    "--password",
                    service_pw.as_str(),
                ][..],
                args,
            ]
            .concat(),
        )
    };
    assert_eq!(service_ctl(&["get", "app.mode"]).ok().json(), json!("fast"));
    service_ctl(&["set", "app.mode", r#""slow""#]).fails(1, "permission denied");
    let client = cfgd::Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(&ns)
        .user(&service, &service_pw)
        .connect()
        .await
        .unwrap();
    assert_eq!(
        client.get::<String>("app.mode").await.unwrap().unwrap(),
        "fast"
    );

    // The writer writes values (with their audit records), not schemas.
    let writer_ctl = |args: &[&str]| {
        ctl.run(
            &[
                &["--user", writer.as_str(), "--password", writer_pw.as_str()][..],
                args,
            ]
            .concat(),
        )
    };
    writer_ctl(&["set", "app.mode", r#""slow""#, "-m", "as the writer"]).ok();
    let dir = tempfile::tempdir().unwrap();
    let schema = file_in(&dir, "schema.json", r#"{"type": "string"}"#);
    writer_ctl(&["schema", "set", "app.*", "-f", &schema]).fails(1, "permission denied");
    // The service's live client saw the writer's change through its watch.
    common::eventually(Duration::from_secs(20), || async {
        client
            .get::<String>("app.mode")
            .await
            .ok()
            .flatten()
            .as_deref()
            == Some("slow")
    })
    .await;

    // Run again: the same grants, and existing passwords left alone.
    let again = ctl
        .run(&[&as_root[..], &["admin", "roles", &ns]].concat())
        .ok()
        .json();
    assert!(
        again
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["password"].is_null()),
        "{again}"
    );
    ctl.run(&["admin", "roles", &ns])
        .fails(1, "requires authentication");
}

#[tokio::test]
async fn ns_settings_choose_the_bucketing_and_count_the_users_who_move() {
    use cfgd::flags::{Bucketing, FlagSet};
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "ns");
    let dir = tempfile::tempdir().unwrap();
    let split = r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
        "targeting": {"fractional": [{"var": "email"}, ["on", 50], ["off", 50]]}}"#;
    ctl.run(&[
        "flag",
        "set",
        "split",
        "-f",
        &file_in(&dir, "split.json", split),
    ])
    .ok();
    let plain = r#"{"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}"#;
    ctl.run(&[
        "flag",
        "set",
        "plain",
        "-f",
        &file_in(&dir, "plain.json", plain),
    ])
    .ok();
    assert_eq!(
        ctl.run(&["ns", "get"]).ok().json(),
        json!({"fractional": "v2"})
    );

    let bad = ctl.run(&["ns", "set", "--fractional", "v4"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("v4") && bad.stderr.contains("v3"),
        "{}",
        bad.stderr
    );
    ctl.run(&["ns", "set"]).fails(2, "--fractional");

    // Users would move: it says how many, and without --yes writes nothing.
    let refused = ctl.run(&["ns", "set", "--fractional", "v3"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    let line = refused
        .stderr
        .lines()
        .find(|l| l.starts_with("split: "))
        .unwrap_or_else(|| panic!("{}", refused.stderr));
    let moved: usize = line["split: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1000..9000).contains(&moved),
        "{moved} of 10000 users move: {line}"
    );
    assert!(
        line.ends_with("of 10000 sample users change variant (v2 → v3)"),
        "{line}"
    );
    assert!(!refused.stderr.contains("plain:"), "{}", refused.stderr);
    assert!(refused.stderr.contains("pass --yes"), "{}", refused.stderr);
    let raw = etcd
        .raw()
        .await
        .get(format!("/cfgd/{}/meta", ctl.namespace), None)
        .await;
    assert!(raw.unwrap().kvs().is_empty(), "nothing written");

    // The namespace as an argument, and --yes.
    let ns = ctl.namespace.clone();
    let other = Ctl {
        namespace: String::new(),
        ..Ctl::new(&etcd, "unused")
    };
    other
        .run(&["ns", "set", &ns, "--fractional", "v3", "--yes"])
        .ok();
    assert_eq!(
        other.run(&["ns", "get", &ns]).ok().json(),
        json!({"fractional": "v3"})
    );

    // flag eval now buckets with v3, as the evaluator does.
    let document = json!({"flags": {"split": serde_json::from_str::<Value>(split).unwrap()}});
    let v3 = FlagSet::from_document_with(&document.to_string(), Bucketing::V3).unwrap();
    for i in 0..20 {
        let ctx = json!({"targetingKey": "k", "email": format!("user-{i}@example.com")});
        let got = ctl
            .run(&["flag", "eval", "split", "--context", &ctx.to_string()])
            .ok()
            .json();
        let want = v3.evaluate("split", false, &ctx);
        assert_eq!(got["variant"].as_str(), want.variant.as_deref(), "{ctx}");
    }

    // A namespace without fractional flags switches without --yes.
    let empty = Ctl::new(&etcd, "ns-empty");
    let switched = empty.run(&["ns", "set", "--fractional", "v3"]);
    switched.ok();
    assert!(switched.stderr.contains("no flag"), "{}", switched.stderr);
}

/// `base` ← `prod` ← `prod-eu` from the terminal: `ns set --extends`, an
/// effective `get`, `get --explain` and `--own`, a schema in `prod` that
/// refuses a `base` write breaking `prod-eu` (exit 2, nothing written),
/// and `ns delete` refused while extended.
#[tokio::test]
async fn layers_from_the_terminal() {
    let etcd = EtcdCluster::single();
    let base = Ctl::new(&etcd, "base");
    let prod = Ctl::new(&etcd, "prod");
    let eu = Ctl::new(&etcd, "prod-eu");
    base.run(&[
        "set",
        "db",
        r#"{"url":"postgres://base","pool":{"size":10,"idle":2}}"#,
    ])
    .ok();
    prod.run(&["ns", "set", "--extends", &base.namespace]).ok();
    prod.run(&["set", "db", r#"{"pool":{"size":40}}"#]).ok();
    eu.run(&["ns", "set", "--extends", &prod.namespace]).ok();
    eu.run(&["set", "db", r#"{"pool":{"idle":{"$cfgd.unset":true}}}"#])
        .ok();

    let got = eu.run(&["get", "db", "-o", "json"]);
    assert_eq!(
        got.ok().json(),
        json!({"url": "postgres://base", "pool": {"size": 40}})
    );
    let own = eu.run(&["get", "db", "--own", "-o", "json"]);
    assert_eq!(
        own.ok().json(),
        json!({"pool": {"idle": {"$cfgd.unset": true}}})
    );
    let explained = eu.run(&["get", "db", "--explain", "-o", "json"]);
    let explained = explained.ok().json();
    assert_eq!(
        explained["origins"],
        json!({"/url": base.namespace, "/pool/size": prod.namespace})
    );
    let table = eu.run(&["get", "db", "--explain", "-o", "table"]);
    let text = &table.ok().stdout;
    assert!(
        text.contains("LAYER") && text.contains("FIELD") && text.contains("/pool/size"),
        "{text}"
    );
    let layers = eu.run(&["ns", "layers", "-o", "json"]).ok().json();
    assert_eq!(
        layers["layers"],
        json!([base.namespace, prod.namespace, eu.namespace])
    );
    let extended = base.run(&["ns", "layers", "-o", "json"]).ok().json();
    assert_eq!(
        extended["extended_by"],
        json!([prod.namespace, eu.namespace])
    );

    // Diffs: effective values against another namespace's, or one own
    // layer against another.
    let effective = eu.run(&["diff", "db", "--against", &prod.namespace, "-o", "json"]);
    let text = &effective.ok().stdout;
    assert!(
        text.contains("/pool/idle") && !text.contains("cfgd.unset"),
        "{text}"
    );
    let own = eu.run(&[
        "diff",
        "db",
        "--against",
        &prod.namespace,
        "--own",
        "-o",
        "json",
    ]);
    let text = &own.ok().stdout;
    assert!(text.contains("cfgd.unset"), "{text}");
    let alone = eu.run(&["diff", "x.json", "--own"]);
    assert!(
        alone.code == 2 && alone.stderr.contains("--against"),
        "{}",
        alone.stderr
    );

    // A schema on prod: every pool has a url. A base write dropping it
    // breaks prod and prod-eu: exit 2, one line naming a namespace reached.
    let dir = tempfile::tempdir().unwrap();
    let schema = file_in(&dir, "s.json", r#"{"type":"object","required":["url"]}"#);
    prod.run(&["schema", "set", "db", "-f", &schema]).ok();
    let before = etcd.revision().await;
    // (A schema violation lists each failure on a line of its own.)
    let refused = base.run(&["set", "db", r#"{"pool":{"size":10}}"#]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.starts_with(&format!(
            "cfgctl: /cfgd/{}/config/db: does not match schema",
            prod.namespace
        )) || refused.stderr.starts_with(&format!(
            "cfgctl: /cfgd/{}/config/db: does not match schema",
            eu.namespace
        )),
        "{}",
        refused.stderr
    );
    assert_eq!(etcd.revision().await, before, "nothing written");

    // extends that cannot stand, and deleting an extended namespace.
    base.run(&["ns", "set", "--extends", &eu.namespace])
        .fails(2, "cycle");
    base.run(&["ns", "set", "--extends", "missing-ns"])
        .fails(2, "does not exist");
    base.run(&["ns", "delete", "--yes"])
        .fails(6, &format!("is extended by {}", prod.namespace));
    base.run(&["ns", "delete"]).fails(2, "pass --yes");
    assert_eq!(etcd.revision().await, before, "nothing written");

    // One release over two layers of the chain.
    let base_file = file_in(
        &dir,
        "base.json",
        r#"{"feature": {"on": true, "level": 1}}"#,
    );
    let eu_file = file_in(&dir, "eu.json", r#"{"feature": {"level": 2}}"#);
    let released = eu.run(&[
        "apply",
        &eu_file,
        "--with",
        &format!("{}={base_file}", base.namespace),
        "-o",
        "json",
    ]);
    let released = released.ok().json();
    assert!(
        released["revision"].as_i64().unwrap() > before,
        "{released}"
    );
    assert_eq!(released["parts"].as_array().unwrap().len(), 2, "{released}");
    let got = eu.run(&["get", "feature", "-o", "json"]).ok().json();
    assert_eq!(got, json!({"on": true, "level": 2}));
    eu.run(&["apply", &eu_file, "--with", "nowhere=x.json"])
        .fails(2, "x.json");
}

/// A gray release from the terminal: `overlay set`, `put`, `get --labels`,
/// `list`, `promote` (one release), `abandon`, and bad settings refused.
#[tokio::test]
async fn overlays_from_the_terminal() {
    let etcd = EtcdCluster::single();
    let ctl = Ctl::new(&etcd, "gray");
    ctl.run(&["set", "limits", r#"{"max": 10, "burst": 2}"#])
        .ok();
    ctl.run(&["overlay", "set", "canary", "--selector", "canary=true"])
        .ok();
    ctl.run(&["overlay", "put", "canary", "limits", r#"{"max": 50}"#])
        .ok();
    let seen = ctl.run(&["get", "limits", "--labels", "canary=true", "-o", "json"]);
    assert_eq!(seen.ok().json(), json!({"max": 50, "burst": 2}));
    let plain = ctl.run(&["get", "limits", "--labels", "region=eu", "-o", "json"]);
    assert_eq!(plain.ok().json(), json!({"max": 10, "burst": 2}));
    let dir = tempfile::tempdir().unwrap();
    let flag = file_in(
        &dir,
        "beta.json",
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}"#,
    );
    ctl.run(&["overlay", "flag", "canary", "beta", "-f", &flag])
        .ok();
    let bad = file_in(
        &dir,
        "bad.json",
        r#"{"state": "ENABLED", "variants": {}, "defaultVariant": "x"}"#,
    );
    ctl.run(&["overlay", "flag", "canary", "beta", "-f", &bad])
        .fails(2, "beta");
    let listed = ctl.run(&["overlay", "list", "-o", "json"]).ok().json();
    assert_eq!(listed[0]["settings"]["selector"], json!({"canary": "true"}));
    assert_eq!(listed[0]["flags"]["beta"]["defaultVariant"], "on");

    let before = etcd.revision().await;
    ctl.run(&["overlay", "set", "x", "--percent", "101"])
        .fails(2, "percent 101");
    ctl.run(&["overlay", "set", "x"])
        .fails(2, "give a selector, a percent or both");
    ctl.run(&["overlay", "set", "Bad", "--percent", "5"])
        .fails(2, "overlay name");
    ctl.run(&["overlay", "put", "nope", "limits", "1"])
        .fails(3, "not found");
    ctl.run(&["get", "limits", "--labels", "canary"])
        .fails(2, "give key=value");
    assert_eq!(etcd.revision().await, before, "nothing written");

    let promoted = ctl.run(&["overlay", "promote", "canary"]);
    assert!(
        promoted.ok().stderr.contains("release"),
        "{}",
        promoted.stderr
    );
    assert_eq!(
        ctl.run(&["get", "limits", "-o", "json"]).ok().json(),
        json!({"max": 50, "burst": 2})
    );
    assert_eq!(
        ctl.run(&["overlay", "list", "-o", "json"]).ok().json(),
        json!([])
    );
    ctl.run(&["overlay", "abandon", "canary"])
        .fails(3, "not found");
}
