//! Layered namespaces against real etcd: `base` ← `prod` ← `prod-eu` read
//! as DESIGN defines through live and direct clients, explained field by
//! field; a parent's change reaching a grandchild live, and one a child
//! shadows reaching nobody; `extends` refused when it cannot stand.

use std::time::Duration;

use cfgd::{Client, ClientBuilder, Error};
use serde_json::{json, Value};
use tokio_stream::StreamExt;

use crate::common::{self, EtcdCluster};

const ARRIVES_WITHIN: Duration = Duration::from_secs(20);

fn builder(etcd: &EtcdCluster, namespace: &str) -> ClientBuilder {
    common::logs();
    Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(namespace)
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(2))
}

async fn direct(etcd: &EtcdCluster, namespace: &str) -> Client {
    builder(etcd, namespace)
        .live(false)
        .connect()
        .await
        .expect("connect")
}

/// Three namespaces, `base` ← `prod` ← `prod-eu`, with:
/// - `shared`, set in `base` only;
/// - `db`, overridden field by field in `prod`;
/// - `region`, one field unset in `prod-eu`;
/// - `legacy`, unset as a whole in `prod-eu`.
async fn chain(etcd: &EtcdCluster) -> [String; 3] {
    let names = ["base", "prod", "prod-eu"].map(common::namespace);
    let [base, prod, eu] = &names;
    let base_c = direct(etcd, base).await;
    base_c.set("shared", &json!({"retries": 3})).await.unwrap();
    base_c
        .set(
            "db",
            &json!({"url": "postgres://base", "pool": {"size": 10, "idle": 2}}),
        )
        .await
        .unwrap();
    base_c
        .set("region", &json!({"name": "any", "zone": "a"}))
        .await
        .unwrap();
    base_c.set("legacy", &json!(true)).await.unwrap();
    let prod_c = direct(etcd, prod).await;
    prod_c
        .set_meta(&cfgd::meta::Meta::default().with_extends([base.clone()]))
        .await
        .unwrap();
    prod_c
        .set("db", &json!({"pool": {"size": 40}}))
        .await
        .unwrap();
    let eu_c = direct(etcd, eu).await;
    eu_c.set_meta(&cfgd::meta::Meta::default().with_extends([prod.clone()]))
        .await
        .unwrap();
    eu_c.set(
        "region",
        &json!({"name": "eu", "zone": {"$cfgd.unset": true}}),
    )
    .await
    .unwrap();
    eu_c.set("legacy", &json!({"$cfgd.unset": true}))
        .await
        .unwrap();
    names
}

async fn expect_effective(client: &Client) {
    let get = |name: &'static str| async move { client.get::<Value>(name).await.unwrap() };
    assert_eq!(get("shared").await, Some(json!({"retries": 3})));
    assert_eq!(
        get("db").await,
        Some(json!({"url": "postgres://base", "pool": {"size": 40, "idle": 2}}))
    );
    assert_eq!(get("region").await, Some(json!({"name": "eu"})));
    assert_eq!(get("legacy").await, None);
}

