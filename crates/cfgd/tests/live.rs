//! Live mode against real etcd: the watch engine under writes, leader kills,
//! outages, compaction and slow readers; `Live<T>`; snapshot; defaults file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfgd::{Change, ChangeKind, Client, ClientBuilder, Error, Source, Status, Subscription};
use serde_json::{json, Value};
use tokio_stream::StreamExt;

use crate::common::proxy::Proxy;
use crate::common::{self, EtcdCluster};

/// How long a change may take to arrive in these tests: generous, because
/// the machines are shared. Latency is measured by the benchmarks instead.
const ARRIVES_WITHIN: Duration = Duration::from_secs(20);

fn builder(endpoints: Vec<String>, namespace: &str) -> ClientBuilder {
    common::logs();
    Client::builder()
        .endpoints(endpoints)
        .namespace(namespace)
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(2))
}

/// Fails the test instead of hanging it.
async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(ARRIVES_WITHIN, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {ARRIVES_WITHIN:?}"))
}

/// A client that writes straight to etcd, standing in for another service.
async fn writer(endpoints: Vec<String>, namespace: &str) -> Client {
    builder(endpoints, namespace)
        .live(false)
        .connect()
        .await
        .expect("connect writer")
}

/// Waits until the status is `Connected` or `Reconnecting`, as `state` says.
async fn reaches(status: &mut tokio::sync::watch::Receiver<Status>, state: &str) {
    let wanted = |s: &Status| match s {
        Status::Connected { .. } => state == "Connected",
        Status::Reconnecting { .. } => state == "Reconnecting",
        _ => false,
    };
    within(&format!("status {state}"), status.wait_for(wanted))
        .await
        .unwrap();
}

/// Reads `sub` until it has delivered a change at `revision` or later.
async fn collect_through(sub: &mut Subscription, revision: i64) -> Vec<Change> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + ARRIVES_WITHIN;
    while seen.last().is_none_or(|c: &Change| c.revision() < revision) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sub.next()).await {
            Ok(Some(change)) => seen.push(change),
            Ok(None) => panic!("subscription ended"),
            Err(_) => panic!(
                "revision {revision} not delivered within {ARRIVES_WITHIN:?}; last: {:?}",
                seen.last()
            ),
        }
    }
    seen
}

/// What etcd holds under the namespace's config section, name → JSON.
async fn etcd_state(etcd: &EtcdCluster, namespace: &str) -> BTreeMap<String, Value> {
    let prefix = format!("/cfgd/{namespace}/config/");
    let resp = etcd
        .raw()
        .await
        .get(
            prefix.as_str(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("read etcd");
    resp.kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap()[prefix.len()..].to_owned(),
                serde_json::from_slice(kv.value()).unwrap(),
            )
        })
        .collect()
}

/// Applies changes to a map, as a subscriber keeping its own copy would.
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

type Recorded = Arc<std::sync::Mutex<Vec<Change>>>;

/// A callback that keeps every change it is given.
fn recorder(client: &Client, prefix: &str) -> (Recorded, cfgd::OnChange) {
    let seen = Recorded::default();
    let keep = seen.clone();
    let hook = client
        .on_change(prefix, move |change| {
            keep.lock().unwrap().push(change.clone())
        })
        .unwrap();
    (seen, hook)
}

/// Waits until a recorder has a change at `revision` or later.
async fn recorded_through(seen: &Recorded, revision: i64) {
    common::eventually(ARRIVES_WITHIN, || async {
        seen.lock()
            .unwrap()
            .last()
            .is_some_and(|c| c.revision() >= revision)
    })
    .await;
}

