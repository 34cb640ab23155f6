//! Flag evaluation, cfgd against `flagd-evaluation-engine` 0.1 (the Rust
//! engine `open-feature-flagd` uses), side by side in one run.
//!
//! Run: `cargo bench --bench flag_eval`. Each engine evaluates the same
//! flag for the same contexts; the figure is the median of several rounds,
//! and the ratio is what to read on a shared, noisy machine.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cfgd::flags::FlagSet;
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

    println!("flag evaluation, median of {ROUNDS} rounds x {PER_ROUND} evaluations");
    println!(
        "{:<22} {:>12} {:>18} {:>8}",
        "targeting", "cfgd", "flagd-eval-engine", "ratio"
    );
    let theirs_engine = Operator::new();
    for (name, targeting) in cases {
        let document = json!({"flags": {"f": {"state": "ENABLED",
            "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": targeting}}});
        let ours = FlagSet::from_document(&document.to_string()).unwrap();
        let rule = targeting.to_string();
        // Same answers first: a benchmark of different work means nothing.
        // (Except fractional: flagd-evaluation-engine 0.1 still buckets with
        // flagd's legacy "v1" float algorithm, cfgd with the current "v2",
        // so some users land in other buckets; the work is the same.)
        for (json, of) in contexts.iter().filter(|_| !name.starts_with("fractional")) {
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
        println!(
            "{:<22} {:>9.0} ns {:>15.0} ns {:>7.1}x",
            name,
            t_ours.as_nanos() as f64,
            t_theirs.as_nanos() as f64,
            t_theirs.as_nanos() as f64 / t_ours.as_nanos().max(1) as f64
        );
    }
}
