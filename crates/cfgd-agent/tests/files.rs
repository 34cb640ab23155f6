//! Files the agent renders: one render and one reload per release through
//! either source, `check` keeping the old file, readers that never see a
//! partial file, and secrets kept to 0600 and out of logs and metrics.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{self, EtcdCluster};
use crate::support::{self, cfgctl, Agent, Server, Via};

fn series(name: &str, template: &Path) -> String {
    format!("{name}{{template=\"{}\"}}", template.display())
}

fn release_is_one_render_and_one_reload(through_server: bool) {
    let etcd = EtcdCluster::single();
    let server = Server::start(&etcd, None);
    let ns = common::namespace("release");
    let dir = tempfile::tempdir().unwrap();
    let first: serde_json::Map<String, Value> = (0..100)
        .map(|i| (format!("app.k{i:03}"), json!(0)))
        .collect();
    let file = dir.path().join("first.json");
    std::fs::write(&file, Value::Object(first).to_string()).unwrap();
    cfgctl(&etcd, &ns, &["apply", file.to_str().unwrap()]);

    let app = dir.path().join("app.json");
    let record = dir.path().join("child.log");
    let _child = support::start_child(&record, &[&app]);
    let via = match through_server {
        true => Via::Server(&server),
        false => Via::Etcd(&etcd),
    };
    let templates = format!(
        r#"[[template]]
prefix = "app."
format = "json"
destination = {app:?}
action = {{ signal = "HUP", pidfile = "{}.pid" }}
wait = {{ min = "300ms", max = "3s" }}
"#,
        record.display()
    );
    let agent = Agent::start(
        &via,
        dir.path(),
        &format!("namespace = {ns:?}"),
        &templates,
        &["run"],
    );
    agent.wait_ready();
    let reloads = || {
        support::records(&record)
            .iter()
            .filter(|r| r["event"] == "reload")
            .count()
    };
    support::wait_until(Duration::from_secs(10), "the first render's reload", || {
        reloads() == 1
    });
    let renders = agent.metric(&series("cfgd_agent_renders_total", &app));
    let writes = agent.metric(&series("cfgd_agent_writes_total", &app));
    assert_eq!((renders, writes), (1.0, 1.0));

    let release: serde_json::Map<String, Value> = (0..100)
        .map(|i| (format!("app.k{i:03}"), json!(i + 1)))
        .collect();
    std::fs::write(&file, Value::Object(release).to_string()).unwrap();
    cfgctl(&etcd, &ns, &["apply", file.to_str().unwrap()]);
    let expected: serde_json::Map<String, Value> = (0..100)
        .map(|i| (format!("k{i:03}"), json!(i + 1)))
        .collect();
    let expected = Value::Object(expected);
    support::wait_until(
        Duration::from_secs(20),
        "the file holds the release",
        || {
            std::fs::read_to_string(&app)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                == Some(expected.clone())
        },
    );
    // Longer than the quiet period: anything still to come has come.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        agent.metric(&series("cfgd_agent_renders_total", &app)),
        2.0,
        "{}",
        agent.logs()
    );
    assert_eq!(agent.metric(&series("cfgd_agent_writes_total", &app)), 2.0);
    let seen = support::records(&record);
    let reloads: Vec<&Value> = seen.iter().filter(|r| r["event"] == "reload").collect();
    assert_eq!(
        reloads.len(),
        2,
        "one reload for the first render, one for the release"
    );
    let read: Value =
        serde_json::from_str(reloads[1]["files"][app.to_str().unwrap()].as_str().unwrap()).unwrap();
    assert_eq!(
        read, expected,
        "the child read the whole release at its reload"
    );
    // And the file equals what etcd holds.
    let exported: Value = serde_json::from_str(&cfgctl(&etcd, &ns, &["export", "app."])).unwrap();
    let stored: serde_json::Map<String, Value> = exported
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.trim_start_matches("app.").to_owned(), v.clone()))
        .collect();
    assert_eq!(Value::Object(stored), expected);
}

#[test]
fn a_release_is_one_render_and_one_reload_through_the_server() {
    release_is_one_render_and_one_reload(true);
}

#[test]
fn a_release_is_one_render_and_one_reload_through_etcd() {
    release_is_one_render_and_one_reload(false);
}

