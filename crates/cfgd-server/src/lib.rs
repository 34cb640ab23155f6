//! The `cfgd` HTTP server: the library over HTTP, for services in any
//! language. [`app`] builds the router, [`run`] serves it until shutdown.
//!
//! - Settings from flags, `CFGD_*` variables or a TOML file ([`Settings`]).
//! - Bearer tokens with read, write and admin scopes per namespace.
//! - REST: config and flags with ETags and compare-and-set, lists, history.
//! - Server-Sent Events: every change under a prefix, resumable with
//!   `Last-Event-ID`.
//! - OFREP: flag evaluation for any OpenFeature SDK's OFREP provider.
//! - Operations: `/healthz`, `/readyz`, `/metrics`, HTTPS, graceful shutdown.
//! - The web console at `/ui/`, embedded in the binary.

mod audit;
mod auth;
pub(crate) mod conn;
mod diff;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
mod limits;
mod metrics;
mod ofrep;
mod releases;
mod requests;
mod rest;
mod schemas;
pub(crate) mod sse;
mod timer;
mod tls;
mod ui;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use cfgd::{Client, ClientBuilder};

pub use auth::{Scope, Token};
pub use error::{http_status, ApiError};
pub use grpc::grpc_code;

/// Everything the server is configured with: from flags, `CFGD_*`
/// variables or a TOML file (tokens live only in the file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// etcd endpoints.
    pub endpoints: Vec<String>,
    /// etcd user and password, if etcd has auth on.
    pub etcd_user: Option<String>,
    /// See `etcd_user`.
    pub etcd_password: Option<String>,
    /// etcd prefix above all namespaces.
    pub root: String,
    /// Serve without tokens. Only when asked for explicitly.
    pub no_auth: bool,
    /// Bearer tokens and their scopes.
    pub tokens: Vec<Token>,
    /// Snapshot file (every namespace served, in one file) for starting
    /// while etcd is down.
    pub snapshot: Option<PathBuf>,
    /// `text` or `json` logs.
    pub log_format: String,
    /// How long etcd may take to answer at start.
    #[serde(with = "secs")]
    pub connect_timeout: Duration,
    /// Seconds between SSE heartbeat comments.
    #[serde(with = "secs")]
    pub heartbeat: Duration,
    /// Seconds requests in flight get to finish at shutdown.
    #[serde(with = "secs")]
    pub drain_timeout: Duration,
    /// Seconds a client gets to send a request's headers, and an idle
    /// keep-alive connection to start its next request, before the
    /// connection is closed: slow or stalled clients cannot hold
    /// connections open.
    #[serde(with = "secs")]
    pub header_read_timeout: Duration,
    /// Audit records older than this many days are pruned (every 10
    /// minutes, in each namespace served); 0 keeps them by age.
    pub audit_max_age_days: f64,
    /// All but the newest this many audit records of a namespace are
    /// pruned; 0 keeps them by count.
    pub audit_max_records: usize,
    /// Serve HTTPS with this PEM certificate chain (needs `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// TLS to etcd: the PEM CA that signs etcd's certificates (endpoints are
    /// then `https://`).
    pub etcd_ca: Option<PathBuf>,
    /// TLS to etcd: a PEM client certificate, for etcd's `--client-cert-auth`
    /// (needs `etcd_key`).
    pub etcd_cert: Option<PathBuf>,
    /// The PEM private key of `etcd_cert`.
    pub etcd_key: Option<PathBuf>,
    /// The key file secrets are sealed and opened with.
    pub secret_key_file: Option<PathBuf>,
    /// Shared by replicas, so that an OFREP change-stream ticket one of
    /// them made is honoured by the others; random per start when unset.
    pub stream_secret: Option<String>,
    /// HTTP connections open at once; beyond it a new connection is
    /// answered 503 with `Retry-After` and closed. Room for `max_streams`
    /// and the requests beside them.
    pub max_connections: usize,
    /// Long-lived streams (SSE, OFREP change streams, gRPC sync and event
    /// streams) open at once, in all; more are answered 503.
    pub max_streams: usize,
    /// Long-lived streams one token (or, without one, one open gRPC
    /// namespace's callers together) may hold; more are answered 429.
    pub max_streams_per_token: usize,
    /// The largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// The largest OFREP evaluation request (its context), in bytes.
    pub max_context_bytes: usize,
    /// Writes a second one token may make (in bursts of as many); more are
    /// answered 429. Off unless set.
    pub write_rate_per_token: Option<f64>,
    /// Serve flagd's gRPC protocols (sync and evaluation) on this address;
    /// off unless set.
    pub grpc_listen: Option<SocketAddr>,
    /// Who may use the gRPC listener without a token.
    pub grpc: GrpcSettings,
}

