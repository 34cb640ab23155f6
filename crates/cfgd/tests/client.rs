//! Every library call of `cfgd::Client` against a real etcd.

use std::time::{Duration, Instant};

use cfgd::{Client, Error, Source};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::common::{self, EtcdCluster};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Database {
    url: String,
    pool_size: u32,
}

async fn connect(etcd: &EtcdCluster, namespace: &str) -> Client {
    Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(namespace)
        .connect()
        .await
        .expect("connect")
}

/// A client that reads etcd at every call, as cfgctl does.
async fn connect_one_shot(etcd: &EtcdCluster, namespace: &str) -> Client {
    Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(namespace)
        .live(false)
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn typed_reads_writes_and_defaults() {
    let etcd = EtcdCluster::single();
    let client = connect(&etcd, &common::namespace("typed")).await;
    let fallback = Database {
        url: "postgres://localhost/app".into(),
        pool_size: 5,
    };

    assert_eq!(
        client.get::<Database>("database.config").await.unwrap(),
        None
    );
    assert_eq!(
        client.get_or("database.config", fallback.clone()).await,
        fallback
    );

    let stored = Database {
        url: "postgres://db/app".into(),
        pool_size: 20,
    };
    let revision = client.set("database.config", &stored).await.unwrap();
    assert!(revision > 0);
    assert_eq!(
        client.get::<Database>("database.config").await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(client.get_or("database.config", fallback).await, stored);

    let entry = client
        .get_entry::<Database>("database.config")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.revision, revision);
    assert_eq!(entry.create_revision, revision);
    assert_eq!(entry.version, 1);
    // A live client answers from its mirror of the namespace.
    assert_eq!(entry.source, Source::Cache);
    assert_eq!(entry.name, "database.config");

    // Stored as compact JSON under the documented key.
    let mut raw = etcd.raw().await;
    let kv = raw
        .get(
            format!("/cfgd/{}/config/database.config", client.namespace()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        kv.kvs()[0].value_str().unwrap(),
        r#"{"url":"postgres://db/app","pool_size":20}"#
    );
}

#[tokio::test]
async fn set_json_keeps_text_but_drops_white_space() {
    let etcd = EtcdCluster::single();
    let client = connect(&etcd, &common::namespace("json")).await;
    client
        .set_json(
            "limits",
            "{ \"big\": 123456789012345678901234567890,\n \"ratio\": 1e3 }",
        )
        .await
        .unwrap();
    let mut raw = etcd.raw().await;
    let kv = raw
        .get(client.etcd_key("limits").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(
        kv.kvs()[0].value_str().unwrap(),
        r#"{"big":123456789012345678901234567890,"ratio":1e3}"#
    );
}

#[tokio::test]
async fn compare_and_set_and_conditional_delete() {
    let etcd = EtcdCluster::single();
    let client = connect(&etcd, &common::namespace("cas")).await;

    let first = client.set_if("counter", &1, 0).await.unwrap();
    match client.set_if("counter", &2, 0).await {
        Err(Error::Conflict {
            expected: 0,
            current,
            ..
        }) => assert_eq!(current, first),
        other => panic!("expected a conflict, got {other:?}"),
    }
    match client.set_if("counter", &2, first - 1).await {
        Err(Error::Conflict { current, .. }) => assert_eq!(current, first),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(client.get::<i64>("counter").await.unwrap(), Some(1));
    let second = client.set_if("counter", &2, first).await.unwrap();
    assert!(second > first);
    client.set_json_if("counter", "3", second).await.unwrap();
    assert!(matches!(
        client.set_json_if("counter", "4", second).await,
        Err(Error::Conflict { .. })
    ));

    let current = client.get_entry::<i64>("counter").await.unwrap().unwrap();
    match client.delete_if("counter", second).await {
        Err(Error::Conflict { current: c, .. }) => assert_eq!(c, current.revision),
        other => panic!("expected a conflict, got {other:?}"),
    }
    client.delete_if("counter", current.revision).await.unwrap();
    assert_eq!(client.get::<i64>("counter").await.unwrap(), None);
    assert!(matches!(
        client.delete_if("counter", 0).await,
        Err(Error::NotFound { .. })
    ));
    match client.delete_if("counter", current.revision).await {
        Err(Error::Conflict { current: 0, .. }) => {}
        other => panic!("expected a conflict with an absent key, got {other:?}"),
    }

    client.set("gone", &true).await.unwrap();
    let deleted = client.delete("gone").await.unwrap();
    assert!(deleted.is_some());
    assert_eq!(client.delete("gone").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_increments_lose_nothing() {
    const TASKS: i64 = 50;
    const EACH: i64 = 5;
    let etcd = EtcdCluster::single();
    let client = connect(&etcd, &common::namespace("incr")).await;
    client.set("hits", &0i64).await.unwrap();

    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..EACH {
                loop {
                    let entry = client.get_entry::<i64>("hits").await.unwrap().unwrap();
                    match client
                        .set_if("hits", &(entry.value + 1), entry.revision)
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("increment failed: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for h in handles {
        conflicts += h.await.unwrap();
    }
    assert_eq!(
        client.get::<i64>("hits").await.unwrap(),
        Some(TASKS * EACH),
        "every increment must land exactly once"
    );
    // Without contention the test would not show that CAS protects anything.
    assert!(conflicts > 0, "no task ever conflicted");
}

#[tokio::test]
async fn namespaces_never_see_each_other() {
    let etcd = EtcdCluster::single();
    let app = connect(&etcd, "app").await;
    let app2 = connect(&etcd, "app2").await;
    app.set("a", &1).await.unwrap();
    app2.set("a", &2).await.unwrap();
    app2.set("ab", &3).await.unwrap();

    assert_eq!(app.get::<i32>("a").await.unwrap(), Some(1));
    assert_eq!(app.get::<i32>("ab").await.unwrap(), None);
    let names = |entries: Vec<cfgd::Entry>| entries.into_iter().map(|e| e.name).collect::<Vec<_>>();
    assert_eq!(names(app.list("").await.unwrap()), ["a"]);
    assert_eq!(names(app.list("a").await.unwrap()), ["a"]);
    assert_eq!(names(app2.list("a").await.unwrap()), ["a", "ab"]);
    app.delete("a").await.unwrap();
    assert_eq!(app2.get::<i32>("a").await.unwrap(), Some(2));
}

#[tokio::test]
async fn list_filters_sorts_and_pages() {
    let etcd = EtcdCluster::single();
    let client = connect(&etcd, &common::namespace("list")).await;
    // More than one page (64) of keys, written out of order.
    for i in (0..150).rev() {
        client.set(&format!("svc/item-{i:03}"), &i).await.unwrap();
    }
    client.set("svcx", &"other").await.unwrap();
    client.set("alpha", &"first").await.unwrap();

    let all = client.list::<serde_json::Value>("").await.unwrap();
    assert_eq!(all.len(), 152);
    let names: Vec<_> = all.iter().map(|e| e.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    let svc = client.list::<i32>("svc/").await.unwrap();
    assert_eq!(svc.len(), 150);
    assert_eq!(svc[0].name, "svc/item-000");
    assert_eq!(svc[149].value, 149);
    assert_eq!(
        client.list::<serde_json::Value>("svc").await.unwrap().len(),
        151
    );
    assert!(client
        .list::<serde_json::Value>("nothing/")
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        client.list::<serde_json::Value>("/abs").await,
        Err(Error::InvalidName { .. })
    ));
}

#[tokio::test]
async fn history_and_rollback() {
    let etcd = EtcdCluster::single();
    let client = connect(&etcd, &common::namespace("hist")).await;
    let r1 = client.set("greeting", &"hello").await.unwrap();
    let r2 = client.set("greeting", &"hi").await.unwrap();
    let r3 = client.set("greeting", &"hey").await.unwrap();
    client.set("unrelated", &0).await.unwrap();

    let history = client.history("greeting", 10).await.unwrap();
    let seen: Vec<_> = history
        .iter()
        .map(|e| (e.revision, e.value.clone()))
        .collect();
    assert_eq!(
        seen,
        [(r3, json!("hey")), (r2, json!("hi")), (r1, json!("hello"))]
    );
    assert_eq!(client.history("greeting", 2).await.unwrap().len(), 2);
    assert!(client.history("missing", 10).await.unwrap().is_empty());

    let at = client
        .get_entry_at::<String>("greeting", r2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((at.value.as_str(), at.revision), ("hi", r2));
    assert_eq!(
        client
            .get_entry_at::<String>("greeting", r1 - 1)
            .await
            .unwrap(),
        None
    );

    let r4 = client.rollback("greeting", r1).await.unwrap();
    assert!(r4 > r3);
    assert_eq!(
        client.get::<String>("greeting").await.unwrap().unwrap(),
        "hello"
    );
    let history = client.history("greeting", 10).await.unwrap();
    assert_eq!(history.len(), 4, "rollback adds a revision, never rewrites");
    assert_eq!(history[0].revision, r4);

    assert!(matches!(
        client.rollback("greeting", r1 - 1).await,
        Err(Error::NotFound {
            revision: Some(_),
            ..
        })
    ));
    assert!(matches!(
        client.get_entry_at::<String>("greeting", r4 + 1000).await,
        Err(Error::FutureRevision { .. })
    ));

    // After compaction the old revisions are gone, and say so.
    etcd.raw().await.compact(r4, None).await.expect("compact");
    assert!(matches!(
        client.rollback("greeting", r2).await,
        Err(Error::Compacted { revision, .. }) if revision == r2
    ));
    assert_eq!(client.history("greeting", 10).await.unwrap().len(), 1);
}

/// Each bad input is refused with the matching error, and etcd's revision
/// proves nothing at all was written.
#[tokio::test]
async fn invalid_input_is_refused_and_writes_nothing() {
    let etcd = EtcdCluster::single();
    let client = connect(&etcd, &common::namespace("bad")).await;
    client.set("port", &8080).await.unwrap();
    let before = etcd.revision().await;

    let err = client.set_json("port", "{not json").await.unwrap_err();
    assert!(matches!(err, Error::InvalidJson { .. }), "{err}");
    assert!(
        err.to_string().contains("/config/port"),
        "names the key: {err}"
    );
    let err = client.set_json("port", "hello").await.unwrap_err();
    assert!(matches!(err, Error::InvalidJson { .. }), "{err}");

    for name in [
        "",
        "/x",
        "x/",
        "a//b",
        "a/../b",
        ".",
        "sp ace",
        "ümlaut",
        &"n".repeat(257),
    ] {
        let err = client.set(name, &1).await.unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{name:?}: {err}");
        assert!(matches!(
            client.get::<i32>(name).await,
            Err(Error::InvalidName { .. })
        ));
    }
    let big = "x".repeat(cfgd::MAX_VALUE_LEN);
    let err = client.set("port", &big).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    let err = client
        .set_json("port", &format!("\"{big}\""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");

    let err = client.get::<String>("port").await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");
    assert!(err.to_string().contains("String"), "names the type: {err}");
    assert_eq!(
        client.get_or("port", "fallback".to_string()).await,
        "fallback"
    );

    assert!(matches!(
        Client::builder().namespace("Bad NS").connect().await,
        Err(Error::InvalidNamespace { .. })
    ));
    assert!(matches!(
        Client::builder()
            .endpoints(Vec::<String>::new())
            .connect()
            .await,
        Err(Error::NoEndpoints)
    ));

    assert_eq!(etcd.revision().await, before, "nothing was written");
    assert_eq!(client.get::<u16>("port").await.unwrap(), Some(8080));
}

#[tokio::test]
async fn values_written_by_other_tools() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("foreign");
    let live = connect(&etcd, &ns).await;
    let client = connect_one_shot(&etcd, &ns).await;
    let mut raw = etcd.raw().await;
    raw.put(client.etcd_key("plain").unwrap(), "not json", None)
        .await
        .unwrap();
    let err = client.get::<serde_json::Value>("plain").await.unwrap_err();
    assert!(matches!(err, Error::CorruptValue { .. }), "{err}");
    assert_eq!(client.get_or("plain", 7).await, 7);
    raw.put(client.etcd_key("ok").unwrap(), "[1,2]", None)
        .await
        .unwrap();
    assert_eq!(client.get::<Vec<u8>>("ok").await.unwrap(), Some(vec![1, 2]));

    // The live client sees the same values once its watch delivers them.
    common::eventually(Duration::from_secs(5), || async {
        live.get::<Vec<u8>>("ok").await.ok().flatten() == Some(vec![1, 2])
    })
    .await;
    let err = live.get::<serde_json::Value>("plain").await.unwrap_err();
    assert!(matches!(err, Error::CorruptValue { .. }), "{err}");
    assert_eq!(live.get_or("plain", 7).await, 7);
}

#[tokio::test]
async fn etcdctl_reads_and_writes_the_same_data() {
    let etcd = EtcdCluster::single();
    let client = connect(&etcd, &common::namespace("ctl")).await;
    let ns = client.namespace().to_owned();

    client
        .set("feature.limits", &json!({"max": 10, "names": ["a", "b"]}))
        .await
        .unwrap();
    let printed = common::etcdctl(
        &etcd.endpoints_arg(),
        &[
            "get",
            &format!("/cfgd/{ns}/config/feature.limits"),
            "--print-value-only",
        ],
    );
    assert_eq!(printed.trim_end(), r#"{"max":10,"names":["a","b"]}"#);

    common::etcdctl(
        &etcd.endpoints_arg(),
        &[
            "put",
            &format!("/cfgd/{ns}/config/from.etcdctl"),
            r#"{"on":true}"#,
        ],
    );
    // The live client learns of the write through its watch.
    common::eventually(Duration::from_secs(5), || async {
        client
            .get::<serde_json::Value>("from.etcdctl")
            .await
            .unwrap()
            == Some(json!({"on": true}))
    })
    .await;
}

#[tokio::test]
async fn unreachable_etcd_fails_within_the_connect_timeout() {
    // Nothing listens on this port: refused at once, or at the timeout.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    // A socket that accepts TCP but never speaks HTTP/2: the case that hangs
    // a client without its own deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", silent.local_addr().unwrap());
    for endpoint in [closed, silent] {
        let started = Instant::now();
        let err = Client::builder()
            .endpoints([endpoint.as_str()])
            .connect_timeout(Duration::from_millis(800))
            .connect()
            .await
            .unwrap_err();
        assert!(err.is_unreachable(), "{endpoint}: {err}");
        assert!(err.to_string().contains(&endpoint), "{err}");
        // Generous: this checks that it gives up, not how fast.
        assert!(started.elapsed() < Duration::from_secs(10), "{endpoint}");
    }
}

#[tokio::test]
async fn when_etcd_dies_reads_fall_back_and_writes_fail_clearly() {
    let mut etcd = EtcdCluster::single();
    let ns = common::namespace("dies");
    let builder = Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(&ns)
        .request_timeout(Duration::from_millis(800));
    let direct = builder.clone().live(false).connect().await.unwrap();
    let live = builder.connect().await.unwrap();
    live.set("retries", &3).await.unwrap();
    etcd.kill(0);

    // Without a standing watch there is nothing to fall back on but the default.
    assert_eq!(direct.get_or("retries", 1).await, 1);
    let err = direct.get::<i32>("retries").await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    // A live client keeps serving the last value it knew.
    assert_eq!(live.get_or("retries", 1).await, 3);
    let err = live.set("retries", &4).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert_eq!(live.get::<i32>("retries").await.unwrap(), Some(3));
}

#[tokio::test]
async fn authentication_with_user_and_password() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("auth");
    etcd.enable_auth("rootpw", "app", "apppw", &format!("/cfgd/{ns}/"))
        .await;

    let app = Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(&ns)
        .user("app", "apppw")
        .connect()
        .await
        .unwrap();
    app.set("secret.setting", &"on").await.unwrap();
    assert_eq!(
        app.get::<String>("secret.setting").await.unwrap().unwrap(),
        "on"
    );

    // The user's role does not reach other namespaces. A live client reads
    // its whole namespace at connect, so it is refused there; a direct one
    // connects and is refused on the first read.
    let elsewhere = Client::builder()
        .endpoints(etcd.endpoints())
        .namespace("other")
        .user("app", "apppw");
    let err = elsewhere.clone().connect().await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
    let direct = elsewhere.live(false).connect().await.unwrap();
    let err = direct.get::<String>("x").await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");

    let err = Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(&ns)
        .user("app", "wrong")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthFailed { .. }), "{err}");
    assert!(err.to_string().contains("\"app\""), "{err}");

    let err = Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(&ns)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthRequired { .. }), "{err}");

    let root = Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(&ns)
        .user("root", "rootpw")
        .connect()
        .await
        .unwrap();
    assert_eq!(
        root.get::<String>("secret.setting").await.unwrap().unwrap(),
        "on"
    );
}

#[tokio::test]
async fn export_gives_a_document_import_takes_back() {
    let etcd = EtcdCluster::single();
    let source = connect(&etcd, &common::namespace("export")).await;
    source.set("feature.a", &json!({"on": true})).await.unwrap();
    source.set("feature.b", &2).await.unwrap();
    source.set("other", &"x").await.unwrap();

    let features = source.export("feature.").await.unwrap();
    assert_eq!(features, json!({"feature.a": {"on": true}, "feature.b": 2}));
    let all = source.export("").await.unwrap();
    assert_eq!(all.as_object().unwrap().len(), 3);
    assert!(source
        .export("nothing/")
        .await
        .unwrap()
        .as_object()
        .unwrap()
        .is_empty());
    assert!(matches!(
        source.export("/abs").await,
        Err(Error::InvalidName { .. })
    ));

    let target = connect(&etcd, &common::namespace("export-to")).await;
    let report = target.import(&all.to_string(), false).await.unwrap();
    assert_eq!(report.created.len(), 3);
    assert_eq!(target.export("").await.unwrap(), all);
}

#[tokio::test]
async fn schemas_refuse_bad_values_on_every_write_path() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("schemas");
    // Both kinds of client: a live one checks against the schemas it keeps
    // compiled, a one-shot one reads them at each write.
    let live = connect(&etcd, &ns).await;
    let once = connect_one_shot(&etcd, &ns).await;
    let pool = json!({"type": "object", "properties": {"pool_size": {"type": "integer", "minimum": 1}},
                      "required": ["pool_size"]});
    live.set("db.main", &json!({"pool_size": 5})).await.unwrap();
    let v1 = live.set("db.main", &json!({"pool_size": 0})).await.unwrap();
    live.set("db.main", &json!({"pool_size": 5})).await.unwrap();

    // An invalid schema is refused; so is one stored values fail, naming them.
    let error = live
        .set_schema("db.*", &json!({"type": 5}), false)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidSchema { .. }), "{error}");
    live.set("db.bad", &json!({"pool_size": -1})).await.unwrap();
    let error = live.set_schema("db.*", &pool, false).await.unwrap_err();
    assert!(
        matches!(&error, Error::SchemaConflict { names, .. } if names == &["db.bad"]),
        "{error}"
    );
    assert!(live.get_schema("db.*").await.unwrap().is_none());
    // Forced, it is stored.
    live.set_schema("db.*", &pool, true).await.unwrap();
    live.delete("db.bad").await.unwrap();
    let stored = live.list_schemas().await.unwrap();
    assert_eq!((stored.len(), stored[0].name.as_str()), (1, "db.*"));

    // The live client learns the schema through its watch.
    common::eventually(Duration::from_secs(20), || async {
        live.set("db.other", &json!({"pool_size": 0}))
            .await
            .is_err()
    })
    .await;
    let before = etcd.revision().await;
    for client in [&live, &once] {
        let refused = [
            client.set("db.main", &json!({"pool_size": 0})).await,
            client.set_json("db.main", r#"{"pool_size": "x"}"#).await,
            client.set_if("db.main", &json!({}), 0).await,
            client
                .set_json_if("db.main", r#"{"pool_size": 0}"#, 0)
                .await,
            client.rollback("db.main", v1).await,
            client
                .import(r#"{"ok": 1, "db.main": {"pool_size": 0}}"#, false)
                .await
                .map(|_| 0),
        ];
        for result in refused {
            let error = result.unwrap_err();
            assert!(matches!(error, Error::SchemaViolation { .. }), "{error}");
            assert!(error.is_invalid_input());
        }
        let error = client
            .set("db.main", &json!({"pool_size": 0}))
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("/pool_size: 0 is less than the minimum of 1"),
            "{error}"
        );
    }
    assert_eq!(etcd.revision().await, before, "nothing was written");
    // Names no pattern covers, and good values, are written as before.
    once.set("other", &json!({"pool_size": 0})).await.unwrap();
    once.set("db.main", &json!({"pool_size": 9})).await.unwrap();

    // The most specific pattern governs: an exact name beats the prefix.
    once.set_schema("db.main", &json!({"type": "object"}), false)
        .await
        .unwrap();
    once.set("db.main", &json!({"pool_size": 0})).await.unwrap();
    once.delete_schema("db.main").await.unwrap();
    assert!(once.set("db.main", &json!({"pool_size": 0})).await.is_err());
    assert!(matches!(
        once.set_schema("db.**", &pool, false).await,
        Err(Error::InvalidName { .. })
    ));
}

#[tokio::test]
async fn every_write_leaves_an_audit_record_at_its_revision() {
    use cfgd::audit::Via;
    let etcd = EtcdCluster::single();
    let ns = common::namespace("audit");
    let client = Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(&ns)
        .actor("deployer")
        .connect()
        .await
        .unwrap();
    let r1 = client.set("db", &1).await.unwrap();
    let r2 = client
        .with_message("raise the pool")
        .set("db", &2)
        .await
        .unwrap();
    let alice = client.with_actor("alice", Via::Cfgctl);
    let r3 = alice.set_if("db", &3, r2).await.unwrap();
    let r4 = client.rollback("db", r1).await.unwrap();
    let r5 = client
        .import(r#"{"a": 1, "b": 2}"#, false)
        .await
        .unwrap()
        .revision
        .unwrap();
    let r6 = alice.delete("a").await.unwrap().unwrap();
    let flag =
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
    let r7 = client.set_flag("beta", &flag).await.unwrap();
    // Refused or empty writes leave no record.
    assert!(client.set_if("db", &9, 1).await.is_err());
    assert_eq!(client.delete("never").await.unwrap(), None);

    let log = client.audit_log("", None, 100).await.unwrap();
    let seen: Vec<(i64, &str, &str, &str)> = log
        .iter()
        .map(|r| {
            (
                r.revision,
                r.actor.as_str(),
                r.via.as_str(),
                r.action.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (r7, "deployer", "library", "flag.set"),
            (r6, "alice", "cfgctl", "delete"),
            (r5, "deployer", "library", "import"),
            (r4, "deployer", "library", "rollback"),
            (r3, "alice", "cfgctl", "set"),
            (r2, "deployer", "library", "set"),
            (r1, "deployer", "library", "set"),
        ]
    );
    let before = |r: &cfgd::audit::AuditRecord| -> Vec<(String, String, i64)> {
        r.names
            .iter()
            .map(|n| (n.name.clone(), n.kind.clone(), n.before))
            .collect()
    };
    assert_eq!(before(&log[0]), [("beta".into(), "flags".into(), 0)]);
    assert_eq!(
        before(&log[2]),
        [
            ("a".into(), "config".into(), 0),
            ("b".into(), "config".into(), 0)
        ]
    );
    assert_eq!(before(&log[3]), [("db".into(), "config".into(), r3)]);
    assert_eq!(before(&log[5]), [("db".into(), "config".into(), r1)]);
    assert_eq!(log[5].message.as_deref(), Some("raise the pool"));
    assert!(log.iter().all(|r| r.time_ms > 0 && !r.id.is_empty()));

    // Filters: by name prefix and by actor.
    let b = client.audit_log("b", None, 100).await.unwrap();
    assert_eq!(b.iter().map(|r| r.revision).collect::<Vec<_>>(), [r7, r5]);
    let by_alice = client.audit_log("", Some("alice"), 100).await.unwrap();
    assert_eq!(
        by_alice.iter().map(|r| r.revision).collect::<Vec<_>>(),
        [r6, r3]
    );
    assert_eq!(client.audit_log("", None, 2).await.unwrap().len(), 2);

    // A change made with etcdctl has no record: it shows as unattributed.
    let key = client.etcd_key("db").unwrap();
    common::etcdctl(&etcd.endpoints_arg(), &["put", &key, "42"]);
    let log = client.audit_log("db", None, 10).await.unwrap();
    assert_eq!(
        (log[0].actor.as_str(), log[0].names[0].name.as_str()),
        ("unattributed", "db")
    );
    assert!(log[0].revision > r7);
    assert_eq!(log[1].revision, r4, "then the recorded ones");
    // The records are etcd keys of their own, beside config and flags.
    let raw = common::etcdctl(
        &etcd.endpoints_arg(),
        &[
            "get",
            "--prefix",
            "--keys-only",
            &format!("/cfgd/{ns}/audit/"),
        ],
    );
    assert_eq!(raw.lines().filter(|l| !l.is_empty()).count(), 7, "{raw}");
}

#[tokio::test]
async fn audit_retention_prunes_by_age_and_by_count() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("retention");
    let client = connect(&etcd, &ns).await;
    let mut revisions = Vec::new();
    for i in 0..10 {
        revisions.push(client.set("n", &i).await.unwrap());
    }
    // A record from 2001, as a trail kept for years would hold.
    let old = format!("/cfgd/{ns}/audit/1000000000000-1-1");
    let record = r#"{"id":"1000000000000-1-1","actor":"x","via":"library","action":"set","names":[],"time_ms":1000000000000}"#;
    etcd.raw()
        .await
        .put(old.as_str(), record, None)
        .await
        .unwrap();
    assert_eq!(client.audit_log("", None, 100).await.unwrap().len(), 11);

    let day = Duration::from_secs(86_400);
    assert_eq!(
        client.prune_audit(Some(day), None).await.unwrap(),
        1,
        "the old one"
    );
    assert_eq!(client.prune_audit(Some(day), None).await.unwrap(), 0);
    assert_eq!(client.prune_audit(None, Some(4)).await.unwrap(), 6);
    let kept: Vec<i64> = client
        .audit_log("", None, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.revision)
        .collect();
    let newest: Vec<i64> = revisions.iter().rev().take(4).copied().collect();
    assert_eq!(kept, newest, "the newest four");
    assert_eq!(client.prune_audit(None, Some(4)).await.unwrap(), 0);
    assert_eq!(
        client.get::<i32>("n").await.unwrap(),
        Some(9),
        "values untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_is_one_transaction_and_reverts_exactly() {
    use tokio_stream::StreamExt;
    let etcd = EtcdCluster::single();
    let ns = common::namespace("release");
    let client = connect(&etcd, &ns).await;
    for i in 0..50 {
        client
            .set(&format!("k{i:03}"), &json!({"v": 0}))
            .await
            .unwrap();
    }
    let before = client.export("").await.unwrap();
    let document = |n: usize, v: i32| {
        let map: serde_json::Map<String, serde_json::Value> = (0..n)
            .map(|i| (format!("k{i:03}"), json!({"v": v})))
            .collect();
        serde_json::Value::Object(map).to_string()
    };

    // 50 changed and 50 created, seen by a subscriber at one revision.
    let mut changes = client.subscribe("").unwrap();
    let (plan, release) = client
        .with_message("v1 everywhere")
        .apply(&document(100, 1), None, false)
        .await
        .unwrap();
    let release = release.unwrap();
    assert_eq!(plan.changes.len(), 100);
    for _ in 0..100 {
        let change = tokio::time::timeout(Duration::from_secs(20), changes.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(change.revision(), release.revision, "{}", change.name());
    }
    let listed = client.releases(10).await.unwrap();
    assert_eq!(
        (listed[0].id.as_str(), listed[0].revision),
        (release.id.as_str(), release.revision)
    );
    let (record, shown) = client.release(&release.id).await.unwrap();
    assert_eq!(record.message.as_deref(), Some("v1 everywhere"));
    assert_eq!(shown.len(), 100);
    assert_eq!(shown[0].differences[0].to_string(), "~ /v: 0 → 1");

    // Revert restores all 100 exactly: the 50 old values, the 50 new gone.
    let revert = client.revert_release(&release.id).await.unwrap();
    assert!(revert.revision > release.revision);
    assert_eq!(client.export("").await.unwrap(), before);

    // Revert after one key moved is refused, naming it.
    let (_, again) = client.apply(&document(10, 2), None, false).await.unwrap();
    let again = again.unwrap();
    client.set("k007", &json!({"v": 9})).await.unwrap();
    let error = client.revert_release(&again.id).await.unwrap_err();
    assert!(
        matches!(&error, Error::ReleaseMoved { names, .. } if names == &["k007"]),
        "{error}"
    );

    // A write between planning and publishing: nothing written, a conflict.
    let plan = client
        .plan_release(r#"{"k001": {"v": 3}, "k002": {"v": 3}}"#, None)
        .await
        .unwrap();
    client.set("k002", &json!({"v": 5})).await.unwrap();
    let at = etcd.revision().await;
    let error = client.publish(&plan).await.unwrap_err();
    assert!(
        matches!(&error, Error::Conflict { key, .. } if key.ends_with("/k002")),
        "{error}"
    );
    assert_eq!(etcd.revision().await, at, "nothing written");

    // Over one transaction: refused, naming the limit, never split.
    let error = client
        .plan_release(&document(200, 4), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::ReleaseTooLarge {
                count: 200,
                limit: 127
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("at most 127"), "{error}");
    // Nothing differs: nothing written.
    let current = client.export("").await.unwrap().to_string();
    assert!(client
        .apply(&current, None, false)
        .await
        .unwrap()
        .1
        .is_none());
    // Schemas and flags are checked as on every write.
    client
        .set_schema("k*", &json!({"type": "object"}), false)
        .await
        .unwrap();
    assert!(matches!(
        client.plan_release(r#"{"k001": 1}"#, None).await,
        Err(Error::SchemaViolation { .. })
    ));
    let flags = r#"{"flags": {"beta": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "off"}}}"#;
    assert!(matches!(
        client.plan_release("{}", Some(flags)).await,
        Err(Error::InvalidFlag { .. })
    ));
}

/// Round trips of one `set`, counted by etcd: the audit record and the
/// schema check cost a one-shot client one read before its write, and a
/// live client nothing but the write itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_takes_two_requests_one_shot_and_one_live() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("roundtrips");
    let once = connect_one_shot(&etcd, &ns).await;
    once.set_schema("x", &json!({"type": "integer"}), false)
        .await
        .unwrap();
    once.set("x", &1).await.unwrap();
    let requests = |f: f64| etcd.kv_requests(0) - f;

    let before = etcd.kv_requests(0);
    once.set("x", &2).await.unwrap();
    assert_eq!(requests(before), 2.0, "an update, one-shot");
    let before = etcd.kv_requests(0);
    once.set("new", &2).await.unwrap();
    assert_eq!(requests(before), 2.0, "a create, one-shot");

    let live = connect(&etcd, &ns).await;
    common::eventually(Duration::from_secs(20), || async {
        live.get::<i32>("x").await.unwrap() == Some(2)
    })
    .await;
    let before = etcd.kv_requests(0);
    live.set("x", &3).await.unwrap();
    assert_eq!(requests(before), 1.0, "a live client knows the revision");
    assert!(live.set("x", &"not an integer").await.is_err());
    assert_eq!(requests(before), 1.0, "a refused write sends nothing");
}
