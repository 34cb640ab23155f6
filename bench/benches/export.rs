//! `cfgctl export` of a whole namespace against `etcdctl get --prefix` of
//! the same keys, at 50,000 and 100,000 names of ~200-byte values, side by
//! side on one etcd: each tool run 5 times per size, alternating which goes
//! first, and the medians compared. The cfgctl measured is the release
//! build `make bench` makes (`CFGCTL` overrides it).

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Txn, TxnOp};
use serde_json::json;

const ROUNDS: usize = 5;
const SIZES: [usize; 2] = [50_000, 100_000];

/// Runs `command` to its end, its output thrown away (as a pipe would
/// read it); how long it took.
fn timed(command: &mut Command) -> Duration {
    let started = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("run the tool");
    assert!(status.success(), "{command:?} failed");
    started.elapsed()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let cfgctl = std::env::var("CFGCTL").unwrap_or_else(|_| {
        let path = common::root().join("target/release/cfgctl");
        assert!(
            path.exists(),
            "{} is missing: cargo build --release -p cfgctl (make bench does)",
            path.display()
        );
        path.to_string_lossy().into_owned()
    });
    let etcd = common::EtcdCluster::single();
    let endpoints = etcd.endpoints_arg();
    let rt = support::runtime();
    let value = json!({"url": "postgres://db.internal:5432/app", "pool": 20,
        "timeouts": {"connect_ms": 500, "query_ms": 2000}, "replicas": ["a", "b", "c"],
        "owner": "team-payments", "note": "a value of about two hundred bytes, as configs are"})
    .to_string();
    let mut rows = Vec::new();
    for names in SIZES {
        let namespace = format!("export-{names}");
        rt.block_on(async {
            let mut client = etcd_client::Client::connect([etcd.endpoint(0)], None)
                .await
                .expect("connect etcd");
            // 100 puts a transaction: etcd's --max-txn-ops is 128.
            for chunk in (0..names).collect::<Vec<_>>().chunks(100) {
                let ops: Vec<TxnOp> = chunk
                    .iter()
                    .map(|i| {
                        TxnOp::put(
                            format!("/cfgd/{namespace}/config/svc/{i:06}"),
                            value.clone(),
                            None,
                        )
                    })
                    .collect();
                client.txn(Txn::new().and_then(ops)).await.expect("fill");
            }
        });
        let prefix = format!("/cfgd/{namespace}/config/");
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let run_cfgctl = || {
                timed(Command::new(&cfgctl).args([
                    "--endpoints",
                    &endpoints,
                    "-n",
                    &namespace,
                    "export",
                ]))
            };
            let run_etcdctl = || {
                timed(
                    Command::new(common::etcdctl_binary())
                        .env("ETCDCTL_API", "3")
                        .args(["--endpoints", &endpoints, "get", "--prefix", &prefix]),
                )
            };
            if round % 2 == 0 {
                ours.push(run_cfgctl());
                theirs.push(run_etcdctl());
            } else {
                theirs.push(run_etcdctl());
                ours.push(run_cfgctl());
            }
        }
        let (ours, theirs) = (median(ours), median(theirs));
        let ratio = ours.as_secs_f64() / theirs.as_secs_f64();
        println!(
            "export of {names} names: cfgctl {:.3} s, etcdctl get --prefix {:.3} s: {ratio:.2}x",
            ours.as_secs_f64(),
            theirs.as_secs_f64()
        );
        rows.push(json!({"names": names, "cfgctl_s": ours.as_secs_f64(),
            "etcdctl_s": theirs.as_secs_f64(), "ratio": ratio}));
    }
    support::write_results("export", &json!({"rounds": ROUNDS, "sizes": rows}));
}
