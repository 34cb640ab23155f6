//! Webhooks end to end: real etcd, two or three real cfgd replicas (one
//! elected to deliver), a real receiver that verifies signatures with
//! `standardwebhooks` and parses CloudEvents with `cloudevents`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::harness::*;
use super::workers::*;
use crate::common::{self, EtcdCluster};

/// 500 changes (cfgctl, etcdctl, REST) while the leader is killed midway:
/// every change arrives, etcdctl's as unattributed, in revision order;
/// repeats are of one webhook-id each.
#[test]
fn every_change_arrives_in_order_across_a_leader_kill() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let replicas: Vec<Server> = (0..3)
        .map(|i| replica(&etcd, &key, &format!("r{i}"), 2, ""))
        .collect();
    let all: Vec<&Server> = replicas.iter().collect();
    let first = leader(&all, Duration::from_secs(20));
    let receiver = Receiver::start();
    let ns = common::namespace("hooks");
    add_webhook(
        &replicas[first],
        &ns,
        json!({"url": receiver.url(), "secret": SECRET}),
    );
    // REST writes go to a replica that is not killed.
    let writer = &replicas[(first + 1) % 3];
    let mut made: Vec<(i64, &str)> = Vec::new();
    for i in 0..500 {
        if i == 250 {
            signal(&replicas[first], libc::SIGKILL);
        }
        let name = format!("n{}", i % 40);
        let value = i.to_string();
        let revision = match i % 10 {
            0 => {
                let (ok, out, err) = cfgctl_run(&etcd, &key, &["-n", &ns, "set", &name, &value]);
                assert!(ok, "{err}");
                made.push((revision_of(&out), "cfgctl"));
                continue;
            }
            1 => {
                let key = format!("/cfgd/{ns}/config/{name}");
                let out =
                    common::etcdctl(&etcd.endpoints_arg(), &["put", &key, &value, "-w", "json"]);
                (revision_of(&out), "etcdctl")
            }
            _ => {
                let reply = http(
                    writer,
                    "PUT",
                    &format!("/v1/namespaces/{ns}/config/{name}"),
                    &[OPS],
                    &value,
                );
                assert_eq!(reply.status, 200, "{}", reply.body);
                (revision_of(&reply.body), "http")
            }
        };
        made.push(revision);
    }
    let wanted: HashSet<i64> = made.iter().map(|(r, _)| *r).collect();
    let records = receiver.wait(
        Duration::from_secs(90),
        "every change delivered",
        |records| {
            let got: HashSet<i64> = records.iter().filter_map(record_revision).collect();
            wanted.is_subset(&got)
        },
    );
    // Each change as written: who made it, and in order.
    let mut seen: HashMap<String, &Value> = HashMap::new();
    let mut newest = 0;
    let mut repeats = 0;
    for record in &records {
        assert_eq!(record["verified"], true, "{record}");
        let id = record["webhook_id"].as_str().unwrap().to_owned();
        let revision = record_revision(record).unwrap();
        assert_eq!(id, format!("cfgd-{ns}-{revision}"));
        if let Some(before) = seen.get(&id) {
            repeats += 1;
            assert_eq!(before["data"], record["data"], "a repeat of {id} differs");
            continue;
        }
        assert!(
            revision > newest,
            "{id} after revision {newest}: out of order"
        );
        newest = revision;
        seen.insert(id, record);
    }
    for (revision, via) in &made {
        let record = seen[&format!("cfgd-{ns}-{revision}")];
        let data = &record["data"];
        match *via {
            "etcdctl" => {
                assert_eq!(data["actor"], "unattributed", "{record}");
                assert_eq!(data["record"], Value::Null);
            }
            via => {
                assert_eq!(data["via"], via, "{record}");
                assert!(data["record"].is_string(), "{record}");
            }
        }
        assert_eq!(record["event"]["type"], "io.cfgd.config.changed");
        assert_eq!(record["event"]["source"], format!("/cfgd/{ns}"));
    }
    let replicas_seen: HashSet<&str> = records
        .iter()
        .filter_map(|r| r["replica"].as_str())
        .collect();
    assert!(
        replicas_seen.len() >= 2,
        "delivered by {replicas_seen:?}: the leader was killed midway"
    );
    println!(
        "{} changes delivered as {} requests: {repeats} repeat(s), by {replicas_seen:?}",
        made.len(),
        records.len()
    );
}