#[tokio::test]
async fn a_three_level_chain_reads_merged_and_explains_every_field() {
    let etcd = EtcdCluster::single();
    let [base, prod, eu] = chain(&etcd).await;
    let live = builder(&etcd, &eu).connect().await.unwrap();
    let plain = direct(&etcd, &eu).await;
    assert_eq!(
        live.layers().await.unwrap(),
        [base.clone(), prod.clone(), eu.clone()]
    );
    assert_eq!(
        plain.layers().await.unwrap(),
        [base.clone(), prod.clone(), eu.clone()]
    );
    expect_effective(&live).await;
    expect_effective(&plain).await;

    for client in [&live, &plain] {
        let explained = client.explain("db").await.unwrap();
        assert_eq!(
            explained.value,
            Some(json!({"url": "postgres://base", "pool": {"size": 40, "idle": 2}}))
        );
        let origins: Vec<(&str, &str)> = explained
            .origins
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            origins,
            [
                ("/pool/idle", base.as_str()),
                ("/pool/size", prod.as_str()),
                ("/url", base.as_str())
            ]
        );
        let layers: Vec<(&str, Option<&Value>)> = explained
            .layers
            .iter()
            .map(|l| (l.namespace.as_str(), l.value.as_ref()))
            .collect();
        assert_eq!(layers[2], (eu.as_str(), None));
        assert_eq!(layers[1].1, Some(&json!({"pool": {"size": 40}})));
        let region = client.explain("region").await.unwrap();
        assert_eq!(region.origins["/name"], eu);
        assert!(client.explain("legacy").await.unwrap().value.is_none());
    }

    // The own layer, without what it inherits.
    let own = live.get_own_entry("region").await.unwrap().unwrap();
    assert_eq!(
        own.value,
        json!({"name": "eu", "zone": {"$cfgd.unset": true}})
    );
    assert!(live.get_own_entry("shared").await.unwrap().is_none());
    // Lists are effective too: an unset name is not in them.
    let names: Vec<String> = live
        .list::<Value>("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["db", "region", "shared"]);
}