#[test]
fn a_failing_check_keeps_the_old_file_and_says_so() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("check");
    let dir = tempfile::tempdir().unwrap();
    cfgctl(&etcd, &ns, &["set", "port", "8080"]);
    let source = dir.path().join("port.j2");
    std::fs::write(&source, "listen {{ value('port') }};\n").unwrap();
    let out = dir.path().join("port.conf");
    let templates = format!(
        "[[template]]\nsource = {source:?}\ndestination = {out:?}\ncheck = \"grep -Eqx 'listen [0-9]+;' {{{{ staged }}}}\"\n"
    );
    let agent = Agent::start(
        &Via::Etcd(&etcd),
        dir.path(),
        &format!("namespace = {ns:?}"),
        &templates,
        &["run"],
    );
    agent.wait_ready();
    let before = std::fs::read(&out).unwrap();
    assert_eq!(before, b"listen 8080;\n");
    cfgctl(&etcd, &ns, &["set", "port", "\"eighty\""]);
    let failures =
        series("cfgd_agent_render_failures_total", &out).replace("\"}", "\",reason=\"check\"}");
    support::wait_until(Duration::from_secs(10), "the check fails", || {
        agent.metric(&failures) == 1.0
    });
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the old file, byte for byte"
    );
    let status = agent.status();
    let error = status["templates"][0]["last_error"].as_str().unwrap();
    assert!(error.starts_with("check failed: "), "{error}");
    assert!(error.contains("exited with 1"), "{error}");
    // No staged file is left behind beside it.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".cfgd-agent"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // A good value again goes through.
    cfgctl(&etcd, &ns, &["set", "port", "9090"]);
    support::wait_until(Duration::from_secs(10), "the good value lands", || {
        std::fs::read(&out).unwrap() == b"listen 9090;\n"
    });
    assert!(agent.status()["templates"][0]["last_error"].is_null());
}