/// The `[grpc]` table of the settings file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcSettings {
    /// Namespaces the gRPC listener serves without a token (the stock flagd
    /// providers cannot send one).
    pub namespaces: Vec<String>,
    /// The namespace of calls with no selector (RPC-mode providers send
    /// none): this, or the only open namespace.
    pub default_namespace: Option<String>,
}

impl GrpcSettings {
    /// The namespace of a call that names none.
    pub fn default_namespace(&self) -> Option<String> {
        self.default_namespace
            .clone()
            .or_else(|| match &self.namespaces[..] {
                [only] => Some(only.clone()),
                _ => None,
            })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            endpoints: vec!["http://127.0.0.1:2379".into()],
            etcd_user: None,
            etcd_password: None,
            root: cfgd::DEFAULT_ROOT.into(),
            no_auth: false,
            tokens: Vec::new(),
            snapshot: None,
            log_format: "text".into(),
            connect_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(15),
            drain_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            audit_max_age_days: 90.0,
            audit_max_records: 100_000,
            tls_cert: None,
            tls_key: None,
            etcd_ca: None,
            secret_key_file: None,
            stream_secret: None,
            etcd_cert: None,
            etcd_key: None,
            max_connections: 25_000,
            max_streams: 20_000,
            max_streams_per_token: 5_000,
            // Room for a release of 127 values of some KiB; a value itself
            // stops at 1 MiB, and etcd at 1.5 MiB a request.
            max_body_bytes: 4 << 20,
            max_context_bytes: 64 << 10,
            write_rate_per_token: None,
            grpc_listen: None,
            grpc: GrpcSettings::default(),
        }
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs_f64(f64::deserialize(d)?))
    }
}

impl Settings {
    /// Checks what a server must not start with: no tokens and auth not
    /// explicitly turned off, a token without a usable secret, a bad scope.
    pub fn validate(&self) -> Result<(), String> {
        if !self.no_auth && self.tokens.is_empty() {
            return Err("no tokens configured: add [[tokens]] to the config file, or pass --no-auth to serve without auth".into());
        }
        for token in &self.tokens {
            token.validate()?;
        }
        cfgd::validate_root(&self.root).map_err(|e| e.to_string())?;
        if self.endpoints.is_empty() {
            return Err(cfgd::Error::NoEndpoints.to_string());
        }
        if let Some(file) = self.snapshot.as_ref().filter(|f| f.is_dir()) {
            return Err(format!(
                "snapshot {}: a directory; give a file (all namespaces go in one)",
                file.display()
            ));
        }
        if !self.audit_max_age_days.is_finite() || self.audit_max_age_days < 0.0 {
            return Err("audit_max_age_days must be a number of days, 0 or more".into());
        }
        for ns in self
            .grpc
            .namespaces
            .iter()
            .chain(&self.grpc.default_namespace)
        {
            cfgd::validate_namespace(ns).map_err(|e| format!("[grpc]: {e}"))?;
        }
        if let Some(path) = &self.secret_key_file {
            cfgd::secret::Keyring::load(path).map_err(|e| e.to_string())?;
        }
        if self.stream_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err("stream_secret must be at least 16 characters".into());
        }
        if self
            .write_rate_per_token
            .is_some_and(|r| !r.is_finite() || r <= 0.0)
        {
            return Err("write_rate_per_token must be a positive number of writes a second".into());
        }
        if self.max_streams == 0 || self.max_streams_per_token == 0 || self.max_connections == 0 {
            return Err(
                "max_connections, max_streams and max_streams_per_token must be at least 1".into(),
            );
        }
        if self.max_body_bytes < 1024 || self.max_context_bytes < 1024 {
            return Err("max_body_bytes and max_context_bytes must be at least 1024".into());
        }
        if self.header_read_timeout.is_zero() {
            return Err("header_read_timeout must be more than 0 seconds".into());
        }
        if self.etcd_cert.is_some() != self.etcd_key.is_some() {
            return Err("etcd_cert and etcd_key (--etcd-cert, --etcd-key) go together".into());
        }
        // Builds the etcd connection settings, which reads the TLS files and
        // checks them against the endpoints, without connecting.
        self.builder().prepare().map_err(|e| match &e {
            cfgd::Error::Tls {
                needs: Some(setting),
                ..
            } => format!("{e} ({})", setting_flag(*setting)),
            _ => e.to_string(),
        })?;
        self.listener_tls()?;
        Ok(())
    }

    /// The listener's TLS settings, when it serves HTTPS.
    fn listener_tls(&self) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => tls::config(cert, key).map(Some),
            (None, None) => Ok(None),
            _ => Err("tls_cert and tls_key (--tls-cert, --tls-key) go together".into()),
        }
    }

    /// The URL scheme the server answers on.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn builder(&self) -> ClientBuilder {
        let mut builder = Client::builder()
            .endpoints(self.endpoints.clone())
            .root(self.root.clone())
            .connect_timeout(self.connect_timeout);
        if let (Some(user), Some(password)) = (&self.etcd_user, &self.etcd_password) {
            builder = builder.user(user, password);
        }
        if let Some(ca) = &self.etcd_ca {
            builder = builder.ca_file(ca);
        }
        if let (Some(cert), Some(key)) = (&self.etcd_cert, &self.etcd_key) {
            builder = builder.client_cert(cert, key);
        }
        if let Some(path) = &self.secret_key_file {
            builder = builder.secret_key_file(path);
        }
        builder
    }
}

