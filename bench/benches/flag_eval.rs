//! Flag evaluation, cfgd against `flagd-evaluation-engine` 0.1 (the Rust
//! engine `open-feature-flagd` uses) and `@openfeature/flagd-core` on Node
//! (the reference evaluator, from `tests/differential`'s npm install), side
//! by side in one run, single-threaded.
//!
//! Run: `cargo bench --bench flag_eval`. Each engine evaluates the same
//! flag for the same contexts; the figure is the median of several rounds,
//! and the ratio is what to read on a shared, noisy machine.
//!
//! `CFGD_BENCH_PROFILE=N` runs only cfgd, N evaluations per case, for a
//! profiler: `CFGD_BENCH_PROFILE=200000 valgrind --tool=callgrind <binary>`
//! (the path `cargo bench --bench flag_eval --no-run` prints), or
//! `perf record -e cpu-clock -g` in front of the same.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cfgd::flags::{Bucketing, FlagSet};
use flagd_evaluation_engine::Operator;
use open_feature::EvaluationContext;
use serde_json::{json, Value};

const ROUNDS: usize = 9;
const PER_ROUND: usize = 20_000;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn time<F: FnMut(usize)>(mut f: F) -> Duration {
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..PER_ROUND {
            f(i);
        }
        rounds.push(start.elapsed() / PER_ROUND as u32);
    }
    median(rounds)
}

/// `@openfeature/flagd-core` on Node over the same flag and contexts: the
/// median ns per evaluation and the variant for each context.
fn flagd_core(
    document: &Value,
    contexts: &[(Value, EvaluationContext)],
) -> Result<(f64, Vec<Option<String>>), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/differential");
    if !dir.join("node_modules/@openfeature/flagd-core").exists() {
        return Err("tests/differential has no npm install (make test or npm ci there)".into());
    }
    let mut child = Command::new("node")
        .arg("throughput.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("node: {e}"))?;
    let input = json!({"document": document.to_string(), "rounds": ROUNDS, "perRound": PER_ROUND,
        "contexts": contexts.iter().map(|(json, _)| json).collect::<Vec<_>>()});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("node exited with {}", out.status));
    }
    let answer: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let variants = answer["variants"]
        .as_array()
        .ok_or("no variants")?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect();
    Ok((answer["ns"].as_f64().ok_or("no ns")?, variants))
}

/// A document of one boolean flag, `f`, with this targeting.
fn flag_document(targeting: &Value) -> Value {
    json!({"flags": {"f": {"state": "ENABLED",
        "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": targeting}}})
}

