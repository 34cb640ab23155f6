//! Overlays against real etcd: an overlay `canary` seen by clients whose
//! labels match and by no one else; `percent` over instance labels; a gray
//! deletion; promote as one release that every client then sees.

use std::time::Duration;

use cfgd::overlays::Labels;
use cfgd::{Client, ClientBuilder};
use serde_json::{json, Value};

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

fn labels(text: &str) -> Labels {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_overlay_is_seen_by_its_labels_only_and_promotes_as_one_release() {
    let etcd = EtcdCluster::single();
    let [base, prod] = ["base", "prod"].map(common::namespace);
    let base_c = builder(&etcd, &base).live(false).connect().await.unwrap();
    base_c
        .set("db", &json!({"url": "a", "pool": 5}))
        .await
        .unwrap();
    base_c.set("legacy", &true).await.unwrap();
    let prod_c = builder(&etcd, &prod).live(false).connect().await.unwrap();
    prod_c
        .set_meta(&cfgd::meta::Meta::default().with_extends([base.clone()]))
        .await
        .unwrap();
    prod_c.set("db", &json!({"pool": 10})).await.unwrap();

    prod_c
        .set_overlay_json("canary", r#"{"selector": {"canary": "true"}}"#)
        .await
        .unwrap();
    prod_c
        .set_in_overlay("canary", "db", r#"{"pool": 20, "tls": true}"#)
        .await
        .unwrap();
    // A gray deletion: canary clients no longer see `legacy`.
    prod_c
        .set_in_overlay("canary", "legacy", r#"{"$cfgd.unset": true}"#)
        .await
        .unwrap();

    let canary = builder(&etcd, &prod)
        .labels(labels("canary=true,region=eu"))
        .connect()
        .await
        .unwrap();
    let other = builder(&etcd, &prod)
        .labels(labels("region=eu"))
        .connect()
        .await
        .unwrap();
    let plain = builder(&etcd, &prod).connect().await.unwrap();
    let db = |c: &Client| {
        let c = c.clone();
        async move { c.get::<Value>("db").await.unwrap() }
    };
    assert_eq!(
        db(&canary).await,
        Some(json!({"url": "a", "pool": 20, "tls": true}))
    );
    assert_eq!(db(&other).await, Some(json!({"url": "a", "pool": 10})));
    assert_eq!(db(&plain).await, Some(json!({"url": "a", "pool": 10})));
    assert_eq!(canary.get::<Value>("legacy").await.unwrap(), None);
    // The own layer is the namespace's, below the overlays it sees.
    assert_eq!(
        canary.get_own_entry("db").await.unwrap().unwrap().value,
        json!({"pool": 10})
    );
    assert_eq!(
        other.get::<Value>("legacy").await.unwrap(),
        Some(json!(true))
    );
    // Per read, as the server's X-Cfgd-Labels does, live or not.
    for client in [&plain, &prod_c] {
        let seen = client
            .get_entry_labeled("db", &labels("canary=true"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.value, json!({"url": "a", "pool": 20, "tls": true}));
        assert!(client
            .get_entry_labeled("legacy", &labels("canary=true"))
            .await
            .unwrap()
            .is_none());
        let unlabeled = client
            .get_entry_labeled("db", &Labels::default())
            .await
            .unwrap();
        assert_eq!(unlabeled.unwrap().value, json!({"url": "a", "pool": 10}));
    }
    assert_eq!(
        canary.explain("db").await.unwrap().origins["/tls"],
        format!("{prod}@canary")
    );

    // A change to the overlay reaches the canary's live value, not others'.
    let live = canary.watch("db", json!(null)).unwrap();
    let others = other.watch("db", json!(null)).unwrap();
    prod_c
        .set_in_overlay("canary", "db", r#"{"pool": 30, "tls": true}"#)
        .await
        .unwrap();
    common::eventually(ARRIVES_WITHIN, || {
        let v = live.get();
        async move { v["pool"] == 30 }
    })
    .await;
    assert_eq!(others.get()["pool"], 10);

    // A flag in the overlay: the canary's flags are the overlay's.
    let beta =
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
    prod_c
        .set_flag_in_overlay("canary", "beta", &beta)
        .await
        .unwrap();
    common::eventually(ARRIVES_WITHIN, || {
        let c = canary.clone();
        async move { c.flag_document().unwrap().contains("\"beta\"") }
    })
    .await;
    assert!(!other.flag_document().unwrap().contains("\"beta\""));

    // Promote: one release; every client then sees the value without it.
    let before = prod_c.releases(10).await.unwrap().len();
    let release = prod_c
        .promote_overlay("canary")
        .await
        .unwrap()
        .expect("a release");
    let releases = prod_c.releases(10).await.unwrap();
    assert_eq!(releases.len(), before + 1);
    assert_eq!(releases[0].id, release.id);
    assert!(prod_c.overlays().await.unwrap().is_empty());
    let promoted = json!({"url": "a", "pool": 30, "tls": true});
    for client in [&canary, &other, &plain] {
        common::eventually(ARRIVES_WITHIN, || {
            let c = client.clone();
            let want = promoted.clone();
            async move { c.get::<Value>("db").await.unwrap() == Some(want) }
        })
        .await;
        common::eventually(ARRIVES_WITHIN, || {
            let c = client.clone();
            async move { c.get::<Value>("legacy").await.unwrap().is_none() }
        })
        .await;
    }
    // The gray deletion of an inherited name became an unset in prod.
    assert_eq!(
        prod_c.get_own_entry("legacy").await.unwrap().unwrap().value,
        json!({"$cfgd.unset": true})
    );
    assert_eq!(*others.get(), promoted);
    // The overlay's flag was promoted with it.
    assert_eq!(prod_c.get_flag("beta").await.unwrap().unwrap().value, beta);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percent_canary_takes_about_its_share_of_instances_and_always_the_same() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("pct");
    let writer = builder(&etcd, &ns).live(false).connect().await.unwrap();
    writer.set("limit", &1).await.unwrap();
    writer
        .set_overlay_json("ten", r#"{"percent": 10}"#)
        .await
        .unwrap();
    writer.set_in_overlay("ten", "limit", "2").await.unwrap();
    let server = builder(&etcd, &ns).connect().await.unwrap();
    let chosen = || {
        let server = server.clone();
        async move {
            let mut ids = Vec::new();
            for i in 0..1000 {
                let labels = labels(&format!("instance=i-{i}"));
                let seen = server
                    .get_entry_labeled("limit", &labels)
                    .await
                    .unwrap()
                    .unwrap();
                if seen.value == json!(2) {
                    ids.push(i);
                }
            }
            ids
        }
    };
    let first = chosen().await;
    println!(
        "percent 10 over 1,000 instance labels: {} chosen",
        first.len()
    );
    assert!((80..=120).contains(&first.len()), "{} of 1000", first.len());
    assert_eq!(chosen().await, first, "the same instances on every read");
    // Without an instance label, or without labels, none.
    assert_eq!(
        server
            .get_entry_labeled("limit", &labels("region=eu"))
            .await
            .unwrap()
            .unwrap()
            .value,
        json!(1)
    );
    // Bad settings: one line each, nothing written.
    let before = etcd.revision().await;
    for (bad, says) in [
        (r#"{"percent": 101}"#, "percent 101"),
        (r#"{"selector": {"bad key": "x"}}"#, "a label is"),
        (r#"{"selctor": {"a": "b"}}"#, "unknown field"),
        (r#"{}"#, "give a selector, a percent or both"),
    ] {
        let e = writer.set_overlay_json("x", bad).await.unwrap_err();
        assert_eq!(e.code(), "invalid_overlay", "{e}");
        assert!(e.to_string().contains(says), "{e}");
        assert_eq!(e.to_string().lines().count(), 1);
    }
    let e = writer
        .set_overlay_json("Bad Name", r#"{"percent": 1}"#)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("overlay name"), "{e}");
    assert!(writer.set_in_overlay("nope", "limit", "3").await.is_err());
    assert_eq!(etcd.revision().await, before);
}
