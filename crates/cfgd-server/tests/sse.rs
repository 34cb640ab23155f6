//! Server-Sent Events: resuming without loss, one etcd watch for all.

use std::process::Command;
use std::time::Duration;

use crate::common::{self, EtcdCluster};

use super::harness::*;

#[tokio::test]
async fn sse_watch_resumes_without_loss_and_sees_cfgctl_writes() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let put = |name: &str, value: &str| {
        let reply = http(
            &server,
            "PUT",
            &format!("/v1/namespaces/prod/config/{name}"),
            &[OPS],
            value,
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply
            .header("etag")
            .unwrap()
            .trim_matches('"')
            .parse::<i64>()
            .unwrap()
    };
    // The namespace's client must exist before the stream opens.
    put("warmup", "0");
    let mut sse = Sse::open(&server, "/v1/namespaces/prod/watch?prefix=app/", None);
    let first = put("app/a", "1");
    let second = put("app/b", "2");
    let a = sse.next();
    let b = sse.next();
    assert_eq!(
        (a.id, a.kind.as_str(), &a.data["value"]),
        (first, "put", &serde_json::json!(1))
    );
    assert_eq!((b.id, b.data["name"].as_str()), (second, Some("app/b")));
    assert_eq!(b.data["resync"], false);
    // Values other tools stored: JSON over several lines (with carriage
    // returns, which an SSE line cannot carry) arrives compact, and text
    // that is not JSON arrives as a string.
    let mut others = Sse::open(&server, "/v1/namespaces/prod/watch?prefix=other/", None);
    let mut raw = etcd.raw().await;
    for (name, text) in [
        ("other/pretty", "{\r\n  \"x\": 1\r\n}"),
        ("other/text", "plain words"),
    ] {
        raw.put(format!("/cfgd/prod/config/{name}"), text, None)
            .await
            .unwrap();
    }
    let (pretty, text) = (others.next(), others.next());
    assert_eq!(pretty.data["value"], serde_json::json!({"x": 1}));
    assert_eq!(text.data["value"], serde_json::json!("plain words"));
    drop((sse, others));

    // While the client is away.
    let c = put("app/c", "3");
    let gone = http(
        &server,
        "DELETE",
        "/v1/namespaces/prod/config/app/a",
        &[OPS],
        "",
    );
    assert_eq!(gone.status, 200);
    put("other", "4");
    let b2 = put("app/b", "5");

    let mut sse = Sse::open(&server, "/v1/namespaces/prod/watch?prefix=app/", Some(b.id));
    let missed: Vec<(i64, String, String)> = (0..3)
        .map(|_| {
            let e = sse.next();
            assert_eq!(e.data["resync"], false, "exact resume: {e:?}");
            (e.id, e.kind, e.data["name"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(missed[0], (c, "put".into(), "app/c".into()));
    assert_eq!(missed[1].1, "delete");
    assert_eq!(missed[1].2, "app/a");
    assert_eq!(missed[2], (b2, "put".into(), "app/b".into()));

    // A change made with cfgctl arrives too.
    let out = Command::new(cfgctl())
        .args([
            "--endpoints",
            &etcd.endpoints_arg(),
            "-n",
            "prod",
            "set",
            "app/from-cli",
            r#"{"x":1}"#,
        ])
        .output()
        .unwrap();
    common::stdout_of("cfgctl set", out);
    let e = sse.next();
    assert_eq!(
        (e.data["name"].as_str(), &e.data["value"]),
        (Some("app/from-cli"), &serde_json::json!({"x": 1}))
    );
    drop(sse);

    // A namespace the server has not loaded yet, written before it does:
    // a resume from before its first read gets current values, as resync.
    for (name, value) in [("app/x", "1"), ("app/y", "2"), ("app/x", "3")] {
        let out = Command::new(cfgctl())
            .args([
                "--endpoints",
                &etcd.endpoints_arg(),
                "-n",
                "late",
                "set",
                name,
                value,
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let out = Command::new(cfgctl())
        .args([
            "--endpoints",
            &etcd.endpoints_arg(),
            "-n",
            "late",
            "delete",
            "app/y",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut sse = Sse::open_as(
        &server,
        "/v1/namespaces/late/watch?prefix=app/",
        Some(1),
        "ops-secret",
    );
    let e = sse.next();
    assert_eq!(e.data["resync"], true, "{e:?}");
    assert_eq!(
        (e.kind.as_str(), e.data["name"].as_str(), &e.data["value"]),
        ("put", Some("app/x"), &serde_json::json!(3))
    );
}

#[tokio::test]
async fn one_etcd_watcher_serves_every_namespace_and_sse_client() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let mut streams = Vec::new();
    for ns in ["one", "two", "three"] {
        let path = format!("/v1/namespaces/{ns}/config/k");
        assert_eq!(http(&server, "PUT", &path, &[OPS], "1").status, 200);
        for _ in 0..3 {
            let path = format!("/v1/namespaces/{ns}/watch");
            streams.push(Sse::open_as(&server, &path, None, "ops-secret"));
        }
    }
    common::eventually(Duration::from_secs(20), || async {
        etcd.metric(0, "etcd_debugging_mvcc_watcher_total") == 1.0
    })
    .await;
}