fn main() {
    let cases: Vec<(&str, Value)> = vec![
        (
            "if + ends_with + in",
            json!({"if": [{"and": [{"ends_with": [{"var": "email"}, "@example.com"]},
                                   {"in": [{"var": "country"}, ["de", "fr", "it"]]}]}, "on", "off"]}),
        ),
        (
            "fractional 25/75",
            json!({"fractional": [["on", 25], ["off", 75]]}),
        ),
        (
            "in + fractional 50/50",
            json!({"if": [{"in": [{"var": "country"}, ["de", "fr", "us"]]},
                          {"fractional": [["on", 50], ["off", 50]]}, "off"]}),
        ),
        (
            "sem_ver >=",
            json!({"if": [{"sem_ver": [{"var": "version"}, ">=", "2.1.0"]}, "on", "off"]}),
        ),
    ];
    let contexts: Vec<(Value, EvaluationContext)> = (0..64)
        .map(|i| {
            let email = if i % 3 == 0 { format!("u{i}@example.com") } else { format!("u{i}@corp.io") };
            let country = ["de", "us", "fr", "jp"][i % 4];
            let version = format!("{}.{}.0", 1 + i % 3, i % 5);
            let key = format!("user-{i}");
            let json = json!({"targetingKey": key, "email": email, "country": country, "version": version});
            let of = EvaluationContext::default()
                .with_targeting_key(key)
                .with_custom_field("email", email)
                .with_custom_field("country", country)
                .with_custom_field("version", version);
            (json, of)
        })
        .collect();

    if let Ok(n) = std::env::var("CFGD_BENCH_PROFILE") {
        let n: usize = n
            .parse()
            .expect("CFGD_BENCH_PROFILE: a number of evaluations");
        for (name, targeting) in &cases {
            let ours = FlagSet::from_document(&flag_document(targeting).to_string()).unwrap();
            let start = Instant::now();
            for i in 0..n {
                let (json, _) = &contexts[i % contexts.len()];
                black_box(ours.evaluate("f", false, black_box(json)));
            }
            println!("{name}: {:?} per evaluation", start.elapsed() / n as u32);
        }
        return;
    }

    println!("flag evaluation, median of {ROUNDS} rounds x {PER_ROUND} evaluations");
    println!(
        "{:<22} {:>12} {:>12} {:>18} {:>8} {:>14} {:>8}",
        "targeting", "cfgd", "cfgd eval/s", "flagd-eval-engine", "ratio", "flagd-core", "ratio"
    );
    let theirs_engine = Operator::new();
    let mut rows = Vec::new();
    // The fractional rules again, with v3 bucketing below; and one that
    // buckets by an attribute, which v3 hashes as CBOR text.
    let mut fractional: Vec<(&str, Value)> = cases
        .iter()
        .filter(|(name, _)| name.contains("fractional"))
        .cloned()
        .collect();
    fractional.push((
        "fractional by email",
        json!({"fractional": [{"var": "email"}, ["on", 50], ["off", 50]]}),
    ));
    for (name, targeting) in cases {
        let document = flag_document(&targeting);
        let ours = FlagSet::from_document(&document.to_string()).unwrap();
        let rule = targeting.to_string();
        // Same answers first: a benchmark of different work means nothing.
        // (Except fractional: flagd-evaluation-engine 0.1 still buckets with
        // flagd's legacy "v1" float algorithm, cfgd with the current "v2",
        // so some users land in other buckets; the work is the same.)
        for (json, of) in contexts.iter().filter(|_| !name.contains("fractional")) {
            let a = ours.evaluate("f", false, json).variant.unwrap_or_default();
            let b = theirs_engine
                .apply("f", &rule, of)
                .unwrap()
                .unwrap_or_default();
            assert_eq!(a, b, "{name}: engines disagree for {json}");
        }
        let t_ours = time(|i| {
            let (json, _) = &contexts[i % contexts.len()];
            black_box(ours.evaluate("f", false, black_box(json)));
        });
        let t_theirs = time(|i| {
            let (_, of) = &contexts[i % contexts.len()];
            black_box(
                theirs_engine
                    .apply("f", black_box(&rule), black_box(of))
                    .unwrap(),
            );
        });
        let ours_ns = t_ours.as_nanos().max(1) as f64;
        let mut row = json!({"targeting": name, "cfgd_ns": ours_ns,
            "flagd_evaluation_engine_ns": t_theirs.as_nanos() as f64});
        let node = match flagd_core(&document, &contexts) {
            Ok((ns, variants)) => {
                row["flagd_core_ns"] = ns.into();
                // flagd-core buckets fractional as cfgd does (v2): every
                // answer must agree, fractional included.
                for ((json, _), theirs) in contexts.iter().zip(&variants) {
                    let ours = ours.evaluate("f", false, json).variant;
                    assert_eq!(
                        ours.as_deref(),
                        theirs.as_deref(),
                        "{name}: flagd-core disagrees for {json}"
                    );
                }
                format!("{ns:>11.0} ns {:>7.1}x", ns / ours_ns)
            }
            Err(reason) => {
                row["flagd_core_not_run"] = reason.clone().into();
                format!("not run: {reason}")
            }
        };
        rows.push(row);
        println!(
            "{:<22} {:>9.0} ns {:>12.0} {:>15.0} ns {:>7.1}x {node}",
            name,
            ours_ns,
            1e9 / ours_ns,
            t_theirs.as_nanos() as f64,
            t_theirs.as_nanos() as f64 / ours_ns
        );
    }
    println!();
    println!(
        "fractional bucketing: v3 (canonical CBOR, flagd's ADR) against v2, same rule and contexts"
    );
    println!(
        "{:<22} {:>12} {:>12} {:>8}",
        "targeting", "v2", "v3", "v3/v2"
    );
    for (name, targeting) in fractional {
        let document = flag_document(&targeting).to_string();
        let v2 = FlagSet::from_document_with(&document, Bucketing::V2).unwrap();
        let v3 = FlagSet::from_document_with(&document, Bucketing::V3).unwrap();
        let run = |set: &FlagSet| {
            time(|i| {
                let (json, _) = &contexts[i % contexts.len()];
                black_box(set.evaluate("f", false, black_box(json)));
            })
            .as_nanos()
            .max(1) as f64
        };
        let (t2, t3) = (run(&v2), run(&v3));
        println!(
            "{:<22} {:>9.0} ns {:>9.0} ns {:>7.2}x",
            name,
            t2,
            t3,
            t3 / t2
        );
        rows.push(json!({"targeting": name, "bucketing": "v3 vs v2", "v2_ns": t2, "v3_ns": t3}));
    }
    // For `make bench`'s report (bench/benches/report.rs).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    std::fs::write(dir.join("flag_eval.json"), Value::Array(rows).to_string()).expect("write");
}
