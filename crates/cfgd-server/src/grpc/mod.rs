//! flagd's gRPC protocols, so that the stock flagd providers use cfgd
//! unchanged: `flagd.sync.v1.FlagSyncService` (in-process providers stream
//! the flag set and evaluate locally) and `flagd.evaluation.v1`/`v2`
//! `Service` (RPC providers ask per evaluation and follow `EventStream`).
//!
//! Read-only. A namespace is served without a token only when the settings
//! open it to this listener (`[grpc] namespaces`); otherwise the client must
//! send `authorization: Bearer …` metadata for a token that may read it.
//! The namespace comes from the selector (`Flagd-Selector` metadata or the
//! request's `selector` field: `flagSetId=NS` or a bare `NS`), else the
//! listener's default namespace.
//!
//! Standard gRPC health (`grpc.health.v1.Health`) answers for each service.
//!
//! One serialized flag document per namespace per change is shared by
//! every sync stream, so a provider's reconnect costs one cached document.

mod convert;
mod evaluation;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tonic::{Code, Request, Response, Status};

use crate::auth::Scope;
use crate::AppState;
use cfgd::{Client, ErrorKind};
use convert::to_struct;

/// flagd's messages, services and clients, generated from `proto/`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    pub mod sync {
        tonic::include_proto!("flagd.sync.v1");
    }
    pub mod v1 {
        tonic::include_proto!("flagd.evaluation.v1");
    }
    pub mod v2 {
        tonic::include_proto!("flagd.evaluation.v2");
    }
}

use proto::sync::flag_sync_service_server::{FlagSyncService, FlagSyncServiceServer};
use proto::{sync, v1, v2};

/// How long a sync stream waits after a flag change for more of a burst
/// before building the document once.
const COALESCE: Duration = Duration::from_millis(20);
/// How often `EventStream` says it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The gRPC side of the server: the shared state and each namespace's
/// current flag document.
#[derive(Clone)]
pub(super) struct Grpc {
    state: Arc<AppState>,
    documents: Arc<tokio::sync::Mutex<HashMap<String, watch::Receiver<Arc<str>>>>>,
}

impl Grpc {
    pub(super) fn new(state: Arc<AppState>) -> Self {
        Grpc {
            state,
            documents: Default::default(),
        }
    }

    /// The namespace a call is for, once its caller may read it. Labels in
    /// its selector are for flag sync only.
    async fn namespace<T>(&self, request: &Request<T>, selector: &str) -> Result<String, Status> {
        let (namespace, labels) = self.target(request, selector).await?;
        if !labels.is_empty() {
            return Err(Status::invalid_argument(
                "labels in a selector choose overlays for flag sync (SyncFlags, FetchAllFlags) only",
            ));
        }
        Ok(namespace)
    }

    /// The namespace a call is for and the labels its selector gives, once
    /// its caller may read that namespace.
    async fn target<T>(
        &self,
        request: &Request<T>,
        selector: &str,
    ) -> Result<(String, cfgd::overlays::Labels), Status> {
        let metadata = request.metadata();
        let selector = metadata
            .get("flagd-selector")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .or(Some(selector.trim()).filter(|s| !s.is_empty()));
        let grpc = &self.state.settings.grpc;
        let (namespace, labels) = match selector {
            Some(selector) => parse_selector(selector)?,
            None => grpc
                .default_namespace()
                .map(|ns| (ns, Default::default()))
                .ok_or_else(|| {
                    Status::invalid_argument(
                        "no selector and no default namespace: send a selector (flagSetId=NS), \
                     or set [grpc] default_namespace",
                    )
                })?,
        };
        if self.state.settings.no_auth || grpc.namespaces.contains(&namespace) {
            return Ok((namespace, labels));
        }
        let headers = metadata.clone().into_headers();
        let caller = self
            .state
            .caller(&headers)
            .await
            .map_err(|e| Status::unauthenticated(e.message().to_owned()))?
            .ok_or_else(|| {
                Status::unauthenticated(format!(
                    "namespace {namespace:?} is not open to the gRPC listener: send \
                     authorization: Bearer <token> metadata, or add it to [grpc] namespaces"
                ))
            })?;
        caller
            .may(&namespace, Scope::Read)
            .map_err(|e| Status::permission_denied(e.message().to_owned()))?;
        Ok((namespace, labels))
    }

