//! What the end-to-end benches share: a runtime, memory readings, and where
//! results go.
#![allow(dead_code)] // each bench uses a different part of it

use serde_json::Value;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Resident memory of process `pid` ("self" for this one), from `/proc`.
pub fn rss_bytes(pid: &str) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).expect("read /proc statm");
    let pages: u64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Writes `target/bench/{name}.json`, which `make bench` gathers.
pub fn write_results(name: &str, results: &Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(results).unwrap()).expect("write results");
    println!("wrote {}", path.display());
}
