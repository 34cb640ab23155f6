//! The agent with its source gone: rendering from the snapshot, and
//! coming back; and what a fleet of agents costs etcd.

use std::time::Duration;

use crate::common::{self, EtcdCluster};
use crate::support::{self, cfgctl, Agent, Server, Via};

#[test]
fn with_etcd_and_the_server_down_a_fresh_agent_renders_from_its_snapshot_and_follows_once_back() {
    let mut etcd = EtcdCluster::single();
    let mut server = Server::start(&etcd, None);
    let ns = common::namespace("offline");
    let dir = tempfile::tempdir().unwrap();
    cfgctl(&etcd, &ns, &["set", "greeting", "\"hello\""]);
    let out = dir.path().join("greeting.txt");
    let source = dir.path().join("greeting.j2");
    std::fs::write(&source, "{{ value('greeting') }}\n").unwrap();
    let templates = format!("[[template]]\nsource = {source:?}\ndestination = {out:?}\n");
    let top = format!("namespace = {ns:?}");
    let mut first = Agent::start(
        &Via::Server(&server),
        dir.path(),
        &top,
        &templates,
        &["run"],
    );
    first.wait_ready();
    let snapshot = dir.path().join("snapshot.json");
    support::wait_until(Duration::from_secs(10), "the snapshot", || {
        snapshot.exists()
    });
    assert_eq!(first.stop(), 0);

    server.stop();
    etcd.stop(0);
    std::fs::remove_file(&out).unwrap();
    let fresh = Agent::start(
        &Via::Server(&server),
        dir.path(),
        &top,
        &templates,
        &["run"],
    );
    support::wait_until(
        Duration::from_secs(20),
        "rendered from the snapshot",
        || out.exists(),
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "hello\n");
    let status = fresh.status();
    assert_eq!(
        status["source"]["status"]["state"], "unreachable",
        "{status}"
    );
    assert_eq!(status["source"]["status"]["from_snapshot"], true);
    assert!(
        fresh.logs().contains("source unreachable"),
        "{}",
        fresh.logs()
    );
    assert_eq!(
        fresh.metric("cfgd_agent_source_live{source=\"server\"}"),
        0.0
    );

    etcd.restart(0);
    etcd.wait_healthy();
    server.restart();
    cfgctl(&etcd, &ns, &["set", "greeting", "\"back\""]);
    support::wait_until(Duration::from_secs(30), "re-rendered once back", || {
        std::fs::read_to_string(&out).is_ok_and(|t| t == "back\n")
    });
    assert_eq!(fresh.status()["source"]["status"]["state"], "live");
}

#[test]
fn fifty_agents_through_the_server_cost_etcd_no_watcher_more_than_one() {
    let etcd = EtcdCluster::single();
    let server = Server::start(&etcd, None);
    let ns = common::namespace("fleet");
    cfgctl(&etcd, &ns, &["set", "x", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let top = format!("namespace = {ns:?}");
    let start = |i: usize| {
        let sub = dir.path().join(format!("a{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        let templates = format!(
            "[[template]]\nprefix = \"\"\nformat = \"json\"\ndestination = {:?}\n",
            sub.join("all.json")
        );
        // Every other agent has labels: the server reads their lists and
        // streams through a client of those labels.
        let labels = match i % 2 {
            1 => format!("labels = {{ instance = \"i-{i}\" }}"),
            _ => String::new(),
        };
        let top = format!("{top}\n{labels}");
        Agent::start(&Via::Server(&server), &sub, &top, &templates, &["run"])
    };
    let mut agents = vec![start(0)];
    agents[0].wait_ready();
    let one = etcd.metric(0, "etcd_debugging_mvcc_watcher_total");
    agents.extend((1..50).map(start));
    for agent in &agents {
        agent.wait_ready();
    }
    // Every agent is following: a change reaches all fifty files.
    cfgctl(&etcd, &ns, &["set", "x", "2"]);
    for agent in &agents {
        let file = agent.dir.join("all.json");
        support::wait_until(Duration::from_secs(30), "every agent re-renders", || {
            std::fs::read_to_string(&file).is_ok_and(|t| t.contains("2"))
        });
    }
    let fifty = etcd.metric(0, "etcd_debugging_mvcc_watcher_total");
    assert_eq!(
        one, fifty,
        "etcd watchers: {one} with 1 agent, {fifty} with 50"
    );
}