/// A leader paused past its lease is replaced; once it resumes it delivers
/// nothing and its fenced writes fail.
#[test]
fn a_paused_leader_is_fenced_once_its_lease_is_gone() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let replicas = [
        replica(&etcd, &key, "a", 2, ""),
        replica(&etcd, &key, "b", 2, ""),
    ];
    let all: Vec<&Server> = replicas.iter().collect();
    let old = leader(&all, Duration::from_secs(20));
    let (old_name, new) = (["a", "b"][old], 1 - old);
    let receiver = Receiver::start();
    let ns = common::namespace("fence");
    let hook = add_webhook(
        &replicas[old],
        &ns,
        json!({"url": receiver.url(), "secret": SECRET}),
    );
    // Delivering, first...
    let reply = http(
        &replicas[new],
        "PUT",
        &format!("/v1/namespaces/{ns}/config/w"),
        &[OPS],
        "0",
    );
    assert_eq!(reply.status, 200);
    receiver.wait(Duration::from_secs(15), "the first change delivered", |r| {
        !r.is_empty()
    });
    // ...then waiting on the receiver's answer when it is stopped.
    receiver.mode(r#"{"delay": 3}"#);
    let reply = http(
        &replicas[new],
        "PUT",
        &format!("/v1/namespaces/{ns}/config/x"),
        &[OPS],
        "1",
    );
    assert_eq!(reply.status, 200);
    std::thread::sleep(Duration::from_millis(700));
    signal(&replicas[old], libc::SIGSTOP);
    let stopped_ms = now_ms();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !leads(&replicas[new]) {
        assert!(
            Instant::now() < deadline,
            "no new leader while the old one is stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    receiver.mode("{}");
    receiver.wait(
        Duration::from_secs(15),
        "the new leader delivers x",
        |records| {
            records
                .iter()
                .any(|r| r["replica"] == ["a", "b"][new] && r["status"] == 204)
        },
    );
    let fenced_before = 0.0;
    signal(&replicas[old], libc::SIGCONT);
    let resumed = Instant::now();
    let resumed_ms = now_ms();
    while metric(&replicas[old], "cfgd_worker_fenced_writes_total") <= fenced_before {
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "the old leader's fenced write did not fail; its log:\n{}",
            log_of(&replicas[old])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!leads(&replicas[old]));
    // More changes: only the new leader tells of them.
    for i in 0..5 {
        let reply = http(
            &replicas[old],
            "PUT",
            &format!("/v1/namespaces/{ns}/config/y"),
            &[OPS],
            &i.to_string(),
        );
        assert_eq!(reply.status, 200);
    }
    receiver.wait(Duration::from_secs(15), "y delivered", |records| {
        records
            .iter()
            .filter(|r| r["data"]["names"][0]["name"] == "y")
            .count()
            >= 5
    });
    std::thread::sleep(Duration::from_secs(1));
    for record in receiver.records() {
        let received_ms = (record["received"].as_f64().unwrap() * 1000.0) as u64;
        assert!(
            record["replica"] != old_name || received_ms < resumed_ms,
            "the old leader delivered after it resumed: {record}"
        );
    }
    // Its writes failed: no attempt it logged after it was stopped.
    let (ok, out, err) = cfgctl_run(&etcd, &key, &["-n", &ns, "webhook", "deliveries", &hook]);
    assert!(ok, "{err}");
    let attempts: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(attempts.iter().any(|a| a["replica"] == ["a", "b"][new]));
    for attempt in &attempts {
        assert!(
            attempt["replica"] != old_name || attempt["time_ms"].as_u64().unwrap() < stopped_ms,
            "the old leader wrote an attempt after it was stopped: {attempt}"
        );
    }
    println!(
        "fenced writes refused: {}",
        metric(&replicas[old], "cfgd_worker_fenced_writes_total")
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A receiver down for 30 s gets everything once it is back.
#[test]
fn a_receiver_down_for_30_seconds_gets_everything_after() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let server = replica(&etcd, &key, "solo", 2, "retry_max = 4");
    leader(&[&server], Duration::from_secs(20));
    let mut receiver = Receiver::start();
    let ns = common::namespace("down");
    add_webhook(
        &server,
        &ns,
        json!({"url": receiver.url(), "secret": SECRET}),
    );
    let put = |i: usize| {
        let reply = http(
            &server,
            "PUT",
            &format!("/v1/namespaces/{ns}/config/v{i}"),
            &[OPS],
            &i.to_string(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        revision_of(&reply.body)
    };
    put(0);
    receiver.wait(Duration::from_secs(15), "the first change", |r| {
        r.len() == 1
    });
    receiver.down();
    let written: Vec<i64> = (1..=10).map(put).collect();
    std::thread::sleep(Duration::from_secs(30));
    receiver.up();
    let records = receiver.wait(
        Duration::from_secs(20),
        "the ten changes after",
        |records| {
            let got: HashSet<i64> = records.iter().filter_map(record_revision).collect();
            written.iter().all(|r| got.contains(r))
        },
    );
    let order: Vec<i64> = records.iter().filter_map(record_revision).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
}

/// A receiver answering 500 is retried with growing gaps and, past
/// `retry_for`, given up on, audited and shown as failed; another webhook
/// of the namespace gets every change meanwhile.
#[test]
fn a_failing_receiver_is_retried_then_given_up_and_others_go_on() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let hooks = "retry_min = 0.3\nretry_max = 2\nretry_for = 6";
    let server = replica(&etcd, &key, "solo", 2, hooks);
    leader(&[&server], Duration::from_secs(20));
    let (bad, good) = (Receiver::start(), Receiver::start());
    bad.mode(r#"{"status": 500}"#);
    let ns = common::namespace("retry");
    let failing = add_webhook(&server, &ns, json!({"url": bad.url(), "secret": SECRET}));
    add_webhook(&server, &ns, json!({"url": good.url(), "secret": SECRET}));
    let started = Instant::now();
    for i in 0..3 {
        let reply = http(
            &server,
            "PUT",
            &format!("/v1/namespaces/{ns}/config/k{i}"),
            &[OPS],
            "1",
        );
        assert_eq!(reply.status, 200);
    }
    good.wait(
        Duration::from_secs(5),
        "the healthy webhook's three changes",
        |r| r.len() >= 3,
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held up by the failing one"
    );
    // The first event's tries, at growing gaps, then given up on.
    let (ok, shown, err) = (0..200)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            cfgctl_run(&etcd, &key, &["-n", &ns, "webhook", "show", &failing])
        })
        .find(|(_, out, _)| out.contains("\"event_id\""))
        .expect("the failing webhook gave nothing up within 20 s");
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    let failed = &shown["failed"][0];
    assert_eq!(failed["last_error"], "HTTP 500", "{shown}");
    let first = failed["event_id"].as_str().unwrap();
    let tries: Vec<f64> = bad
        .records()
        .iter()
        .filter(|r| r["webhook_id"] == first)
        .map(|r| r["received"].as_f64().unwrap())
        .collect();
    assert_eq!(tries.len() as u64, failed["attempts"].as_u64().unwrap());
    let gaps: Vec<f64> = tries.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 3, "{gaps:?}");
    assert!(
        gaps[gaps.len() - 1] > 2.0 * gaps[0],
        "the gaps do not grow: {gaps:?}"
    );
    println!("tries of {first}, gaps in seconds: {gaps:?}");
    // Audited, and told to the healthy webhook.
    let (_, log, _) = cfgctl_run(&etcd, &key, &["-n", &ns, "log", "-o", "json"]);
    assert!(log.contains("webhook.failed"), "{log}");
    good.wait(
        Duration::from_secs(5),
        "the failure told to the other webhook",
        |records| {
            records
                .iter()
                .any(|r| r["event"]["type"] == "io.cfgd.webhook.failed")
        },
    );
}

/// Signatures verify, a tampered body does not, and no secret's value is
/// in a payload.
#[test]
fn signatures_verify_and_secrets_stay_out_of_payloads() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let server = replica(&etcd, &key, "solo", 2, "");
    leader(&[&server], Duration::from_secs(20));
    let receiver = Receiver::start();
    let ns = common::namespace("signed");
    add_webhook(
        &server,
        &ns,
        json!({"url": receiver.url(), "secret": SECRET}),
    );
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"secrets": ["db.password"]}"#).unwrap();
    let policy = policy.to_str().unwrap();
    let (ok, _, err) = cfgctl_run(&etcd, &key, &["-n", &ns, "policy", "set", "-f", policy]);
    assert!(ok, "{err}");
    for value in ["\"hunter2-first\"", "\"hunter2-second\""] {
        let (ok, _, err) = cfgctl_run(&etcd, &key, &["-n", &ns, "set", "db.password", value]);
        assert!(ok, "{err}");
    }
    let records = receiver.wait(Duration::from_secs(15), "both secret writes", |records| {
        records
            .iter()
            .filter(|r| r["data"]["names"][0]["name"] == "db.password")
            .count()
            == 2
    });
    for record in &records {
        assert_eq!(record["verified"], true, "{record}");
        let raw = record["raw"].as_str().unwrap();
        assert!(
            !raw.contains("hunter2"),
            "a secret's value in a payload: {raw}"
        );
    }
    let secret = records.last().unwrap();
    assert!(
        secret["raw"].as_str().unwrap().contains("<redacted>"),
        "{secret}"
    );
    // The same headers with one byte of the body changed.
    let tampered = secret["raw"]
        .as_str()
        .unwrap()
        .replacen("db.password", "db.passwore", 1);
    let mut curl = std::process::Command::new("curl");
    curl.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "--data-binary",
        &tampered,
    ]);
    for name in [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
    ] {
        curl.args([
            "-H",
            &format!("{name}: {}", secret["headers"][name].as_str().unwrap()),
        ]);
    }
    let status = curl.arg(receiver.url()).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "400");
    let last = receiver.records().pop().unwrap();
    assert_eq!(last["verified"], false, "{last}");
}

