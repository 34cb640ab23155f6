//! `exec` and `render --once`.

use std::path::Path;
use std::time::Duration;

use crate::common::{self, EtcdCluster};
use crate::support::{self, cfgctl, Agent, Via};

fn exec_agent(
    etcd: &EtcdCluster,
    ns: &str,
    dir: &Path,
    templates: &str,
    files: &[&Path],
) -> (Agent, std::path::PathBuf) {
    let record = dir.join("child.log");
    let mut args = vec!["exec".to_owned(), "--".to_owned()];
    args.extend(support::child_command(&record, files));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let top = format!("namespace = {ns:?}\n[exec]\nkill_timeout = \"5s\"\n");
    (
        Agent::start(&Via::Etcd(etcd), dir, &top, templates, &args),
        record,
    )
}

fn events(record: &Path) -> Vec<(String, i64, serde_json::Value)> {
    support::records(record)
        .into_iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap().to_owned(),
                r["pid"].as_i64().unwrap(),
                r["env"].clone(),
            )
        })
        .collect()
}

#[test]
fn exec_gives_the_child_its_environment_restarts_it_on_change_and_exits_with_its_code() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("exec");
    let dir = tempfile::tempdir().unwrap();
    cfgctl(&etcd, &ns, &["set", "app.greeting", "\"hello world\""]);
    let templates = "[[template]]\nprefix = \"app.\"\nformat = \"env\"\naction = \"restart\"\n";
    // The child's variables are APP_…: the prefix is kept by naming it in
    // the names themselves.
    cfgctl(&etcd, &ns, &["set", "app.app_mode", "\"blue\""]);
    let (mut agent, record) = exec_agent(&etcd, &ns, dir.path(), templates, &[]);
    support::wait_until(Duration::from_secs(20), "the child starts", || {
        !events(&record).is_empty()
    });
    let first = events(&record);
    assert_eq!(first[0].0, "start");
    assert_eq!(first[0].2, serde_json::json!({"APP_MODE": "blue"}));
    cfgctl(&etcd, &ns, &["set", "app.app_mode", "\"green\""]);
    support::wait_until(Duration::from_secs(20), "a restarted child", || {
        events(&record)
            .iter()
            .any(|(e, pid, env)| e == "start" && *pid != first[0].1 && env["APP_MODE"] == "green")
    });
    let seen = events(&record);
    assert!(
        seen.iter()
            .any(|(e, pid, _)| e == "term" && *pid == first[0].1),
        "the old child was stopped: {seen:?}"
    );
    let current = seen.last().unwrap().1;
    assert_eq!(agent.stop(), 7, "the agent exits with the child's code");
    let last = events(&record).last().cloned().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1),
        ("term", current),
        "SIGTERM reached the child"
    );
}

#[test]
fn exec_signals_the_child_on_change_when_asked_to() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("exec-hup");
    let dir = tempfile::tempdir().unwrap();
    cfgctl(&etcd, &ns, &["set", "motd", "\"one\""]);
    let out = dir.path().join("motd.txt");
    let source = dir.path().join("motd.j2");
    std::fs::write(&source, "{{ value('motd') }}\n").unwrap();
    let templates = format!("[[template]]\nsource = {source:?}\ndestination = {out:?}\naction = {{ signal = \"HUP\" }}\n");
    let (mut agent, record) = exec_agent(&etcd, &ns, dir.path(), &templates, &[&out]);
    support::wait_until(Duration::from_secs(20), "the child starts", || {
        !events(&record).is_empty()
    });
    cfgctl(&etcd, &ns, &["set", "motd", "\"two\""]);
    support::wait_until(Duration::from_secs(20), "the child reloads", || {
        support::records(&record)
            .iter()
            .any(|r| r["event"] == "reload" && r["files"][out.to_str().unwrap()] == "two\n")
    });
    let pids: std::collections::BTreeSet<i64> = events(&record).iter().map(|e| e.1).collect();
    assert_eq!(pids.len(), 1, "signalled, not restarted");
    assert_eq!(agent.stop(), 7);
}

#[test]
fn render_once_writes_the_files_or_names_every_missing_name() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("once");
    let dir = tempfile::tempdir().unwrap();
    cfgctl(&etcd, &ns, &["set", "db.host", "\"db1\""]);
    let source = dir.path().join("app.j2");
    std::fs::write(
        &source,
        "{{ value('db.host') }}:{{ value('db.port') }} {{ value('db.name') }}\n",
    )
    .unwrap();
    let out = dir.path().join("app.conf");
    let yaml = dir.path().join("db.yaml");
    let templates = format!("[[template]]\nsource = {source:?}\ndestination = {out:?}\n\n[[template]]\nprefix = \"db.\"\nformat = \"yaml\"\ndestination = {yaml:?}\n");
    let top = format!("namespace = {ns:?}");
    let mut agent = Agent::start(
        &Via::Etcd(&etcd),
        dir.path(),
        &top,
        &templates,
        &["render", "--once", "--timeout", "10s"],
    );
    assert_eq!(agent.wait(Duration::from_secs(30)), 1);
    let logs = agent.logs();
    let said = logs
        .lines()
        .find(|l| l.starts_with("cfgd-agent: "))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(said.contains("missing: db.name, db.port"), "{said}");
    assert!(!out.exists(), "nothing written for a failed render");

    cfgctl(&etcd, &ns, &["set", "db.port", "5432"]);
    cfgctl(&etcd, &ns, &["set", "db.name", "\"app\""]);
    let mut agent = Agent::start(
        &Via::Etcd(&etcd),
        dir.path(),
        &top,
        &templates,
        &["render", "--once"],
    );
    assert_eq!(agent.wait(Duration::from_secs(30)), 0, "{}", agent.logs());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "db1:5432 app\n");
    assert_eq!(
        std::fs::read_to_string(&yaml).unwrap(),
        "host: db1\nname: app\nport: 5432\n"
    );
}
