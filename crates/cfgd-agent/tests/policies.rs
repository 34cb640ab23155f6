//! The smaller promises: `in_place` keeps the inode, a command action
//! runs, `missing = "wait"` and `"empty"`, an unchanged render writes
//! nothing, and losing the source keeps the files.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::common::{self, EtcdCluster};
use crate::support::{self, cfgctl, Agent, Via};

fn writes(agent: &Agent, file: &std::path::Path) -> f64 {
    agent.metric(&format!(
        "cfgd_agent_writes_total{{template=\"{}\"}}",
        file.display()
    ))
}

#[test]
fn in_place_commands_missing_policies_unchanged_renders_and_a_lost_source() {
    let mut etcd = EtcdCluster::single();
    let ns = common::namespace("policies");
    let dir = tempfile::tempdir().unwrap();
    cfgctl(&etcd, &ns, &["set", "a", "1"]);
    let (in_place, waiting, empty) = (
        dir.path().join("in-place.txt"),
        dir.path().join("wait.txt"),
        dir.path().join("empty.txt"),
    );
    std::fs::write(&in_place, "before\n").unwrap();
    let inode = std::fs::metadata(&in_place).unwrap().ino();
    let ran = dir.path().join("ran.log");
    let source = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let a = source("a.j2", "a={{ value('a') }}\n");
    let ab = source("ab.j2", "a={{ value('a') }} b={{ value('b') }}\n");
    let templates = format!(
        r#"[[template]]
source = {a:?}
destination = {in_place:?}
in_place = true
action = {{ command = "echo ran >> {}" }}

[[template]]
source = {ab:?}
destination = {waiting:?}
missing = "wait"

[[template]]
source = {ab:?}
destination = {empty:?}
missing = "empty"
"#,
        ran.display()
    );
    let agent = Agent::start(
        &Via::Etcd(&etcd),
        dir.path(),
        &format!("namespace = {ns:?}"),
        &templates,
        &["run"],
    );
    support::wait_until(Duration::from_secs(20), "the first renders", || {
        std::fs::read_to_string(&in_place).unwrap() == "a=1\n" && empty.exists()
    });
    assert_eq!(
        std::fs::metadata(&in_place).unwrap().ino(),
        inode,
        "written through the same inode"
    );
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "a=1 b=\n",
        "missing = empty renders nothing in its place"
    );
    support::wait_until(Duration::from_secs(10), "the command ran", || {
        std::fs::read_to_string(&ran).is_ok_and(|t| t == "ran\n")
    });
    let status = agent.status();
    assert_eq!(
        status["templates"][1]["waiting_for"],
        serde_json::json!(["b"]),
        "{status}"
    );
    assert!(!waiting.exists(), "missing = wait writes nothing yet");
    assert_eq!(
        agent.get("/readyz").0,
        503,
        "not ready while a template waits"
    );

    cfgctl(&etcd, &ns, &["set", "b", "2"]);
    support::wait_until(
        Duration::from_secs(20),
        "the waiting template renders",
        || std::fs::read_to_string(&waiting).is_ok_and(|t| t == "a=1 b=2\n"),
    );
    assert_eq!(agent.get("/readyz").0, 200);
    // `b` changed nothing in the in-place file: rendered, not written, and
    // its action did not run again.
    let before = writes(&agent, &in_place);
    cfgctl(&etcd, &ns, &["set", "unrelated", "3"]);
    support::wait_until(Duration::from_secs(20), "the empty template sees b", || {
        std::fs::read_to_string(&empty).unwrap() == "a=1 b=2\n"
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(writes(&agent, &in_place), before);
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "ran\n");

    // The source lost: the files stay as they are, and the agent says so.
    let files: Vec<Vec<u8>> = [&in_place, &waiting, &empty]
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    etcd.stop(0);
    support::wait_until(Duration::from_secs(30), "the loss is seen", || {
        agent.status()["source"]["status"]["state"] == "unreachable"
    });
    std::thread::sleep(Duration::from_millis(500));
    let now: Vec<Vec<u8>> = [&in_place, &waiting, &empty]
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    assert_eq!(files, now);
    etcd.restart(0);
    etcd.wait_healthy();
    cfgctl(&etcd, &ns, &["set", "a", "4"]);
    support::wait_until(Duration::from_secs(30), "followed again", || {
        std::fs::read_to_string(&in_place).unwrap() == "a=4\n"
    });
}

#[test]
fn without_a_wait_a_release_still_ends_whole_in_the_file() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("nowait");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("all.json");
    let templates = format!("[[template]]\nprefix = \"r.\"\nformat = \"json\"\ndestination = {out:?}\nmissing = \"empty\"\n");
    let agent = Agent::start(
        &Via::Etcd(&etcd),
        dir.path(),
        &format!("namespace = {ns:?}"),
        &templates,
        &["run"],
    );
    agent.wait_ready();
    let release: serde_json::Map<String, serde_json::Value> = (0..100)
        .map(|i| (format!("r.k{i:03}"), serde_json::json!(i)))
        .collect();
    let file = dir.path().join("release.json");
    std::fs::write(&file, serde_json::Value::Object(release).to_string()).unwrap();
    cfgctl(&etcd, &ns, &["apply", file.to_str().unwrap()]);
    support::wait_until(Duration::from_secs(20), "the whole release", || {
        std::fs::read_to_string(&out)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.as_object().is_some_and(|o| o.len() == 100))
    });
}
