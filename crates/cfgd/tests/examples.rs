//! The examples run against a real etcd and say what their docs promise.

use std::path::PathBuf;
use std::process::Command;

use crate::common::EtcdCluster;

/// `cargo test` builds the examples next to the test binaries' `deps/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} not built; run `cargo test`",
        path.display()
    );
    path
}

/// Runs an example to its end against `etcd`, which it must leave with
/// success; its standard output.
fn run_example(name: &str, etcd: &EtcdCluster, env: &[(&str, &str)]) -> String {
    let out = Command::new(example(name))
        .env("CFGD_ENDPOINTS", etcd.endpoints_arg())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    crate::common::stdout_of(format!("example {name}"), out)
}

#[test]
fn quickstart_falls_back_then_reads_the_stored_value() {
    let etcd = EtcdCluster::single();
    // Twice: the example must be repeatable against the same etcd.
    for _ in 0..2 {
        let stdout = run_example("quickstart", &etcd, &[]);
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(
            lines[0].contains("default") && lines[0].contains("localhost"),
            "{stdout}"
        );
        assert!(
            lines[1].starts_with("set database.config at revision"),
            "{stdout}"
        );
        assert!(
            lines[2].contains("stored value") && lines[2].contains("db.internal"),
            "{stdout}"
        );
    }
}

#[tokio::test]
async fn live_flags_prints_each_change() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let etcd = EtcdCluster::single();
    let ns = crate::common::namespace("flags");
    let mut child = crate::common::KillOnDrop(
        Command::new(example("live_flags"))
            .env("CFGD_ENDPOINTS", etcd.endpoints_arg())
            .env("CFGD_NAMESPACE", &ns)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || {
        lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a line from live_flags")
    };

    let first = next();
    assert!(
        first.contains("dark_mode: false") && first.contains("Default"),
        "{first}"
    );
    let client = cfgd::Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(&ns)
        .live(false)
        .connect()
        .await
        .unwrap();
    for dark in [true, false, true] {
        let revision = client
            .set("feature.flags", &serde_json::json!({"dark_mode": dark}))
            .await
            .unwrap();
        let line = next();
        assert!(
            line.contains(&format!("revision {revision}"))
                && line.contains(&format!("dark_mode: {dark}")),
            "{line}"
        );
    }
}

#[test]
fn openfeature_evaluates_through_the_standard_api_and_sees_the_change() {
    let etcd = EtcdCluster::single();
    let ns = crate::common::namespace("of");
    let stdout = run_example("openfeature", &etcd, &[("CFGD_NAMESPACE", &ns)]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    for line in &lines[..4] {
        assert!(line.contains("TargetingMatch"), "{stdout}");
    }
    assert_eq!(
        lines[4], r#"configuration changed: ["new-checkout"]"#,
        "{stdout}"
    );
    assert_eq!(
        lines[5], "new-checkout for alice after the change: false",
        "{stdout}"
    );
}