/// The setting of ours that supplies a missing TLS setting of the library.
fn setting_flag(setting: cfgd::TlsSetting) -> &'static str {
    match setting {
        cfgd::TlsSetting::ClientCert => "etcd_cert and etcd_key: --etcd-cert, --etcd-key",
        _ => "etcd_ca: --etcd-ca",
    }
}

/// The header whose text goes with a write into the audit trail.
const MESSAGE_HEADER: &str = "x-cfgd-message";
/// The actor of writes made with auth off (`--no-auth`).
const ANONYMOUS: &str = "anonymous";

/// Shared by every request.
pub struct AppState {
    settings: Settings,
    builder: ClientBuilder,
    /// One live client per namespace, made on first use, all sharing one
    /// etcd connection and one watch.
    clients: tokio::sync::Mutex<HashMap<String, Client>>,
    /// Set at shutdown, ending SSE streams so the server can drain.
    shutdown: tokio::sync::watch::Sender<bool>,
    metrics: metrics::Metrics,
    /// Open long-lived streams, against the settings' caps.
    streams: Arc<limits::Streams>,
    /// Each token's writes, against `write_rate_per_token`.
    write_rates: limits::WriteRates,
    /// Signs the OFREP change streams' tickets: from `stream_secret`, so
    /// that replicas share it, or new at each start.
    stream_secret: [u8; 32],
}

impl AppState {
    /// State for `settings`, which [`Settings::validate`] has passed.
    pub fn new(settings: Settings) -> Arc<Self> {
        let builder = settings.builder();
        // Nothing is connected yet: namespaces attach as requests name them.
        let builder = builder
            .prepare()
            .expect("validated settings have a root and endpoints");
        let stream_secret = match &settings.stream_secret {
            Some(shared) => <sha2::Sha256 as sha2::Digest>::digest(shared.as_bytes()).into(),
            None => random_secret(),
        };
        Arc::new(AppState {
            settings,
            builder,
            clients: Default::default(),
            shutdown: tokio::sync::watch::channel(false).0,
            metrics: metrics::Metrics::new(),
            stream_secret,
            streams: Default::default(),
            write_rates: Default::default(),
        })
    }

