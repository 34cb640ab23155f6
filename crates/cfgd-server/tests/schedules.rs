//! Scheduled releases and rollouts end to end: two real cfgd replicas on
//! real etcd, one elected to apply them; and the bad input they refuse.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::harness::*;
use super::workers::*;
use crate::common::{self, EtcdCluster};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn schedules(etcd: &EtcdCluster, key: &std::path::Path, ns: &str) -> Vec<Value> {
    let (ok, out, err) = cfgctl_run(etcd, key, &["-n", ns, "schedule", "list"]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// Waits until every schedule of `ns` is done (not pending).
fn all_done(etcd: &EtcdCluster, key: &std::path::Path, ns: &str, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let all = schedules(etcd, key, ns);
        if all.iter().all(|s| s["state"] != "pending") {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "still pending after {within:?}: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A release scheduled 5 s ahead is applied once, within 1 s of its time,
/// while two replicas run; one whose base moved is suspended, naming the
/// key, with an audit record and a webhook event, and nothing of it is
/// written.
#[test]
fn a_scheduled_release_applies_once_on_time_and_a_moved_one_is_suspended() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let replicas = [
        replica(&etcd, &key, "a", 2, ""),
        replica(&etcd, &key, "b", 2, ""),
    ];
    let all: Vec<&Server> = replicas.iter().collect();
    let lead = leader(&all, Duration::from_secs(20));
    let receiver = Receiver::start();
    let ns = common::namespace("sched");
    add_webhook(
        &replicas[lead],
        &ns,
        json!({"url": receiver.url(), "secret": SECRET}),
    );
    let run = |args: &[&str]| {
        let mut full = vec!["-n", ns.as_str()];
        full.extend_from_slice(args);
        let (ok, out, err) = cfgctl_run(&etcd, &key, &full);
        assert!(ok, "{args:?}: {err}");
        out
    };
    run(&["set", "s.x", "1"]);
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"secrets": ["s.key"]}"#).unwrap();
    run(&["policy", "set", "-f", policy.to_str().unwrap()]);
    let on_time = dir.path().join("on-time.json");
    std::fs::write(
        &on_time,
        r#"{"s.a": 1, "s.b": "two", "s.key": "hunter2-scheduled"}"#,
    )
    .unwrap();
    let moved = dir.path().join("moved.json");
    std::fs::write(&moved, r#"{"s.c": 3, "s.x": 2}"#).unwrap();
    let first: Vec<Value> = serde_json::from_str(&run(&[
        "release",
        "apply",
        on_time.to_str().unwrap(),
        "--at",
        "+5s",
    ]))
    .unwrap();
    let second: Vec<Value> = serde_json::from_str(&run(&[
        "release",
        "apply",
        moved.to_str().unwrap(),
        "--at",
        "+5s",
    ]))
    .unwrap();
    let (first, second) = (
        first[0]["id"].as_str().unwrap(),
        second[0]["id"].as_str().unwrap(),
    );
    // A scheduled secret is sealed where the schedule is kept, and hidden
    // where it is shown.
    let kept = common::etcdctl(
        &etcd.endpoints_arg(),
        &["get", "--prefix", &format!("/cfgd/{ns}/schedules/")],
    );
    assert!(
        kept.contains("s.key") && !kept.contains("hunter2"),
        "{kept}"
    );
    assert!(!run(&["schedule", "list"]).contains("hunter2"));
    // s.x moves under the second schedule, outside cfgd.
    common::etcdctl(
        &etcd.endpoints_arg(),
        &["put", &format!("/cfgd/{ns}/config/s.x"), "5"],
    );
    let done = all_done(&etcd, &key, &ns, Duration::from_secs(15));
    let find = |id: &str| done.iter().find(|s| s["id"] == id).unwrap().clone();
    let applied = find(first);
    assert_eq!(applied["state"], "applied", "{applied}");
    let late = applied["done_ms"].as_u64().unwrap() as i64 - applied["at_ms"].as_i64().unwrap();
    assert!(
        (0..=1000).contains(&late),
        "applied {late} ms after its time"
    );
    println!("applied {late} ms after its time");
    assert_eq!(run(&["get", "s.b"]).trim(), "\"two\"");
    assert_eq!(run(&["get", "s.key"]).trim(), "\"hunter2-scheduled\"");
    let (_, log, _) = cfgctl_run(
        &etcd,
        &key,
        &["-n", &ns, "log", "-o", "json", "--limit", "100"],
    );
    let releases = log.matches(&format!("schedule {first}")).count();
    assert_eq!(releases, 1, "applied {releases} times: {log}");
    let suspended = find(second);
    assert_eq!(suspended["state"], "suspended", "{suspended}");
    assert_eq!(suspended["moved"], json!(["s.x"]), "{suspended}");
    assert_eq!(run(&["get", "s.x"]).trim(), "5");
    let (found, _, _) = cfgctl_run(&etcd, &key, &["-n", &ns, "get", "s.c"]);
    assert!(!found, "s.c was written by a suspended schedule");
    assert!(log.contains("schedule.suspend"), "{log}");
    receiver.wait(Duration::from_secs(10), "the suspension told", |records| {
        records
            .iter()
            .any(|r| r["event"]["type"] == "io.cfgd.schedule.suspended")
            && records
                .iter()
                .any(|r| r["event"]["type"] == "io.cfgd.release.published")
    });
}

/// A three-step rollout reaches each percentage at its time, and never
/// more than the step due.
#[test]
fn a_three_step_rollout_reaches_each_percentage_at_its_time() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let replicas = [
        replica(&etcd, &key, "a", 2, ""),
        replica(&etcd, &key, "b", 2, ""),
    ];
    leader(
        &replicas.iter().collect::<Vec<_>>(),
        Duration::from_secs(20),
    );
    let ns = common::namespace("rollout");
    let flag = dir.path().join("flag.json");
    std::fs::write(
        &flag,
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}"#,
    )
    .unwrap();
    let (ok, _, err) = cfgctl_run(
        &etcd,
        &key,
        &[
            "-n",
            &ns,
            "flag",
            "set",
            "checkout",
            "-f",
            flag.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = cfgctl_run(
        &etcd,
        &key,
        &[
            "-n",
            &ns,
            "flag",
            "rollout",
            "checkout",
            "--steps",
            "10%@+3s,50%@+5s,100%@+7s",
        ],
    );
    assert!(ok, "{err}");
    let steps: Vec<Value> = serde_json::from_str(&out).unwrap();
    let due: Vec<(u64, u64)> = steps
        .iter()
        .map(|s| (s["at_ms"].as_u64().unwrap(), s["percent"].as_u64().unwrap()))
        .collect();
    assert_eq!(due.iter().map(|d| d.1).collect::<Vec<_>>(), [10, 50, 100]);
    // Watch the flag as stored, through the REST API.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.last() != Some(&100) {
        assert!(Instant::now() < deadline, "not at 100% in time: {seen:?}");
        let reply = http(
            &replicas[0],
            "GET",
            &format!("/v1/namespaces/{ns}/flags/checkout"),
            &[READER_ALL],
            "",
        );
        let observed_ms = now_ms();
        assert_eq!(reply.status, 200, "{}", reply.body);
        let percent = on_percent(&serde_json::from_str(&reply.body).unwrap());
        let allowed = due
            .iter()
            .filter(|(at, _)| *at <= observed_ms)
            .map(|d| d.1)
            .max()
            .unwrap_or(0);
        assert!(
            percent <= allowed,
            "{percent}% at {observed_ms}, when {allowed}% was due"
        );
        if seen.last() != Some(&percent) {
            seen.push(percent);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seen, [0, 10, 50, 100]);
    for step in all_done(&etcd, &key, &ns, Duration::from_secs(5)) {
        assert_eq!(step["state"], "applied", "{step}");
        let late = step["done_ms"].as_i64().unwrap() - step["at_ms"].as_i64().unwrap();
        assert!(
            (0..=1000).contains(&late),
            "step applied {late} ms after its time: {step}"
        );
    }
}

const READER_ALL: (&str, &str) = ("Authorization", "Bearer ops-secret");

/// The percentage of `on` in a flag's `fractional` targeting (0 without one).
fn on_percent(flag: &Value) -> u64 {
    let Some(split) = flag["targeting"]["fractional"].as_array() else {
        return 0;
    };
    let weights: Vec<(String, u64)> = split
        .iter()
        .filter_map(|b| Some((b[0].as_str()?.to_owned(), b[1].as_u64()?)))
        .collect();
    let total: u64 = weights.iter().map(|w| w.1).sum();
    weights
        .iter()
        .filter(|w| w.0 == "on")
        .map(|w| w.1 * 100 / total)
        .sum()
}

/// Each bad input is refused with one line, and nothing is stored.
#[test]
fn bad_schedules_and_webhooks_are_refused_with_one_line() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let server = replica(&etcd, &key, "solo", 2, "");
    let ns = common::namespace("bad");
    let doc = dir.path().join("doc.json");
    std::fs::write(&doc, r#"{"a": 1}"#).unwrap();
    let doc = doc.to_str().unwrap();
    let (ok, _, err) = cfgctl_run(&etcd, &key, &["-n", &ns, "request", "create", doc]);
    assert!(ok, "{err}");
    let cases: &[(&[&str], &str)] = &[
        (
            &["release", "apply", doc, "--at", "2020-01-01T00:00:00Z"],
            "is in the past",
        ),
        (&["release", "apply", doc, "--at", "soon"], "not RFC 3339"),
        (&["release", "apply", doc, "--at", "+"], "not a duration"),
        (
            &["flag", "rollout", "f", "--steps", "10%@+1h,50%"],
            "PERCENT%@TIME",
        ),
        (
            &["flag", "rollout", "f", "--steps", "10%@+2h,50%@+1h"],
            "must come after",
        ),
        (
            &["flag", "rollout", "f", "--steps", "120%@+1h"],
            "0% to 100%",
        ),
        (
            &["request", "schedule", "1", "--at", "+1h"],
            "is not approved",
        ),
        (
            &["webhook", "add", "hooks.example/in"],
            "must start with http://",
        ),
        (
            &["webhook", "add", "https://hooks.example/in"],
            "https receivers are not supported",
        ),
        (&["webhook", "add", "http://127.0.0.1:9/"], "loopback"),
        (
            &[
                "webhook",
                "add",
                "http://hooks.example/",
                "--events",
                "io.cfgd.everything",
            ],
            "unknown event type",
        ),
        (
            &["webhook", "add", "http://hooks.example/", "--format", "xml"],
            "cloudevents or slack",
        ),
        (
            &[
                "webhook",
                "add",
                "http://hooks.example/",
                "--secret",
                "hunter2",
            ],
            "whsec_",
        ),
    ];
    for (args, says) in cases {
        let mut full = vec!["-n", ns.as_str()];
        full.extend_from_slice(args);
        let (ok, out, err) = cfgctl_run(&etcd, &key, &full);
        assert!(!ok, "{args:?} was taken: {out}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(says),
            "{args:?}: {err:?} does not say {says:?}"
        );
    }
    // The REST API refuses the same, with 400.
    let path = format!("/v1/namespaces/{ns}/schedules");
    for body in [
        json!({"at": "2020-01-01T00:00:00Z", "config": {"a": 2}}),
        json!({"at": "tomorrow", "config": {"a": 2}}),
        json!({"at": "+1h", "request": "1"}),
        json!({"rollout": {"flag": "f", "steps": "10%"}}),
    ] {
        let reply = http(&server, "POST", &path, &[ADMIN], &body.to_string());
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
    }
    let hook = json!({"url": "http://hooks.example/", "events": ["io.cfgd.nope"]});
    let reply = http(
        &server,
        "POST",
        &format!("/v1/namespaces/{ns}/webhooks"),
        &[ADMIN],
        &hook.to_string(),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(schedules(&etcd, &key, &ns).is_empty());
    let (ok, out, err) = cfgctl_run(&etcd, &key, &["-n", &ns, "webhook", "list"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "[]");
}

/// An approved change request scheduled a few seconds ahead is merged at
/// its time, as one release.
#[test]
fn an_approved_request_scheduled_is_merged_at_its_time() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let server = replica(&etcd, &key, "solo", 2, "");
    leader(&[&server], Duration::from_secs(20));
    let ns = common::namespace("sreq");
    let requests = format!("/v1/namespaces/{ns}/requests");
    let opened = http(
        &server,
        "POST",
        &requests,
        &[OPS],
        r#"{"config": {"r.a": 1, "r.b": 2}}"#,
    );
    assert_eq!(opened.status, 201, "{}", opened.body);
    let id = serde_json::from_str::<Value>(&opened.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let approved = http(
        &server,
        "POST",
        &format!("{requests}/{id}/approve"),
        &[REVIEWER],
        "",
    );
    assert_eq!(approved.status, 200, "{}", approved.body);
    let body = json!({"at": "+3s", "request": id});
    let made = http(
        &server,
        "POST",
        &format!("/v1/namespaces/{ns}/schedules"),
        &[OPS],
        &body.to_string(),
    );
    assert_eq!(made.status, 200, "{}", made.body);
    let done = all_done(&etcd, &key, &ns, Duration::from_secs(15));
    assert_eq!(done[0]["state"], "applied", "{}", done[0]);
    let late = done[0]["done_ms"].as_i64().unwrap() - done[0]["at_ms"].as_i64().unwrap();
    assert!(
        (0..=1000).contains(&late),
        "merged {late} ms after its time"
    );
    let request: Value =
        serde_json::from_str(&http(&server, "GET", &format!("{requests}/{id}"), &[OPS], "").body)
            .unwrap();
    assert_eq!(request["state"], "merged", "{request}");
    assert_eq!(request["release"], done[0]["release"], "{request}");
    let value = http(
        &server,
        "GET",
        &format!("/v1/namespaces/{ns}/config/r.b"),
        &[OPS],
        "",
    );
    assert_eq!(value.body, "2");
}
