//! OFREP: single and bulk evaluation.

use std::time::Duration;

use crate::common::{self, EtcdCluster};

use super::harness::*;

#[tokio::test]
async fn ofrep_single_and_bulk_evaluation() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let flags = [
        (
            "dark-mode",
            r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}"#,
        ),
        (
            "banner",
            r#"{"state": "ENABLED", "variants": {"a": "Hello", "b": "Hi"}, "defaultVariant": "a",
                      "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "b", null]}}"#,
        ),
        (
            "rollout",
            r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                       "targeting": {"fractional": [["on", 50], ["off", 50]]}}"#,
        ),
        (
            "paused",
            r#"{"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"}"#,
        ),
    ];
    for (name, definition) in flags {
        let put = http(
            &server,
            "PUT",
            &format!("/v1/namespaces/prod/flags/{name}"),
            &[OPS],
            definition,
        );
        assert_eq!(put.status, 200, "{}", put.body);
    }
    let eval = |key: &str, ctx: &str, auth: (&str, &str)| {
        let reply = http(
            &server,
            "POST",
            &format!("/ofrep/v1/evaluate/flags/{key}"),
            &[auth, ("Content-Type", "application/json")],
            &format!(r#"{{"context": {ctx}}}"#),
        );
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
        (reply.status, body)
    };
    // The reader token is scoped to prod only, so it names the namespace.
    let (status, body) = eval("dark-mode", "{}", READER);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"key": "dark-mode", "reason": "STATIC", "variant": "on", "value": true, "metadata": {}})
    );
    let (_, body) = eval("banner", r#"{"targetingKey": "u1", "plan": "pro"}"#, READER);
    assert_eq!(
        (body["value"].as_str(), body["reason"].as_str()),
        (Some("Hi"), Some("TARGETING_MATCH"))
    );
    let (_, body) = eval("banner", r#"{"targetingKey": "u1"}"#, READER);
    assert_eq!(
        (body["value"].as_str(), body["reason"].as_str()),
        (Some("Hello"), Some("DEFAULT"))
    );
    let (_, first) = eval("rollout", r#"{"targetingKey": "user-42"}"#, READER);
    let (_, again) = eval("rollout", r#"{"targetingKey": "user-42"}"#, READER);
    assert_eq!(first["variant"], again["variant"]);
    let (_, paused) = eval("paused", "{}", READER);
    assert_eq!(paused["reason"], "DISABLED");
    assert!(paused.get("value").is_none(), "{paused}");
    let (status, missing) = eval("nope", "{}", READER);
    assert_eq!(status, 404);
    assert_eq!(missing["errorCode"], "FLAG_NOT_FOUND");
    // The ops token spans every namespace: it must say which.
    let (status, _) = eval("dark-mode", "{}", OPS);
    assert_eq!(status, 400);
    let reply = http(
        &server,
        "POST",
        "/ofrep/v1/evaluate/flags/dark-mode",
        &[READER, ("X-Cfgd-Namespace", "dev")],
        "{}",
    );
    assert_eq!(reply.status, 403);

    // Bulk, with its ETag.
    let bulk = |extra: &[(&str, &str)]| {
        let mut headers = vec![READER];
        headers.extend_from_slice(extra);
        http(
            &server,
            "POST",
            "/ofrep/v1/evaluate/flags",
            &headers,
            r#"{"context": {"targetingKey": "u7"}}"#,
        )
    };
    let all = bulk(&[]);
    assert_eq!(all.status, 200, "{}", all.body);
    let parsed: serde_json::Value = serde_json::from_str(&all.body).unwrap();
    let keys: Vec<&str> = parsed["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["banner", "dark-mode", "paused", "rollout"]);
    let tag = all.header("etag").unwrap().to_owned();
    assert_eq!(bulk(&[("If-None-Match", &tag)]).status, 304);

    // Flipping a flag changes the next result, and the bulk ETag.
    let flip = http(
        &server,
        "PUT",
        "/v1/namespaces/prod/flags/dark-mode",
        &[OPS],
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}"#,
    );
    assert_eq!(flip.status, 200);
    common::eventually(Duration::from_secs(20), || async {
        eval("dark-mode", "{}", READER).1["value"] == false
    })
    .await;
    assert_eq!(bulk(&[("If-None-Match", &tag)]).status, 200);
}
