//! The web console in a real browser: tests/ui/console.mjs drives Debian's
//! chromium through playwright-core against a real cfgd and a real etcd.
//! Screenshots land in target/ui-screenshots/.

use std::process::Command;

use serde_json::json;

use crate::common::{self, EtcdCluster};
use crate::harness::start_with_settings;

/// The secret the console must hide until a secrets-scope token asks.
const SECRET: &str = "hunter2-console-secret";

async fn seed(etcd: &EtcdCluster, key: &std::path::Path) {
    let keys = cfgd::Client::builder()
        .endpoints(etcd.endpoints())
        .namespace("keys")
        .secret_key_file(key)
        .live(false)
        .connect()
        .await
        .unwrap();
    keys.set_policy_json(r#"{"secrets": ["db/*"]}"#)
        .await
        .unwrap();
    keys.set("db/password", SECRET).await.unwrap();
    keys.set("db/host", "db.internal").await.unwrap();
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

/// Runs tests/ui/console.mjs with `env`; fails with its output.
fn run_browser_tests(env: &[(&str, String)]) {
    let root = &crate::common::root();
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
        .arg(root.join("tests/ui/console.mjs"))
        .envs(env.iter().map(|(k, v)| (k, v)))
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

#[test]
fn the_console_shows_the_demo_data_of_cfgd_dev() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfgd"))
        .args(["dev", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start cfgd dev");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    // Owned at once, so a failure below still ends it (its etcd dies with it).
    let mut child = common::KillOnDrop(child);
    let mut console = None;
    let mut line = String::new();
    while console.is_none() && out.read_line(&mut line).unwrap_or(0) > 0 {
        console = line
            .trim()
            .strip_prefix("cfgd dev: console ")
            .map(|u| u.trim_end_matches("/ui/").to_owned());
        line.clear();
    }
    let url = console.expect("cfgd dev prints the console's URL");
    run_browser_tests(&[
        ("CFGD_DEV", "1".into()),
        ("CFGD_URL", url),
        ("CFGD_ETCD", String::new()),
    ]);
    // Ctrl-C, our own child by its pid: cfgd dev stops its etcd and
    // removes its data.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGINT) };
    assert!(child.0.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    common::logs();
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let key = crate::common::secrets::key_file(dir.path(), "secret.key");
    seed(&etcd, &key).await;
    // Webhooks to the test's own receiver, on loopback.
    let settings = format!(
        "secret_key_file = {:?}\n[webhooks]\nallow_loopback = true\n",
        key.to_str().unwrap()
    );
    let server = start_with_settings(&etcd, &settings, &[]);
    // Serves only: the workers (the webhook the browser adds) run on
    // `server`, which has the secrets key and may deliver on loopback.
    let open_server = start_with_settings(&etcd, "[workers]\ndisabled = true\n", &["--no-auth"]);
    run_browser_tests(&[
        ("CFGD_SECRET", SECRET.into()),
        ("CFGD_URL", format!("http://{}", server.address)),
        ("CFGD_NOAUTH_URL", format!("http://{}", open_server.address)),
        ("CFGD_ETCD", etcd.endpoints_arg()),
    ]);
}
