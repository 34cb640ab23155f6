//! Secrets encrypted at rest: sealed in etcd, its snapshots and exports;
//! plaintext only to a client holding the key.

use std::time::Duration;

use cfgd::secret::Keyring;
use cfgd::{Client, Error};
use serde_json::{json, Value};
use tokio_stream::StreamExt;

use crate::common::secrets::{all_of_etcd, client, key_file};
use crate::common::{self, EtcdCluster};

const PLAIN: &str = "hunter2-correct-horse";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_in_etcd_and_open_only_with_the_key() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "secret.key");
    let other_key = key_file(dir.path(), "other.key");
    let ns = common::namespace("sec");
    let snapshot = dir.path().join("snapshot.json");
    let with_key = Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(&ns)
        .secret_key_file(&key)
        .snapshot(&snapshot)
        .connect()
        .await
        .unwrap();
    with_key
        .set_policy_json(r#"{"secrets": ["db/*"]}"#)
        .await
        .unwrap();
    with_key
        .set_schema(
            "db/password",
            &json!({"type": "string", "minLength": 12}),
            false,
        )
        .await
        .unwrap();
    let mut changes = with_key.subscribe("db/").unwrap();

    // Schemas judge the plaintext, not the envelope.
    let refused = with_key.set("db/password", "short").await.unwrap_err();
    assert!(
        matches!(refused, Error::SchemaViolation { .. }),
        "{refused}"
    );
    let revision = with_key.set("db/password", PLAIN).await.unwrap();
    with_key.set("db/user", "app").await.unwrap();
    with_key.set("plain", "visible").await.unwrap();

    // etcd holds an envelope naming its key, never the plaintext.
    let stored = common::etcdctl(
        &etcd.endpoints_arg(),
        &[
            "get",
            "--print-value-only",
            &format!("/cfgd/{ns}/config/db/password"),
        ],
    );
    let envelope: Value = serde_json::from_str(stored.trim()).unwrap();
    let key_id = Keyring::load(&key).unwrap().sealing_id().to_owned();
    assert_eq!(envelope["$cfgd.secret"], 1, "{stored}");
    assert_eq!(envelope["key"], key_id.as_str(), "{stored}");
    assert!(!all_of_etcd(&etcd).contains(PLAIN));
    assert!(all_of_etcd(&etcd).contains("visible"));

    // With the key: plaintext, live and one-shot, and to subscribers; the
    // JSON form that SSE and `cfgctl watch` send hides it.
    assert_eq!(
        with_key
            .get::<String>("db/password")
            .await
            .unwrap()
            .unwrap(),
        PLAIN
    );
    let entry = with_key
        .get_entry::<String>("db/password")
        .await
        .unwrap()
        .unwrap();
    assert!(entry.secret && entry.revision == revision);
    let one_shot = client(&etcd, &ns, Some(&key), false).await;
    assert_eq!(read_password(&one_shot).await, PLAIN);
    let change = changes.next().await.unwrap();
    assert_eq!(change.value::<String>().unwrap().unwrap(), PLAIN);
    assert!(change.is_secret());
    assert!(!change.to_json().contains(PLAIN), "{}", change.to_json());
    assert!(change.to_json().contains(r#""value":"<redacted>""#));

    // Without the key, or with another: one clear error, never ciphertext.
    for (reader, says) in [
        (
            client(&etcd, &ns, None, true).await,
            "this client has no secret key",
        ),
        (
            client(&etcd, &ns, None, false).await,
            "this client has no secret key",
        ),
        (
            client(&etcd, &ns, Some(&other_key), false).await,
            "not in the secret key file",
        ),
    ] {
        let err = reader.get::<Value>("db/password").await.unwrap_err();
        assert!(matches!(err, Error::Secret { .. }), "{err}");
        let line = err.to_string();
        assert!(
            line.contains("db/password") && line.contains(says),
            "{line}"
        );
        assert!(!line.contains('\n'));
        // What is not secret reads as ever.
        assert_eq!(
            reader.get::<String>("plain").await.unwrap().unwrap(),
            "visible"
        );
    }
    let keyless = client(&etcd, &ns, None, false).await;
    let err = keyless.set("db/password", PLAIN).await.unwrap_err();
    assert!(
        err.to_string().contains("writing it needs a secret key"),
        "{err}"
    );

    // Diffs and history show that a secret changed, never to what.
    let changes = with_key
        .diff_document(&json!({"db/password": "another-long-secret"}).to_string())
        .await
        .unwrap();
    let shown = serde_json::to_string(&changes).unwrap();
    assert!(
        shown.contains("<redacted>") && !shown.contains("another-long") && !shown.contains(PLAIN)
    );
    with_key
        .set("db/password", "second-long-secret")
        .await
        .unwrap();
    // The entries hold the plaintext (this client has the key); the
    // differences between them do not.
    let history: Vec<_> = with_key.history_diff("db/password", 5).await.unwrap();
    let history = format!("{:?}", history.iter().map(|(_, d)| d).collect::<Vec<_>>());
    assert!(history.contains("<redacted>"), "{history}");
    assert!(
        !history.contains("second-long") && !history.contains(PLAIN),
        "{history}"
    );

    // Rollback restores the old plaintext, sealed afresh.
    with_key.rollback("db/password", revision).await.unwrap();
    assert_eq!(read_password(&one_shot).await, PLAIN);

    // An export keeps secrets sealed; importing it back changes nothing.
    let export = with_key.export("").await.unwrap().to_string();
    assert!(
        !export.contains(PLAIN) && export.contains("$cfgd.secret"),
        "{export}"
    );
    let report = with_key.import(&export, false).await.unwrap();
    assert!(
        report.created.is_empty() && report.updated.is_empty(),
        "{report:?}"
    );

    // The audit trail names the writes, never the values.
    let audit = serde_json::to_string(&with_key.audit_log("", None, 100).await.unwrap()).unwrap();
    assert!(audit.contains("db/password") && !audit.contains(PLAIN));

    // The snapshot file and an etcd snapshot hold ciphertext only.
    let raw = etcd.raw().await;
    let mut snap = raw.maintenance_client().snapshot().await.unwrap();
    let mut db = Vec::new();
    while let Some(chunk) = snap.message().await.unwrap() {
        db.extend_from_slice(chunk.blob());
    }
    assert!(db.len() > 1000 && !contains(&db, PLAIN.as_bytes()));
    assert!(
        contains(&db, b"visible"),
        "the etcd snapshot holds values as bytes"
    );
    common::eventually(Duration::from_secs(10), || async {
        std::fs::read_to_string(&snapshot).is_ok_and(|s| s.contains("$cfgd.secret"))
    })
    .await;
    assert!(!std::fs::read_to_string(&snapshot).unwrap().contains(PLAIN));
}

async fn read_password(client: &Client) -> String {
    client.get("db/password").await.unwrap().unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A secret that fails its schema is refused with where and which rule, but
/// its value is never quoted back: not by `set`, `set_json`, `check_json` or
/// a live client's check. A plain name's failure still quotes its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_failure_never_quotes_a_secret() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "secret.key");
    let ns = common::namespace("secschema");
    for live in [false, true] {
        let writer = client(&etcd, &ns, Some(&key), live).await;
        writer
            .set_policy_json(r#"{"secrets": ["db/*"]}"#)
            .await
            .unwrap();
        for name in ["db/pin", "plain/pin"] {
            writer
                .set_schema(name, &json!({"type": "integer"}), false)
                .await
                .unwrap();
        }
        let json = json!(PLAIN).to_string();
        let refusals = [
            writer.set("db/pin", PLAIN).await.unwrap_err(),
            writer.set_json("db/pin", &json).await.unwrap_err(),
            writer.check_json("db/pin", &json).await.unwrap_err(),
            writer.set_if("db/pin", PLAIN, 0).await.unwrap_err(),
        ];
        for refused in refusals {
            let Error::SchemaViolation { failures, .. } = &refused else {
                panic!("live {live}: {refused}");
            };
            assert_eq!(failures[0].rule, "type", "{refused}");
            assert!(
                !refused.to_string().contains(PLAIN),
                "live {live}: {refused}"
            );
        }
        // The same rule on a plain name says what the value was.
        let plain = writer.set("plain/pin", PLAIN).await.unwrap_err();
        assert!(plain.to_string().contains(PLAIN), "{plain}");
    }
}

/// Sign-in sessions: kept under `{root}/_sessions/` on a lease, ended by
/// closing (at once) or by the lease (on its own), and refused for an id
/// that could name another key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_live_on_leases_and_close_at_once() {
    let etcd = EtcdCluster::single();
    let client = Client::builder()
        .endpoints(etcd.endpoints())
        .namespace("default")
        .live(false)
        .connect()
        .await
        .unwrap();
    client
        .open_session("abc-1", b"{\"who\":1}", Duration::from_secs(60))
        .await
        .unwrap();
    client
        .open_session("short", b"x", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        client.session("abc-1").await.unwrap().as_deref(),
        Some(&b"{\"who\":1}"[..])
    );
    let keys = common::etcdctl(
        &etcd.endpoints_arg(),
        &["get", "/cfgd/_sessions/", "--prefix", "--keys-only"],
    );
    assert!(keys.contains("/cfgd/_sessions/abc-1"), "{keys}");
    assert!(client.close_session("abc-1").await.unwrap());
    assert_eq!(client.session("abc-1").await.unwrap(), None);
    assert!(!client.close_session("abc-1").await.unwrap());
    // The lease ends the other by itself.
    common::eventually(Duration::from_secs(10), || async {
        client.session("short").await.unwrap().is_none()
    })
    .await;
    for bad in ["", "../config/x", "a/b", "a b"] {
        let err = client.session(bad).await.unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
    }
}