#[test]
fn a_reader_never_sees_a_partial_file_or_a_wrong_mode() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("atomic");
    let dir = tempfile::tempdir().unwrap();
    cfgctl(&etcd, &ns, &["set", "blob.data", "\"00000000-start\""]);
    let out = dir.path().join("blob.json");
    let templates = format!("[[template]]\nprefix = \"blob.\"\nformat = \"json\"\ndestination = {out:?}\nmode = \"0640\"\n");
    let agent = Agent::start(
        &Via::Etcd(&etcd),
        dir.path(),
        &format!("namespace = {ns:?}"),
        &templates,
        &["run"],
    );
    agent.wait_ready();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, out) = (stop.clone(), out.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            let mut versions = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut file = std::fs::File::open(&out).expect("the file is always there");
                let mode = file.metadata().unwrap().mode() & 0o7777;
                assert_eq!(mode, 0o640, "a reader saw mode {mode:o}");
                let mut text = String::new();
                std::io::Read::read_to_string(&mut file, &mut text).unwrap();
                let doc: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("a partial file ({e}): {} bytes", text.len()));
                versions.insert(doc["data"].as_str().unwrap()[..8].to_owned());
                reads += 1;
            }
            (reads, versions.len())
        })
    };
    for i in 0..40 {
        let big = format!("\"{i:08}{}\"", "x".repeat(100_000));
        cfgctl(&etcd, &ns, &["set", "blob.data", &big]);
    }
    let last = format!("{:08}", 39);
    support::wait_until(Duration::from_secs(20), "the last version lands", || {
        std::fs::read_to_string(&out).unwrap().contains(&last)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (reads, versions) = reader.join().unwrap();
    assert!(
        reads > 100 && versions > 5,
        "{reads} reads of {versions} versions: not a race at all"
    );
}

fn secret_setup(etcd: &EtcdCluster, ns: &str, dir: &Path) -> std::path::PathBuf {
    let key = dir.join("secret.key");
    std::fs::write(&key, cfgd::secret::Keyring::generate()).unwrap();
    let policy = dir.join("policy.json");
    std::fs::write(&policy, r#"{"secrets": ["db/password"]}"#).unwrap();
    cfgctl(etcd, ns, &["policy", "set", "-f", policy.to_str().unwrap()]);
    let env = [("CFGD_SECRET_KEY_FILE", key.as_path())];
    support::cfgctl_with(
        etcd,
        ns,
        &["set", "db/password", "\"hunter2-correct-horse\""],
        &env,
    );
    support::cfgctl_with(etcd, ns, &["set", "db/user", "\"app\""], &env);
    key
}

fn secrets_stay_secret(through_server: bool) {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let ns = common::namespace("secret");
    let key = secret_setup(&etcd, &ns, dir.path());
    let server = Server::start(&etcd, Some(&key));
    let via = match through_server {
        true => Via::Server(&server),
        false => Via::Etcd(&etcd),
    };
    let env = dir.path().join("db.env");
    let open = dir.path().join("open.conf");
    let source = dir.path().join("open.j2");
    std::fs::write(&source, "password={{ value('db/password') }}\n").unwrap();
    let templates = format!(
        "[[template]]\nprefix = \"db/\"\nformat = \"env\"\ndestination = {env:?}\n\n[[template]]\nsource = {source:?}\ndestination = {open:?}\nmode = \"0644\"\n"
    );
    let top = format!("namespace = {ns:?}\nsecret_key_file = {key:?}");
    let agent = Agent::start(&via, dir.path(), &top, &templates, &["run"]);
    support::wait_until(Duration::from_secs(20), "the env file", || env.exists());
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "PASSWORD=hunter2-correct-horse\nUSER=app\n"
    );
    assert_eq!(std::fs::metadata(&env).unwrap().mode() & 0o7777, 0o600);
    let failures = series("cfgd_agent_render_failures_total", &open)
        .replace("\"}", "\",reason=\"secret_mode\"}");
    support::wait_until(Duration::from_secs(10), "the 0644 file is refused", || {
        agent.metric(&failures) >= 1.0
    });
    assert!(
        !open.exists(),
        "a secret never goes into a file others can read"
    );
    let error = agent.status()["templates"][1]["last_error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("db/password") && error.contains("0644"),
        "{error}"
    );
    let snapshot_file = dir.path().join("snapshot.json");
    support::wait_until(Duration::from_secs(10), "the snapshot", || {
        snapshot_file.exists()
    });
    let (_, metrics) = agent.get("/metrics");
    let (_, status) = agent.get("/status");
    let snapshot = std::fs::read_to_string(&snapshot_file).unwrap();
    assert!(
        snapshot.contains("db/password"),
        "the snapshot keeps the secret, sealed"
    );
    for (what, text) in [
        ("log", agent.logs()),
        ("metrics", metrics),
        ("status", status),
        ("snapshot", snapshot),
    ] {
        assert!(
            !text.contains("hunter2"),
            "the plaintext is in the {what}:\n{text}"
        );
    }
}

#[test]
fn a_secret_goes_only_into_a_0600_file_and_nowhere_else_through_the_server() {
    secrets_stay_secret(true);
}

#[test]
fn a_secret_goes_only_into_a_0600_file_and_nowhere_else_through_etcd() {
    secrets_stay_secret(false);
}

fn layers_and_labels(through_server: bool) {
    let etcd = EtcdCluster::single();
    let server = Server::start(&etcd, None);
    let (base, prod) = (common::namespace("base"), common::namespace("prod"));
    cfgctl(&etcd, &base, &["set", "db.host", "\"db.base\""]);
    cfgctl(&etcd, &base, &["set", "db.port", "5432"]);
    cfgctl(&etcd, &prod, &["set", "db.host", "\"db.prod\""]);
    cfgctl(&etcd, &prod, &["ns", "set", &prod, "--extends", &base]);
    cfgctl(
        &etcd,
        &prod,
        &["overlay", "set", "canary", "--selector", "canary=true"],
    );
    cfgctl(
        &etcd,
        &prod,
        &["overlay", "put", "canary", "db.port", "6432"],
    );
    let via = match through_server {
        true => Via::Server(&server),
        false => Via::Etcd(&etcd),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (tag, labels) in [("plain", ""), ("canary", "labels = { canary = \"true\" }")] {
        let sub = dir.path().join(tag);
        std::fs::create_dir(&sub).unwrap();
        let out = sub.join("db.env");
        let templates =
            format!("[[template]]\nprefix = \"db.\"\nformat = \"env\"\ndestination = {out:?}\n");
        let agent = Agent::start(
            &via,
            &sub,
            &format!("namespace = {prod:?}\n{labels}"),
            &templates,
            &["run"],
        );
        files.push((agent, out));
    }
    for (agent, out) in &files {
        agent.wait_ready();
        let _ = out;
    }
    let read = |i: usize| std::fs::read_to_string(&files[i].1).unwrap();
    assert_eq!(read(0), "HOST=db.prod\nPORT=5432\n", "the effective values");
    assert_eq!(
        read(1),
        "HOST=db.prod\nPORT=6432\n",
        "with the overlay its labels select"
    );
    // A change in the base layer reaches both.
    cfgctl(&etcd, &base, &["set", "db.user", "\"app\""]);
    support::wait_until(Duration::from_secs(20), "the base's change", || {
        read(0).contains("USER=app") && read(1).contains("USER=app")
    });
}

#[test]
fn effective_values_and_overlays_by_label_through_the_server() {
    layers_and_labels(true);
}

#[test]
fn effective_values_and_overlays_by_label_through_etcd() {
    layers_and_labels(false);
}

#[test]
fn a_secret_the_agent_may_not_read_is_missing_never_rendered_without() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let ns = common::namespace("withheld");
    let key = secret_setup(&etcd, &ns, dir.path());
    let server = Server::start(&etcd, Some(&key));
    let env = dir.path().join("db.env");
    let templates =
        format!("[[template]]\nprefix = \"db/\"\nformat = \"env\"\ndestination = {env:?}\n");
    let top = format!("namespace = {ns:?}");
    // A token of the read scope only, and (straight from etcd) no key.
    for via in [
        Via::ServerAs(&server, support::READER_TOKEN),
        Via::Etcd(&etcd),
    ] {
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let out = sub.path().join("db.env");
        let templates = templates.replace(&format!("{env:?}"), &format!("{out:?}"));
        let agent = Agent::start(&via, sub.path(), &top, &templates, &["run"]);
        let failures = series("cfgd_agent_render_failures_total", &out)
            .replace("\"}", "\",reason=\"missing\"}");
        support::wait_until(Duration::from_secs(20), "the render fails", || {
            agent.metric(&failures) >= 1.0
        });
        assert!(!out.exists(), "no file without the secret");
        let error = agent.status()["templates"][0]["last_error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(error, "missing: db/password");
        assert!(agent.logs().contains("withheld"), "{}", agent.logs());
        assert!(!agent.logs().contains("hunter2"));
    }
}
