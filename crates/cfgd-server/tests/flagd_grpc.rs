//! OpenFeature's stock flagd provider for Node, unchanged, against cfgd's
//! gRPC listener (tests/flagd/providers.mjs), and flagd's HTTP sync source
//! (`flagd.json`), against a real cfgd and etcd.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::{self, EtcdCluster, KillOnDrop};
use crate::harness::{http, Server};

const SETTINGS: &str = r#"
[[tokens]]
name = "ops"
secret = "ops-secret"
scopes = { "*" = "write" }

[[tokens]]
name = "reader"
secret = "reader-secret"
scopes = { prod = "read" }

[grpc]
namespaces = ["testbed", "prod"]
default_namespace = "prod"
"#;

/// cfgd with its gRPC listener on a free port: (HTTP server, gRPC address).
fn start(etcd: &EtcdCluster) -> (Server, String) {
    start_with(etcd, &[])
}

fn start_with(etcd: &EtcdCluster, extra: &[&std::ffi::OsStr]) -> (Server, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfgd.toml");
    std::fs::write(&config, SETTINGS).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfgd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ])
        .args(["--endpoints", &etcd.endpoints_arg()])
        .arg("--config")
        .arg(&config)
        .args(extra)
        .env_remove("CFGD_NO_AUTH")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cfgd");
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut next = || lines.next().expect("a line from cfgd").unwrap();
    let http_line = next();
    let address = http_line
        .strip_prefix("cfgd listening on http://")
        .or_else(|| http_line.strip_prefix("cfgd listening on https://"))
        .unwrap_or_else(|| panic!("{http_line:?}"))
        .to_owned();
    let grpc_line = next();
    let grpc = grpc_line
        .strip_prefix("cfgd gRPC (flagd protocols) listening on ")
        .unwrap_or_else(|| panic!("{grpc_line:?}"))
        .to_owned();
    // Keep reading stdout, so that a later line never meets a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    (
        Server {
            _child: child,
            address,
            _dir: dir,
        },
        grpc,
    )
}

async fn seed(etcd: &EtcdCluster) -> bool {
    let connect = |ns: &'static str| {
        cfgd::Client::builder()
            .endpoints(etcd.endpoints())
            .namespace(ns)
            .live(false)
            .connect()
    };
    let prod = connect("prod").await.unwrap();
    prod.set_flag(
        "checkout",
        &json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
    )
    .await
    .unwrap();
    prod.set_flag(
        "banner",
        &json!({"state": "ENABLED", "variants": {"hi": "hello", "bye": "goodbye"}, "defaultVariant": "hi"}),
    )
    .await
    .unwrap();
    let closed = connect("closed").await.unwrap();
    closed
        .set_flag(
            "secret",
            &json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
        )
        .await
        .unwrap();
    let testbed = crate::common::root()
        .join("../shared/conformance/flagd-testbed/evaluator/flags/testkit-flags.json");
    match std::fs::read_to_string(&testbed) {
        Ok(document) => {
            // Written as another tool would: the testbed holds flags that
            // cfgd refuses to store (on purpose: they test errors), and the
            // evaluator must answer for them as flagd does.
            let document: serde_json::Value = serde_json::from_str(&document).unwrap();
            let mut raw = etcd.raw().await;
            let mut entries: Vec<(String, &serde_json::Value)> = document["flags"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(name, flag)| (name.clone(), flag))
                .collect();
            if let Some(evaluators) = document.get("$evaluators") {
                entries.push(("$evaluators".into(), evaluators));
            }
            for (name, value) in entries {
                raw.put(
                    format!("/cfgd/testbed/flags/{name}"),
                    value.to_string(),
                    None,
                )
                .await
                .unwrap();
            }
            true
        }
        Err(_) => {
            println!(
                "notice: {} is absent; the testbed comparison is skipped",
                testbed.display()
            );
            false
        }
    }
}