    /// Refuses to show secret `name`'s plaintext to a token without the
    /// secrets scope in `namespace`.
    pub(crate) fn may_read_secrets(
        &self,
        headers: &axum::http::HeaderMap,
        namespace: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        auth::check(
            &self.settings.tokens,
            self.settings.no_auth,
            headers,
            namespace,
            Scope::Secrets,
        )
        .map(drop)
        .map_err(|_| {
            ApiError::forbidden(format!(
                "{name} is a secret: reading its value takes a token with the secrets scope"
            ))
        })
    }

    /// The client of `namespace` for a request that needs `scope` there:
    /// the token is checked first, so nothing is connected for a refused one.
    pub(crate) async fn authorized(
        &self,
        headers: &axum::http::HeaderMap,
        namespace: &str,
        scope: Scope,
    ) -> Result<Client, ApiError> {
        let token = auth::check(
            &self.settings.tokens,
            self.settings.no_auth,
            headers,
            namespace,
            scope,
        )?;
        let client = self.client(namespace).await?;
        if scope == Scope::Read {
            return Ok(client);
        }
        // Writes are audited as the token, with the caller's reason.
        let actor = token.map_or(ANONYMOUS, |t| t.name.as_str());
        if let Some(rate) = self.settings.write_rate_per_token {
            if let Err(wait) = self.write_rates.take(actor, rate) {
                self.metrics.refused("write_rate");
                return Err(ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "too_many_writes",
                    format!("token {actor:?} writes faster than write_rate_per_token ({rate}/s)"),
                )
                .retry_after(wait));
            }
        }
        let client = client.with_actor(actor, cfgd::audit::Via::Http);
        Ok(match headers.get(MESSAGE_HEADER) {
            Some(message) => {
                let message = message.to_str().map_err(|_| {
                    ApiError::bad_request(format!("{MESSAGE_HEADER} must be visible ASCII"))
                })?;
                client.with_message(message)
            }
            None => client,
        })
    }

    /// A place for one more long-lived stream of `token` (its name, or a
    /// stand-in for callers without one), or the refusal, counted.
    fn stream_permit(&self, token: &str) -> Result<limits::Permit, limits::Full> {
        let permit = self.streams.acquire(
            token,
            self.settings.max_streams,
            self.settings.max_streams_per_token,
        );
        if let Err(full) = &permit {
            self.metrics.refused(match full {
                limits::Full::Server => "streams",
                limits::Full::Token => "streams_per_token",
            });
        }
        permit
    }

    /// [`stream_permit`](Self::stream_permit) for an HTTP request: the
    /// token it presents, and the refusal as 503 or 429 with `Retry-After`.
    fn http_stream_permit(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<limits::Permit, ApiError> {
        let token = auth::identify(&self.settings.tokens, headers)
            .ok()
            .flatten()
            .map_or(ANONYMOUS, |t| t.name.as_str());
        self.stream_permit(token).map_err(|full| {
            let error = match full {
                limits::Full::Server => ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_streams",
                    "the server holds as many streams as it allows (max_streams); retry later",
                ),
                limits::Full::Token => ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "too_many_streams",
                    format!(
                        "token {token:?} holds as many streams as it may (max_streams_per_token); close one or retry later"
                    ),
                ),
            };
            error.retry_after(limits::RETRY_AFTER_SECS)
        })
    }

    /// Every namespace served so far, with its client, as of now.
    pub(crate) async fn served(&self) -> Vec<(String, Client)> {
        let clients = self.clients.lock().await;
        clients
            .iter()
            .map(|(ns, c)| (ns.clone(), c.clone()))
            .collect()
    }

    /// The live client of `namespace`, connecting it on first use.
    pub(crate) async fn client(&self, namespace: &str) -> cfgd::Result<Client> {
        cfgd::validate_namespace(namespace)?;
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(namespace) {
            return Ok(client.clone());
        }
        let mut builder = self.builder.clone().namespace(namespace);
        if let Some(file) = &self.settings.snapshot {
            builder = builder.snapshot(file);
        }
        let client = builder.connect().await?;
        clients.insert(namespace.to_owned(), client.clone());
        Ok(client)
    }
}

/// 32 bytes from the kernel's random source.
fn random_secret() -> [u8; 32] {
    use std::io::Read;
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .expect("read /dev/urandom");
    secret
}

