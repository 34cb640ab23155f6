//! schemathesis (PyPI, pinned in tests/python/requirements.txt) against a
//! live cfgd on real etcd: every operation of `/openapi.json`, requests
//! generated from its schemas, valid and not, and its links followed
//! statefully (a value written, then read, diffed, deleted), every check on.
//! It must find no 5xx and no answer that the document does not describe.
//! Its settings, and why each is there, are in `schemathesis.toml` beside
//! this file; what it found is kept as tests in `openapi_found.rs`.
//!
//! `CFGD_SCHEMATHESIS_EXAMPLES` (10) and `CFGD_SCHEMATHESIS_SEED` (1) make
//! a longer or a different run; the seed is printed, so a failure replays.

use std::process::Command;

use crate::common::{self, secrets::key_file, EtcdCluster};
use crate::harness::{http, start_with_key, OPS};

#[test]
fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let python = common::python();
    let schemathesis = python.with_file_name("schemathesis");
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    // With a key, as a deployment that keeps secrets runs: a generated
    // policy makes names secret, and writing them then needs one.
    let key = key_file(dir.path(), "secret.key");
    let server = start_with_key(&etcd, &key);
    // A flag for OFREP's example key to find in the namespace it is sent.
    let flag = http(
        &server,
        "PUT",
        "/v1/namespaces/st/flags/new-checkout",
        &[OPS],
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on", "off"]}}"#,
    );
    assert_eq!(flag.status, 200, "{}", flag.body);
    let examples = std::env::var("CFGD_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "10".into());
    let seed = std::env::var("CFGD_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let report = dir.path().join("report.json");
    let config = common::root().join("crates/cfgd-server/tests/schemathesis.toml");
    let out = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("http://{}/openapi.json", server.address))
        .args(["-H", "Authorization: Bearer admin-secret"])
        // OFREP's namespace, which an admin of every namespace must name.
        .args(["-H", "X-Cfgd-Namespace: st"])
        .args(["--checks", "all", "--workers", "2", "--no-color"])
        .args(["--max-examples", &examples, "--seed", &seed])
        .args(["--generation-database", "none", "--report", "json"])
        .arg("--report-json-path")
        .arg(&report)
        // Its working files stay in the temporary directory.
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", schemathesis.display()));
    let said = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = match std::fs::read(&report) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Err(e) => panic!(
            "schemathesis wrote no report ({e}): {said}{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    let operations = &report["operations"]["tested"];
    let cases = &report["test_cases"]["generated"];
    let failures: u64 = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["count"].as_u64().unwrap())
        .sum();
    let errors = report["errors"].as_array().unwrap().len();
    // Straight to stderr, past the test harness's capture (which only
    // print! and eprint! go through): `make test` shows it on success too.
    let summary = format!(
        "schemathesis {}: {operations} operations, {cases} cases, {failures} failures, \
         {errors} errors (seed {seed}, {examples} examples per operation)\n",
        report["schemathesis_version"].as_str().unwrap_or("?"),
    );
    std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes()).unwrap();
    assert!(
        out.status.success() && failures == 0 && errors == 0,
        "schemathesis found {failures} failures and {errors} errors (seed {seed}):\n{said}"
    );
    // Every operation but `GET /openapi.json`, which schemathesis reads and
    // leaves out of its run.
    let described = cfgd_server::openapi::routes().len() as u64;
    assert_eq!(
        operations.as_u64(),
        Some(described - 1),
        "every described operation is tested"
    );
}