    /// A place for one more stream of this caller: its token's share, or
    /// without a token, the share of the namespace's open callers.
    async fn permit<T>(
        &self,
        request: &Request<T>,
        namespace: &str,
    ) -> Result<super::limits::Permit, Status> {
        let headers = request.metadata().clone().into_headers();
        let key = self
            .state
            .caller(&headers)
            .await
            .ok()
            .flatten()
            .map_or_else(|| format!("grpc:{namespace}"), |c| c.name);
        self.state.stream_permit(&key).map_err(|full| match full {
            super::limits::Full::Server => Status::unavailable(
                "the server holds as many streams as it allows (max_streams); retry later",
            ),
            super::limits::Full::Token => Status::resource_exhausted(format!(
                "{key} holds as many streams as it may (max_streams_per_token)"
            )),
        })
    }

    async fn client(&self, namespace: &str) -> Result<Client, Status> {
        self.state.client(namespace).await.map_err(status)
    }

    /// The namespace's flag document as clients with `labels` see it, kept
    /// current by a task that rebuilds it once per burst of flag changes:
    /// one per namespace shared by every stream without labels, and one
    /// per stream with them (its own client, with the overlays they select,
    /// on the server's one watch), which ends with it.
    async fn document(
        &self,
        namespace: &str,
        labels: cfgd::overlays::Labels,
    ) -> Result<watch::Receiver<Arc<str>>, Status> {
        let mut documents = self.documents.lock().await;
        if labels.is_empty() {
            if let Some(rx) = documents.get(namespace) {
                return Ok(rx.clone());
            }
        } else {
            drop(documents);
            let shared = self.client(namespace).await?;
            let client = Client::builder()
                .share(&shared)
                .namespace(namespace)
                .labels(labels)
                .connect()
                .await
                .map_err(status)?;
            return self.follow(client);
        }
        let client = self.client(namespace).await?;
        let rx = self.follow(client)?;
        documents.insert(namespace.to_owned(), rx.clone());
        Ok(rx)
    }

    /// A channel of `client`'s flag document, rebuilt by a task of its own
    /// until the last receiver goes.
    fn follow(&self, client: Client) -> Result<watch::Receiver<Arc<str>>, Status> {
        let flags = client.flags().map_err(status)?;
        let first = client.flag_document().map_err(status)?;
        let (tx, rx) = watch::channel(Arc::<str>::from(first));
        let weak = Arc::downgrade(&self.state);
        tokio::spawn(async move {
            loop {
                let changed = flags.changed();
                tokio::select! {
                    _ = changed => {}
                    _ = tx.closed() => return,
                }
                tokio::time::sleep(COALESCE).await;
                if weak.strong_count() == 0 {
                    return;
                }
                match client.flag_document() {
                    Ok(document) => {
                        tx.send_replace(Arc::from(document));
                    }
                    Err(error) => tracing::warn!(%error, "flag document not rebuilt"),
                }
            }
        });
        Ok(rx)
    }
}

/// `flagSetId=NS`, with the client's labels as more `key=value` pairs
/// (`flagSetId=prod,canary=true,instance=i-42`: they choose the overlays it
/// sees), or a bare namespace.
pub(crate) fn parse_selector(selector: &str) -> Result<(String, cfgd::overlays::Labels), Status> {
    let refused =
        |reason: String| Status::invalid_argument(format!("selector {selector:?}: {reason}"));
    let (namespace, labels) = if selector.contains('=') {
        let mut found = None;
        let mut labels = Vec::new();
        for pair in selector.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("flagSetId", ns)) => found = Some(ns.trim()),
                Some((key, value)) => labels.push((key.trim(), value.trim())),
                None => {
                    return Err(refused(
                        "give flagSetId=NAMESPACE and labels as key=value, comma separated".into(),
                    ))
                }
            }
        }
        let labels =
            cfgd::overlays::Labels::from_pairs(labels).map_err(|e| refused(e.to_string()))?;
        (found.unwrap_or_default(), labels)
    } else {
        (selector, Default::default())
    };
    cfgd::validate_namespace(namespace).map_err(|e| refused(e.to_string()))?;
    Ok((namespace.to_owned(), labels))
}

/// The gRPC code of each [`ErrorKind`]: the one table the gRPC listener's
/// errors come from (`cfgd::ErrorKind`'s docs show it).
pub fn grpc_code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidInput
        | ErrorKind::TooLarge
        | ErrorKind::SchemaViolation
        | ErrorKind::Tls => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Conflict | ErrorKind::Moved => Code::Aborted,
        ErrorKind::Refused => Code::PermissionDenied,
        ErrorKind::WrongState | ErrorKind::SchemaConflict => Code::FailedPrecondition,
        ErrorKind::Unavailable | ErrorKind::Timeout => Code::Unavailable,
        ErrorKind::RevisionUnavailable => Code::OutOfRange,
        _ => Code::Internal,
    }
}

fn status(error: cfgd::Error) -> Status {
    Status::new(grpc_code(error.kind()), error.to_string())
}