/// The router, ready to serve.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ui", get(ui::redirect))
        .route("/ui/", get(ui::index))
        .route("/ui/{file}", get(ui::file))
        .route("/v1/whoami", get(ui::whoami))
        .route("/v1/namespaces", get(ui::namespaces))
        .route(
            "/v1/namespaces/{ns}/rollback/{*name}",
            axum::routing::post(rest::rollback),
        )
        .route("/readyz", get(rest::readyz))
        .route("/v1/namespaces/{ns}/config", get(rest::list_config))
        .route(
            "/v1/namespaces/{ns}/config/{*name}",
            get(rest::get_config)
                .put(rest::put_config)
                .delete(rest::delete_config),
        )
        .route(
            "/v1/namespaces/{ns}/history/{*name}",
            get(rest::get_history),
        )
        .route("/v1/namespaces/{ns}/watch", get(sse::watch))
        .route(
            "/v1/namespaces/{ns}/diff",
            get(diff::namespaces).post(diff::document),
        )
        .route("/v1/namespaces/{ns}/audit", get(audit::list))
        .route(
            "/v1/namespaces/{ns}/releases",
            get(releases::list).post(releases::publish),
        )
        .route("/v1/namespaces/{ns}/releases/{id}", get(releases::show))
        .route(
            "/v1/namespaces/{ns}/releases/{id}/revert",
            axum::routing::post(releases::revert),
        )
        .route(
            "/v1/namespaces/{ns}/policy",
            get(requests::get_policy).put(requests::put_policy),
        )
        .route(
            "/v1/namespaces/{ns}/requests",
            get(requests::list).post(requests::create),
        )
        .route("/v1/namespaces/{ns}/requests/{id}", get(requests::show))
        .route(
            "/v1/namespaces/{ns}/requests/{id}/{step}",
            axum::routing::post(requests::step),
        )
        .route("/v1/namespaces/{ns}/schemas", get(schemas::list))
        .route(
            "/v1/namespaces/{ns}/schemas/{*pattern}",
            get(schemas::get).put(schemas::put).delete(schemas::delete),
        )
        .route("/v1/namespaces/{ns}/flagd.json", get(rest::flagd_document))
        .route("/v1/namespaces/{ns}/flags", get(rest::list_flags))
        .route(
            "/v1/namespaces/{ns}/flags/{name}",
            get(rest::get_flag)
                .put(rest::put_flag)
                .delete(rest::delete_flag),
        )
        .route(
            "/ofrep/v1/evaluate/flags/{key}",
            axum::routing::post(ofrep::evaluate_one),
        )
        .route(
            "/ofrep/v1/evaluate/flags",
            axum::routing::post(ofrep::evaluate_all),
        )
        .route("/ofrep/v1/events", get(ofrep::events))
        .route("/metrics", get(metrics::metrics))
        // Every route reads its body whole: bound it (413 beyond).
        .layer(axum::extract::DefaultBodyLimit::max(
            state.settings.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Serves `app` on `listener` (with TLS when the settings name a
/// certificate) until `shutdown` resolves, then stops accepting and lets
/// requests in flight finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Namespaces in the snapshot are loaded now, so that they are served
    // (and /readyz says so) even if etcd is down from the start.
    if let Some(file) = &state.settings.snapshot {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let namespaces = cfgd::snapshot_namespaces(file, &state.settings.root)
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "not serving the snapshot; it is replaced once etcd answers");
                Vec::new()
            });
        for ns in namespaces {
            if let Err(error) = state.client(&ns).await {
                tracing::warn!(namespace = ns, %error, "not serving this namespace's snapshot");
            }
        }
    }
    let pruning = tokio::spawn(prune_audit(state.clone()));
    let served = match state
        .settings
        .listener_tls()
        .map_err(std::io::Error::other)?
    {
        Some(config) => serve(tls::Listener::new(listener, config)?, state, shutdown).await,
        None => serve(listener, state, shutdown).await,
    };
    pruning.abort();
    served
}

