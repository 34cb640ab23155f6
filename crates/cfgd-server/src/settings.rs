//! [`Settings`]: what the server is configured with, from flags, `CFGD_*`
//! variables or a TOML file, and their checks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use cfgd::{Client, ClientBuilder};

use crate::auth::Token;
use crate::tls;

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
    #[serde(with = "crate::secs")]
    pub connect_timeout: Duration,
    /// Seconds between SSE heartbeat comments.
    #[serde(with = "crate::secs")]
    pub heartbeat: Duration,
    /// Seconds requests in flight get to finish at shutdown.
    #[serde(with = "crate::secs")]
    pub drain_timeout: Duration,
    /// Seconds a client gets to send a request's headers, and an idle
    /// keep-alive connection to start its next request, before the
    /// connection is closed: slow or stalled clients cannot hold
    /// connections open.
    #[serde(with = "crate::secs")]
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
    /// The elected worker (webhooks, schedules).
    pub workers: WorkerSettings,
    /// Webhook delivery.
    pub webhooks: WebhookSettings,
    /// Single sign-on with an OpenID Connect issuer, for the console and
    /// the API; off unless set.
    pub oidc: Option<crate::oidc::OidcSettings>,
}

/// The `[workers]` table: one replica at a time runs the workers, elected
/// through etcd.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Seconds of the elected replica's lease: how long a replica that
    /// died holds the workers before another takes them (whole seconds,
    /// at least 1).
    #[serde(with = "crate::secs")]
    pub ttl: Duration,
    /// This replica's name in the election and in each delivery's
    /// `cfgd-replica` header; `{hostname}-{pid}` unless set.
    pub replica: Option<String>,
    /// Run no workers here (a replica that only serves).
    pub disabled: bool,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            ttl: cfgd::election::DEFAULT_TTL,
            replica: None,
            disabled: false,
        }
    }
}

/// The `[webhooks]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Deliver to receivers on loopback or link-local addresses (the
    /// machine itself, a cloud's metadata service): off, so that a webhook
    /// cannot be aimed inside.
    pub allow_loopback: bool,
    /// Seconds an event is retried before it is marked failed and skipped.
    #[serde(with = "crate::secs")]
    pub retry_for: Duration,
    /// Seconds before the first retry; each next one waits twice as long,
    /// with jitter, up to `retry_max`.
    #[serde(with = "crate::secs")]
    pub retry_min: Duration,
    /// The longest wait between retries, in seconds.
    #[serde(with = "crate::secs")]
    pub retry_max: Duration,
    /// Seconds a receiver gets to answer one attempt.
    #[serde(with = "crate::secs")]
    pub timeout: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow_loopback: false,
            retry_for: Duration::from_secs(24 * 3600),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
        }
    }
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
            workers: WorkerSettings::default(),
            webhooks: WebhookSettings::default(),
            oidc: None,
        }
    }
}

impl Settings {
    /// Checks what a server must not start with: no tokens and auth not
    /// explicitly turned off, a token without a usable secret, a bad scope.
    pub fn validate(&self) -> Result<(), String> {
        if !self.no_auth && self.tokens.is_empty() && self.oidc.is_none() {
            return Err("no tokens configured: add [[tokens]] (or [oidc]) to the config file, or pass --no-auth to serve without auth".into());
        }
        if let Some(oidc) = &self.oidc {
            oidc.validate()?;
            crate::oidc::Oidc::new(oidc.clone())?;
        }
        for token in &self.tokens {
            token.validate()?;
        }
        cfgd::validate_root(&self.root).map_err(|e| e.to_string())?;
        if self.workers.ttl < Duration::from_secs(1) {
            return Err("[workers] ttl must be at least 1 (seconds)".into());
        }
        let hooks = &self.webhooks;
        if hooks.retry_min.is_zero() || hooks.timeout.is_zero() || hooks.retry_max < hooks.retry_min
        {
            return Err("[webhooks] retry_min and timeout must be above 0, and retry_max at least retry_min (seconds)".into());
        }
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
    pub(crate) fn listener_tls(
        &self,
    ) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, String> {
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

    pub(crate) fn builder(&self) -> ClientBuilder {
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
pub(crate) fn setting_flag(setting: cfgd::TlsSetting) -> &'static str {
    match setting {
        cfgd::TlsSetting::ClientCert => "etcd_cert and etcd_key: --etcd-cert, --etcd-key",
        _ => "etcd_ca: --etcd-ca",
    }
}
