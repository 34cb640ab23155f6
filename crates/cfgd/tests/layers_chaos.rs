//! The chaos tests on a three-level chain, `base` ← `prod` ← `prod-eu`,
//! with writes to every level: a `prod-eu` subscriber gets every change to
//! its effective values exactly once, in order, through leader kills, an
//! outage, and compaction past a cut watch; and nothing for a write that a
//! layer above shadows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cfgd::{Change, ChangeKind, Client, ClientBuilder, Status, Subscription};
use serde_json::{json, Value};
use tokio_stream::StreamExt;

use crate::common::proxy::Proxy;
use crate::common::{self, EtcdCluster};

const ARRIVES_WITHIN: Duration = Duration::from_secs(20);

fn builder(endpoints: Vec<String>, namespace: &str) -> ClientBuilder {
    common::logs();
    Client::builder()
        .endpoints(endpoints)
        .namespace(namespace)
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(2))
}

async fn writer(endpoints: Vec<String>, namespace: &str) -> Client {
    builder(endpoints, namespace)
        .live(false)
        .connect()
        .await
        .expect("connect writer")
}

/// The chain, each level extending the one below; `prod-eu` owns
/// `shadowed`, so `base`'s writes to it show nowhere below.
async fn chain(etcd: &EtcdCluster) -> [Client; 3] {
    let names = ["base", "prod", "prod-eu"].map(common::namespace);
    let mut clients = Vec::new();
    for (i, ns) in names.iter().enumerate() {
        let client = writer(etcd.endpoints(), ns).await;
        if i == 0 {
            // A parent must exist before a namespace extends it.
            client.set("shadowed", &0).await.unwrap();
        } else {
            client
                .set_meta(&cfgd::meta::Meta::default().with_extends([names[i - 1].clone()]))
                .await
                .unwrap();
        }
        clients.push(client);
    }
    clients[2].set("shadowed", &"mine").await.unwrap();
    clients.try_into().unwrap_or_else(|_| unreachable!())
}

async fn collect_through(sub: &mut Subscription, revision: i64) -> Vec<Change> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + ARRIVES_WITHIN;
    while seen.last().is_none_or(|c: &Change| c.revision() < revision) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sub.next()).await {
            Ok(Some(change)) => seen.push(change),
            Ok(None) => panic!("subscription ended"),
            Err(_) => panic!("revision {revision} not delivered; last: {:?}", seen.last()),
        }
    }
    seen
}

fn fold(state: &mut BTreeMap<String, Value>, changes: &[Change]) {
    for c in changes {
        match c.kind() {
            ChangeKind::Put => {
                state.insert(c.name().to_owned(), c.value::<Value>().unwrap().unwrap());
            }
            ChangeKind::Delete => {
                state.remove(c.name());
            }
        }
    }
}

