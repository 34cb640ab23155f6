//! Layered namespaces over REST, SSE and OFREP: `base` ← `prod` ← `prod-eu`
//! read effective, `?layer=own` and `?explain=true`, an etcdctl write to
//! `base` reaching a `prod-eu` stream, one that `prod` shadows reaching
//! nobody, a parent's flag evaluated below it, and `extends` refused over
//! REST when it cannot stand.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{self, EtcdCluster};

use super::harness::*;

fn put(server: &Server, path: &str, body: &str) -> Reply {
    // Settings take the admin scope.
    let token = if path.ends_with("/meta") { ADMIN } else { OPS };
    let reply = http(server, "PUT", path, &[token], body);
    assert_eq!(reply.status, 200, "PUT {path}: {}", reply.body);
    reply
}

fn get(server: &Server, path: &str) -> (u16, Value) {
    let reply = http(server, "GET", path, &[OPS], "");
    let body = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    (reply.status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_reads_effective_explains_and_streams_over_http() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let [base, prod, eu] = ["base", "prod", "prod-eu"].map(common::namespace);
    let config = |ns: &str, name: &str| format!("/v1/namespaces/{ns}/config/{name}");
    put(&server, &config(&base, "shared"), r#"{"retries": 3}"#);
    put(
        &server,
        &config(&base, "db"),
        r#"{"url": "postgres://base", "pool": {"size": 10, "idle": 2}}"#,
    );
    put(
        &server,
        &config(&base, "region"),
        r#"{"name": "any", "zone": "a"}"#,
    );
    put(
        &server,
        &format!("/v1/namespaces/{base}/flags/checkout"),
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}"#,
    );
    put(
        &server,
        &format!("/v1/namespaces/{prod}/meta"),
        &json!({"extends": [base]}).to_string(),
    );
    put(&server, &config(&prod, "db"), r#"{"pool": {"size": 40}}"#);
    put(
        &server,
        &format!("/v1/namespaces/{eu}/meta"),
        &json!({"extends": [prod]}).to_string(),
    );
    put(
        &server,
        &config(&eu, "region"),
        r#"{"name": "eu", "zone": {"$cfgd.unset": true}}"#,
    );

    // Effective reads, and the own layer.
    let (status, db) = get(&server, &config(&eu, "db"));
    assert_eq!(status, 200, "{db}");
    assert_eq!(
        db,
        json!({"url": "postgres://base", "pool": {"size": 40, "idle": 2}})
    );
    assert_eq!(
        get(&server, &config(&eu, "region")).1,
        json!({"name": "eu"})
    );
    assert_eq!(
        get(&server, &config(&eu, "shared")).1,
        json!({"retries": 3})
    );
    assert_eq!(
        get(&server, &format!("{}?layer=own", config(&eu, "shared"))).0,
        404
    );
    assert_eq!(
        get(&server, &format!("{}?layer=own", config(&eu, "region"))).1,
        json!({"name": "eu", "zone": {"$cfgd.unset": true}})
    );
    let (status, explained) = get(&server, &format!("{}?explain=true", config(&eu, "db")));
    assert_eq!(status, 200, "{explained}");
    assert_eq!(
        explained["origins"],
        json!({"/url": base, "/pool/size": prod, "/pool/idle": base})
    );
    let layers: Vec<&str> = explained["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(layers, [base.as_str(), prod.as_str(), eu.as_str()]);
    assert_eq!(
        get(&server, &format!("{}?layer=sideways", config(&eu, "db"))).0,
        400
    );

    // A flag defined in base evaluates in prod-eu.
    let eval = http(
        &server,
        "POST",
        "/ofrep/v1/evaluate/flags/checkout",
        &[
            OPS,
            ("X-Cfgd-Namespace", eu.as_str()),
            ("Content-Type", "application/json"),
        ],
        r#"{"context": {}}"#,
    );
    assert_eq!(eval.status, 200, "{}", eval.body);
    assert_eq!(
        serde_json::from_str::<Value>(&eval.body).unwrap()["value"],
        true
    );

    // An etcdctl write to base reaches a prod-eu stream; one that prod
    // shadows (pool.size) reaches nobody, so the next event is the one
    // after it.
    let mut sse = Sse::open_as(
        &server,
        &format!("/v1/namespaces/{eu}/watch?prefix="),
        None,
        "ops-secret",
    );
    let endpoints = etcd.endpoints_arg();
    common::etcdctl(
        &endpoints,
        &[
            "put",
            &format!("/cfgd/{base}/config/db"),
            r#"{"url":"postgres://base","pool":{"size":11,"idle":2}}"#,
        ],
    );
    let sent = Instant::now();
    common::etcdctl(
        &endpoints,
        &[
            "put",
            &format!("/cfgd/{base}/config/shared"),
            r#"{"retries":4}"#,
        ],
    );
    // The echo of prod-eu's own `region` write may come first: the watch
    // was being set up again (eu's settings moved) when it was written,
    // and the stream opened before the echo came.
    let mut event = sse.next();
    while event.data["name"] == "region" {
        event = sse.next();
    }
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "arrived after {:?}",
        sent.elapsed()
    );
    assert_eq!(event.data["name"], "shared");
    assert_eq!(event.data["value"], json!({"retries": 4}));
    assert_eq!(event.data["layer"], base.as_str());

    // Deleting prod's own value gives back base's, live.
    let deleted = http(&server, "DELETE", &config(&prod, "db"), &[OPS], "");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let event = sse.next();
    assert_eq!(event.data["name"], "db");
    assert_eq!(
        event.data["value"],
        json!({"url": "postgres://base", "pool": {"size": 11, "idle": 2}})
    );
    assert_eq!(event.data["layer"], prod.as_str());

    // A conditional write with the ETag of an inherited value goes to the
    // own layer; a stale one is refused.
    let read = http(&server, "GET", &config(&eu, "shared"), &[OPS], "");
    let tag = read.header("etag").unwrap().to_owned();
    let stale = http(
        &server,
        "PUT",
        &config(&eu, "shared"),
        &[OPS, ("If-Match", "\"1\"")],
        r#"{"retries": 9}"#,
    );
    assert_eq!(stale.status, 412, "{}", stale.body);
    let fresh = http(
        &server,
        "PUT",
        &config(&eu, "shared"),
        &[OPS, ("If-Match", tag.as_str())],
        r#"{"retries": 5}"#,
    );
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert_eq!(
        get(&server, &format!("{}?layer=own", config(&eu, "shared"))).1,
        json!({"retries": 5})
    );

    // extends that cannot stand: 409 invalid_extends, one line, nothing
    // written (the body is well formed; what etcd holds refuses it).
    let before = etcd.revision().await;
    for (body, says) in [
        (json!({"extends": [eu]}), "cycle"),
        (json!({"extends": ["nowhere"]}), "does not exist"),
    ] {
        let reply = http(
            &server,
            "PUT",
            &format!("/v1/namespaces/{base}/meta"),
            &[ADMIN],
            &body.to_string(),
        );
        assert_eq!(reply.status, 409, "{}", reply.body);
        let error: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(error["error"]["code"], "invalid_extends", "{error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(says),
            "{error}"
        );
    }
    // And an unset marker with company.
    let reply = http(
        &server,
        "PUT",
        &config(&eu, "x"),
        &[OPS],
        r#"{"$cfgd.unset": true, "y": 1}"#,
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("invalid_unset"), "{}", reply.body);
    assert_eq!(etcd.revision().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlays_over_http_gray_release_by_label_then_promote() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let ns = common::namespace("gray");
    let base = format!("/v1/namespaces/{ns}");
    put(
        &server,
        &format!("{base}/config/limits"),
        r#"{"max": 10, "burst": 2}"#,
    );
    put(&server, &format!("{base}/config/old"), "true");
    put(
        &server,
        &format!("{base}/overlays/canary"),
        r#"{"selector": {"canary": "true"}}"#,
    );
    put(
        &server,
        &format!("{base}/overlays/canary/config/limits"),
        r#"{"max": 50}"#,
    );
    put(
        &server,
        &format!("{base}/overlays/canary/config/old"),
        r#"{"$cfgd.unset": true}"#,
    );
    let read = |labels: Option<&str>, name: &str| {
        let mut headers = vec![OPS];
        if let Some(labels) = labels {
            headers.push(("X-Cfgd-Labels", labels));
        }
        let reply = http(
            &server,
            "GET",
            &format!("{base}/config/{name}"),
            &headers,
            "",
        );
        (
            reply.status,
            serde_json::from_str::<Value>(&reply.body).unwrap_or(Value::Null),
        )
    };
    assert_eq!(
        read(Some("canary=true,region=eu"), "limits").1,
        json!({"max": 50, "burst": 2})
    );
    assert_eq!(
        read(Some("region=eu"), "limits").1,
        json!({"max": 10, "burst": 2})
    );
    assert_eq!(read(None, "limits").1, json!({"max": 10, "burst": 2}));
    assert_eq!(read(Some("canary=true"), "old").0, 404, "a gray deletion");
    assert_eq!(read(None, "old").1, json!(true));
    assert_eq!(
        read(Some("canary"), "limits").0,
        400,
        "labels are key=value"
    );
    let bad = http(
        &server,
        "PUT",
        &format!("{base}/overlays/x"),
        &[OPS],
        r#"{"percent": 200}"#,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("invalid_overlay"), "{}", bad.body);

    let (status, listed) = get(&server, &format!("{base}/overlays"));
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed[0]["name"], "canary");
    assert_eq!(listed[0]["values"]["limits"], json!({"max": 50}));

    let promoted = http(
        &server,
        "POST",
        &format!("{base}/overlays/canary/promote"),
        &[OPS],
        "",
    );
    assert_eq!(promoted.status, 200, "{}", promoted.body);
    let id = serde_json::from_str::<Value>(&promoted.body).unwrap()["id"].clone();
    let (_, releases) = get(&server, &format!("{base}/releases"));
    assert_eq!(releases[0]["id"], id, "{releases}");
    assert_eq!(releases[0]["action"], "release.promote");
    assert_eq!(read(None, "limits").1, json!({"max": 50, "burst": 2}));
    assert_eq!(read(None, "old").0, 404);
    assert_eq!(get(&server, &format!("{base}/overlays")).1, json!([]));
    let again = http(
        &server,
        "POST",
        &format!("{base}/overlays/canary/promote"),
        &[OPS],
        "",
    );
    assert_eq!(again.status, 404, "{}", again.body);
}
