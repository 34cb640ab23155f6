//! Secrets through the server: plaintext only to the secrets scope, never
//! in a log.

use serde_json::json;

use crate::common::secrets::{all_of_etcd, client, key_file};
use crate::common::EtcdCluster;

const PLAIN: &str = "hunter2-correct-horse";

use crate::harness::{http, start_with_key, start_with_settings, Sse, OPS, READER};

const VAULT: (&str, &str) = ("Authorization", "Bearer vault-secret");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_shows_a_secret_only_to_the_secrets_scope_and_never_logs_it() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "secret.key");
    let admin = client(&etcd, "prod", Some(&key), false).await;
    admin
        .set_policy_json(r#"{"secrets": ["db/*"]}"#)
        .await
        .unwrap();
    let server = start_with_key(&etcd, &key);
    let put = http(
        &server,
        "PUT",
        "/v1/namespaces/prod/config/warm",
        &[OPS],
        "1",
    );
    assert_eq!(put.status, 200, "{}", put.body);
    let mut sse = Sse::open(&server, "/v1/namespaces/prod/watch?prefix=db/", None);
    let body = json!(PLAIN).to_string();
    let put = http(
        &server,
        "PUT",
        "/v1/namespaces/prod/config/db/password",
        &[OPS],
        &body,
    );
    assert_eq!(put.status, 200, "{}", put.body);
    assert!(!all_of_etcd(&etcd).contains(PLAIN));

    let event = sse.next();
    assert_eq!(event.data["value"], "<redacted>", "{:?}", event.data);
    assert_eq!(event.data["secret"], true);

    let read = http(
        &server,
        "GET",
        "/v1/namespaces/prod/config/db/password",
        &[READER],
        "",
    );
    assert_eq!(read.status, 403, "{}", read.body);
    assert!(read.body.contains("secrets scope") && !read.body.contains(PLAIN));
    let read = http(
        &server,
        "GET",
        "/v1/namespaces/prod/config/db/password",
        &[VAULT],
        "",
    );
    assert_eq!((read.status, read.body.as_str()), (200, body.as_str()));
    let list = http(
        &server,
        "GET",
        "/v1/namespaces/prod/config?prefix=db/",
        &[VAULT],
        "",
    );
    assert!(
        list.body.contains("<redacted>") && !list.body.contains(PLAIN),
        "{}",
        list.body
    );
    let history = http(
        &server,
        "GET",
        "/v1/namespaces/prod/history/db/password",
        &[VAULT],
        "",
    );
    assert!(!history.body.contains(PLAIN), "{}", history.body);
    let audit = http(&server, "GET", "/v1/namespaces/prod/audit", &[VAULT], "");
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert!(audit.body.contains("db/password") && !audit.body.contains(PLAIN));

    // A server without the key says so, naming the key it lacks.
    let keyless = start_with_settings(&etcd, "", &[]);
    let read = http(
        &keyless,
        "GET",
        "/v1/namespaces/prod/config/db/password",
        &[VAULT],
        "",
    );
    assert_eq!(read.status, 500, "{}", read.body);
    assert!(read.body.contains("no secret key") && !read.body.contains(PLAIN));

    let logs = std::fs::read_to_string(server._dir.path().join("cfgd.log")).unwrap()
        + &std::fs::read_to_string(keyless._dir.path().join("cfgd.log")).unwrap();
    // The logs were captured: the keyless server logged its failure.
    assert!(logs.contains("request failed"), "{logs}");
    assert!(!logs.contains(PLAIN), "{logs}");
}