/// `prod-eu`'s effective values, as a fresh direct client reads them.
async fn effective(etcd: &EtcdCluster, namespace: &str) -> BTreeMap<String, Value> {
    let client = writer(etcd.endpoints(), namespace).await;
    client
        .list::<Value>("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kills_lose_and_repeat_nothing_on_a_chain() {
    let mut etcd = EtcdCluster::start(3);
    let levels = chain(&etcd).await;
    let eu = levels[2].namespace().to_owned();
    let client = builder(etcd.endpoints(), &eu).connect().await.unwrap();
    let mut subs: Vec<Subscription> = (0..2).map(|_| client.subscribe("").unwrap()).collect();
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u32);
    let writing = tokio::spawn(async move {
        // (revision, shown below): every third write goes to base's
        // `shadowed`, which prod-eu's own value hides.
        let mut acked: Vec<(i64, bool)> = Vec::new();
        for i in 0..300u32 {
            let level = (i % 3) as usize;
            let shadow = level == 0 && i % 2 == 0;
            let name = match shadow {
                true => "shadowed".to_owned(),
                false => format!("l{level}-{}", i % 5),
            };
            loop {
                match levels[level].set(&name, &i).await {
                    Ok(revision) => {
                        acked.push((revision, !shadow));
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            progress_tx.send_replace(i);
        }
        acked
    });
    for at in [75, 150, 225] {
        tokio::time::timeout(ARRIVES_WITHIN * 3, progress.wait_for(|&i| i >= at))
            .await
            .expect("writer progress")
            .unwrap();
        let leader = etcd.leader().await;
        etcd.kill(leader);
        tokio::time::sleep(Duration::from_millis(700)).await;
        etcd.restart(leader);
        etcd.wait_healthy();
    }
    let acked = tokio::time::timeout(Duration::from_secs(120), writing)
        .await
        .expect("the writer finishes")
        .unwrap();
    let last = acked.iter().rev().find(|(_, shown)| *shown).unwrap().0;
    let shown: Vec<i64> = acked.iter().filter(|(_, s)| *s).map(|(r, _)| *r).collect();
    let hidden: Vec<i64> = acked.iter().filter(|(_, s)| !*s).map(|(r, _)| *r).collect();
    let truth = effective(&etcd, &eu).await;
    for sub in &mut subs {
        let seen = collect_through(sub, last).await;
        let revisions: Vec<i64> = seen.iter().map(Change::revision).collect();
        assert!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "out of order or repeated"
        );
        for revision in &shown {
            assert!(revisions.binary_search(revision).is_ok(), "lost {revision}");
        }
        for revision in &hidden {
            assert!(
                revisions.binary_search(revision).is_err(),
                "a shadowed write at {revision} arrived"
            );
        }
        let mut state = BTreeMap::from([("shadowed".to_owned(), json!("mine"))]);
        fold(&mut state, &seen);
        assert_eq!(state, truth);
    }
    assert!(matches!(client.status(), Status::Connected { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_and_compaction_past_a_cut_watch_resync_a_chain() {
    let etcd = EtcdCluster::single();
    let [base, prod, eu] = chain(&etcd).await;
    base.set("db", &json!({"url": "a", "pool": 5}))
        .await
        .unwrap();
    prod.set("db", &json!({"pool": 10})).await.unwrap();
    base.set("gone", &1).await.unwrap();
    let proxy = Proxy::start(&etcd.endpoint(0)).await;
    let client = builder(vec![proxy.endpoint()], eu.namespace())
        .connect()
        .await
        .unwrap();
    let mut status = client.status_changes().unwrap();
    let mut sub = client.subscribe("").unwrap();
    let db = client.watch("db", json!(null)).unwrap();
    let before = effective(&etcd, eu.namespace()).await;
    assert_eq!(before["db"], json!({"url": "a", "pool": 10}));

    proxy.cut();
    let lost = |s: &Status| matches!(s, Status::Reconnecting { .. });
    tokio::time::timeout(ARRIVES_WITHIN, status.wait_for(lost))
        .await
        .unwrap()
        .unwrap();
    // Writes to every level while the watch is cut, then compaction past
    // them all.
    base.set("db", &json!({"url": "b", "pool": 5}))
        .await
        .unwrap();
    prod.delete("db").await.unwrap();
    base.delete("gone").await.unwrap();
    eu.set("added", &true).await.unwrap();
    base.set("shadowed", &99).await.unwrap();
    for i in 0..5 {
        prod.set("churn", &i).await.unwrap();
    }
    etcd.compact_now().await;

    proxy.restore();
    let back = |s: &Status| matches!(s, Status::Connected { .. });
    tokio::time::timeout(ARRIVES_WITHIN, status.wait_for(back))
        .await
        .unwrap()
        .unwrap();
    let next = base.set("after", &1).await.unwrap();
    let mut seen = collect_through(&mut sub, next).await;
    let after = seen.pop().unwrap();
    assert_eq!((after.name(), after.is_resync()), ("after", false));
    assert!(seen.iter().all(Change::is_resync), "{seen:?}");
    let mut changed: Vec<&str> = seen.iter().map(Change::name).collect();
    changed.sort();
    assert_eq!(
        changed,
        ["added", "churn", "db", "gone"],
        "once each; nothing for shadowed"
    );
    let mut state = before;
    fold(&mut state, &seen);
    fold(&mut state, &[after]);
    assert_eq!(state, effective(&etcd, eu.namespace()).await);
    assert_eq!(*db.get(), json!({"url": "b", "pool": 5}));
}