fn revisions(changes: &[Change]) -> Vec<i64> {
    changes.iter().map(Change::revision).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_sees_every_revision_once_in_order() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("order");
    let client = builder(etcd.endpoints(), &ns).connect().await.unwrap();
    let mut subs: Vec<Subscription> = (0..3).map(|_| client.subscribe("").unwrap()).collect();
    let (called, _keep) = recorder(&client, "");

    let writes = writer(etcd.endpoints(), &ns).await;
    let mut acked = Vec::new();
    for i in 0..2000u32 {
        let name = format!("key.{}", i % 17);
        acked.push((name.clone(), writes.set(&name, &i).await.unwrap(), i));
    }
    let last = acked.last().unwrap().1;

    recorded_through(&called, last).await;
    let got: Vec<(String, i64, u32)> = called
        .lock()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c.name().to_owned(),
                c.revision(),
                c.value().unwrap().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, acked, "the callback");

    for sub in &mut subs {
        let seen = collect_through(sub, last).await;
        let got: Vec<(String, i64, u32)> = seen
            .iter()
            .map(|c| {
                assert!(!c.is_resync(), "{c:?}");
                (
                    c.name().to_owned(),
                    c.revision(),
                    c.value::<u32>().unwrap().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, acked);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kills_lose_and_repeat_nothing() {
    let mut etcd = EtcdCluster::start(3);
    let ns = common::namespace("leader");
    let client = builder(etcd.endpoints(), &ns).connect().await.unwrap();
    let mut subs: Vec<Subscription> = (0..3).map(|_| client.subscribe("").unwrap()).collect();
    let start = etcd.revision().await;

    let writes = writer(etcd.endpoints(), &ns).await;
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u32);
    let writing = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..1000u32 {
            let name = format!("k{}", i % 10);
            // A write that errors may or may not have been applied; it is
            // retried, and only acknowledged revisions are checked below.
            loop {
                match writes.set(&name, &i).await {
                    Ok(revision) => {
                        acked.push(revision);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            progress_tx.send_replace(i);
        }
        acked
    });

    for at in [250, 500, 750] {
        within("writer progress", progress.wait_for(|&i| i >= at))
            .await
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
    let last = *acked.last().unwrap();

    // etcd's own record of what happened, read back from its history.
    let mut raw = etcd.raw().await;
    let prefix = format!("/cfgd/{ns}/config/");
    let history = raw
        .get(
            prefix.as_str(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert_eq!(history.kvs().len(), 10);
    let mut truth = raw
        .watch(
            prefix.as_str(),
            Some(
                etcd_client::WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(start + 1),
            ),
        )
        .await
        .unwrap();
    let mut expected = Vec::new();
    while expected.last().is_none_or(|&r| r < last) {
        let resp = within("etcd history", truth.message())
            .await
            .unwrap()
            .unwrap();
        expected.extend(resp.events().iter().map(|e| e.kv().unwrap().mod_revision()));
    }

    for sub in &mut subs {
        let seen = revisions(&collect_through(sub, last).await);
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "out of order or repeated"
        );
        assert_eq!(seen, expected, "delivered exactly etcd's history");
        for revision in &acked {
            assert!(seen.binary_search(revision).is_ok(), "lost {revision}");
        }
    }
    assert!(matches!(client.status(), Status::Connected { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_outage_then_convergence() {
    let mut etcd = EtcdCluster::start(3);
    let ns = common::namespace("outage");
    // The client knows member 0 only, so it stays cut off until that member
    // is back, while the others already take writes.
    let client = builder(vec![etcd.endpoint(0)], &ns)
        .connect()
        .await
        .unwrap();
    let mut status = client.status_changes().unwrap();
    let mut sub = client.subscribe("").unwrap();
    let retries = client.watch("retries", 1u32).unwrap();
    client.set("retries", &2u32).await.unwrap();
    client.set("gone", &true).await.unwrap();
    assert!(matches!(
        *status.borrow_and_update(),
        Status::Connected { .. }
    ));

    for i in 0..3 {
        etcd.stop(i);
    }
    reaches(&mut status, "Reconnecting").await;
    // Served from memory meanwhile.
    assert_eq!(client.get_or("retries", 0u32).await, 2);
    assert_eq!(*retries.get(), 2);
    tokio::time::sleep(Duration::from_secs(2)).await;

    etcd.restart(1);
    etcd.restart(2);
    etcd.wait_healthy();
    let writes = writer(vec![etcd.endpoint(1), etcd.endpoint(2)], &ns).await;
    writes.set("retries", &5u32).await.unwrap();
    writes.delete("gone").await.unwrap();
    let last = writes.set("added", &"new").await.unwrap();
    assert!(matches!(client.status(), Status::Reconnecting { .. }));

    etcd.restart(0);
    etcd.wait_healthy();
    reaches(&mut status, "Connected").await;
    let seen = collect_through(&mut sub, last).await;
    let mut state = BTreeMap::new();
    fold(&mut state, &seen);
    assert_eq!(state, etcd_state(&etcd, &ns).await);
    assert_eq!(client.get_or("retries", 0u32).await, 5);
    assert_eq!(client.get::<bool>("gone").await.unwrap(), None);
    assert_eq!(client.get::<String>("added").await.unwrap().unwrap(), "new");
    assert_eq!(*retries.get(), 5);
    assert_eq!(client.status().revision(), last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_past_a_disconnected_watcher_resyncs() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("compact");
    let proxy = Proxy::start(&etcd.endpoint(0)).await;
    let client = builder(vec![proxy.endpoint()], &ns)
        .connect()
        .await
        .unwrap();
    let writes = writer(etcd.endpoints(), &ns).await;
    for name in ["stays", "changes", "deleted"] {
        writes.set(name, &format!("{name}-1")).await.unwrap();
    }
    let mut status = client.status_changes().unwrap();
    common::eventually(ARRIVES_WITHIN, || async {
        client.get::<String>("deleted").await.unwrap().is_some()
    })
    .await;
    let mut sub = client.subscribe("").unwrap();
    let (called, _keep) = recorder(&client, "");

    proxy.cut();
    reaches(&mut status, "Reconnecting").await;
    writes.set("changes", &"changes-2").await.unwrap();
    writes.delete("deleted").await.unwrap();
    writes.set("added", &"added-1").await.unwrap();
    // Churn the same key too, so the resync must report only its end state.
    for i in 0..5 {
        writes.set("churn", &i).await.unwrap();
    }
    etcd.compact_now().await;

    proxy.restore();
    reaches(&mut status, "Connected").await;
    // A write after the reconnect marks the end of the resync.
    let next = writes.set("after", &1).await.unwrap();
    let mut seen = collect_through(&mut sub, next).await;
    let after = seen.pop().unwrap();
    assert_eq!((after.name(), after.is_resync()), ("after", false));
    assert!(seen.iter().all(Change::is_resync), "{seen:?}");
    let mut changed: Vec<(&str, ChangeKind)> = seen.iter().map(|c| (c.name(), c.kind())).collect();
    changed.sort_by_key(|(name, _)| *name);
    assert_eq!(
        changed,
        [
            ("added", ChangeKind::Put),
            ("changes", ChangeKind::Put),
            ("churn", ChangeKind::Put),
            ("deleted", ChangeKind::Delete),
        ]
    );
    recorded_through(&called, next).await;
    let resync = |c: &Change| (c.name().to_owned(), c.revision(), c.is_resync());
    assert_eq!(
        called
            .lock()
            .unwrap()
            .iter()
            .map(resync)
            .collect::<Vec<_>>(),
        seen.iter().chain([&after]).map(resync).collect::<Vec<_>>(),
        "the callback gets the resync the subscriber got"
    );

    let truth = etcd_state(&etcd, &ns).await;
    let mut state = BTreeMap::from([
        ("stays".to_owned(), json!("stays-1")),
        ("changes".to_owned(), json!("changes-1")),
        ("deleted".to_owned(), json!("deleted-1")),
    ]);
    fold(&mut state, &seen);
    fold(&mut state, &[after]);
    assert_eq!(state, truth);
    for (name, value) in &truth {
        assert_eq!(
            client.get::<Value>(name).await.unwrap().as_ref(),
            Some(value)
        );
    }
    assert_eq!(client.get::<Value>("deleted").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_brought_to_the_current_values() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("slow");
    let client = builder(etcd.endpoints(), &ns)
        .channel_capacity(16)
        .connect()
        .await
        .unwrap();
    let mut slow = client.subscribe("").unwrap();
    let mut fast = client.subscribe("").unwrap();
    let writes = writer(etcd.endpoints(), &ns).await;
    let mut last = 0;
    for i in 0..300u32 {
        last = writes.set(&format!("k{}", i % 7), &i).await.unwrap();
        if i == 150 {
            writes.delete("k3").await.unwrap();
        }
    }
    // `fast` drains as it goes in real services; here it catches up too.
    let fast_seen = collect_through(&mut fast, last).await;
    let slow_seen = collect_through(&mut slow, last).await;
    for seen in [&fast_seen, &slow_seen] {
        assert!(seen.iter().any(Change::is_resync), "it fell behind");
        assert!(seen.windows(2).all(|w| w[0].revision() < w[1].revision()));
        let mut state = BTreeMap::new();
        fold(&mut state, seen);
        assert_eq!(state, etcd_state(&etcd, &ns).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_see_their_prefix_survive_panics_and_stop_when_dropped() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("onchange");
    let client = builder(etcd.endpoints(), &ns).connect().await.unwrap();
    let writes = writer(etcd.endpoints(), &ns).await;
    let before = writes.set("feature.a", &0).await.unwrap();
    common::eventually(ARRIVES_WITHIN, || async {
        client.get::<i32>("feature.a").await.unwrap() == Some(0)
    })
    .await;

    let (features, keep_features) = recorder(&client, "feature.");
    let (everything, _keep_everything) = recorder(&client, "");
    // Panics on its first change; it must be called again for the next.
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let _panicky = client
        .on_change("", move |_| {
            if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                panic!("a callback's bug");
            }
        })
        .unwrap();

    let a = writes.set("feature.a", &1).await.unwrap();
    let other = writes.set("other", &1).await.unwrap();
    let gone = writes
        .delete("feature.a")
        .await
        .unwrap()
        .expect("it existed");
    recorded_through(&everything, gone).await;
    let seen = |r: &Recorded| {
        r.lock()
            .unwrap()
            .iter()
            .map(|c| (c.name().to_owned(), c.revision(), c.kind()))
            .collect::<Vec<_>>()
    };
    assert!(before < a, "nothing from before the callback was added");
    assert_eq!(
        seen(&features),
        [
            ("feature.a".to_owned(), a, ChangeKind::Put),
            ("feature.a".to_owned(), gone, ChangeKind::Delete),
        ]
    );
    assert_eq!(
        seen(&everything).iter().map(|c| c.1).collect::<Vec<_>>(),
        [a, other, gone]
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);

    // A callback may use the client's non-async methods: nothing it needs
    // is locked while callbacks run.
    let reentrant = client.clone();
    let made = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep_made = made.clone();
    let _reenters = client
        .on_change("feature.", move |_| {
            let subscription = reentrant.subscribe("").unwrap();
            let live = reentrant.watch("feature.a", 0).unwrap();
            let hook = reentrant.on_change("", |_| {}).unwrap();
            keep_made.lock().unwrap().push((subscription, live, hook));
        })
        .unwrap();

    drop(keep_features);
    let last = writes.set("feature.b", &2).await.unwrap();
    recorded_through(&everything, last).await;
    assert_eq!(seen(&features).len(), 2, "a dropped callback is not called");
    common::eventually(ARRIVES_WITHIN, || async { made.lock().unwrap().len() == 1 }).await;
    assert!(matches!(
        client.on_change("/bad", |_| {}).unwrap_err(),
        Error::InvalidName { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_values_follow_their_key() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("livevalue");
    let client = builder(etcd.endpoints(), &ns).connect().await.unwrap();
    let writes = writer(etcd.endpoints(), &ns).await;

    let mut limit = client.watch("rate.limit", 10u32).unwrap();
    assert_eq!(*limit.get(), 10);
    assert_eq!(*limit.borrow(), 10);
    assert_eq!(limit.source(), Source::CodeDefault);

    writes.set("rate.limit", &50u32).await.unwrap();
    tokio::time::timeout(ARRIVES_WITHIN, limit.changed())
        .await
        .unwrap();
    assert_eq!(*limit.get(), 50);
    assert_eq!(limit.source(), Source::Cache);

    // A value that does not decode keeps the last good one.
    let bad = writes.set("rate.limit", &"fifty").await.unwrap();
    common::eventually(ARRIVES_WITHIN, || async { limit.last_error().is_some() }).await;
    assert_eq!(*limit.get(), 50);
    let err = limit.last_error().unwrap();
    assert!(matches!(*err, Error::Decode { .. }), "{err}");
    assert!(err.to_string().contains("rate.limit"), "{err}");
    assert!(limit.revision() < bad);

    let reader = limit.clone();
    let held = reader.borrow();
    writes.set("rate.limit", &70u32).await.unwrap();
    tokio::time::timeout(ARRIVES_WITHIN, limit.changed())
        .await
        .unwrap();
    assert_eq!(*limit.get(), 70);
    assert_eq!(*limit.borrow(), 70);
    assert_eq!(*held, 50, "a borrow keeps the value it was taken at");
    drop(held);
    assert!(limit.last_error().is_none());

    // A second handle on the same key shares the decoded value.
    let again = client.watch("rate.limit", 1u32).unwrap();
    assert_eq!(*again.get(), 70);

    writes.delete("rate.limit").await.unwrap();
    tokio::time::timeout(ARRIVES_WITHIN, limit.changed())
        .await
        .unwrap();
    assert_eq!(*limit.get(), 10);
    assert_eq!(*again.get(), 1, "each handle keeps its own default");
    assert_eq!((*limit.borrow(), *again.borrow()), (10, 1));
    assert_eq!(limit.source(), Source::CodeDefault);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_reads_never_go_back_in_time() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("coherent");
    let client = builder(etcd.endpoints(), &ns).connect().await.unwrap();
    let writes = writer(etcd.endpoints(), &ns).await;
    writes.set("counter", &0u64).await.unwrap();
    common::eventually(ARRIVES_WITHIN, || async {
        client.get::<u64>("counter").await.unwrap().is_some()
    })
    .await;

    let readers: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut last = 0u64;
                let mut reads = 0u64;
                while last < 1000 {
                    let now = client.get::<u64>("counter").await.unwrap().unwrap();
                    assert!(now >= last, "went back from {last} to {now}");
                    last = now;
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();
    for i in 1..=1000u64 {
        writes.set("counter", &i).await.unwrap();
    }
    // Every reader reaches the final value once the writer stops.
    for reader in readers {
        let reads = tokio::time::timeout(ARRIVES_WITHIN, reader)
            .await
            .expect("a reader never saw the final value")
            .unwrap();
        assert!(reads > 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_start_serves_the_snapshot_then_converges() {
    let mut etcd = EtcdCluster::single();
    let ns = common::namespace("offline");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshot.json");
    {
        let client = builder(etcd.endpoints(), &ns)
            .snapshot(&path)
            .redact("secret.")
            .connect()
            .await
            .unwrap();
        client.set("pool.size", &8u32).await.unwrap();
        client.set("secret.token", &"hunter2").await.unwrap();
        let last = client.set("mode", &"fast").await.unwrap();
        let written = || {
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|s| s["namespaces"][&ns]["revision"] == json!(last))
        };
        common::eventually(ARRIVES_WITHIN, || async { written() }).await;
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("secret.token") && !text.contains("hunter2"),
        "{text}"
    );

    etcd.kill(0);
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let client = builder(etcd.endpoints(), &ns)
        .connect_timeout(timeout)
        .snapshot(&path)
        .connect()
        .await
        .unwrap();
    let waited = started.elapsed();
    // The bound is the connect timeout plus scheduling slack on a busy machine.
    assert!(waited < timeout + Duration::from_secs(2), "{waited:?}");
    assert!(matches!(client.status(), Status::Offline { .. }));
    let entry = client.get_entry::<u32>("pool.size").await.unwrap().unwrap();
    assert_eq!((entry.value, entry.source), (8, Source::Snapshot));
    assert_eq!(client.get::<String>("secret.token").await.unwrap(), None);
    let mut sub = client.subscribe("").unwrap();

    etcd.restart(0);
    etcd.wait_healthy();
    let writes = writer(etcd.endpoints(), &ns).await;
    writes.set("pool.size", &16u32).await.unwrap();
    let last = writes.delete("mode").await.unwrap().unwrap();
    let seen = collect_through(&mut sub, last).await;
    let mut state = BTreeMap::from([
        ("pool.size".to_owned(), json!(8)),
        ("mode".to_owned(), json!("fast")),
    ]);
    fold(&mut state, &seen);
    assert_eq!(state, etcd_state(&etcd, &ns).await);
    let entry = client.get_entry::<u32>("pool.size").await.unwrap().unwrap();
    assert_eq!((entry.value, entry.source), (16, Source::Cache));
    assert_eq!(
        client.get::<String>("secret.token").await.unwrap().unwrap(),
        "hunter2"
    );
    assert!(matches!(client.status(), Status::Connected { .. }));
}

#[tokio::test]
async fn a_bad_snapshot_is_refused_whole() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("badsnap");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshot.json");
    {
        let client = builder(etcd.endpoints(), &ns)
            .snapshot(&path)
            .connect()
            .await
            .unwrap();
        let last = client.set("a", &1).await.unwrap();
        common::eventually(ARRIVES_WITHIN, || async {
            std::fs::read_to_string(&path).is_ok_and(|t| t.contains(&last.to_string()))
        })
        .await;
    }
    let good = std::fs::read_to_string(&path).unwrap();
    drop(etcd); // nothing is listening there any more
    let endpoints = vec![format!("http://127.0.0.1:{}", common::free_port())];
    let offline = |namespace: &str| {
        builder(endpoints.clone(), namespace)
            .connect_timeout(Duration::from_millis(500))
            .snapshot(&path)
            .connect()
    };

    // The good file loads (proving the cases below fail for their reason).
    offline(&ns).await.unwrap();

    // A namespace the file does not hold has no snapshot: the outage is the
    // error. A file of another root is refused.
    let err = offline("other").await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    let err = builder(endpoints.clone(), &ns)
        .root("/elsewhere")
        .connect_timeout(Duration::from_millis(500))
        .snapshot(&path)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Snapshot { .. }), "{err}");
    assert!(err.to_string().contains("/elsewhere"), "{err}");

    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let err = offline(&ns).await.unwrap_err();
    assert!(matches!(err, Error::Snapshot { .. }), "{err}");
    assert!(err.to_string().contains("snapshot.json"), "{err}");

    // Without a snapshot the outage itself is the error.
    std::fs::remove_file(&path).unwrap();
    let err = offline(&ns).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_file_edits_apply_live() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("defaults");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("defaults.json");
    std::fs::write(&path, r#"{"timeout.ms": 100, "held": "file"}"#).unwrap();
    let client = builder(etcd.endpoints(), &ns)
        .defaults_file(&path)
        .connect()
        .await
        .unwrap();
    client.set("held", &"etcd").await.unwrap();
    let timeout = client.watch("timeout.ms", 1u32).unwrap();

    assert_eq!(client.get_or("timeout.ms", 1u32).await, 100);
    assert_eq!(*timeout.get(), 100);
    assert_eq!(timeout.source(), Source::DefaultsFile);
    let entry = client
        .get_entry::<u32>("timeout.ms")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.source, Source::DefaultsFile);
    assert_eq!(client.get_or("held", String::new()).await, "etcd");

    std::fs::write(&path, r#"{"timeout.ms": 250, "held": "file2"}"#).unwrap();
    common::eventually(ARRIVES_WITHIN, || async {
        client.get_or("timeout.ms", 1u32).await == 250
    })
    .await;
    assert_eq!(*timeout.get(), 250);
    assert_eq!(client.get_or("held", String::new()).await, "etcd");

    // Replaced by rename, as editors do.
    let tmp = dir.path().join("defaults.json.tmp");
    std::fs::write(&tmp, r#"{"timeout.ms": 300}"#).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    common::eventually(ARRIVES_WITHIN, || async {
        client.get_or("timeout.ms", 1u32).await == 300
    })
    .await;

    std::fs::write(&path, r#"{"timeout.ms": 400, "bad name!": 1}"#).unwrap();
    common::eventually(ARRIVES_WITHIN, || async {
        client.defaults_error().is_some()
    })
    .await;
    let err = client.defaults_error().unwrap();
    assert!(err.to_string().contains("defaults.json"), "{err}");
    assert_eq!(client.get_or("timeout.ms", 1u32).await, 300);

    std::fs::write(&path, "{ not json").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.get_or("timeout.ms", 1u32).await, 300);
    assert_eq!(*timeout.get(), 300);

    // Deleting the key in the file falls through to the code default.
    std::fs::write(&path, "{}").unwrap();
    common::eventually(ARRIVES_WITHIN, || async {
        client.get_or("timeout.ms", 1u32).await == 1
    })
    .await;
    assert!(client.defaults_error().is_none());
    assert_eq!(*timeout.get(), 1);

    // etcd wins over the file.
    std::fs::write(&path, r#"{"timeout.ms": 500}"#).unwrap();
    common::eventually(ARRIVES_WITHIN, || async { *timeout.get() == 500 }).await;
    client.set("timeout.ms", &600u32).await.unwrap();
    assert_eq!(*timeout.get(), 600);
    assert_eq!(client.get_or("timeout.ms", 1u32).await, 600);
}

#[tokio::test]
async fn a_client_reads_its_own_writes_at_once() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("own");
    let client = builder(etcd.endpoints(), &ns).connect().await.unwrap();
    for i in 0..20u32 {
        let revision = client.set("n", &i).await.unwrap();
        let entry = client.get_entry::<u32>("n").await.unwrap().unwrap();
        assert_eq!((entry.value, entry.revision), (i, revision));
        // Decoded values are kept per revision and per type: reading the same
        // revision as other types, twice each, gives each type's own value.
        for _ in 0..2 {
            assert_eq!(client.get::<u32>("n").await.unwrap(), Some(i));
            assert_eq!(client.get::<f64>("n").await.unwrap(), Some(f64::from(i)));
            assert_eq!(client.get::<Value>("n").await.unwrap(), Some(json!(i)));
        }
        assert!(client.get::<String>("n").await.is_err());
        client.delete("n").await.unwrap().unwrap();
        assert_eq!(client.get::<u32>("n").await.unwrap(), None);
        let revision = client.set("n", &i).await.unwrap();
        client.delete_if("n", revision).await.unwrap();
        assert_eq!(client.get::<u32>("n").await.unwrap(), None);
    }
}

/// 300 writes to `name` in the background; the revisions etcd acknowledged.
fn keep_writing(client: Client, name: &'static str) -> tokio::task::JoinHandle<Vec<i64>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..300 {
            acked.push(client.set(name, &i).await.unwrap());
        }
        acked
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_returns_once_etcd_holds_the_watch() {
    // A watch etcd creates after a change must be caught up by etcd's sync
    // loop (every 100 ms); one it holds, in sync, gets the change at once.
    // So connect waits for it: with etcd's gauges read at once, no waiting.
    let etcd = EtcdCluster::single();
    let ns = common::namespace("watchready");
    let _client = builder(etcd.endpoints(), &ns).connect().await.unwrap();
    assert_eq!(etcd.metric(0, "etcd_debugging_mvcc_watcher_total"), 1.0);
    assert_eq!(
        etcd.metric(0, "etcd_debugging_mvcc_slow_watcher_total"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_sharing_a_connection_share_one_etcd_watcher() {
    const WATCHERS: &str = "etcd_debugging_mvcc_watcher_total";
    let etcd = EtcdCluster::single();
    assert_eq!(etcd.metric(0, WATCHERS), 0.0);
    let [a, b, c] = ["share-a", "share-b", "share-c"].map(common::namespace);
    let first = builder(etcd.endpoints(), &a).connect().await.unwrap();
    let mut sub_a = first.subscribe("").unwrap();

    // Writes to the first namespace go on while the others attach, which
    // moves the watch from its prefix to the whole root: none may be lost.
    let writes_a = writer(etcd.endpoints(), &a).await;
    let busy = keep_writing(writes_a.clone(), "n");
    // Writes to the second namespace go on while it attaches too: whatever
    // its first read misses, the watch must bring.
    let busy_b = keep_writing(writer(etcd.endpoints(), &b).await, "m");
    let share = |ns: &str| Client::builder().namespace(ns).share(&first).connect();
    let second = share(&b).await.unwrap();
    let read_at = second.status().revision();
    let mut since_read = second.subscribe_from("", read_at).unwrap();
    let third = share(&c).await.unwrap();
    let acked = busy.await.unwrap();
    let seen = collect_through(&mut sub_a, *acked.last().unwrap()).await;
    assert_eq!(revisions(&seen), acked);
    let acked_b: Vec<i64> = busy_b
        .await
        .unwrap()
        .into_iter()
        .filter(|&r| r > read_at)
        .collect();
    if let Some(&last) = acked_b.last() {
        assert_eq!(
            revisions(&collect_through(&mut since_read, last).await),
            acked_b
        );
    }
    drop(since_read);

    // Each namespace sees its own changes and nobody else's.
    let (mut sub_b, mut sub_c) = (second.subscribe("").unwrap(), third.subscribe("").unwrap());
    let at_b = writer(etcd.endpoints(), &b)
        .await
        .set("x", &"b")
        .await
        .unwrap();
    let at_c = writer(etcd.endpoints(), &c)
        .await
        .set("x", &"c")
        .await
        .unwrap();
    let at_a = writes_a.set("n", &-1).await.unwrap();
    for (sub, at, want) in [(&mut sub_b, at_b, "b"), (&mut sub_c, at_c, "c")] {
        let got = collect_through(sub, at).await;
        assert_eq!(revisions(&got), [at]);
        assert_eq!(got[0].value::<String>().unwrap().as_deref(), Some(want));
    }
    assert_eq!(revisions(&collect_through(&mut sub_a, at_a).await), [at_a]);
    assert_eq!(
        third.get::<String>("x").await.unwrap().as_deref(),
        Some("c")
    );
    assert_eq!(first.get::<String>("x").await.unwrap(), None);

    // etcd holds one watcher for the three, and none once they are gone.
    common::eventually(ARRIVES_WITHIN, || async { etcd.metric(0, WATCHERS) == 1.0 }).await;
    drop((first, second, third, sub_a, sub_b, sub_c));
    common::eventually(ARRIVES_WITHIN, || async { etcd.metric(0, WATCHERS) == 0.0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_resyncs_every_namespace_of_a_shared_watch() {
    let etcd = EtcdCluster::single();
    let proxy = Proxy::start(&etcd.endpoint(0)).await;
    let names = ["compact-a", "compact-b"].map(common::namespace);
    let first = builder(vec![proxy.endpoint()], &names[0])
        .connect()
        .await
        .unwrap();
    let second = Client::builder()
        .namespace(&names[1])
        .share(&first)
        .connect()
        .await
        .unwrap();
    let clients = [first, second];
    let mut subs: Vec<Subscription> = clients.iter().map(|c| c.subscribe("").unwrap()).collect();
    let mut status = clients[1].status_changes().unwrap();

    proxy.cut();
    reaches(&mut status, "Reconnecting").await;
    let mut written = Vec::new();
    for ns in &names {
        let writes = writer(etcd.endpoints(), ns).await;
        written.push(writes.set("changed", &ns).await.unwrap());
    }
    etcd.compact_now().await;
    proxy.restore();

    for (((ns, sub), client), at) in names.iter().zip(&mut subs).zip(&clients).zip(written) {
        let seen = collect_through(sub, at).await;
        assert!(seen.iter().all(Change::is_resync), "{seen:?}");
        assert_eq!(
            seen.iter().map(Change::name).collect::<Vec<_>>(),
            ["changed"]
        );
        assert_eq!(
            client.get::<String>("changed").await.unwrap().as_ref(),
            Some(ns)
        );
        let mut state = BTreeMap::new();
        fold(&mut state, &seen);
        assert_eq!(state, etcd_state(&etcd, ns).await);
    }
}

/// 100,000 names created and deleted, in transactions of 100, as sessions
/// or jobs come and go: the deleted names a client remembers stay bounded,
/// while a subscriber still ends with exactly what etcd holds and a resume
/// from before the pruned deletes is told to start over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_of_churned_names_stay_bounded() {
    const CYCLES: usize = 100_000;
    const BATCH: usize = 100;
    let etcd = EtcdCluster::single();
    let ns = common::namespace("churn");
    let client = builder(etcd.endpoints(), &ns).connect().await.unwrap();

    // One subscriber keeps its own copy of everything; another follows a
    // prefix nothing is written to. Neither may hold tombstones back.
    let mut all = client.subscribe("").unwrap();
    let kept = client.set("kept", &1).await.unwrap();
    let (progress, mut through) = tokio::sync::watch::channel(0);
    let copy = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let follower = {
        let copy = copy.clone();
        tokio::spawn(async move {
            while let Some(change) = all.next().await {
                fold(&mut copy.lock().unwrap(), std::slice::from_ref(&change));
                progress.send_replace(change.revision());
            }
        })
    };
    let mut quiet = client.subscribe("other/").unwrap();
    let idle = tokio::spawn(async move { while quiet.next().await.is_some() {} });

    let mut raw = etcd.raw().await;
    let key = |i: usize| format!("/cfgd/{ns}/config/session/{i}");
    let mut peak = 0;
    let mut last = 0;
    for start in (0..CYCLES).step_by(BATCH) {
        let puts = (start..start + BATCH).map(|i| etcd_client::TxnOp::put(key(i), "{}", None));
        raw.txn(etcd_client::Txn::new().and_then(puts.collect::<Vec<_>>()))
            .await
            .unwrap();
        let deletes = (start..start + BATCH).map(|i| etcd_client::TxnOp::delete(key(i), None));
        let done = raw
            .txn(etcd_client::Txn::new().and_then(deletes.collect::<Vec<_>>()))
            .await
            .unwrap();
        last = done.header().unwrap().revision();
        peak = peak.max(client.stats().tombstones);
    }
    within(
        "the subscriber reaches the last delete",
        through.wait_for(|r| *r >= last),
    )
    .await
    .unwrap();
    let stats = client.stats();
    peak = peak.max(stats.tombstones);
    eprintln!(
        "{CYCLES} create/delete cycles: at most {peak} tombstones held, {} at the end",
        stats.tombstones
    );
    // Unpruned, the mirror would hold one per name: 100,000.
    assert!(peak <= 10_000, "{peak} tombstones held at the peak");

    // A resume from before the pruned deletes cannot be told each of them:
    // it is a reset, with every current value.
    let mut resumed = client.subscribe_from("", kept - 1).unwrap();
    assert!(resumed.is_reset());
    let first = within("the reset's values", resumed.next()).await.unwrap();
    assert_eq!((first.name(), first.is_resync()), ("kept", true));
    // One from the recent past is exact, and not a reset.
    let recent = client.subscribe_from("", last - 1).unwrap();
    assert!(!recent.is_reset());

    // The last delete's revision is shared by its whole batch: reaching it
    // says the first of those changes arrived, not all of them.
    let want = etcd_state(&etcd, &ns).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while *copy.lock().unwrap() != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    idle.abort();
    follower.abort();
    let state = copy.lock().unwrap().clone();
    assert_eq!(state, want, "the subscriber's copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_evaluates_its_own_flag_writes_at_once() {
    // The watch can bring a write back before etcd's answer to the writer
    // does, and then compiles it on its own thread. A large targeting rule
    // makes that compile slow enough for an evaluation to overtake it.
    let etcd = EtcdCluster::single();
    let ns = common::namespace("ownflag");
    let client = builder(etcd.endpoints(), &ns).connect().await.unwrap();
    let flags = client.flags().unwrap();
    let rules: Vec<Value> = (0..2000)
        .map(|i| json!({"==": [{"var": "user"}, format!("u{i}")]}))
        .collect();
    let context = json!({"user": "u7"});
    for i in 0..30u32 {
        let name = format!("f{i}");
        let definition = json!({
            "state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "off", "targeting": {"if": [{"or": rules}, "on", "off"]}
        });
        client.set_flag(&name, &definition).await.unwrap();
        let details = flags.details(&name, false, &context);
        assert_eq!(
            (details.value, details.error_code),
            (true, None),
            "{name}: {details:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sees_its_own_release_in_its_live_values_at_once() {
    // As for flags: the watch can bring a release back first, and then
    // compiles its flags before it tells the live values. A slow rule in
    // the same release keeps the watch busy while the writer reads.
    let etcd = EtcdCluster::single();
    let ns = common::namespace("ownlive");
    let client = builder(etcd.endpoints(), &ns).connect().await.unwrap();
    let live = client.watch("n", 0u32).unwrap();
    let rules: Vec<Value> = (0..2000)
        .map(|i| json!({"==": [{"var": "user"}, format!("u{i}")]}))
        .collect();
    for i in 1..=20u32 {
        let flags = json!({"flags": {"f": {
            "state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "off", "targeting": {"if": [{"or": rules}, "on", format!("off{i}")]}
        }}})
        .to_string();
        client
            .apply(&json!({"n": i}).to_string(), Some(&flags), false)
            .await
            .unwrap();
        assert_eq!(*live.get(), i, "release {i}");
    }
}
