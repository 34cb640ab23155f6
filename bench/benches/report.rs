//! The last step of `make bench`: gathers what the other benches wrote
//! (`target/bench/*.json`, criterion's estimates for `read`) into
//! `target/bench/results.json`, and rewrites the generated part of
//! `BENCHMARKS.md` (between its `make bench` markers) from it. A bench that
//! did not run shows as such, with no figure.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

const START: &str =
    "<!-- make bench: generated from target/bench/results.json; edits here are lost -->";
const END: &str = "<!-- make bench: end -->";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(name: &str) -> Option<Value> {
    let text =
        std::fs::read_to_string(root().join("target/bench").join(format!("{name}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

/// Criterion's median for one function of the `read` group, in ns.
fn criterion(function: &str) -> Option<f64> {
    let dir = function.replace("::", "__");
    let path = root()
        .join("target/criterion/read")
        .join(dir)
        .join("new/estimates.json");
    let estimates: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} µs", v / 1e3)
    } else {
        format!("{v:.1} ns")
    }
}

fn ratio(theirs: Option<f64>, ours: Option<f64>) -> String {
    match (theirs, ours) {
        (Some(t), Some(o)) if o > 0.0 => format!("{:.2}", t / o),
        _ => "—".into(),
    }
}

fn cell(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "not run".into(), f)
}

fn main() {
    let mut results = Map::new();
    let mut md = String::new();

    // 1. Read latency.
    let names = [
        ("live", "cfgd Live::get"),
        ("live_borrow", "cfgd Live::borrow"),
        ("dynamic_config", "dynamic-config current()"),
        ("cached", "cfgd Client::get (cached)"),
        ("clone", "clone of the value alone"),
        ("etcd_linearizable", "etcd range, linearizable"),
        ("etcd_serializable", "etcd range, serializable"),
    ];
    let reads: Map<String, Value> = names
        .iter()
        .map(|(k, f)| (k.to_string(), criterion(f).map_or(Value::Null, Value::from)))
        .collect();
    let get = |k: &str| reads[k].as_f64();
    writeln!(
        md,
        "### 1. Read latency (`cargo bench -p cfgd-bench --bench read`, criterion median)\n"
    )
    .unwrap();
    writeln!(
        md,
        "| read | cfgd | peer | peer ÷ cfgd | target |\n| --- | ---: | ---: | ---: | --- |"
    )
    .unwrap();
    for (label, ours, theirs, target) in [
        (
            "`Live::get` vs dynamic-config 0.10 `current()`",
            "live",
            "dynamic_config",
            "≤ 20 ns, ratio ≥ 1",
        ),
        (
            "`Live::borrow` (no reference count) vs dynamic-config 0.10 `current()`",
            "live_borrow",
            "dynamic_config",
            "",
        ),
        (
            "cached `get::<T>` vs etcd linearizable range",
            "cached",
            "etcd_linearizable",
            "≤ 250 ns, ratio ≥ 1000",
        ),
        (
            "cached `get::<T>` vs etcd serializable range",
            "cached",
            "etcd_serializable",
            "",
        ),
    ] {
        writeln!(
            md,
            "| {label} | {} | {} | {} | {target} |",
            cell(get(ours), ns),
            cell(get(theirs), ns),
            ratio(get(theirs), get(ours))
        )
        .unwrap();
    }
    writeln!(
        md,
        "| (clone of the value `get` hands out, alone) | {} | | | |\n",
        cell(get("clone"), ns)
    )
    .unwrap();
    results.insert("read_ns".into(), Value::Object(reads));

    // 2 and 3. Propagation and etcd's side.
    writeln!(md, "### 2–3. Propagation latency and etcd's cost (`cargo bench -p cfgd-bench --bench propagation`)\n").unwrap();
    match read("propagation") {
        Some(p) => {
            writeln!(md, "From etcd's answer to a put to each subscriber seeing it; etcd's watcher gauge and CPU time over the puts.\n").unwrap();
            writeln!(md, "| subscribers | peer | p50 | p99 | max | etcd watchers | etcd CPU | p99 ÷ cfgd's |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |").unwrap();
            for n in [1, 100, 10_000] {
                let cfgd_p99 = p[format!("cfgd / {n}")]["latency"]["p99_ms"].as_f64();
                for peer in [
                    "cfgd",
                    "cfgd on_change",
                    "etcd direct",
                    "etcd grpc-proxy",
                    "dynamic-config-etcd",
                    "tokio broadcast floor",
                ] {
                    let Some(r) = p.get(format!("{peer} / {n}")) else {
                        continue;
                    };
                    let l = &r["latency"];
                    let f = |v: &Value| v.as_f64().map_or("—".into(), |x| format!("{x:.2} ms"));
                    let watchers = r["etcd"]["watchers"]
                        .as_f64()
                        .map_or("—".into(), |w| format!("{w:.0}"));
                    let cpu = r["etcd"]["cpu_ms"]
                        .as_f64()
                        .map_or("—".into(), |c| format!("{c:.0} ms"));
                    writeln!(
                        md,
                        "| {n} | {peer} | {} | {} | {} | {watchers} | {cpu} | {} |",
                        f(&l["p50_ms"]),
                        f(&l["p99_ms"]),
                        f(&l["max_ms"]),
                        ratio(l["p99_ms"].as_f64(), cfgd_p99)
                    )
                    .unwrap();
                }
            }
            writeln!(md, "\nTargets: p99 ≤ 5 ms at 10,000 subscribers; exactly one etcd watcher per process.\n").unwrap();
            results.insert("propagation".into(), p);
        }
        None => writeln!(md, "Not run.\n").unwrap(),
    }

    // 4. HTTP.
    writeln!(
        md,
        "### 4. HTTP (`cargo bench -p cfgd-bench --bench http` and `--bench sse`)\n"
    )
    .unwrap();
    match read("http") {
        Some(h) => {
            writeln!(
                md,
                "| wrk -t1 -c{} -d{} | requests/s |\n| --- | ---: |",
                h["connections"].as_str().unwrap_or("?"),
                h["duration"].as_str().unwrap_or("?")
            )
            .unwrap();
            writeln!(
                md,
                "| cfgd `GET /v1/namespaces/{{ns}}/config/{{name}}` | {:.0} |",
                h["cfgd_rps"].as_f64().unwrap_or(0.0)
            )
            .unwrap();
            writeln!(
                md,
                "| etcd JSON gateway `POST /v3/kv/range` | {:.0} |",
                h["gateway_rps"].as_f64().unwrap_or(0.0)
            )
            .unwrap();
            writeln!(
                md,
                "| **cfgd ÷ gateway** (target ≥ 3) | **{:.2}** |\n",
                h["ratio"].as_f64().unwrap_or(0.0)
            )
            .unwrap();
            results.insert("http".into(), h);
        }
        None => writeln!(md, "HTTP: not run.\n").unwrap(),
    }
    match read("sse") {
        Some(s) => {
            writeln!(md, "| {} SSE clients, {} puts in {} rounds, delivery after the put | p50 | p99 | max | server RSS per client |\n| --- | ---: | ---: | ---: | ---: |",
                s["cfgd"]["clients"], s["cfgd"]["puts"], s["rounds"].as_array().map_or(1, Vec::len)).unwrap();
            for (label, r) in [
                ("cfgd (target ≤ 12 KB per client)", &s["cfgd"]),
                (
                    "bare fan-out floor: one etcd watch, a tokio TCP server",
                    &s["floor"],
                ),
            ] {
                writeln!(
                    md,
                    "| {label} | {} ms | {} ms | {} ms | {} bytes |",
                    r["p50_ms"], r["p99_ms"], r["max_ms"], r["server_rss_bytes_per_client"]
                )
                .unwrap();
            }
            writeln!(
                md,
                "| **p99, cfgd ÷ floor** (target ≤ 1.1) | | **{:.2}** | | |",
                s["p99_ratio"].as_f64().unwrap_or(f64::NAN)
            )
            .unwrap();
            let rounds: Vec<String> = s["rounds"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| format!("{:.2}", r["ratio"].as_f64().unwrap_or(f64::NAN)))
                .collect();
            writeln!(md, "\nEach round's p99 ratio: {}.", rounds.join(", ")).unwrap();
            writeln!(md).unwrap();
            results.insert("sse".into(), s);
        }
        None => writeln!(md, "SSE: not run.\n").unwrap(),
    }

    // 5. Flag evaluation.
    writeln!(
        md,
        "### 5. Flag evaluation, single-threaded (`cargo bench --bench flag_eval`)\n"
    )
    .unwrap();
    match read("flag_eval") {
        Some(f) => {
            writeln!(md, "| targeting | cfgd | evaluations/s | flagd-evaluation-engine | ÷ cfgd | flagd-core (Node) | ÷ cfgd |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |").unwrap();
            let (peers, bucketing): (Vec<&Value>, Vec<&Value>) = f
                .as_array()
                .into_iter()
                .flatten()
                .partition(|row| row.get("bucketing").is_none());
            for row in peers {
                let ours = row["cfgd_ns"].as_f64();
                let engine = row["flagd_evaluation_engine_ns"].as_f64();
                let node = row["flagd_core_ns"].as_f64();
                writeln!(
                    md,
                    "| {} | {} | {:.0} | {} | {} | {} | {} |",
                    row["targeting"].as_str().unwrap_or("?"),
                    cell(ours, ns),
                    ours.map_or(0.0, |o| 1e9 / o),
                    cell(engine, ns),
                    ratio(engine, ours),
                    node.map_or_else(
                        || format!(
                            "not run: {}",
                            row["flagd_core_not_run"].as_str().unwrap_or("?")
                        ),
                        ns
                    ),
                    ratio(node, ours)
                )
                .unwrap();
            }
            writeln!(md, "\nTarget: ≥ 1,000,000 evaluations/s for targeting + fractional, and ahead of both.\n").unwrap();
            writeln!(md, "Fractional bucketing, v3 against v2 on the same rule:\n\n| targeting | v2 | v3 | v3 ÷ v2 |\n| --- | ---: | ---: | ---: |").unwrap();
            for row in bucketing {
                let (v2, v3) = (row["v2_ns"].as_f64(), row["v3_ns"].as_f64());
                writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    row["targeting"].as_str().unwrap_or("?"),
                    cell(v2, ns),
                    cell(v3, ns),
                    ratio(v3, v2)
                )
                .unwrap();
            }
            writeln!(md, "\nTarget: v3 at most 1.3× v2.\n").unwrap();
            results.insert("flag_eval".into(), f);
        }
        None => writeln!(md, "Not run.\n").unwrap(),
    }

    // 6. Memory.
    writeln!(md, "### 6. Memory (`cargo bench -p cfgd-bench --bench memory`; subscribers from `propagation`)\n").unwrap();
    match read("memory") {
        Some(m) => {
            writeln!(
                md,
                "| {} keys, {:.0}-byte values | RSS added | per key |\n| --- | ---: | ---: |",
                m["keys"],
                m["value_bytes_per_key"].as_f64().unwrap_or(0.0)
            )
            .unwrap();
            writeln!(
                md,
                "| mirrored (connected) | {:.1} MiB | {:.0} bytes |",
                m["rss_added_mirrored_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
                m["bytes_per_key_mirrored"].as_f64().unwrap_or(0.0)
            )
            .unwrap();
            writeln!(md, "| every key read once as `serde_json::Value` (decoded kept) | {:.1} MiB | {:.0} bytes |", m["rss_added_after_reading_all_bytes"].as_f64().unwrap_or(0.0) / 1048576.0, m["bytes_per_key_read"].as_f64().unwrap_or(0.0)).unwrap();
            results.insert("memory".into(), m);
        }
        None => writeln!(md, "Not run.").unwrap(),
    }
    for (peer, what) in [
        ("cfgd", "a `Subscription` and its task"),
        ("cfgd on_change", "an `on_change` callback"),
    ] {
        if let Some(per) = results
            .get("propagation")
            .and_then(|p| p[format!("{peer} / 10000")]["heap_bytes_per_subscriber"].as_f64())
        {
            writeln!(
                md,
                "| one in-process subscriber of 10,000: {what} (heap) | | {per:.0} bytes |"
            )
            .unwrap();
        }
    }

    // 7. Writes.
    writeln!(
        md,
        "\n### 7. Write latency (`cargo bench -p cfgd-bench --bench write`)\n"
    )
    .unwrap();
    match read("write") {
        Some(w) => {
            writeln!(
                md,
                "| {} writes each, in turns of 100 | p50 | p99 | p50 ÷ plain set | p50 ÷ put on an unwatched key |\n| --- | ---: | ---: | ---: | ---: |",
                w["writes_per_variant"]
            )
            .unwrap();
            for row in w["rows"].as_array().into_iter().flatten() {
                writeln!(
                    md,
                    "| {} | {} ms | {} ms | {} | {} |",
                    row["name"].as_str().unwrap_or(""),
                    row["latency"]["p50_ms"],
                    row["latency"]["p99_ms"],
                    row["ratio"],
                    row["ratio_unwatched_put"]
                )
                .unwrap();
            }
            writeln!(md, "\nTarget: a live client's set with its audit record and schema check at most 1.3× a plain set: one etcd put, on a key the client watches, which is what a set was before the audit trail.").unwrap();
            results.insert("write".into(), w);
        }
        None => writeln!(md, "Not run.").unwrap(),
    }

    // 8. Layered namespaces.
    writeln!(
        md,
        "\n### 8. Layered namespaces (`cargo bench -p cfgd-bench --bench layers`)\n"
    )
    .unwrap();
    match read("layers") {
        Some(l) => {
            let f = |v: &Value| v.as_f64().unwrap_or(0.0);
            let (r, p, c) = (&l["reads"], &l["propagation"], &l["loading"]);
            writeln!(md, "| measure | flat | three-level chain | ratio | target |\n| --- | ---: | ---: | ---: | --- |").unwrap();
            writeln!(md, "| cached `get::<Value>` of a value merged from 3 layers (median of 31 batches) | {:.1} ns | {:.1} ns | {:.2} | ≤ 1.1 |", f(&r["get_flat_ns"]), f(&r["get_layered_ns"]), f(&r["get_ratio"])).unwrap();
            writeln!(
                md,
                "| `Live::get` of it | {:.1} ns | {:.1} ns | {:.2} | ≤ 1.1 |",
                f(&r["live_flat_ns"]),
                f(&r["live_layered_ns"]),
                f(&r["live_ratio"])
            )
            .unwrap();
            writeln!(md, "| a change reaching 1,000 `on_change` subscribers, p99 (flat: of one namespace; chain: a parent's, 10 in each of 100 children) | {} ms | {} ms | {:.2} | ≤ 1.5 |", p["flat_p99_ms"], p["layered_p99_ms"], f(&p["p99_ratio"])).unwrap();
            writeln!(md, "| connect, {} names (chain: all in the base, a tenth overridden field by field in each level above), median of 7 | {:.1} ms | {:.1} ms | {:.2} | ≤ 1.5 |", c["names"], f(&c["flat_ms"]), f(&c["layered_ms"]), f(&c["ratio"])).unwrap();
            results.insert("layers".into(), l);
        }
        None => writeln!(md, "Not run.").unwrap(),
    }

    // 9. cfgd-agent.
    writeln!(
        md,
        "\n### 9. cfgd-agent (`cargo bench -p cfgd-bench --bench agent`)\n"
    )
    .unwrap();
    match read("agent") {
        Some(a) => {
            let f = |v: &Value| v.as_f64().unwrap_or(0.0);
            let p = &a["propagation"];
            writeln!(md, "A change put to etcd until the agent's file is renamed into place (inotify), beside a library subscriber's delivery of the same change; {} changes, the release binaries.\n", p["rounds"]).unwrap();
            writeln!(md, "| path | p50 | p99 | max | p99 over the library's | target |\n| --- | ---: | ---: | ---: | ---: | --- |").unwrap();
            let row = |md: &mut String, name: &str, r: &Value, over: Option<f64>| {
                let over = over.map_or("".to_owned(), |o| format!("{o:+.2} ms"));
                let target = if name.starts_with("library") {
                    ""
                } else {
                    "≤ +5 ms"
                };
                writeln!(
                    md,
                    "| {name} | {} ms | {} ms | {} ms | {over} | {target} |",
                    r["p50_ms"], r["p99_ms"], r["max_ms"]
                )
                .unwrap();
            };
            row(
                &mut md,
                "library subscriber (in process)",
                &p["library"],
                None,
            );
            row(
                &mut md,
                "agent through the server (REST + SSE)",
                &p["agent_server"],
                Some(f(&p["server_p99_over_library_ms"])),
            );
            row(
                &mut md,
                "agent straight from etcd (the library)",
                &p["agent_etcd"],
                Some(f(&p["etcd_p99_over_library_ms"])),
            );
            let r = &a["render"];
            writeln!(md, "\nOne render of {} names, as the agent's log times it (the render alone; median and max of {} renders after the first):\n", r["names"], r["template"]["renders"]).unwrap();
            writeln!(md, "| template | median | max |\n| --- | ---: | ---: |").unwrap();
            writeln!(
                md,
                "| minijinja loop over `values(\"big.\")` ({} bytes out) | {:.2} ms | {:.2} ms |",
                r["bytes"],
                f(&r["template"]["median_ms"]),
                f(&r["template"]["max_ms"])
            )
            .unwrap();
            writeln!(
                md,
                "| `prefix` as `json` | {:.2} ms | {:.2} ms |",
                f(&r["json_prefix"]["median_ms"]),
                f(&r["json_prefix"]["max_ms"])
            )
            .unwrap();
            results.insert("agent".into(), a);
        }
        None => writeln!(md, "Not run.").unwrap(),
    }

    // 10. Webhooks and the workers' failover.
    writeln!(
        md,
        "\n### 10. Webhooks (`cargo bench -p cfgd-bench --bench webhooks`)\n"
    )
    .unwrap();
    match read("webhooks") {
        Some(w) => {
            writeln!(md, "From just before a change is put to etcd until the receiver (in the bench process, answering 204 at once) has its event, through two release `cfgd` replicas (one elected); beside a library subscriber's delivery of the same changes (etcd's watch alone).\n").unwrap();
            writeln!(md, "| rate | changes | webhook p50 | webhook p99 | library p50 | library p99 | target |\n| --- | ---: | ---: | ---: | ---: | ---: | --- |").unwrap();
            for (key, target) in [("at_1_per_s", ""), ("at_100_per_s", "p99 ≤ 50 ms")] {
                let r = &w[key];
                writeln!(
                    md,
                    "| {}/s | {} | {} ms | {} ms | {} ms | {} ms | {target} |",
                    r["rate_per_s"],
                    r["changes"],
                    r["webhook"]["p50_ms"],
                    r["webhook"]["p99_ms"],
                    r["library"]["p50_ms"],
                    r["library"]["p99_ms"]
                )
                .unwrap();
            }
            let f = &w["failover"];
            let ttl = f["ttl_s"].as_f64().unwrap_or(0.0);
            writeln!(md, "\nFailover: from SIGKILL of the leader to the first delivery by the other replica, while changes flow (lease TTL {ttl} s):\n").unwrap();
            writeln!(
                md,
                "| rounds | each | worst | target |\n| ---: | --- | ---: | --- |"
            )
            .unwrap();
            let rounds: Vec<String> = f["rounds_ms"]
                .as_array()
                .map(|a| a.iter().map(|v| format!("{v} ms")).collect())
                .unwrap_or_default();
            writeln!(
                md,
                "| {} | {} | {} ms | ≤ TTL + 2 s = {} ms |",
                rounds.len(),
                rounds.join(", "),
                f["max_ms"],
                (ttl + 2.0) * 1000.0
            )
            .unwrap();
            results.insert("webhooks".into(), w);
        }
        None => writeln!(md, "Not run.").unwrap(),
    }

    let out = root().join("target/bench/results.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json!(results)).unwrap()).unwrap();
    let doc_path = root().join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&doc_path).expect("read BENCHMARKS.md");
    let (Some(a), Some(b)) = (doc.find(START), doc.find(END)) else {
        panic!("BENCHMARKS.md lacks the make bench markers");
    };
    let updated = format!("{}{START}\n\n{md}\n{}", &doc[..a], &doc[b..]);
    std::fs::write(&doc_path, updated).unwrap();
    println!(
        "wrote {} and the tables in {}",
        out.display(),
        doc_path.display()
    );
}