/// Keeps each served namespace's audit trail within the settings' age and
/// count, every 10 minutes.
async fn prune_audit(state: Arc<AppState>) {
    const EVERY: Duration = Duration::from_secs(600);
    let settings = &state.settings;
    let max_age = (settings.audit_max_age_days > 0.0)
        .then(|| Duration::from_secs_f64(settings.audit_max_age_days * 86_400.0));
    let max_records = (settings.audit_max_records > 0).then_some(settings.audit_max_records);
    if max_age.is_none() && max_records.is_none() {
        return;
    }
    loop {
        tokio::time::sleep(EVERY).await;
        for (namespace, client) in state.served().await {
            match client.prune_audit(max_age, max_records).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(namespace, pruned, "audit records pruned"),
                Err(error) => tracing::warn!(namespace, %error, "pruning audit records failed"),
            }
        }
    }
}

/// Serves each connection: an event stream by [`conn`], any other with
/// hyper's HTTP/1. Both under a header read timeout, which `axum::serve`
/// does not set: without it a client that sends a header line every few
/// seconds keeps its connection forever.
async fn serve<L>(
    mut listener: L,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;

    let router = app(state.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(timer::LazyTimer)
        .header_read_timeout(state.settings.header_read_timeout)
        // What a connection may hold waiting for its client: hyper's ~400
        // KB default, times every SSE client that stops reading, is what a
        // server full of them would hold. Bodies stream past this buffer.
        .max_buf_size(64 * 1024);
    let mut connections = tokio::task::JoinSet::new();
    // Past max_connections a connection gets one answer, 503, and is closed:
    // cheaper than leaving it waiting, and the client knows to retry.
    let mut refusing = http.clone();
    refusing.keep_alive(false);
    let busy = Router::new().fallback(|| async {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "the server holds as many connections as it allows (max_connections); retry later",
        )
        .retry_after(limits::RETRY_AFTER_SECS)
    });
    tokio::pin!(shutdown);
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // Reap finished connections so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        if connections.len() >= state.settings.max_connections {
            state.metrics.refused("connections");
            let refusal =
                refusing.serve_connection(TokioIo::new(io), TowerToHyperService::new(busy.clone()));
            let limit = state.settings.header_read_timeout;
            tokio::spawn(async move { drop(tokio::time::timeout(limit, refusal).await) });
            continue;
        }
        let (router, http) = (router.clone(), http.clone());
        let header_read_timeout = state.settings.header_read_timeout;
        let mut ending = state.shutdown.subscribe();
        connections.spawn(async move {
            let first = tokio::select! {
                first = tokio::time::timeout(header_read_timeout, conn::first(io)) => first,
                _ = ending.wait_for(|ending| *ending) => return,
            };
            let io = match first {
                Ok(Some(conn::First::Stream(io, request))) => {
                    return conn::stream(io, request, router).await;
                }
                Ok(Some(conn::First::Http(io))) => io,
                // Slow or gone before a whole head: closed.
                Ok(None) | Err(_) => return,
            };
            // Boxed, so that a stream's task is not as large as hyper's state.
            let mut connection =
                Box::pin(http.serve_connection(TokioIo::new(io), TowerToHyperService::new(router)));
            tokio::select! {
                _ = connection.as_mut() => {}
                () = async { drop(ending.wait_for(|ending| *ending).await) } => {
                    // Finish the request in flight, then close.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    // Open SSE streams end now; other requests finish.
    state.shutdown.send_replace(true);
    let drain = state.settings.drain_timeout;
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, drained).await.is_err() {
        tracing::warn!(
            ?drain,
            "requests still in flight after the drain timeout; stopping anyway"
        );
        connections.abort_all();
    }
    Ok(())
}

#[cfg(test)]
#[path = "../../../tests/common/kinds.rs"]
mod kinds;

#[cfg(test)]
mod error_kind_tests {
    /// The HTTP status and gRPC code of every error kind are those the
    /// docs' table states.
    #[test]
    fn every_error_kind_maps_to_the_documented_status_and_code() {
        for (kind, row) in crate::kinds::documented() {
            assert_eq!(
                super::http_status(kind).as_u16().to_string(),
                row.http,
                "{kind:?}"
            );
            let code = format!("{:?}", super::grpc_code(kind));
            // tonic names codes in CamelCase, the table as the gRPC spec does.
            let spec: String = code
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    let sep = (i > 0 && c.is_uppercase()).then_some('_');
                    sep.into_iter().chain(c.to_uppercase())
                })
                .collect();
            assert_eq!(spec, row.grpc, "{kind:?}");
        }
    }
}
