//! `/metrics` in Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) route: String,
    pub(crate) method: String,
    pub(crate) status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Namespace {
    pub(crate) namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RpcLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StreamLabels {
    pub(super) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LimitLabels {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProviderLabels {
    provider: String,
}

/// The server's metrics. Library counters are copied in at each scrape.
pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    pub(crate) requests: Family<RequestLabels, Histogram>,
    pub(super) sse_clients: Gauge,
    pub(crate) cache_hits: Family<Namespace, Counter>,
    pub(crate) cache_misses: Family<Namespace, Counter>,
    pub(crate) resyncs: Family<Namespace, Counter>,
    pub(crate) lag: Family<Namespace, Gauge>,
    pub(crate) connected: Family<Namespace, Gauge>,
    pub(crate) grpc_requests: Family<RpcLabels, Counter>,
    pub(super) grpc_streams: Family<StreamLabels, Gauge>,
    pub(crate) grpc_documents: Family<ProviderLabels, Counter>,
    pub(crate) refusals: Family<LimitLabels, Counter>,
    pub(crate) workers: crate::worker_metrics::WorkerMetrics,
}

impl Metrics {
    /// One gRPC call answered, by method and status code.
    pub(super) fn grpc_call(&self, method: &str, code: tonic::Code) {
        self.grpc_requests
            .get_or_create(&RpcLabels {
                method: method.to_owned(),
                code: format!("{code:?}"),
            })
            .inc();
    }

    /// One request refused by `limit`.
    pub(super) fn refused(&self, limit: &'static str) {
        self.refusals.get_or_create(&LimitLabels { limit }).inc();
    }

    /// One flag document sent on a sync stream, by the provider's id.
    pub(super) fn grpc_document_sent(&self, provider: &str) {
        self.grpc_documents
            .get_or_create(&ProviderLabels {
                provider: provider.to_owned(),
            })
            .inc();
    }

    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("cfgd");
        let requests = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms to about 8 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 15))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let sse_clients = Gauge::default();
        registry.register("sse_clients", "Open SSE watch streams", sse_clients.clone());
        let cache_hits = Family::default();
        registry.register(
            "cache_hits",
            "Reads answered from the decoded-value cache",
            cache_hits.clone(),
        );
        let cache_misses = Family::default();
        registry.register(
            "cache_misses",
            "Reads that decoded stored JSON",
            cache_misses.clone(),
        );
        let resyncs = Family::default();
        registry.register(
            "watch_resyncs",
            "Full namespace re-reads and subscriber catch-ups",
            resyncs.clone(),
        );
        let lag = Family::default();
        registry.register(
            "watch_lag_revisions",
            "Revisions the applied state trails etcd's",
            lag.clone(),
        );
        let connected = Family::default();
        registry.register(
            "etcd_connected",
            "1 when the namespace's watch is connected to etcd",
            connected.clone(),
        );
        let grpc_requests = Family::default();
        registry.register(
            "grpc_requests",
            "gRPC calls (flagd protocols) by method and status code",
            grpc_requests.clone(),
        );
        let grpc_streams = Family::default();
        registry.register(
            "grpc_streams",
            "Open gRPC streams: flag sync, and evaluation events",
            grpc_streams.clone(),
        );
        let grpc_documents = Family::default();
        registry.register(
            "grpc_sync_documents",
            "Flag documents sent on sync streams, by provider id",
            grpc_documents.clone(),
        );
        let refusals = Family::default();
        registry.register(
            "limit_refusals",
            "Requests refused by a limit: streams, streams_per_token, body, context",
            refusals.clone(),
        );
        let workers = crate::worker_metrics::WorkerMetrics::register(&mut registry);
        Metrics {
            refusals,
            workers,
            grpc_requests,
            grpc_streams,
            grpc_documents,
            registry,
            requests,
            sse_clients,
            cache_hits,
            cache_misses,
            resyncs,
            lag,
            connected,
        }
    }
}