/// Replay delivers again from a revision (never past the cursor); a cursor
/// etcd compacted past gets an `io.cfgd.resync` event, then what follows.
#[test]
fn replay_and_a_compacted_cursor() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let server = replica(&etcd, &key, "first", 2, "");
    leader(&[&server], Duration::from_secs(20));
    let receiver = Receiver::start();
    let ns = common::namespace("replay");
    let hook = add_webhook(
        &server,
        &ns,
        json!({"url": receiver.url(), "secret": SECRET}),
    );
    let put = |server: &Server, i: usize| {
        let reply = http(
            server,
            "PUT",
            &format!("/v1/namespaces/{ns}/config/p{i}"),
            &[OPS],
            "1",
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        revision_of(&reply.body)
    };
    let first: Vec<i64> = (0..3).map(|i| put(&server, i)).collect();
    receiver.wait(Duration::from_secs(15), "three changes", |r| r.len() == 3);
    let from = first[0].to_string();
    let (ok, _, err) = cfgctl_run(
        &etcd,
        &key,
        &["-n", &ns, "webhook", "replay", &hook, "--from", &from],
    );
    assert!(ok, "{err}");
    receiver.wait(Duration::from_secs(15), "the three again", |r| r.len() == 6);
    let ids: Vec<String> = receiver
        .records()
        .iter()
        .map(|r| r["webhook_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids[..3],
        ids[3..],
        "a replay repeats the same events, in order"
    );
    let past = (first[2] + 1000).to_string();
    let (ok, _, err) = cfgctl_run(
        &etcd,
        &key,
        &["-n", &ns, "webhook", "replay", &hook, "--from", &past],
    );
    assert!(
        !ok && err.trim().lines().count() == 1 && err.contains("would skip"),
        "{err}"
    );
    // No worker while three changes are made and compacted away.
    signal(&server, libc::SIGKILL);
    drop(server);
    let missed: Vec<i64> = (3..6)
        .map(|i| {
            let key = format!("/cfgd/{ns}/config/p{i}");
            revision_of(&common::etcdctl(
                &etcd.endpoints_arg(),
                &["put", &key, "2", "-w", "json"],
            ))
        })
        .collect();
    common::etcdctl(
        &etcd.endpoints_arg(),
        &["compact", &missed[2].to_string(), "--physical"],
    );
    let server = replica(&etcd, &key, "second", 2, "");
    leader(&[&server], Duration::from_secs(20));
    let after = put(&server, 9);
    let records = receiver.wait(
        Duration::from_secs(20),
        "the resync and the change after",
        |records| records.iter().any(|r| record_revision(r) == Some(after)),
    );
    let resync = records
        .iter()
        .position(|r| r["event"]["type"] == "io.cfgd.resync")
        .unwrap_or_else(|| panic!("no resync: {records:?}"));
    let from = records[resync]["data"]["from"].as_i64().unwrap();
    assert!(from > first[2] && from <= missed[0], "{}", records[resync]);
    let later = records
        .iter()
        .position(|r| record_revision(r) == Some(after))
        .unwrap();
    assert!(resync < later);
    assert!(
        !records
            .iter()
            .any(|r| missed.contains(&record_revision(r).unwrap_or(0))
                && r["event"]["type"] != "io.cfgd.resync"),
        "a compacted change was delivered as if it were not"
    );
}