/// Runs a Node test script under tests/ with `command`'s environment, and
/// fails with its output unless it succeeds.
fn run_node(mut command: Command, script: &str) {
    let root = &crate::common::root();
    let out = command
        .arg(root.join(script))
        .output()
        .expect("run node (scripts/install-deps.sh --test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cfgctl() -> std::path::PathBuf {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_cfgd"));
    let path = exe.with_file_name("cfgctl");
    assert!(
        path.exists(),
        "build cfgctl first (cargo build --workspace)"
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_node_flagd_provider_works_against_cfgd() {
    common::logs();
    let root = &crate::common::root();
    assert!(
        root.join("tests/flagd/node_modules/@openfeature/flagd-provider")
            .is_dir(),
        "tests/flagd/node_modules is missing: run scripts/install-deps.sh --test (npm ci there)"
    );
    let etcd = EtcdCluster::single();
    let testbed = seed(&etcd).await;
    let (server, grpc) = start(&etcd);
    // For the restart test, which runs a cfgd of its own on fixed ports.
    let settings = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(settings.path(), SETTINGS).unwrap();
    let mut node = Command::new("node");
    node.env("CFGD_BIN", env!("CARGO_BIN_EXE_cfgd"))
        .env("CFGD_SETTINGS", settings.path())
        .env("CFGD_GRPC", &grpc)
        .env("CFGD_URL", format!("http://{}", server.address))
        .env("CFGD_TOKEN", "ops-secret")
        .env("CFGD_CFGCTL", cfgctl())
        .env("CFGD_ETCD", etcd.endpoints_arg())
        .env("CFGD_TESTBED", if testbed { "1" } else { "0" });
    run_node(node, "tests/flagd/providers.mjs");
}

/// OpenFeature's Python flagd provider, which buckets `fractional` with
/// flagd's v3 hashing, against cfgd with its namespaces on v3
/// (tests/python/providers.py, in the virtualenv install-deps makes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_python_flagd_provider_agrees_with_cfgd_on_v3() {
    common::logs();
    let root = &crate::common::root();
    let python = crate::common::python();
    let etcd = EtcdCluster::single();
    let testbed = seed(&etcd).await;
    let (server, grpc) = start(&etcd);
    let out = Command::new(python)
        .arg(root.join("tests/python/providers.py"))
        .env("CFGD_GRPC", &grpc)
        .env("CFGD_URL", format!("http://{}", server.address))
        .env("CFGD_TOKEN", "ops-secret")
        .env("CFGD_CFGCTL", cfgctl())
        .env("CFGD_ETCD", etcd.endpoints_arg())
        .env("CFGD_TESTBED", if testbed { "1" } else { "0" })
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "tests/python/providers.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn flagd_json_is_an_http_sync_source_with_etags() {
    common::logs();
    let etcd = EtcdCluster::single();
    seed(&etcd).await;
    let (server, _) = start(&etcd);
    let auth = ("Authorization", "Bearer ops-secret");
    let path = "/v1/namespaces/prod/flagd.json";
    let first = http(&server, "GET", path, &[auth], "");
    assert_eq!(first.status, 200, "{}", first.body);
    let document: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(document["flags"]["checkout"]["defaultVariant"], "on");
    assert!(
        document["flags"].get("secret").is_none(),
        "another namespace's flag"
    );
    let etag = first.header("etag").expect("an ETag").to_owned();
    let again = http(&server, "GET", path, &[auth, ("If-None-Match", &etag)], "");
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    assert_eq!(http(&server, "GET", path, &[], "").status, 401);

    let flag =
        r#"{"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}"#;
    let put = http(
        &server,
        "PUT",
        "/v1/namespaces/prod/flags/checkout",
        &[auth],
        flag,
    );
    assert_eq!(put.status, 200, "{}", put.body);
    let changed = http(&server, "GET", path, &[auth, ("If-None-Match", &etag)], "");
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    assert!(
        changed.body.contains(r#""state":"DISABLED""#),
        "{}",
        changed.body
    );
}

mod wire {
    pub use cfgd_server::grpc::proto::sync::flag_sync_service_client::FlagSyncServiceClient;
    pub use cfgd_server::grpc::proto::sync::{FetchAllFlagsRequest, SyncFlagsRequest};
    pub use cfgd_server::grpc::proto::v1::service_client::ServiceClient;
    pub use cfgd_server::grpc::proto::v1::{ResolveBooleanRequest, ResolveStringRequest};
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// The status code of a failed call.
fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> tonic::Code {
    result.unwrap_err().code()
}

fn fetch(selector: &str) -> wire::FetchAllFlagsRequest {
    wire::FetchAllFlagsRequest {
        provider_id: "rust-test".into(),
        selector: selector.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_tokens_selectors_errors_and_an_etcd_outage() {
    use tokio_stream::StreamExt;
    use tonic::Code;
    common::logs();
    let mut etcd = EtcdCluster::single();
    seed(&etcd).await;
    let (server, grpc) = start(&etcd);
    let url = format!("http://{grpc}");
    let mut sync = wire::FlagSyncServiceClient::connect(url.clone())
        .await
        .unwrap();
    let mut eval = wire::ServiceClient::connect(url).await.unwrap();

    // Open namespaces need no token; others need one that may read them.
    let prod = sync
        .fetch_all_flags(with_token(fetch("flagSetId=prod"), None))
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&prod.get_ref().flag_configuration).unwrap();
    assert!(doc["flags"].get("checkout").is_some() && doc["flags"].get("secret").is_none());
    assert_eq!(
        code(
            sync.fetch_all_flags(with_token(fetch("closed"), None))
                .await
        ),
        Code::Unauthenticated
    );
    assert_eq!(
        code(
            sync.fetch_all_flags(with_token(fetch("closed"), Some("nope")))
                .await
        ),
        Code::Unauthenticated
    );
    assert_eq!(
        code(
            sync.fetch_all_flags(with_token(fetch("closed"), Some("reader-secret")))
                .await
        ),
        Code::PermissionDenied
    );
    let closed = sync
        .fetch_all_flags(with_token(fetch("flagSetId=closed"), Some("ops-secret")))
        .await
        .unwrap();
    assert!(closed.get_ref().flag_configuration.contains("secret"));
    assert_eq!(
        code(sync.fetch_all_flags(with_token(fetch("app=x"), None)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            sync.fetch_all_flags(with_token(fetch("Not A Namespace"), None))
                .await
        ),
        Code::InvalidArgument
    );

    // Standard gRPC health.
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in [
        "",
        "flagd.sync.v1.FlagSyncService",
        "flagd.evaluation.v2.Service",
    ] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    // Evaluation v1, in the default namespace, with flagd's status codes.
    let boolean = |key: &str| wire::ResolveBooleanRequest {
        flag_key: key.into(),
        context: None,
    };
    let on = eval
        .resolve_boolean(boolean("checkout"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (on.value, on.reason.as_str(), on.variant.as_str()),
        (true, "STATIC", "on")
    );
    assert_eq!(
        code(eval.resolve_boolean(boolean("missing")).await),
        Code::NotFound
    );
    let mismatch = eval
        .resolve_string(wire::ResolveStringRequest {
            flag_key: "checkout".into(),
            context: None,
        })
        .await;
    assert_eq!(code(mismatch), Code::InvalidArgument);

    // An etcd outage: the sync stream keeps its last document and stays
    // open, evaluations go on from memory; after it, changes flow again.
    let mut stream = sync
        .sync_flags(wire::SyncFlagsRequest {
            provider_id: "rust-test".into(),
            selector: "prod".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.flag_configuration.contains("checkout"));
    let metrics = http(&server, "GET", "/metrics", &[], "").body;
    for series in [
        r#"cfgd_grpc_requests_total{method="FetchAllFlags",code="Unauthenticated"} 2"#,
        r#"cfgd_grpc_requests_total{method="FetchAllFlags",code="PermissionDenied"} 1"#,
        r#"cfgd_grpc_requests_total{method="ResolveBoolean",code="NotFound"} 1"#,
        r#"cfgd_grpc_streams{kind="sync"} 1"#,
        r#"cfgd_grpc_sync_documents_total{provider="rust-test"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
    etcd.kill(0);
    let during = eval
        .resolve_boolean(boolean("checkout"))
        .await
        .unwrap()
        .into_inner();
    assert!(during.value);
    let cached = sync
        .fetch_all_flags(with_token(fetch("prod"), None))
        .await
        .unwrap();
    assert_eq!(
        cached.get_ref().flag_configuration,
        first.flag_configuration
    );
    let quiet = tokio::time::timeout(std::time::Duration::from_secs(2), stream.next()).await;
    assert!(
        quiet.is_err(),
        "the stream ended or sent during the outage: {quiet:?}"
    );
    etcd.restart(0);
    etcd.wait_healthy();
    let writer = cfgd::Client::builder()
        .endpoints(etcd.endpoints())
        .namespace("prod")
        .live(false)
        .connect()
        .await
        .unwrap();
    writer
        .set_flag(
            "late",
            &json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}),
        )
        .await
        .unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
        .await
        .expect("a document after the outage")
        .unwrap()
        .unwrap();
    assert!(
        next.flag_configuration.contains("late"),
        "{}",
        next.flag_configuration
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ofrep_web_provider_refetches_on_a_change_event() {
    common::logs();
    let root = &crate::common::root();
    assert!(
        root.join("tests/ui/node_modules/@openfeature/ofrep-web-provider")
            .is_dir(),
        "tests/ui/node_modules is missing: run scripts/install-deps.sh --test (npm ci there)"
    );
    let etcd = EtcdCluster::single();
    seed(&etcd).await;
    let (server, _) = start(&etcd);
    let mut node = Command::new("node");
    node.env("CFGD_URL", format!("http://{}", server.address))
        .env("CFGD_TOKEN", "reader-secret")
        .env("CFGD_WRITE_TOKEN", "ops-secret");
    run_node(node, "tests/ui/ofrep.mjs");
}

#[tokio::test]
async fn the_grpc_listener_serves_tls_with_the_https_certificate() {
    common::logs();
    let pki = common::pki::Pki::new();
    let etcd = EtcdCluster::single();
    seed(&etcd).await;
    let (cert, key) = (pki.server_cert(), pki.server_key());
    let args = [
        std::ffi::OsStr::new("--tls-cert"),
        cert.as_os_str(),
        std::ffi::OsStr::new("--tls-key"),
        key.as_os_str(),
    ];
    let (_server, grpc) = start_with(&etcd, &args);
    let ca = std::fs::read(pki.ca()).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    let channel = tonic::transport::Channel::from_shared(format!("https://{grpc}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection");
    let mut sync = wire::FlagSyncServiceClient::new(channel);
    let answer = sync
        .fetch_all_flags(with_token(fetch("prod"), None))
        .await
        .unwrap();
    assert!(answer.get_ref().flag_configuration.contains("checkout"));
    // Plain text is refused.
    let mut plain = wire::FlagSyncServiceClient::connect(format!("http://{grpc}")).await;
    if let Ok(client) = plain.as_mut() {
        assert!(client
            .fetch_all_flags(with_token(fetch("prod"), None))
            .await
            .is_err());
    }
}

/// A flag defined in a namespace that `prod` extends: flagd's sync and
/// evaluation see it in `prod`, and a change to it reaches a sync stream
/// of `prod`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sync_and_evaluation_read_inherited_flags() {
    use tokio_stream::StreamExt;
    common::logs();
    let etcd = EtcdCluster::single();
    seed(&etcd).await;
    let connect = |ns: &'static str| {
        cfgd::Client::builder()
            .endpoints(etcd.endpoints())
            .namespace(ns)
            .live(false)
            .connect()
    };
    let global = connect("global").await.unwrap();
    let flag = |on: bool| {
        json!({"state": "ENABLED", "variants": {"on": true, "off": false},
               "defaultVariant": if on { "on" } else { "off" }})
    };
    global.set_flag("inherited", &flag(true)).await.unwrap();
    // prod's own `checkout` stays prod's, whatever global says.
    global.set_flag("checkout", &flag(false)).await.unwrap();
    let prod = connect("prod").await.unwrap();
    prod.set_meta(&cfgd::meta::Meta::default().with_extends(["global"]))
        .await
        .unwrap();
    let (_server, grpc) = start(&etcd);
    let url = format!("http://{grpc}");
    let mut sync = wire::FlagSyncServiceClient::connect(url.clone())
        .await
        .unwrap();
    let mut eval = wire::ServiceClient::connect(url).await.unwrap();
    let all = sync
        .fetch_all_flags(with_token(fetch("flagSetId=prod"), None))
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&all.get_ref().flag_configuration).unwrap();
    assert_eq!(doc["flags"]["inherited"]["defaultVariant"], "on", "{doc}");
    assert_eq!(doc["flags"]["checkout"]["defaultVariant"], "on", "{doc}");
    let resolved = eval
        .resolve_boolean(wire::ResolveBooleanRequest {
            flag_key: "inherited".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resolved.value);

    let mut stream = sync
        .sync_flags(wire::SyncFlagsRequest {
            provider_id: "rust-test".into(),
            selector: "prod".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.flag_configuration.contains("inherited"));
    common::etcdctl(
        &etcd.endpoints_arg(),
        &[
            "put",
            "/cfgd/global/flags/inherited",
            &flag(false).to_string(),
        ],
    );
    let next = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("the change arrives")
        .unwrap()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&next.flag_configuration).unwrap();
    assert_eq!(doc["flags"]["inherited"]["defaultVariant"], "off", "{doc}");

    // An overlay's flag, for providers whose selector carries its labels.
    prod.set_overlay_json("canary", r#"{"selector": {"canary": "true"}}"#)
        .await
        .unwrap();
    prod.set_flag_in_overlay("canary", "inherited", &flag(true))
        .await
        .unwrap();
    let labelled = sync
        .fetch_all_flags(with_token(fetch("flagSetId=prod,canary=true"), None))
        .await
        .unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&labelled.get_ref().flag_configuration).unwrap();
    assert_eq!(doc["flags"]["inherited"]["defaultVariant"], "on", "{doc}");
    let mut canary = sync
        .sync_flags(wire::SyncFlagsRequest {
            provider_id: "rust-test".into(),
            selector: "flagSetId=prod,canary=true".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = canary.next().await.unwrap().unwrap();
    assert!(first
        .flag_configuration
        .contains("\"defaultVariant\":\"on\""));
    let plain = sync
        .fetch_all_flags(with_token(fetch("flagSetId=prod"), None))
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&plain.get_ref().flag_configuration).unwrap();
    assert_eq!(doc["flags"]["inherited"]["defaultVariant"], "off", "{doc}");
    let bad = sync
        .fetch_all_flags(with_token(fetch("flagSetId=prod,canary"), None))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
}