fn provider_id(id: &str) -> &str {
    if id.is_empty() {
        "-"
    } else {
        id
    }
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl FlagSyncService for Grpc {
    type SyncFlagsStream = Stream_<sync::SyncFlagsResponse>;

    async fn sync_flags(
        &self,
        request: Request<sync::SyncFlagsRequest>,
    ) -> Result<Response<Self::SyncFlagsStream>, Status> {
        let (namespace, labels) = self.target(&request, &request.get_ref().selector).await?;
        let permit = self.permit(&request, &namespace).await?;
        let provider = provider_id(&request.get_ref().provider_id).to_owned();
        tracing::info!(%namespace, provider, %labels, "flag sync stream opened");
        let mut documents = self.document(&namespace, labels).await?;
        let mut shutdown = self.state.shutdown.subscribe();
        let state = self.state.clone();
        let stream = async_stream(move |tx| async move {
            let _open = (OpenStream::new(&state, "sync"), permit);
            let mut current = documents.borrow_and_update().clone();
            loop {
                let sent = tx
                    .send(Ok(sync::SyncFlagsResponse {
                        flag_configuration: current.to_string(),
                        sync_context: None,
                    }))
                    .await;
                if sent.is_err() {
                    return;
                }
                state.metrics.grpc_document_sent(&provider);
                tokio::select! {
                    changed = documents.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        current = documents.borrow_and_update().clone();
                    }
                    _ = shutdown.wait_for(|ending| *ending) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn fetch_all_flags(
        &self,
        request: Request<sync::FetchAllFlagsRequest>,
    ) -> Result<Response<sync::FetchAllFlagsResponse>, Status> {
        let (namespace, labels) = self.target(&request, &request.get_ref().selector).await?;
        let document = self
            .document(&namespace, labels)
            .await?
            .borrow()
            .to_string();
        Ok(Response::new(sync::FetchAllFlagsResponse {
            flag_configuration: document,
        }))
    }

    async fn get_metadata(
        &self,
        _request: Request<sync::GetMetadataRequest>,
    ) -> Result<Response<sync::GetMetadataResponse>, Status> {
        Ok(Response::new(sync::GetMetadataResponse {
            metadata: Some(to_struct(Map::from_iter([(
                "server".to_owned(),
                Value::from("cfgd"),
            )]))),
        }))
    }
}

/// Counts an open stream in the `grpc_streams` gauge while it lives.
struct OpenStream(prometheus_client::metrics::gauge::Gauge);

impl OpenStream {
    fn new(state: &AppState, kind: &'static str) -> Self {
        let gauge = state
            .metrics
            .grpc_streams
            .get_or_create(&super::metrics::StreamLabels { kind })
            .clone();
        gauge.inc();
        OpenStream(gauge)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts every call by method and status code. A failed unary call
/// carries its status in the headers (trailers-only); a call without one
/// there is counted OK (a stream's end status comes later, in trailers).
async fn count(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let response = next.run(request).await;
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from);
    state.metrics.grpc_call(&method, code);
    response
}

/// A stream fed by `body` through a small channel: ends when `body`
/// returns or the client goes away.
fn async_stream<T, F, Fut>(body: F) -> Stream_<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// The gRPC router: sync, both evaluation versions.
pub(super) fn router(grpc: Grpc) -> tonic::service::Routes {
    tonic::service::Routes::new(FlagSyncServiceServer::new(grpc.clone()))
        .add_service(v1::service_server::ServiceServer::new(grpc.clone()))
        .add_service(v2::service_server::ServiceServer::new(grpc))
}

/// Serves flagd's gRPC protocols on `listener` until the server shuts down.
/// With the HTTPS listener's certificate (`tls_cert`, `tls_key`), the gRPC
/// listener serves TLS too.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
) -> Result<(), tonic::transport::Error> {
    let tls = match (&state.settings.tls_cert, &state.settings.tls_key) {
        (Some(cert), Some(key)) => match (std::fs::read(cert), std::fs::read(key)) {
            (Ok(cert), Ok(key)) => Some(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(cert, key)),
            ),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "gRPC listener: cannot read the TLS certificate or key");
                return Ok(());
            }
        },
        _ => None,
    };
    let mut shutdown = state.shutdown.subscribe();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    // grpc.health.v1, as load balancers and Kubernetes probe gRPC servers.
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<FlagSyncServiceServer<Grpc>>().await;
    health
        .set_serving::<v1::service_server::ServiceServer<Grpc>>()
        .await;
    health
        .set_serving::<v2::service_server::ServiceServer<Grpc>>()
        .await;
    let routes = router(Grpc::new(state.clone()))
        .add_service(health_service)
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(state, count));
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .add_routes(tonic::service::Routes::from(routes))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.wait_for(|ending| *ending).await;
        })
        .await
}
