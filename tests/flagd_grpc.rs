//! OpenFeature's stock flagd provider for Node, unchanged, against cfgd's
//! gRPC listener (tests/flagd/providers.mjs), and flagd's HTTP sync source
//! (`flagd.json`), against a real cfgd and etcd.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::{self, EtcdCluster, KillOnDrop};
use crate::server::{http, Server};

const SETTINGS: &str = r#"
[[tokens]]
name = "ops"
secret = "ops-secret"
scopes = { "*" = "write" }

[grpc]
namespaces = ["testbed", "prod"]
default_namespace = "prod"
"#;

/// cfgd with its gRPC listener on a free port: (HTTP server, gRPC address).
fn start(etcd: &EtcdCluster) -> (Server, String) {
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
    let testbed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
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
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("tests/flagd/node_modules/@openfeature/flagd-provider")
            .is_dir(),
        "tests/flagd/node_modules is missing: run scripts/install-deps.sh --test (npm ci there)"
    );
    let etcd = EtcdCluster::single();
    let testbed = seed(&etcd).await;
    let (server, grpc) = start(&etcd);
    let out = Command::new("node")
        .arg(root.join("tests/flagd/providers.mjs"))
        .env("CFGD_GRPC", &grpc)
        .env("CFGD_URL", format!("http://{}", server.address))
        .env("CFGD_TOKEN", "ops-secret")
        .env("CFGD_CFGCTL", cfgctl())
        .env("CFGD_ETCD", etcd.endpoints_arg())
        .env("CFGD_TESTBED", if testbed { "1" } else { "0" })
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "flagd provider tests failed:\n{stdout}\n{}",
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
