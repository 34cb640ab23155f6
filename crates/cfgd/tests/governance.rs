//! The namespace policy and change requests (four-eyes), through the
//! library, against a real etcd.

use std::time::Duration;

use cfgd::audit::Via;
use cfgd::{Client, Error, RequestState};
use serde_json::json;
use tokio_stream::StreamExt;

use crate::common::{self, EtcdCluster};

/// One secret key for every client of these tests.
fn keyring() -> cfgd::secret::Keyring {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    cfgd::secret::Keyring::parse(KEY.get_or_init(cfgd::secret::Keyring::generate)).unwrap()
}

async fn connect(etcd: &EtcdCluster, namespace: &str, live: bool) -> Client {
    Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(namespace)
        .live(live)
        .keyring(keyring())
        .connect()
        .await
        .expect("connect")
}

const POLICY: &str = r#"{"protected": ["payments/*", "flags/checkout"], "approvals": 1, "secrets": ["payments/key"]}"#;

fn flag(on: bool) -> serde_json::Value {
    json!({"state": "ENABLED", "variants": {"on": true, "off": false},
           "defaultVariant": if on { "on" } else { "off" }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_names_refuse_every_direct_write_unless_forced() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("policy");
    let live = connect(&etcd, &ns, true).await;
    let one_shot = connect(&etcd, &ns, false).await;
    live.set("payments/limits", &1).await.unwrap();
    live.set_flag("checkout", &flag(false)).await.unwrap();

    let bad = live
        .set_policy_json(r#"{"protected": ["a"], "approvals": 0}"#)
        .await;
    assert!(
        matches!(&bad, Err(Error::InvalidPolicy { reason, .. }) if reason.contains("approvals")),
        "{bad:?}"
    );
    live.set_policy_json(POLICY).await.unwrap();
    assert_eq!(live.policy().await.unwrap().approvals, 1);

    let before = etcd.revision().await;
    for client in [&live, &one_shot] {
        let refusals = [
            client.set("payments/limits", &2).await.map(|_| ()),
            client.set_if("payments/new", &2, 0).await.map(|_| ()),
            client.delete("payments/limits").await.map(|_| ()),
            client.rollback("payments/limits", before).await.map(|_| ()),
            client
                .import(r#"{"payments/limits": 3, "free": 1}"#, false)
                .await
                .map(|_| ()),
            client
                .apply(r#"{"payments/limits": 3}"#, None, true)
                .await
                .map(|_| ()),
            client.set_flag("checkout", &flag(true)).await.map(|_| ()),
            client.enable_flag("checkout").await.map(|_| ()),
        ];
        for refused in refusals {
            let Err(Error::Protected { key, pattern }) = &refused else {
                panic!("not refused: {refused:?}");
            };
            assert!(
                key.ends_with("/config/payments/limits")
                    || key.ends_with("/config/payments/new")
                    || key.ends_with("/flags/checkout"),
                "{key}"
            );
            assert!(["payments/*", "flags/checkout"].contains(&pattern.as_str()));
        }
    }
    assert_eq!(etcd.revision().await, before, "nothing written");
    assert_eq!(live.get::<i32>("payments/limits").await.unwrap(), Some(1));

    // Unprotected names write as ever; an operator may force, and says so.
    one_shot.set("free", &1).await.unwrap();
    let forced = one_shot
        .with_actor("oncall", Via::Cfgctl)
        .with_message("hotfix")
        .forced();
    let revision = forced.set("payments/limits", &5).await.unwrap();
    let log = live.audit_log("payments/", None, 5).await.unwrap();
    assert_eq!(
        (log[0].revision, log[0].actor.as_str(), log[0].forced),
        (revision, "oncall", true)
    );
    assert!(!live.audit_log("free", None, 5).await.unwrap()[0].forced);

    // Without the policy, nothing is protected; the live client sees the
    // change through its watch.
    live.delete_policy().await.unwrap();
    common::eventually(Duration::from_secs(10), || async {
        live.set("payments/limits", &6).await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_approved_by_another_merges_as_one_release() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("request");
    let admin = connect(&etcd, &ns, true).await;
    admin
        .set("payments/limits", &json!({"max": 100}))
        .await
        .unwrap();
    admin.set("payments/key", &"sk_old").await.unwrap();
    admin.set_policy_json(POLICY).await.unwrap();
    let alice = admin.with_actor("alice", Via::Http);
    let bob = admin.with_actor("bob", Via::Http);

    let config = json!({
        "payments/limits": {"max": 200},
        "payments/key": "sk_new",
        "payments/region": "eu",
        "unchanged-or-new": 1
    })
    .to_string();
    let flags = json!({"flags": {"checkout": flag(true)}}).to_string();
    let request = alice
        .with_message("raise limits")
        .create_request(&config, Some(&flags))
        .await
        .unwrap();
    assert_eq!(
        (request.id.as_str(), request.author.as_str()),
        ("1", "alice")
    );
    assert_eq!(request.state, RequestState::Open);
    assert_eq!(request.base.len(), 5, "{:?}", request.base);
    // The request keeps the secret sealed in etcd.
    let stored = common::etcdctl(&etcd.endpoints_arg(), &["get", "--prefix", "/cfgd/"]);
    assert!(
        stored.contains("$cfgd.secret") && !stored.contains("sk_new"),
        "{stored}"
    );
    assert_eq!(request.base["payments/region"], 0);
    assert!(request.base["payments/limits"] > 0);

    // What a reviewer sees: the changes, secrets hidden.
    let review = bob.review_request("1").await.unwrap();
    assert!(review.moved.is_empty());
    assert_eq!(review.request.config["payments/key"], "<redacted>");
    let key_diff = review
        .changes
        .iter()
        .find(|c| c.name == "payments/key")
        .unwrap();
    assert_eq!(
        key_diff.differences[0].to_string(),
        "~ /: \"<redacted>\" → \"<redacted>\""
    );
    assert!(review.changes.iter().any(
        |c| c.name == "payments/limits" && c.differences[0].to_string() == "~ /max: 100 → 200"
    ));

    // The author cannot approve, and it cannot merge unapproved.
    assert!(matches!(
        alice.approve_request("1").await,
        Err(Error::SelfApproval { ref actor, .. }) if actor == "alice"
    ));
    let unapproved = alice.merge_request("1").await.unwrap_err();
    assert!(
        unapproved
            .to_string()
            .contains("needs 1 approval(s) and has 0"),
        "{unapproved}"
    );
    let approved = bob.approve_request("1").await.unwrap();
    assert_eq!(approved.approvals[0].actor, "bob");
    assert!(matches!(
        bob.approve_request("1").await,
        Err(Error::RequestState { .. })
    ));

    // Merged atomically: a subscriber sees every change at one revision.
    let mut changes = admin.subscribe("").unwrap();
    let release = alice.merge_request("1").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let change = tokio::time::timeout(Duration::from_secs(20), changes.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(change.revision(), release.revision, "{}", change.name());
        seen.push(change.name().to_owned());
    }
    assert_eq!(
        admin
            .get::<serde_json::Value>("payments/limits")
            .await
            .unwrap(),
        Some(json!({"max": 200}))
    );
    assert!(admin.flags().unwrap().bool("checkout", false, &json!({})));
    let merged = admin.get_request("1").await.unwrap();
    assert_eq!(merged.state, RequestState::Merged);
    assert_eq!(merged.release.as_deref(), Some(release.id.as_str()));
    assert_eq!(
        merged.revision, release.revision,
        "merged in the same transaction"
    );
    assert!(matches!(
        bob.merge_request("1").await,
        Err(Error::RequestState { .. })
    ));

    // Each step is in the audit trail, at its revision, naming the request.
    let trail: Vec<(String, String)> = admin
        .audit_log("payments/limits", None, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.request.as_deref() == Some("1"))
        .map(|r| (r.action, r.actor))
        .collect();
    assert_eq!(
        trail,
        [
            ("request.merge".to_owned(), "alice".to_owned()),
            ("request.approve".to_owned(), "bob".to_owned()),
            ("request.create".to_owned(), "alice".to_owned()),
        ]
    );
    assert_eq!(admin.releases(5).await.unwrap()[0].id, release.id);
    assert_eq!(
        admin
            .requests(Some(RequestState::Merged), 10)
            .await
            .unwrap()[0]
            .id,
        "1"
    );
    // A revert is a direct write too: protected, unless forced.
    assert!(matches!(
        admin.revert_release(&release.id).await,
        Err(Error::Protected { .. })
    ));
    admin.forced().revert_release(&release.id).await.unwrap();
    assert_eq!(
        admin
            .get::<serde_json::Value>("payments/limits")
            .await
            .unwrap(),
        Some(json!({"max": 100}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_base_moved_cannot_merge_until_rebased() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("rebase");
    let admin = connect(&etcd, &ns, false).await;
    admin.set("payments/a", &1).await.unwrap();
    admin.set("payments/b", &1).await.unwrap();
    admin.set_policy_json(POLICY).await.unwrap();
    let alice = admin.with_actor("alice", Via::Cfgctl);
    let bob = admin.with_actor("bob", Via::Cfgctl);

    let nothing = alice
        .create_request(r#"{"payments/a": 1}"#, None)
        .await
        .unwrap_err();
    assert!(nothing.to_string().contains("changes nothing"), "{nothing}");
    let request = alice
        .create_request(r#"{"payments/a": 2, "payments/b": 2}"#, None)
        .await
        .unwrap();
    bob.approve_request(&request.id).await.unwrap();

    // Someone changes one of its names behind it: the merge is refused,
    // naming it, and writes nothing.
    admin.forced().set("payments/b", &7).await.unwrap();
    let before = etcd.revision().await;
    let error = alice.merge_request(&request.id).await.unwrap_err();
    let Error::RequestMoved { names, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(names, &["payments/b"]);
    assert!(error.to_string().contains("rebase it"), "{error}");
    assert_eq!(etcd.revision().await, before, "nothing written");
    assert_eq!(
        bob.review_request(&request.id).await.unwrap().moved,
        ["payments/b"]
    );

    // Rebased, it needs approving again, then merges.
    let rebased = alice.rebase_request(&request.id).await.unwrap();
    assert!(rebased.approvals.is_empty());
    assert!(matches!(
        alice.merge_request(&request.id).await,
        Err(Error::RequestState { .. })
    ));
    bob.approve_request(&request.id).await.unwrap();
    alice.merge_request(&request.id).await.unwrap();
    assert_eq!(admin.get::<i32>("payments/b").await.unwrap(), Some(2));

    // A closed request is done with.
    let other = alice
        .create_request(r#"{"payments/a": 3}"#, None)
        .await
        .unwrap();
    assert_eq!(other.id, "2");
    bob.close_request(&other.id).await.unwrap();
    let closed = bob.approve_request(&other.id).await.unwrap_err();
    assert!(closed.to_string().contains("closed already"), "{closed}");
    assert_eq!(admin.requests(None, 10).await.unwrap().len(), 2);
    assert!(admin
        .requests(Some(RequestState::Open), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        admin.get_request("99").await,
        Err(Error::NotFound { .. })
    ));
}
