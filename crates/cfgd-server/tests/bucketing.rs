//! A namespace's settings (`…/meta`) over REST, and the bucketing they
//! choose, as OFREP evaluations see it: switched over REST, and switched
//! behind the server's back in etcd.

use std::time::{Duration, Instant};

use cfgd::flags::{Bucketing, FlagSet};
use serde_json::{json, Value};

use crate::common::{self, EtcdCluster};

use super::harness::*;

const SPLIT: &str = r#"{"state": "ENABLED", "variants": {"a": "a", "b": "b", "c": "c"},
    "defaultVariant": "c", "targeting": {"fractional": [["a", 30], ["b", 30], ["c", 40]]}}"#;

#[tokio::test]
async fn namespace_settings_choose_the_bucketing_and_apply_live() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let meta = "/v1/namespaces/prod/meta";
    let put = http(
        &server,
        "PUT",
        "/v1/namespaces/prod/flags/split",
        &[OPS],
        SPLIT,
    );
    assert_eq!(put.status, 200, "{}", put.body);

    // The defaults, filled in, before anything is stored.
    let shown = http(&server, "GET", meta, &[READER], "");
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(
        serde_json::from_str::<Value>(&shown.body).unwrap(),
        json!({"fractional": "v2"})
    );

    // Only an admin writes them; a bad value or field is refused naming
    // it, and nothing reaches etcd.
    let v3 = r#"{"fractional": "v3"}"#;
    assert_eq!(http(&server, "PUT", meta, &[OPS], v3).status, 403);
    for (body, named) in [
        (r#"{"fractional": "v4"}"#, "\"v4\""),
        (r#"{"fractionl": "v3"}"#, "fractionl"),
        (r#"{"fractional": 3}"#, "fractional"),
        ("[]", "JSON object"),
        ("{", "EOF"),
    ] {
        let bad = http(&server, "PUT", meta, &[ADMIN], body);
        assert_eq!(bad.status, 400, "{body}: {}", bad.body);
        let error: Value = serde_json::from_str(&bad.body).unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{body}: {message}");
        assert_eq!(error["error"]["code"], "invalid_meta", "{}", bad.body);
    }
    let mut raw = etcd.raw().await;
    assert!(raw
        .get("/cfgd/prod/meta", None)
        .await
        .unwrap()
        .kvs()
        .is_empty());

    // The answers each bucketing gives, from the evaluator itself.
    let document =
        json!({"flags": {"split": serde_json::from_str::<Value>(SPLIT).unwrap()}}).to_string();
    let expected = |bucketing| {
        let set = FlagSet::from_document_with(&document, bucketing).unwrap();
        (0..200)
            .map(|i| {
                let ctx = json!({"targetingKey": format!("user-{i}")});
                set.evaluate("split", String::new(), &ctx).variant
            })
            .collect::<Vec<_>>()
    };
    let (v2_answers, v3_answers) = (expected(Bucketing::V2), expected(Bucketing::V3));
    let moved = v2_answers
        .iter()
        .zip(&v3_answers)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        moved > 20,
        "only {moved} of 200 users move between v2 and v3"
    );
    let ofrep = || {
        (0..200)
            .map(|i| {
                let reply = http(
                    &server,
                    "POST",
                    "/ofrep/v1/evaluate/flags/split",
                    &[READER, ("Content-Type", "application/json")],
                    &json!({"context": {"targetingKey": format!("user-{i}")}}).to_string(),
                );
                assert_eq!(reply.status, 200, "{}", reply.body);
                let body: Value = serde_json::from_str(&reply.body).unwrap();
                body["variant"].as_str().map(str::to_owned)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(ofrep(), v2_answers, "the default is v2");

    // Over REST: the server's own write applies before it answers.
    assert_eq!(http(&server, "PUT", meta, &[ADMIN], v3).status, 200);
    assert_eq!(ofrep(), v3_answers, "after PUT meta v3");
    let shown = http(&server, "GET", meta, &[READER], "");
    assert_eq!(
        serde_json::from_str::<Value>(&shown.body).unwrap(),
        json!({"fractional": "v3"})
    );

    // Behind the server's back, as etcdctl would: the watch brings it.
    raw.put("/cfgd/prod/meta", r#"{"fractional":"v2"}"#, None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if ofrep() == v2_answers {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the switch to v2 in etcd never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
