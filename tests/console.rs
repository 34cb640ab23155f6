//! The web console in a real browser: tests/ui/console.mjs drives Debian's
//! chromium through playwright-core against a real cfgd and a real etcd.
//! Screenshots land in target/ui-screenshots/.

use std::process::Command;

use serde_json::json;

use crate::common::{self, EtcdCluster};
use crate::server::start_with;

async fn seed(etcd: &EtcdCluster) {
    let connect = |ns: &'static str| {
        cfgd::Client::builder()
            .endpoints(etcd.endpoints())
            .namespace(ns)
            .actor("seed")
            .live(false)
            .connect()
    };
    let prod = connect("prod").await.unwrap();
    let schema = json!({"type": "object", "required": ["url", "pool_size"], "properties": {
        "url": {"type": "string"}, "pool_size": {"type": "integer", "minimum": 1}}});
    prod.set_schema("database.*", &schema, false).await.unwrap();
    prod.set(
        "database.config",
        &json!({"url": "postgres://db/app", "pool_size": 20}),
    )
    .await
    .unwrap();
    prod.set("feature.limits", &json!({"max_items": 5}))
        .await
        .unwrap();
    prod.set("payments/limits", &json!({"max": 100}))
        .await
        .unwrap();
    prod.set_flag(
        "new-checkout",
        &json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
    )
    .await
    .unwrap();
    prod.set_flag(
        "banner-text",
        &json!({"state": "ENABLED", "variants": {"plain": "Welcome", "sale": "Sale today"}, "defaultVariant": "plain"}),
    )
    .await
    .unwrap();
    let (_, release) = prod
        .with_message("first release")
        .apply(
            r#"{"feature.limits": {"max_items": 6}, "search.timeout_ms": 250}"#,
            None,
            false,
        )
        .await
        .unwrap();
    assert!(release.is_some());
    let staging = connect("staging").await.unwrap();
    staging
        .set(
            "database.config",
            &json!({"url": "postgres://staging/app", "pool_size": 5}),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    common::logs();
    let etcd = EtcdCluster::single();
    seed(&etcd).await;
    let server = start_with(&etcd, &[]);
    let open_server = start_with(&etcd, &["--no-auth"]);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/ui/console.mjs");
    assert!(
        root.join("tests/ui/node_modules/playwright-core").is_dir(),
        "tests/ui/node_modules is missing: run scripts/install-deps.sh --test (npm ci there)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/install-deps.sh --test (Debian's chromium)"
    );
    let out = Command::new("node")
        .arg(&script)
        .env("CFGD_URL", format!("http://{}", server.address))
        .env("CFGD_NOAUTH_URL", format!("http://{}", open_server.address))
        .env("CFGD_ETCD", etcd.endpoints_arg())
        .env("CFGD_ETCDCTL", common::etcdctl_binary())
        .env("CFGD_SHOTS", root.join("target/ui-screenshots"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node (scripts/install-deps.sh --test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "console tests failed:\n{stdout}\n{stderr}"
    );
}
