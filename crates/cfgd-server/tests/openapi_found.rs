//! What schemathesis found (tests/schemathesis.rs), each kept as a plain
//! request against a live cfgd on real etcd, so that a fix cannot quietly
//! come undone when the fuzzer's seed or version moves.

use crate::common::EtcdCluster;
use crate::harness::{http, start, Server, OPS};

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn status(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut all = vec![OPS, JSON];
    all.extend_from_slice(headers);
    let reply = http(server, method, path, &all, body);
    (reply.status, reply.body)
}

#[test]
fn names_are_checked_where_nothing_else_would_read_them() {
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    // U+0084 was answered 200, "unprotected", in the policy's view.
    let (code, body) = status(
        &server,
        "GET",
        "/v1/namespaces/found/policy/%C2%84",
        &[],
        "",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid name"), "{body}");
    // Two revisions of 0 read nothing, and let any name through.
    let (code, body) = status(
        &server,
        "GET",
        "/v1/namespaces/found/diff/%C2%84?from=0&to=0",
        &[],
        "",
    );
    assert_eq!(code, 400, "{body}");
}

#[test]
fn preconditions_parse_strictly_and_hold_on_dry_runs_too() {
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let path = "/v1/namespaces/found/config/app/a";
    // `0` is no revision; it was read as `*`.
    let (code, body) = status(&server, "PUT", path, &[("If-None-Match", "0")], "1");
    assert_eq!(code, 400, "{body}");
    // An empty If-Match was not looked at on a dry run.
    let dry = format!("{path}?dry_run=true");
    let (code, body) = status(&server, "PUT", &dry, &[("If-Match", "")], "1");
    assert_eq!(code, 400, "{body}");
    // A dry run answers what the write would: 412 for a revision not there.
    let (code, body) = status(&server, "PUT", &dry, &[("If-Match", "\"7\"")], "1");
    assert_eq!(code, 412, "{body}");
    // Both at once never hold.
    let (code, body) = status(
        &server,
        "PUT",
        path,
        &[("If-Match", "*"), ("If-None-Match", "*")],
        "1",
    );
    assert_eq!(code, 412, "{body}");
    // A bad body is 400 before any precondition is looked at.
    let (code, body) = status(&server, "PUT", path, &[("If-Match", "*")], "");
    assert_eq!(code, 400, "{body}");
    // Bare and quoted revisions both still work, as the docs show them.
    let (code, body) = status(&server, "PUT", path, &[("If-None-Match", "*")], "1");
    assert_eq!(code, 200, "{body}");
    let revision: serde_json::Value = serde_json::from_str(&body).unwrap();
    let revision = revision["revision"].as_i64().unwrap().to_string();
    let (code, body) = status(&server, "PUT", path, &[("If-Match", &revision)], "2");
    assert_eq!(code, 200, "{body}");
    // If-None-Match on a write is `*` or nothing, even beside If-Match.
    let tags = [("If-Match", revision.as_str()), ("If-None-Match", "\"5\"")];
    let (code, body) = status(&server, "PUT", path, &tags, "3");
    assert_eq!(code, 400, "{body}");
    // One spelling per revision: no leading zero.
    let (code, body) = status(&server, "PUT", path, &[("If-Match", "\"007\"")], "3");
    assert_eq!(code, 400, "{body}");
    // 19 digits overflowed nothing but were more than the pattern says.
    let (code, _) = status(
        &server,
        "PUT",
        path,
        &[("If-Match", "1000000000000000000")],
        "3",
    );
    assert_eq!(code, 400);
}

#[test]
fn bodies_with_unknown_or_missing_parts_are_refused() {
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let releases = "/v1/namespaces/found/releases";
    // "confg" published nothing and answered 200.
    let (code, body) = status(&server, "POST", releases, &[], r#"{"confg": {"a": 1}}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unknown field"), "{body}");
    let (code, body) = status(
        &server,
        "POST",
        releases,
        &[],
        r#"{"flags": {"metadata": {}}}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("it has no \\\"flags\\\""), "{body}");
    // `flags: null` is no flags, as absent is.
    let (code, body) = status(
        &server,
        "POST",
        releases,
        &[],
        r#"{"config": {"a": 1}, "flags": null}"#,
    );
    assert_eq!(code, 200, "{body}");
    // A targeting literal stored through a release, not a rule.
    let flag = r#"{"flags": {"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": "on"}}}}"#;
    let (code, body) = status(&server, "POST", releases, &[], flag);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("targeting must be a JSON Logic rule"),
        "{body}"
    );
    // A change request has no dry run; it opened a real one.
    let (code, body) = status(
        &server,
        "POST",
        "/v1/namespaces/found/requests",
        &[],
        r#"{"config": {"a": 2}, "dry_run": true}"#,
    );
    assert_eq!(code, 400, "{body}");
    // A null targeting is no targeting.
    let (code, body) = status(
        &server,
        "PUT",
        "/v1/namespaces/found/flags/g",
        &[],
        r#"{"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": null}"#,
    );
    assert_eq!(code, 200, "{body}");
    // A revision sent as a whole float.
    let (code, body) = status(
        &server,
        "POST",
        "/v1/namespaces/found/rollback/a",
        &[],
        r#"{"revision": 1.5}"#,
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = status(
        &server,
        "POST",
        "/v1/namespaces/found/rollback/a",
        &[],
        r#"{"revision": 2.0, "x": 1}"#,
    );
    assert_eq!(code, 400, "{body}");
    // OFREP: any JSON but an object was taken as no context.
    let ofrep = [("X-Cfgd-Namespace", "found")];
    let (code, body) = status(&server, "POST", "/ofrep/v1/evaluate/flags", &ofrep, "[]");
    assert_eq!(code, 400, "{body}");
    let (code, body) = status(&server, "POST", "/ofrep/v1/evaluate/flags", &ofrep, "null");
    assert_eq!(code, 200, "{body}");
}

#[test]
fn every_list_takes_a_limit_from_1_to_1000() {
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    for list in ["releases", "requests", "audit", "history/a"] {
        for (limit, want) in [
            ("0", 400),
            ("1001", 400),
            ("99999999999999999999999", 400),
            ("1000", 0),
        ] {
            let path = format!("/v1/namespaces/found/{list}?limit={limit}");
            let (code, body) = status(&server, "GET", &path, &[], "");
            if want == 400 {
                assert_eq!(code, 400, "{path}: {body}");
                assert!(body.contains("limit"), "{path}: {body}");
            } else {
                assert_ne!(code, 400, "{path}: {body}");
            }
        }
    }
}

#[test]
fn a_revision_not_yet_written_is_gone_for_a_diff_as_for_a_rollback() {
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let (code, body) = status(&server, "PUT", "/v1/namespaces/found/config/a", &[], "1");
    assert_eq!(code, 200, "{body}");
    let (code, body) = status(
        &server,
        "GET",
        "/v1/namespaces/found/diff/a?from=900000000",
        &[],
        "",
    );
    assert_eq!(code, 410, "{body}");
    let (code, body) = status(
        &server,
        "POST",
        "/v1/namespaces/found/rollback/a",
        &[],
        r#"{"revision": 900000000}"#,
    );
    assert_eq!(code, 410, "{body}");
    // A bad `to` is a 400, even with a `from` that is gone (seed 2).
    let (code, body) = status(
        &server,
        "GET",
        "/v1/namespaces/found/diff/a?from=900000000&to=-5",
        &[],
        "",
    );
    assert_eq!(code, 400, "{body}");
}
