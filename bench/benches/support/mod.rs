//! What the end-to-end benches share: a runtime, memory readings, timed
//! rounds of changes, and where results go.
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

/// What every subscriber of one round shares with whoever starts it. Each
/// subscriber writes its own slot, so that recording costs no lock: a shared
/// lock here would be the harness measuring itself.
pub struct Round {
    base: std::time::Instant,
    /// Nanoseconds after `base` at which each subscriber saw the change.
    seen: Vec<std::sync::atomic::AtomicU64>,
    count: std::sync::atomic::AtomicUsize,
    all_in: tokio::sync::Notify,
}

impl Round {
    pub fn new(subscribers: usize) -> Self {
        Round {
            base: std::time::Instant::now(),
            seen: (0..subscribers).map(|_| Default::default()).collect(),
            count: Default::default(),
            all_in: tokio::sync::Notify::new(),
        }
    }

    /// This round's clock.
    pub fn now(&self) -> std::time::Duration {
        self.base.elapsed()
    }

    /// Subscriber `subscriber` has the change.
    pub fn saw(&self, subscriber: usize) {
        use std::sync::atomic::Ordering;
        let at = self.now().as_nanos() as u64;
        self.seen[subscriber].store(at, Ordering::Release);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.seen.len() {
            self.all_in.notify_one();
        }
    }

    /// Runs `rounds` rounds. Each calls `start(i)`, which sends change `i`
    /// and answers the moment to time from (on [`now`](Self::now)'s clock),
    /// then waits for every subscriber and keeps each one's delay from that
    /// moment (0 if the change came first).
    pub async fn time<F>(
        &self,
        rounds: usize,
        mut start: impl FnMut(usize) -> F,
    ) -> Vec<std::time::Duration>
    where
        F: std::future::Future<Output = std::time::Duration>,
    {
        use std::sync::atomic::Ordering;
        use std::time::Duration;
        let subscribers = self.seen.len();
        let mut delays = Vec::with_capacity(subscribers * rounds);
        for i in 0..rounds {
            self.count.store(0, Ordering::Release);
            let all_in = self.all_in.notified();
            let from = start(i).await;
            tokio::time::timeout(Duration::from_secs(60), all_in)
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "round {i}: {} of {subscribers} subscribers saw the change within 60 s",
                        self.count.load(Ordering::Acquire)
                    )
                });
            delays.extend(
                self.seen.iter().map(|at| {
                    Duration::from_nanos(at.load(Ordering::Acquire)).saturating_sub(from)
                }),
            );
        }
        delays
    }
}

/// p50, p99 and max of `delays`, in ms.
pub fn summary(mut delays: Vec<std::time::Duration>) -> Value {
    delays.sort();
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    serde_json::json!({"samples": delays.len(), "p50_ms": ms(at(0.5)), "p99_ms": ms(at(0.99)), "max_ms": ms(at(1.0))})
}