#[tokio::test]
async fn parent_writes_reach_grandchildren_live_and_shadowed_ones_reach_nobody() {
    let etcd = EtcdCluster::single();
    let [base, prod, eu] = chain(&etcd).await;
    let live = builder(&etcd, &eu).connect().await.unwrap();
    let db = live.watch("db", json!(null)).unwrap();
    let mut changes = live.subscribe("").unwrap();

    // A write to `base` that `prod` shadows (`pool.size`) reaches nobody;
    // the next one, which shows through, arrives first.
    let base_key = |name: &str| format!("/cfgd/{base}/config/{name}");
    common::etcdctl(
        &etcd.endpoints_arg(),
        &[
            "put",
            &base_key("db"),
            r#"{"url":"postgres://base","pool":{"size":11,"idle":2}}"#,
        ],
    );
    common::etcdctl(
        &etcd.endpoints_arg(),
        &["put", &base_key("shared"), r#"{"retries":4}"#],
    );
    let first = tokio::time::timeout(ARRIVES_WITHIN, changes.next())
        .await
        .expect("a change arrives")
        .unwrap();
    assert_eq!(first.name(), "shared");
    assert_eq!(first.layer(), Some(base.as_str()));
    assert_eq!(first.value::<Value>().unwrap(), Some(json!({"retries": 4})));

    // One that shows through reaches the live value.
    common::etcdctl(
        &etcd.endpoints_arg(),
        &[
            "put",
            &base_key("db"),
            r#"{"url":"postgres://new","pool":{"size":11,"idle":2}}"#,
        ],
    );
    let want = json!({"url": "postgres://new", "pool": {"size": 40, "idle": 2}});
    common::eventually(ARRIVES_WITHIN, || {
        let db = db.get();
        let want = want.clone();
        async move { *db == want }
    })
    .await;
    let next = tokio::time::timeout(ARRIVES_WITHIN, changes.next())
        .await
        .expect("a change arrives")
        .unwrap();
    assert_eq!((next.name(), next.layer()), ("db", Some(base.as_str())));

    // Deleting `prod`'s own value gives back `base`'s.
    let prod_c = direct(&etcd, &prod).await;
    prod_c.delete("db").await.unwrap();
    let want = json!({"url": "postgres://new", "pool": {"size": 11, "idle": 2}});
    common::eventually(ARRIVES_WITHIN, || {
        let db = db.get();
        let want = want.clone();
        async move { *db == want }
    })
    .await;
    assert_eq!(live.get::<Value>("db").await.unwrap(), Some(want));
    let revision = live
        .get_entry::<Value>("db")
        .await
        .unwrap()
        .unwrap()
        .revision;
    assert!(
        revision >= etcd.revision().await - 1,
        "the fallback carries the delete's revision"
    );
}

#[tokio::test]
async fn extends_that_cannot_stand_is_refused_and_nothing_is_written() {
    let etcd = EtcdCluster::single();
    let [base, _, eu] = chain(&etcd).await;
    let base_c = direct(&etcd, &base).await;
    let refused = |result: cfgd::Result<i64>| match result {
        Err(e @ Error::InvalidExtends { .. }) => e.to_string(),
        other => panic!("expected invalid_extends, got {other:?}"),
    };
    // A cycle: base would extend its own grandchild.
    let cycle = refused(
        base_c
            .set_meta(&cfgd::meta::Meta::default().with_extends([eu.clone()]))
            .await,
    );
    assert!(cycle.contains("cycle") && cycle.contains(&eu), "{cycle}");
    // A parent that does not exist.
    let missing = refused(
        base_c
            .set_meta(&cfgd::meta::Meta::default().with_extends(["no-such-ns"]))
            .await,
    );
    assert!(
        missing.contains("\"no-such-ns\", which does not exist"),
        "{missing}"
    );
    // Itself.
    let itself = refused(
        base_c
            .set_meta(&cfgd::meta::Meta::default().with_extends([base.clone()]))
            .await,
    );
    assert!(itself.contains("cannot extend itself"), "{itself}");
    // Depth 9: a line of eight, and one more.
    let mut line = vec![eu.clone()];
    for _ in 0..5 {
        let ns = common::namespace("deep");
        let c = direct(&etcd, &ns).await;
        c.set_meta(&cfgd::meta::Meta::default().with_extends([line.last().unwrap().clone()]))
            .await
            .unwrap();
        line.push(ns);
    }
    // base, prod, eu and five more: eight levels, the most there may be.
    let ninth = common::namespace("deep");
    let c = direct(&etcd, &ninth).await;
    let before_deep = etcd.revision().await;
    let deep = refused(
        c.set_meta(&cfgd::meta::Meta::default().with_extends([line.last().unwrap().clone()]))
            .await,
    );
    assert!(
        deep.contains("levels deep") && deep.contains("at most 8"),
        "{deep}"
    );
    assert_eq!(etcd.revision().await, before_deep, "nothing written");
    for e in [cycle, missing, itself, deep] {
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

#[tokio::test]
async fn schemas_govern_every_descendant_and_a_parent_write_that_breaks_one_is_refused() {
    let etcd = EtcdCluster::single();
    let [base, prod, eu] = chain(&etcd).await;
    let prod_c = direct(&etcd, &prod).await;
    // On `prod`: a pool size is at least 5. `db`'s override there is a
    // partial value; its effective value is what the schema judges.
    let schema = json!({"type": "object", "required": ["url", "pool"],
        "properties": {"pool": {"type": "object", "properties": {"size": {"minimum": 5}}}}});
    prod_c.set_schema("db", &schema, false).await.unwrap();
    prod_c
        .set("db", &json!({"pool": {"size": 41}}))
        .await
        .unwrap();

    // prod-eu overrides nothing of `db` now, so a `base` write that drops
    // the url breaks its effective value (and prod's): refused, naming the
    // namespace reached, with nothing written.
    let eu_c = direct(&etcd, &eu).await;
    eu_c.set("db", &json!({"pool": {"idle": 3}})).await.unwrap();
    let base_c = direct(&etcd, &base).await;
    let live_base = builder(&etcd, &base).connect().await.unwrap();
    for client in [&base_c, &live_base] {
        let before = etcd.revision().await;
        let refused = client
            .set("db", &json!({"pool": {"size": 10, "idle": 2}}))
            .await
            .unwrap_err();
        let message = refused.to_string();
        assert!(
            matches!(refused, Error::SchemaViolation { .. }),
            "{message}"
        );
        assert!(
            message.contains(&format!("/cfgd/{prod}/config/db"))
                || message.contains(&format!("/cfgd/{eu}/config/db")),
            "{message}"
        );
        assert_eq!(etcd.revision().await, before, "nothing written");
    }
    // Only prod-eu's effective value breaks: prod-eu's own pool size. A
    // schema prod-eu defines for the same pattern does not lift prod's.
    eu_c.set_schema("db", &json!({"type": "object"}), false)
        .await
        .unwrap();
    eu_c.set("db", &json!({"pool": {"size": 1}}))
        .await
        .expect_err("prod's schema holds in prod-eu");
    prod_c
        .set(
            "db",
            &json!({"url": "postgres://prod", "pool": {"size": 41}}),
        )
        .await
        .unwrap();
    eu_c.set("db", &json!({"pool": {"idle": 3}})).await.unwrap();
    let before = etcd.revision().await;
    let refused = base_c
        .set("db", &json!({"pool": {"size": 2}}))
        .await
        .map(|_| ());
    // base's size 2 is shadowed in prod (41): nothing breaks, so it goes.
    refused.unwrap();
    assert!(etcd.revision().await > before);
    // A delete in prod that would let base's size 2 show through breaks
    // prod and prod-eu: refused.
    let refused = prod_c.delete("db").await.unwrap_err().to_string();
    assert!(refused.contains("/config/db"), "{refused}");

    // One that breaks prod-eu alone: prod's schema says a replica needs its
    // url; prod-eu turns the replica on, and base gives the url. A base
    // write that drops the url leaves prod whole and breaks prod-eu.
    let replica = json!({"dependentRequired": {"replica": ["replica_url"]}});
    prod_c.set_schema("cache", &replica, false).await.unwrap();
    base_c
        .set("cache", &json!({"replica_url": "redis://replica"}))
        .await
        .unwrap();
    eu_c.set("cache", &json!({"replica": true})).await.unwrap();
    let before = etcd.revision().await;
    let refused = base_c.set("cache", &json!({"ttl": 60})).await.unwrap_err();
    let message = refused.to_string();
    assert!(
        message.starts_with(&format!("/cfgd/{eu}/config/cache: ")),
        "names prod-eu: {message}"
    );
    assert!(
        matches!(refused, Error::SchemaViolation { .. }),
        "{message}"
    );
    assert_eq!(etcd.revision().await, before, "nothing written");
}

#[tokio::test]
async fn a_parents_secret_patterns_hold_below_it() {
    // Its change once did not arrive under the full suite's load (2 of 4
    // runs on 2026-12-03): the library's logs are kept for the next time.
    common::logs();
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = common::secrets::key_file(dir.path(), "secret.key");
    let [base, _, eu] = chain(&etcd).await;
    let base_c = common::secrets::client(&etcd, &base, Some(&key), false).await;
    base_c
        .set_policy_json(r#"{"secrets": ["token"]}"#)
        .await
        .unwrap();
    let snapshot = dir.path().join("snapshot.json");
    let live = builder(&etcd, &eu)
        .secret_key_file(&key)
        .snapshot(&snapshot)
        .connect()
        .await
        .unwrap();
    let mut changes = live.subscribe("").unwrap();
    live.set("token", &json!("plaintext-in-eu")).await.unwrap();
    // Sealed in etcd, under prod-eu's key, though only base names it.
    let stored = common::secrets::all_of_etcd(&etcd);
    assert!(!stored.contains("plaintext-in-eu"), "{stored}");
    // Redacted in prod-eu's changes and audit.
    let change = tokio::time::timeout(ARRIVES_WITHIN, changes.next())
        .await
        .unwrap()
        .unwrap();
    assert!(change.is_secret() && change.to_json().contains("<redacted>"));
    let audit = live.audit_log("", None, 10).await.unwrap();
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains("plaintext-in-eu"), "{text}");
    assert_eq!(
        live.get::<String>("token").await.unwrap().unwrap(),
        "plaintext-in-eu"
    );
    // The snapshot file keeps it sealed.
    common::eventually(ARRIVES_WITHIN, || {
        let snapshot = snapshot.clone();
        async move { std::fs::read_to_string(&snapshot).is_ok_and(|t| t.contains("\"token\"")) }
    })
    .await;
    let file = std::fs::read_to_string(&snapshot).unwrap();
    assert!(!file.contains("plaintext-in-eu"), "{file}");
}

#[tokio::test]
async fn unset_markers_stand_alone_and_extended_namespaces_stay() {
    let etcd = EtcdCluster::single();
    let [base, prod, eu] = chain(&etcd).await;
    let eu_c = direct(&etcd, &eu).await;
    let before = etcd.revision().await;
    for bad in [
        r#"{"$cfgd.unset": true, "x": 1}"#,
        r#"{"a": {"$cfgd.unset": false}}"#,
        r#"[{"$cfgd.unset": true}]"#,
    ] {
        let e = eu_c.set_json("region", bad).await.unwrap_err();
        assert_eq!(e.code(), "invalid_unset", "{e}");
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
    }
    assert_eq!(etcd.revision().await, before, "nothing written");

    let refused = direct(&etcd, &base)
        .await
        .delete_namespace()
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!("namespace {base:?} is extended by {prod}: change their extends first")
    );
    assert_eq!(etcd.revision().await, before, "nothing deleted");
    // The leaf goes, and then its parent can.
    assert!(eu_c.delete_namespace().await.unwrap() > 0);
    direct(&etcd, &prod)
        .await
        .set_meta(&cfgd::meta::Meta::default())
        .await
        .unwrap();
    assert!(direct(&etcd, &base).await.delete_namespace().await.unwrap() > 0);
    assert_eq!(etcd.count(&format!("/cfgd/{base}/")).await, 0);
}

#[tokio::test]
async fn a_release_spans_namespaces_of_one_chain_in_one_transaction() {
    let etcd = EtcdCluster::single();
    let [base, prod, eu] = chain(&etcd).await;
    let live = builder(&etcd, &eu).connect().await.unwrap();
    let mut changes = live.subscribe("").unwrap();
    let eu_c = direct(&etcd, &eu).await;
    let documents = [
        (base.clone(), r#"{"shared": {"retries": 9}}"#.to_owned()),
        (prod.clone(), r#"{"db": {"pool": {"size": 50}}}"#.to_owned()),
    ];
    let planned = eu_c.apply_chain(&documents, true).await.unwrap();
    assert_eq!(planned.revision, 0);
    assert_eq!(planned.parts.len(), 2);
    let release = eu_c.apply_chain(&documents, false).await.unwrap();
    assert!(release.revision > 0);
    // prod-eu's subscribers see both at the one revision.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let change = tokio::time::timeout(ARRIVES_WITHIN, changes.next())
            .await
            .unwrap()
            .unwrap();
        seen.push((
            change.name().to_owned(),
            change.revision(),
            change.layer().map(str::to_owned),
        ));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("db".to_owned(), release.revision, Some(prod.clone())),
            ("shared".to_owned(), release.revision, Some(base.clone())),
        ]
    );
    // Each part's audit record is in the namespace it wrote.
    for (ns, id) in release
        .parts
        .iter()
        .map(|p| (&p.namespace, p.id.clone().unwrap()))
    {
        let records = direct(&etcd, ns).await.releases(5).await.unwrap();
        assert_eq!(records[0].id, id, "{ns}");
    }
    // A namespace outside the chain, or one named twice, is refused.
    let other = common::namespace("other");
    direct(&etcd, &other).await.set("x", &1).await.unwrap();
    let before = etcd.revision().await;
    for documents in [
        vec![(other.clone(), r#"{"x": 2}"#.to_owned())],
        vec![
            (base.clone(), "{}".to_owned()),
            (base.clone(), "{}".to_owned()),
        ],
    ] {
        let e = eu_c.apply_chain(&documents, false).await.unwrap_err();
        assert!(e.to_string().contains("a release spans one chain"), "{e}");
    }
    assert_eq!(etcd.revision().await, before);
}
