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
        Err(e @ Error::InvalidMeta { .. }) => e.to_string(),
        other => panic!("expected invalid_meta, got {other:?}"),
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
