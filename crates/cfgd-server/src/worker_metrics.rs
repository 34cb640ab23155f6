//! The workers' metrics, in the server's registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Outcome {
    pub(crate) outcome: &'static str,
}

pub(crate) struct WorkerMetrics {
    /// 1 while this replica runs the workers.
    pub(crate) leader: Gauge,
    /// Worker writes etcd refused for their fence.
    pub(crate) fenced: Counter,
    /// Webhook attempts: `delivered`, `failed` (to be retried), `given_up`.
    pub(crate) attempts: Family<Outcome, Counter>,
    /// From sending an event to its receiver's 2xx.
    pub(crate) delivery_seconds: Histogram,
    /// Schedules handled: `applied`, `suspended`.
    pub(crate) schedules: Family<Outcome, Counter>,
}

impl WorkerMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = WorkerMetrics {
            leader: Gauge::default(),
            fenced: Counter::default(),
            attempts: Family::default(),
            // 0.5 ms to about 8 s.
            delivery_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            schedules: Family::default(),
        };
        registry.register(
            "worker_leader",
            "1 while this replica is the elected worker (webhooks, schedules)",
            metrics.leader.clone(),
        );
        registry.register(
            "worker_fenced_writes",
            "Worker writes etcd refused because this replica no longer held the election",
            metrics.fenced.clone(),
        );
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts by outcome: delivered, failed (retried), given_up",
            metrics.attempts.clone(),
        );
        registry.register(
            "webhook_delivery_seconds",
            "From sending a webhook event to the receiver's 2xx",
            metrics.delivery_seconds.clone(),
        );
        registry.register(
            "schedules",
            "Scheduled releases by outcome: applied, suspended",
            metrics.schedules.clone(),
        );
        metrics
    }

    pub(crate) fn attempt(&self, outcome: &'static str) {
        self.attempts.get_or_create(&Outcome { outcome }).inc();
    }
}
