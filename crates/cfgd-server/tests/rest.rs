//! REST: config and flags with ETags and compare-and-set, lists, history,
//! schemas, diffs, the audit trail, releases and change requests.

use crate::common::{self, EtcdCluster};

use super::harness::*;

#[tokio::test]
async fn rest_config_with_auth_etags_and_validation() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let path = "/v1/namespaces/prod/config/db.pool";

    assert_eq!(http(&server, "GET", "/healthz", &[], "").status, 200);
    let ready = http(&server, "GET", "/readyz", &[], "");
    assert_eq!((ready.status, ready.body.contains("\"etcd\"")), (200, true));

    // Auth: none, unknown, out of scope.
    assert_eq!(http(&server, "GET", path, &[], "").status, 401);
    assert_eq!(
        http(
            &server,
            "GET",
            path,
            &[("Authorization", "Bearer nope")],
            ""
        )
        .status,
        401
    );
    let denied = http(&server, "PUT", path, &[READER], "1");
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(denied.body.contains("\"forbidden\""), "{}", denied.body);
    assert_eq!(
        http(&server, "GET", "/v1/namespaces/dev/config/x", &[READER], "").status,
        403
    );

    let put = http(&server, "PUT", path, &[OPS], r#"{"size": 10}"#);
    assert_eq!(put.status, 200, "{}", put.body);
    let tag = put.header("etag").unwrap().to_owned();

    let got = http(&server, "GET", path, &[READER], "");
    assert_eq!((got.status, got.body.as_str()), (200, r#"{"size":10}"#));
    assert_eq!(got.header("etag"), Some(tag.as_str()));
    assert_eq!(
        http(&server, "GET", path, &[READER, ("If-None-Match", &tag)], "").status,
        304
    );

    // A write from a stale ETag is refused; the right one goes through.
    let moved = http(&server, "PUT", path, &[OPS], r#"{"size": 20}"#);
    let stale = http(
        &server,
        "PUT",
        path,
        &[OPS, ("If-Match", &tag)],
        r#"{"size": 30}"#,
    );
    assert_eq!(stale.status, 412, "{}", stale.body);
    let fresh = moved.header("etag").unwrap();
    assert_eq!(
        http(&server, "PUT", path, &[OPS, ("If-Match", fresh)], "5").status,
        200
    );

    // Bad input changes nothing.
    let before = etcd.revision().await;
    let bad_json = http(&server, "PUT", path, &[OPS], "{nope");
    assert_eq!(bad_json.status, 400);
    assert!(
        bad_json.body.contains("not valid JSON"),
        "{}",
        bad_json.body
    );
    let bad_name = http(
        &server,
        "PUT",
        "/v1/namespaces/prod/config/bad%20name",
        &[OPS],
        "1",
    );
    assert_eq!(bad_name.status, 400, "{}", bad_name.body);
    let huge = format!("\"{}\"", "x".repeat((1 << 20) + 10));
    let too_big = http(&server, "PUT", path, &[OPS], &huge);
    assert_eq!(
        too_big.status,
        413,
        "{}",
        &too_big.body[..too_big.body.len().min(200)]
    );
    assert_eq!(etcd.revision().await, before, "nothing was written");

    if_match_any_means_it_exists(&server, &etcd, path, "6").await;
}

/// `If-Match: *` means "only if it exists", for writes and deletes alike:
/// on the existing `path` a write and a delete go through, and once it is
/// gone both answer 412 and write nothing. `If-None-Match: *` on a write is
/// the reverse: create only.
async fn if_match_any_means_it_exists(server: &Server, etcd: &EtcdCluster, path: &str, body: &str) {
    let any = ("If-Match", "*");
    assert_eq!(http(server, "PUT", path, &[OPS, any], body).status, 200);
    let deleted = http(server, "DELETE", path, &[OPS, any], "");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(http(server, "GET", path, &[READER], "").status, 404);
    assert_eq!(http(server, "DELETE", path, &[OPS], "").status, 404);
    let before = etcd.revision().await;
    assert_eq!(http(server, "PUT", path, &[OPS, any], body).status, 412);
    assert_eq!(http(server, "DELETE", path, &[OPS, any], "").status, 412);
    assert_eq!(etcd.revision().await, before, "nothing was written");
    // `If-None-Match: *` creates only: once, then 412 with nothing written.
    let absent = ("If-None-Match", "*");
    let created = http(server, "PUT", path, &[OPS, absent], body);
    assert_eq!(created.status, 200, "{}", created.body);
    let before = etcd.revision().await;
    assert_eq!(http(server, "PUT", path, &[OPS, absent], body).status, 412);
    assert_eq!(etcd.revision().await, before, "nothing was written");
}

#[tokio::test]
async fn rest_lists_history_and_flags() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    for (name, value) in [
        ("app/a", "1"),
        ("app/b", "2"),
        ("other", "3"),
        ("app/a", "4"),
    ] {
        let put = http(
            &server,
            "PUT",
            &format!("/v1/namespaces/prod/config/{name}"),
            &[OPS],
            value,
        );
        assert_eq!(put.status, 200, "{}", put.body);
    }
    let list = http(
        &server,
        "GET",
        "/v1/namespaces/prod/config?prefix=app/",
        &[READER],
        "",
    );
    assert_eq!(list.status, 200, "{}", list.body);
    let items: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    let names: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app/a", "app/b"]);
    assert_eq!(items[0]["value"], 4);

    let history = http(
        &server,
        "GET",
        "/v1/namespaces/prod/history/app/a",
        &[READER],
        "",
    );
    assert_eq!(history.status, 200, "{}", history.body);
    let versions: serde_json::Value = serde_json::from_str(&history.body).unwrap();
    let values: Vec<i64> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_i64().unwrap())
        .collect();
    assert_eq!(values, [4, 1]);
    let one = http(
        &server,
        "GET",
        "/v1/namespaces/prod/history/app/a?limit=1",
        &[READER],
        "",
    );
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&one.body).unwrap()[0]["value"],
        4
    );
    for bad in ["0", "1001", "x"] {
        let path = format!("/v1/namespaces/prod/history/app/a?limit={bad}");
        assert_eq!(
            http(&server, "GET", &path, &[READER], "").status,
            400,
            "limit={bad}"
        );
    }
    let none = http(
        &server,
        "GET",
        "/v1/namespaces/prod/history/app/none",
        &[READER],
        "",
    );
    assert_eq!(none.status, 404, "{}", none.body);

    // A name whose last segment is `history` is a name like any other.
    let jobs = "/v1/namespaces/prod/config/jobs/history";
    assert_eq!(
        http(&server, "PUT", jobs, &[OPS], r#"{"keep": 30}"#).status,
        200
    );
    let got = http(&server, "GET", jobs, &[READER], "");
    assert_eq!((got.status, got.body.as_str()), (200, r#"{"keep":30}"#));
    let past = http(
        &server,
        "GET",
        "/v1/namespaces/prod/history/jobs/history",
        &[READER],
        "",
    );
    assert_eq!(past.status, 200, "{}", past.body);

    // Flags: checked like every other write path.
    let flag = "/v1/namespaces/prod/flags/new-checkout";
    let good =
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}"#;
    let put = http(&server, "PUT", flag, &[OPS], good);
    assert_eq!(put.status, 200, "{}", put.body);
    let before = etcd.revision().await;
    let bad = http(
        &server,
        "PUT",
        flag,
        &[OPS],
        r#"{"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "off"}"#,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body.contains("invalid_flag") && bad.body.contains("defaultVariant"),
        "{}",
        bad.body
    );
    assert_eq!(http(&server, "PUT", flag, &[OPS], "{oops").status, 400);
    assert_eq!(etcd.revision().await, before, "nothing was written");
    let got = http(&server, "GET", flag, &[READER], "");
    assert_eq!(got.status, 200);
    assert!(
        got.body.contains("\"defaultVariant\":\"off\""),
        "{}",
        got.body
    );
    let listed = http(&server, "GET", "/v1/namespaces/prod/flags", &[READER], "");
    assert!(listed.body.contains("new-checkout"), "{}", listed.body);
    let stale = http(&server, "PUT", flag, &[OPS, ("If-Match", "\"1\"")], good);
    assert_eq!(stale.status, 412);
    if_match_any_means_it_exists(&server, &etcd, flag, good).await;
}

#[tokio::test]
async fn rest_schemas_refuse_bad_values_with_422() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let schema = r#"{"properties": {"pool_size": {"type": "integer", "minimum": 1}}}"#;
    let path = "/v1/namespaces/prod/schemas/db.*";
    // Changing a schema needs admin scope.
    assert_eq!(http(&server, "PUT", path, &[OPS], schema).status, 403);
    let bad = http(&server, "PUT", path, &[ADMIN], r#"{"type": 5}"#);
    assert_eq!(
        (bad.status, bad.body.contains("invalid_schema")),
        (400, true),
        "{}",
        bad.body
    );
    let value = "/v1/namespaces/prod/config/db.main";
    assert_eq!(
        http(&server, "PUT", value, &[OPS], r#"{"pool_size": 0}"#).status,
        200
    );
    let conflict = http(&server, "PUT", path, &[ADMIN], schema);
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    assert!(conflict.body.contains("db.main"), "{}", conflict.body);
    let forced = http(
        &server,
        "PUT",
        &format!("{path}?force=true"),
        &[ADMIN],
        schema,
    );
    assert_eq!(forced.status, 200, "{}", forced.body);

    let before = etcd.revision().await;
    let refused = http(&server, "PUT", value, &[OPS], r#"{"pool_size": 0}"#);
    assert_eq!(refused.status, 422, "{}", refused.body);
    let body: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(body["error"]["code"], "schema_violation");
    assert_eq!(
        body["error"]["failures"],
        serde_json::json!([{"pointer": "/pool_size", "message": "0 is less than the minimum of 1"}])
    );
    assert_eq!(etcd.revision().await, before, "nothing was written");
    assert_eq!(
        http(&server, "PUT", value, &[OPS], r#"{"pool_size": 2}"#).status,
        200
    );

    let got = http(&server, "GET", path, &[READER], "");
    assert_eq!(got.status, 200, "{}", got.body);
    let listed = http(&server, "GET", "/v1/namespaces/prod/schemas", &[READER], "");
    assert!(listed.body.contains("\"name\":\"db.*\""), "{}", listed.body);
    assert_eq!(http(&server, "DELETE", path, &[ADMIN], "").status, 200);
    assert_eq!(http(&server, "GET", path, &[READER], "").status, 404);
    assert_eq!(
        http(&server, "PUT", value, &[OPS], r#"{"pool_size": 0}"#).status,
        200
    );
}

#[tokio::test]
async fn rest_diff_of_a_document_and_of_two_namespaces() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    for (ns, value) in [
        ("prod", r#"{"pool": 20, "old": 1}"#),
        ("staging", r#"{"pool": 30}"#),
    ] {
        let path = format!("/v1/namespaces/{ns}/config/db");
        assert_eq!(http(&server, "PUT", &path, &[OPS], value).status, 200);
    }
    let document = http(
        &server,
        "POST",
        "/v1/namespaces/prod/diff",
        &[READER],
        r#"{"db": {"pool": 25}, "new": true}"#,
    );
    assert_eq!(document.status, 200, "{}", document.body);
    let diffs: serde_json::Value = serde_json::from_str(&document.body).unwrap();
    assert_eq!(
        diffs,
        serde_json::json!([
            {"name": "db", "differences": [
                {"op": "changed", "path": "/pool", "from": 20, "to": 25},
                {"op": "removed", "path": "/old", "value": 1}]},
            {"name": "new", "differences": [{"op": "added", "path": "", "value": true}]}
        ])
    );
    let promote = http(
        &server,
        "GET",
        "/v1/namespaces/staging/diff?against=prod",
        &[OPS],
        "",
    );
    assert_eq!(promote.status, 200, "{}", promote.body);
    assert!(
        promote.body.contains(r#""path":"/pool","from":20,"to":30"#),
        "{}",
        promote.body
    );
    // Reading two namespaces needs read scope on both: the reader has prod only.
    let refused = http(
        &server,
        "GET",
        "/v1/namespaces/prod/diff?against=staging",
        &[READER],
        "",
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        http(&server, "GET", "/v1/namespaces/prod/diff", &[READER], "").status,
        400
    );
    let bad = http(
        &server,
        "POST",
        "/v1/namespaces/prod/diff",
        &[READER],
        "[1]",
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[tokio::test]
async fn rest_writes_are_audited_as_their_token_with_the_message() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let path = "/v1/namespaces/prod/config/db";
    let put = http(
        &server,
        "PUT",
        path,
        &[OPS, ("X-Cfgd-Message", "bigger pool")],
        "20",
    );
    assert_eq!(put.status, 200, "{}", put.body);
    let revision: i64 = put
        .header("etag")
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap();
    assert_eq!(http(&server, "PUT", path, &[READER], "1").status, 403);
    assert_eq!(http(&server, "DELETE", path, &[ADMIN], "").status, 200);

    let log = http(
        &server,
        "GET",
        "/v1/namespaces/prod/audit?prefix=db",
        &[READER],
        "",
    );
    assert_eq!(log.status, 200, "{}", log.body);
    let records: serde_json::Value = serde_json::from_str(&log.body).unwrap();
    let rows: Vec<(&str, &str, &str)> = records
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
    assert_eq!(rows, [("admin", "http", "delete"), ("ops", "http", "set")]);
    assert_eq!(records[1]["message"], "bigger pool");
    assert_eq!(
        records[1]["revision"], revision,
        "the record shares the change's revision"
    );
    assert_eq!(records[0]["names"][0]["before"], revision);
    let by_ops = http(
        &server,
        "GET",
        "/v1/namespaces/prod/audit?actor=ops&limit=5",
        &[READER],
        "",
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&by_ops.body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        http(
            &server,
            "GET",
            "/v1/namespaces/prod/audit?limit=0",
            &[READER],
            ""
        )
        .status,
        400
    );
}

#[tokio::test]
async fn rest_releases_publish_show_and_revert() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let db = "/v1/namespaces/prod/config/db";
    assert_eq!(
        http(&server, "PUT", db, &[OPS], r#"{"pool": 1}"#).status,
        200
    );
    let body = r#"{"config": {"db": {"pool": 2}, "cache": true},
                   "flags": {"flags": {"beta": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}}"#;
    let releases = "/v1/namespaces/prod/releases";
    assert_eq!(http(&server, "POST", releases, &[READER], body).status, 403);
    let published = http(
        &server,
        "POST",
        releases,
        &[OPS, ("X-Cfgd-Message", "v2")],
        body,
    );
    assert_eq!(published.status, 200, "{}", published.body);
    let published: serde_json::Value = serde_json::from_str(&published.body).unwrap();
    let id = published["id"].as_str().unwrap().to_owned();
    assert_eq!(published["changes"].as_array().unwrap().len(), 3);
    let got = http(&server, "GET", db, &[READER], "");
    assert_eq!(
        got.header("etag"),
        Some(format!("\"{}\"", published["revision"]).as_str())
    );

    let list: serde_json::Value =
        serde_json::from_str(&http(&server, "GET", releases, &[READER], "").body).unwrap();
    assert_eq!(
        (
            list[0]["id"].as_str(),
            list[0]["actor"].as_str(),
            list[0]["message"].as_str()
        ),
        (Some(id.as_str()), Some("ops"), Some("v2"))
    );
    let shown = http(&server, "GET", &format!("{releases}/{id}"), &[READER], "");
    assert!(
        shown.body.contains(r#""path":"/pool","from":1,"to":2"#),
        "{}",
        shown.body
    );
    assert_eq!(
        http(&server, "GET", &format!("{releases}/nope"), &[READER], "").status,
        404
    );

    let revert = format!("{releases}/{id}/revert");
    assert_eq!(http(&server, "POST", &revert, &[OPS], "").status, 200);
    assert_eq!(
        http(&server, "GET", db, &[READER], "").body,
        r#"{"pool":1}"#
    );
    assert_eq!(
        http(
            &server,
            "GET",
            "/v1/namespaces/prod/flags/beta",
            &[READER],
            ""
        )
        .status,
        404
    );
    // Reverting the same release again: its keys moved (the revert moved them).
    let again = http(&server, "POST", &revert, &[OPS], "");
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("release_moved"), "{}", again.body);
}

#[tokio::test]
async fn rest_change_requests_protect_names_and_need_another_token() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let ns = "/v1/namespaces/prod";
    let limits = format!("{ns}/config/payments/limits");
    assert_eq!(http(&server, "PUT", &limits, &[OPS], "1").status, 200);
    let other = format!("{ns}/config/payments/other");
    assert_eq!(http(&server, "PUT", &other, &[OPS], "1").status, 200);

    // Only an admin sets the policy; a bad one is refused with the reason.
    let policy = format!("{ns}/policy");
    let body = r#"{"protected": ["payments/*"], "approvals": 1}"#;
    assert_eq!(http(&server, "PUT", &policy, &[OPS], body).status, 403);
    let bad = http(&server, "PUT", &policy, &[ADMIN], r#"{"approvals": 0}"#);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("invalid_policy"), "{}", bad.body);
    assert_eq!(http(&server, "PUT", &policy, &[ADMIN], body).status, 200);
    let shown = http(&server, "GET", &policy, &[READER], "");
    assert!(
        shown.body.contains(r#""protected":["payments/*"]"#),
        "{}",
        shown.body
    );

    // A direct write to a protected name is refused, for every scope.
    let revision = etcd.revision().await;
    for token in [OPS, ADMIN] {
        let refused = http(&server, "PUT", &limits, &[token], "2");
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert!(
            refused.body.contains(r#""code":"protected""#),
            "{}",
            refused.body
        );
        assert!(
            refused.body.contains("open a change request"),
            "{}",
            refused.body
        );
    }
    let release = http(
        &server,
        "POST",
        &format!("{ns}/releases"),
        &[OPS],
        r#"{"config": {"payments/limits": 2}}"#,
    );
    assert_eq!(release.status, 403, "{}", release.body);
    assert_eq!(etcd.revision().await, revision, "nothing written");

    // Token A opens a request; A cannot approve it, B can; then it merges
    // atomically, as one release.
    let requests = format!("{ns}/requests");
    let opened = http(
        &server,
        "POST",
        &requests,
        &[OPS, ("X-Cfgd-Message", "sale limits")],
        r#"{"config": {"payments/limits": 2, "payments/other": 2}}"#,
    );
    assert_eq!(opened.status, 201, "{}", opened.body);
    let opened: serde_json::Value = serde_json::from_str(&opened.body).unwrap();
    let id = opened["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (opened["author"].as_str(), opened["message"].as_str()),
        (Some("ops"), Some("sale limits"))
    );
    let step = |step: &str| format!("{requests}/{id}/{step}");
    let early = http(&server, "POST", &step("merge"), &[OPS], "");
    assert_eq!(early.status, 409, "{}", early.body);
    let own = http(&server, "POST", &step("approve"), &[OPS], "");
    assert_eq!(own.status, 403, "{}", own.body);
    assert!(own.body.contains("self_approval"), "{}", own.body);
    assert_eq!(
        http(&server, "POST", &step("approve"), &[READER], "").status,
        403
    );
    let approved = http(&server, "POST", &step("approve"), &[REVIEWER], "");
    assert_eq!(approved.status, 200, "{}", approved.body);
    let review = http(&server, "GET", &format!("{requests}/{id}"), &[READER], "");
    assert!(
        review.body.contains(r#""path":"","from":1,"to":2"#),
        "{}",
        review.body
    );
    let listed = http(
        &server,
        "GET",
        &format!("{requests}?state=open"),
        &[READER],
        "",
    );
    assert!(
        listed.body.contains(&format!(r#""id":"{id}""#)),
        "{}",
        listed.body
    );

    let merged = http(&server, "POST", &step("merge"), &[OPS], "");
    assert_eq!(merged.status, 200, "{}", merged.body);
    let merged: serde_json::Value = serde_json::from_str(&merged.body).unwrap();
    let at = merged["revision"].as_i64().unwrap();
    for name in [&limits, &other] {
        let got = http(&server, "GET", name, &[READER], "");
        assert_eq!(
            (got.body.as_str(), got.header("etag")),
            ("2", Some(format!("\"{at}\"").as_str()))
        );
    }

    // A request whose base moved cannot merge.
    let second = http(
        &server,
        "POST",
        &requests,
        &[OPS],
        r#"{"config": {"payments/other": 3}}"#,
    );
    let second: serde_json::Value = serde_json::from_str(&second.body).unwrap();
    let second = second["id"].as_str().unwrap().to_owned();
    let third = http(
        &server,
        "POST",
        &requests,
        &[REVIEWER],
        r#"{"config": {"payments/other": 4}}"#,
    );
    let third: serde_json::Value = serde_json::from_str(&third.body).unwrap();
    let third = third["id"].as_str().unwrap().to_owned();
    for (id, approver) in [(&second, REVIEWER), (&third, OPS)] {
        let path = format!("{requests}/{id}/approve");
        assert_eq!(http(&server, "POST", &path, &[approver], "").status, 200);
    }
    assert_eq!(
        http(
            &server,
            "POST",
            &format!("{requests}/{third}/merge"),
            &[REVIEWER],
            ""
        )
        .status,
        200
    );
    let stale = http(
        &server,
        "POST",
        &format!("{requests}/{second}/merge"),
        &[OPS],
        "",
    );
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert!(
        stale.body.contains("request_moved") && stale.body.contains("payments/other"),
        "{}",
        stale.body
    );
    assert_eq!(http(&server, "GET", &other, &[READER], "").body, "4");

    // Every step is in the audit trail, as its token.
    let log = http(
        &server,
        "GET",
        &format!("{ns}/audit?prefix=payments/limits"),
        &[READER],
        "",
    );
    let records: serde_json::Value = serde_json::from_str(&log.body).unwrap();
    let steps: Vec<(&str, &str)> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["request"].as_str() == Some(id.as_str()))
        .map(|r| (r["action"].as_str().unwrap(), r["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("request.merge", "ops"),
            ("request.approve", "reviewer"),
            ("request.create", "ops")
        ]
    );
}
