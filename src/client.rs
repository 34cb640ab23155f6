//! The config client: typed reads and writes of JSON values in one namespace.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use tokio::sync::OnceCell;

use crate::live::{self, Change, OnChange, Shared, Status, Subscription};
use crate::live_value::Live;
use crate::{defaults, snapshot};
use etcd_client::{
    Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, KvClient, Txn, TxnOp,
    TxnOpResponse,
};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;
use tonic::Code;

use crate::error::{Error, Result};
use crate::flags;
use crate::key::{self, KeySpace, Kind};
use crate::value;
use serde_json::Value;

/// An etcd revision: the ETag, compare-and-set token and resume point of
/// every value. `0` means "absent" wherever a revision is expected.
pub type Revision = i64;

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// Read from etcd by this request (a client built with `live(false)`).
    Etcd,
    /// From etcd, as kept current in memory by the client's watch.
    Cache,
    /// From the snapshot file; etcd has not been reached since start.
    Snapshot,
    /// From the defaults file; etcd does not hold the name.
    Defaults,
    /// The default given in code.
    Default,
}

/// A value with the metadata etcd keeps about it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry<T = serde_json::Value> {
    /// The name within the namespace, for example `database.config`.
    pub name: String,
    /// The decoded value.
    pub value: T,
    /// The revision that last modified the key (etcd's `mod_revision`).
    pub revision: Revision,
    /// The revision that created the key in its current life.
    pub create_revision: Revision,
    /// How many times the key was written since it was created (1 = once).
    pub version: i64,
    /// Where the value came from.
    pub source: Source,
}

/// An entry's metadata, without its name and value.
#[derive(Clone, Copy)]
struct Meta {
    revision: Revision,
    create_revision: Revision,
    version: i64,
    source: Source,
}

impl Meta {
    fn of(stored: &live::Stored) -> Self {
        Meta {
            revision: stored.revision,
            create_revision: stored.create_revision,
            version: stored.version,
            source: stored.origin,
        }
    }

    fn defaults() -> Self {
        Meta {
            revision: 0,
            create_revision: 0,
            version: 0,
            source: Source::Defaults,
        }
    }
}

/// What [`Client::import`] wrote, or would write with `dry_run`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Names that did not exist.
    pub created: Vec<String>,
    /// Names whose value changed.
    pub updated: Vec<String>,
    /// Names that already held the same value (not written).
    pub unchanged: Vec<String>,
    /// The revision of the last batch written; `None` if nothing was.
    pub revision: Option<Revision>,
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CACHE_CAPACITY: u64 = 10_000;
/// Changes buffered per subscriber before it counts as lagging (and is
/// caught up from the mirror instead).
const DEFAULT_CHANNEL_CAPACITY: usize = 4096;
/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;
/// Keys fetched per `list` request: bounded so one page of 1 MiB values stays
/// far below the decoding limit below.
const LIST_PAGE: i64 = 64;
/// HTTP/2 pings find a dead connection without waiting for TCP; etcd's
/// default `--grpc-keepalive-min-time` of 5 s forbids pinging faster.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Configures and connects a [`Client`].
///
/// ```no_run
/// # async fn demo() -> cfgd::Result<()> {
/// use std::time::Duration;
///
/// let client = cfgd::Client::builder()
///     .endpoints(["http://10.0.0.1:2379", "http://10.0.0.2:2379"])
///     .namespace("prod")
///     .connect_timeout(Duration::from_secs(2))
///     .user("svc", "secret")
///     .snapshot("/var/lib/my-service/cfgd-snapshot.json")
///     .defaults_file("/etc/my-service/defaults.json")
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    namespace: String,
    root: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    user: Option<(String, String)>,
    live: bool,
    cache_capacity: u64,
    channel_capacity: usize,
    snapshot: Option<PathBuf>,
    redact: Vec<String>,
    defaults_file: Option<PathBuf>,
    /// Another client's connection (and watch) to use instead of a new one.
    conn: Option<Arc<Conn>>,
    /// PEM files: the CA that signs etcd's certificates, and this client's
    /// certificate and key.
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            namespace: "default".to_owned(),
            root: key::DEFAULT_ROOT.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            user: None,
            live: true,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            snapshot: None,
            redact: Vec::new(),
            defaults_file: None,
            conn: None,
            ca_file: None,
            client_cert: None,
        }
    }
}

impl ClientBuilder {
    /// A builder for `http://127.0.0.1:2379`, namespace `default`, root
    /// `/cfgd`, 5 s connect and request timeouts, live.
    pub fn new() -> Self {
        Self::default()
    }

    /// The etcd endpoints (`http://host:port` or `host:port`); requests are
    /// balanced across them.
    pub fn endpoints<I, S>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// The namespace all names live in (`prod`, `user-service`, ...).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The etcd prefix above all namespaces; `/cfgd` unless set.
    pub fn root(mut self, root: impl Into<String>) -> Self {
        self.root = root.into();
        self
    }

    /// How long [`connect`](Self::connect) may take before it gives up with
    /// [`Error::Unreachable`] (or falls back to the snapshot).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long any one request may take before it fails with
    /// [`Error::Timeout`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Authenticate to etcd as this user.
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((name.into(), password.into()));
        self
    }

    /// Live mode (the default) reads the namespace once at connect and keeps
    /// it current with one etcd watch: reads are served from memory, and
    /// [`watch`](Client::watch) and [`subscribe`](Client::subscribe) work.
    /// `live(false)` sends every read to etcd and starts no background task,
    /// which suits one-shot tools.
    pub fn live(mut self, live: bool) -> Self {
        self.live = live;
        self
    }

    /// How many decoded values the read cache keeps (10,000 by default).
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// How many changes may queue for one subscriber before it is caught up
    /// from the current values instead (4,096 by default).
    pub fn channel_capacity(mut self, changes: usize) -> Self {
        self.channel_capacity = changes.max(1);
        self
    }

    /// Keep the last known values in this file, and start from it when etcd
    /// cannot be reached at connect.
    pub fn snapshot(mut self, path: impl Into<PathBuf>) -> Self {
        self.snapshot = Some(path.into());
        self
    }

    /// Leave names starting with `prefix` out of the snapshot file (secrets
    /// must not land on disk). May be given several times.
    pub fn redact(mut self, prefix: impl Into<String>) -> Self {
        self.redact.push(prefix.into());
        self
    }

    /// A JSON object of name → value, watched and applied live, used for
    /// names etcd does not hold.
    pub fn defaults_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.defaults_file = Some(path.into());
        self
    }

    /// TLS to etcd: trust the CA in this PEM file for etcd's certificates
    /// (etcd's `--trusted-ca-file` side). Endpoints are then `https://`.
    #[cfg(feature = "tls")]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// TLS to etcd: present this certificate and key (PEM files), for an
    /// etcd started with `--client-cert-auth`.
    #[cfg(feature = "tls")]
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Use `client`'s etcd connection and its one watch instead of opening
    /// new ones: for a process that reads several namespaces. Endpoints,
    /// user, root and timeouts then come from `client`; the namespace and
    /// everything else (live, snapshot, defaults file, capacities) from this
    /// builder. The watch covers the first namespace's keys only, and the
    /// whole root once a second namespace shares it, so the etcd user needs
    /// read access to the root for that.
    ///
    /// ```no_run
    /// # async fn demo() -> cfgd::Result<()> {
    /// let orders = cfgd::Client::builder().namespace("orders").connect().await?;
    /// let billing = cfgd::Client::builder()
    ///     .namespace("billing")
    ///     .share(&orders)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn share(mut self, client: &Client) -> Self {
        self.conn = Some(client.inner.conn.clone());
        self
    }

    /// The connection this builder would open, unopened, for a process that
    /// attaches namespaces to it as they are needed.
    pub(crate) fn conn(&self) -> Result<Arc<Conn>> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        key::validate_root(&self.root)?;
        if self.endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            .with_keep_alive_while_idle(false)
            // A member cut off from the others must not serve a watch that
            // can never see new writes.
            .with_require_leader(true);
        if let Some((name, password)) = &self.user {
            // etcd's auth tokens expire (5 minutes by default); a long-lived
            // service must renew them rather than start failing.
            options = options
                .with_user(name.as_str(), password.as_str())
                .with_auto_token_refresh(true);
        }
        options = self.tls(options)?;
        Ok(Arc::new(Conn {
            etcd: OnceCell::new(),
            spec: ConnectSpec {
                endpoints: self.endpoints.clone(),
                options,
                timeout: self.connect_timeout,
                probe_key: format!("{}/", self.root),
                without_client_cert: self.ca_file.is_some() && self.client_cert.is_none(),
            },
            endpoints: self.endpoints.join(","),
            root: self.root.clone(),
            request_timeout: self.request_timeout,
            user: self.user.clone(),
            hub: Default::default(),
        }))
    }

    /// Adds the TLS settings to `options`, checking them against the
    /// endpoints: a half-TLS setup fails here with one clear line, not at the
    /// first request with a transport error.
    fn tls(&self, options: ConnectOptions) -> Result<ConnectOptions> {
        let https = self
            .endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        let wanted = self.ca_file.is_some() || self.client_cert.is_some();
        let fail = |what: String| Err(Error::Tls { what });
        if https > 0 && https < self.endpoints.len() {
            return fail("mixed http:// and https:// endpoints".into());
        }
        if !wanted {
            if https > 0 {
                return fail(
                    "https:// endpoints need the CA that signs etcd's certificates \
                     (cfgctl --cacert, cfgd --etcd-ca)"
                        .into(),
                );
            }
            return Ok(options);
        }
        if https == 0 {
            return fail("a CA file or client certificate needs https:// endpoints".into());
        }
        #[cfg(feature = "tls")]
        {
            // A file of the wrong kind (a key given as the CA) would
            // otherwise surface later as a puzzling handshake failure.
            let read = |path: &PathBuf, what: &str, holds: &str| -> Result<Vec<u8>> {
                let bytes = std::fs::read(path).map_err(|e| Error::Tls {
                    what: format!("cannot read the {what} {}: {e}", path.display()),
                })?;
                let text = String::from_utf8_lossy(&bytes);
                if !text
                    .lines()
                    .any(|l| l.starts_with("-----BEGIN ") && l.ends_with(holds))
                {
                    return Err(Error::Tls {
                        what: format!(
                            "the {what} {} is not PEM with a {}",
                            path.display(),
                            holds.trim_end_matches('-')
                        ),
                    });
                }
                Ok(bytes)
            };
            let Some(ca) = &self.ca_file else {
                return fail(
                    "a client certificate needs the CA that signs etcd's certificates too \
                     (cfgctl --cacert, cfgd --etcd-ca)"
                        .into(),
                );
            };
            let mut tls = etcd_client::TlsOptions::new().ca_certificate(
                etcd_client::Certificate::from_pem(read(ca, "CA file", "CERTIFICATE-----")?),
            );
            if let Some((cert, key)) = &self.client_cert {
                tls = tls.identity(etcd_client::Identity::from_pem(
                    read(cert, "client certificate", "CERTIFICATE-----")?,
                    read(key, "client key", "PRIVATE KEY-----")?,
                ));
            }
            Ok(options.with_tls(tls))
        }
        #[cfg(not(feature = "tls"))]
        fail("this build has no TLS: enable cfgd's `tls` feature".into())
    }

    /// Like [`share`](Self::share), from inside the crate.
    #[cfg(feature = "server")]
    pub(crate) fn on(mut self, conn: Arc<Conn>) -> Self {
        self.conn = Some(conn);
        self
    }

    /// Connects and proves etcd answers, within the connect timeout. In live
    /// mode it also reads the namespace and starts the watch; if etcd cannot
    /// be reached and a snapshot file exists, it starts from the snapshot
    /// ([`Status::Offline`]) and keeps trying in the background.
    pub async fn connect(self) -> Result<Client> {
        let conn = self.conn()?;
        let space = KeySpace::new(&conn.root, &self.namespace)?;
        if !self.live {
            let what = if self.snapshot.is_some() {
                Some("a snapshot")
            } else if self.defaults_file.is_some() {
                Some("a defaults file")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(Error::NotLive { what });
            }
        }
        let inner = Inner {
            conn,
            space,
            live: None,
            cache: None,
            tasks: Default::default(),
            defaults: None,
        };
        if !self.live {
            inner.etcd().await?;
            return Ok(Client {
                inner: Arc::new(inner),
            });
        }
        self.connect_live(inner).await
    }

    async fn connect_live(self, mut inner: Inner) -> Result<Client> {
        let shared = Arc::new(Shared::new(
            inner.space.base().to_owned(),
            self.channel_capacity,
            Status::Connected { revision: 0 },
        ));
        if let Some(path) = &self.defaults_file {
            shared.defaults.store(Arc::new(defaults::read(path)?));
            inner.defaults = Some(defaults::watch(path.clone(), Arc::downgrade(&shared))?);
        }
        let snapshot = self.snapshot.as_ref().map(|path| snapshot::Settings {
            path: path.clone(),
            root: inner.conn.root.clone(),
            namespace: self.namespace.clone(),
            redact: self.redact.clone(),
        });
        let hub = inner.conn.hub();
        hub.attach(&shared);
        let conn = &inner.conn;
        let deadline = tokio::time::Instant::now() + conn.spec.timeout;
        let online = async {
            let etcd = inner.etcd().await?;
            match tokio::time::timeout_at(deadline, live::load(&etcd.client, &shared)).await {
                Ok(loaded) => {
                    loaded.map_err(|e| classify(e, &shared.base, None, &conn.endpoints, &conn.user))
                }
                Err(_) => Err(Error::Unreachable {
                    endpoints: conn.endpoints.clone(),
                    waited: conn.spec.timeout,
                    cause: None,
                }),
            }
        }
        .await;
        match (online, &snapshot) {
            (Ok((revision, fresh)), _) => {
                hub.activated(&shared, revision, fresh);
                shared.status.send_replace(Status::Connected { revision });
                hub.wait_for_watch(&shared, deadline).await;
            }
            (Err(e), Some(settings)) if e.is_unreachable() => {
                let Some((revision, entries)) = snapshot::load(settings)? else {
                    return Err(e);
                };
                tracing::warn!(error = %e, path = %settings.path.display(), "etcd unreachable; serving the snapshot");
                shared.load_snapshot(revision, entries);
                shared.status.send_replace(Status::Offline {
                    since: SystemTime::now(),
                    revision,
                });
                // The hub reads the namespace once etcd answers.
                hub.needs_load(&shared);
            }
            (Err(e), _) => return Err(e),
        }
        inner.cache = Some(moka::sync::Cache::new(self.cache_capacity));
        inner.live = Some(shared.clone());
        let inner = Arc::new(inner);
        if let Some(settings) = snapshot {
            let writer = tokio::spawn(snapshot::writer(shared.clone(), settings));
            inner
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(writer);
        }
        Ok(Client { inner })
    }
}

/// How to reach etcd; kept so a client that started offline can connect later.
struct ConnectSpec {
    endpoints: Vec<String>,
    options: ConnectOptions,
    timeout: Duration,
    probe_key: String,
    /// TLS without a client certificate: an etcd with `--client-cert-auth`
    /// then hangs up right after the handshake, which says nothing by itself.
    without_client_cert: bool,
}

pub(crate) struct Etcd {
    pub(crate) client: etcd_client::Client,
    kv: KvClient,
}

/// A connection to cfgd's store, bound to one namespace.
///
/// Cheap to clone: clones share one connection, one watch and one cache. The
/// background tasks stop when the last clone (and the last [`Live`] and
/// [`Subscription`] made from it) is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

type DecodedCache = moka::sync::Cache<(Arc<str>, TypeId), (Revision, Arc<dyn Any + Send + Sync>)>;

/// One etcd connection and its one watch, shared by the clients of every
/// namespace made with [`ClientBuilder::share`].
pub(crate) struct Conn {
    etcd: OnceCell<Etcd>,
    spec: ConnectSpec,
    endpoints: String,
    root: String,
    request_timeout: Duration,
    user: Option<(String, String)>,
    hub: std::sync::Mutex<Option<(Arc<live::Hub>, tokio::task::JoinHandle<()>)>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so the password never reaches a log.
        f.debug_struct("Conn")
            .field("endpoints", &self.endpoints)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some((_, task)) = self.hub.get_mut().unwrap_or_else(|e| e.into_inner()) {
            task.abort();
        }
    }
}

impl Conn {
    /// The etcd connection, made (and probed) on first use within the
    /// connect timeout.
    pub(crate) async fn etcd(&self) -> Result<&Etcd> {
        self.etcd
            .get_or_try_init(|| connect_etcd(&self.spec, &self.endpoints, &self.user))
            .await
    }

    /// The watch, started by the first live namespace.
    fn hub(self: &Arc<Self>) -> Arc<live::Hub> {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        let (hub, _) = hub.get_or_insert_with(|| {
            let hub = Arc::new(live::Hub::new(&self.root));
            let task = tokio::spawn(live::run(Arc::downgrade(self), hub.clone()));
            (hub, task)
        });
        hub.clone()
    }
}

/// One namespace's view of a [`Conn`].
pub(crate) struct Inner {
    conn: Arc<Conn>,
    space: KeySpace,
    live: Option<Arc<Shared>>,
    /// Decoded values by (name, type), checked against the mirror's revision.
    cache: Option<DecodedCache>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    defaults: Option<defaults::Watch>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(|e| e.into_inner()) {
            task.abort();
        }
    }
}

impl Inner {
    pub(crate) async fn etcd(&self) -> Result<&Etcd> {
        self.conn.etcd().await
    }
}

async fn connect_etcd(
    spec: &ConnectSpec,
    endpoints: &str,
    user: &Option<(String, String)>,
) -> Result<Etcd> {
    let attempt = async {
        let client =
            etcd_client::Client::connect(&spec.endpoints, Some(spec.options.clone())).await?;
        // The connection is lazy: only a request shows that etcd is there
        // and has a quorum. Being refused the read still proves both.
        let probe = client
            .kv_client()
            .get(
                spec.probe_key.as_str(),
                Some(GetOptions::new().with_count_only()),
            )
            .await;
        match probe {
            Err(etcd_client::Error::GRpcStatus(s)) if s.code() == Code::PermissionDenied => {}
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        Ok(client)
    };
    match tokio::time::timeout(spec.timeout, attempt).await {
        Ok(Ok(client)) => {
            let kv = client
                .kv_client()
                .max_decoding_message_size(live::MAX_DECODE);
            Ok(Etcd { client, kv })
        }
        Ok(Err(e @ (etcd_client::Error::InvalidUri(_) | etcd_client::Error::InvalidArgs(_)))) => {
            Err(Error::InvalidEndpoints {
                endpoints: endpoints.to_owned(),
                cause: e,
            })
        }
        // etcd hangs up after the handshake: the request is then cancelled or
        // its stream broken, depending on timing. A down etcd says
        // Unavailable instead.
        Ok(Err(etcd_client::Error::GRpcStatus(s)))
            if spec.without_client_cert && matches!(s.code(), Code::Cancelled | Code::Unknown) =>
        {
            Err(Error::Tls {
                what: format!(
                    "etcd at {endpoints} closed the connection after the TLS handshake: \
                     with --client-cert-auth it wants a client certificate \
                     (cfgctl --cert/--key, cfgd --etcd-cert/--etcd-key)"
                ),
            })
        }
        Ok(Err(e)) => Err(classify(e, &spec.probe_key, None, endpoints, user)),
        Err(_) => Err(Error::Unreachable {
            endpoints: endpoints.to_owned(),
            waited: spec.timeout,
            cause: None,
        }),
    }
}

/// Feature flags: definitions in flagd's format under
/// `{root}/{namespace}/flags/{name}`, shared evaluators under
/// `flags/$evaluators`. Every write is checked strictly first
/// ([`flags::validate_flag`]); nothing invalid is stored.
impl Client {
    /// Evaluates this namespace's flags, kept current by the watch. An
    /// evaluation never touches etcd. Needs a live client.
    pub fn flags(&self) -> Result<Flags> {
        let shared = self.shared("flags")?;
        Ok(Flags {
            shared: shared.clone(),
            _client: self.inner.clone(),
        })
    }

    /// The etcd key that holds flag `name`.
    pub fn flag_etcd_key(&self, name: &str) -> Result<String> {
        self.flag_key(name)
    }

    fn flag_key(&self, name: &str) -> Result<String> {
        if name == flags::EVALUATORS {
            return Ok(self.inner.space.key_unchecked(Kind::Flags, name));
        }
        self.inner.space.key(Kind::Flags, name)
    }

    /// The stored evaluators and their revision (empty and 0 when none).
    async fn evaluators(&self) -> Result<(flags::Evaluators, Revision)> {
        let key = self.flag_key(flags::EVALUATORS)?;
        match self.fetch(&key, None).await? {
            None => Ok((flags::Evaluators::new(), 0)),
            Some(kv) => match serde_json::from_slice(kv.value()) {
                Ok(Value::Object(map)) => Ok((map, kv.mod_revision())),
                Ok(_) => Err(Error::InvalidFlag {
                    key,
                    reason: "the stored $evaluators is not a JSON object".into(),
                }),
                Err(cause) => Err(Error::CorruptValue {
                    key,
                    revision: kv.mod_revision(),
                    cause,
                }),
            },
        }
    }

    async fn checked_flag(&self, name: &str, definition: &Value) -> Result<(String, Vec<u8>)> {
        let key = self.flag_key(name)?;
        if name == flags::EVALUATORS {
            return Err(Error::InvalidName {
                name: name.to_owned(),
                reason: "$evaluators is written with set_evaluators",
            });
        }
        let (evaluators, _) = self.evaluators().await?;
        flags::validate_flag(&key, definition, &evaluators)?;
        let bytes = value::encode(&key, definition)?;
        Ok((key, bytes))
    }

    /// Stores a flag definition after checking it; returns the revision.
    pub async fn set_flag(&self, name: &str, definition: &Value) -> Result<Revision> {
        let (key, bytes) = self.checked_flag(name, definition).await?;
        self.put(key, bytes).await
    }

    /// [`set_flag`](Self::set_flag) from JSON text, as read from a file.
    pub async fn set_flag_json(&self, name: &str, json: &str) -> Result<Revision> {
        let key = self.flag_key(name)?;
        let definition: Value =
            serde_json::from_str(json).map_err(|cause| Error::InvalidJson { key, cause })?;
        self.set_flag(name, &definition).await
    }

    /// [`set_flag`](Self::set_flag) only if the flag is still at
    /// `expected` (0: only if absent); [`Error::Conflict`] otherwise.
    pub async fn set_flag_if(
        &self,
        name: &str,
        definition: &Value,
        expected: Revision,
    ) -> Result<Revision> {
        let (key, bytes) = self.checked_flag(name, definition).await?;
        self.put_if(key, bytes, expected).await
    }

    /// A flag's stored definition, read from etcd.
    pub async fn get_flag(&self, name: &str) -> Result<Option<Entry<Value>>> {
        let key = self.flag_key(name)?;
        match self.fetch(&key, None).await? {
            Some(kv) => Ok(Some(self.entry_of(Kind::Flags, name, &kv)?)),
            None => Ok(None),
        }
    }

    /// Deletes a flag; `None` when there was none.
    pub async fn delete_flag(&self, name: &str) -> Result<Option<Revision>> {
        self.delete_key(self.flag_key(name)?).await
    }

    /// Deletes a flag only if it is still at `expected`; otherwise
    /// [`Error::Conflict`]. A flag that is already gone is
    /// [`Error::NotFound`].
    pub async fn delete_flag_if(&self, name: &str, expected: Revision) -> Result<Revision> {
        self.delete_key_if(self.flag_key(name)?, expected).await
    }

    /// Every flag definition (not the evaluators), sorted by name.
    pub async fn list_flags(&self) -> Result<Vec<Entry<Value>>> {
        let mut out = Vec::new();
        for kv in self.list_raw(Kind::Flags, "").await? {
            match self.inner.space.name_of(Kind::Flags, kv.key()) {
                Some(name) if name != flags::EVALUATORS => {
                    out.push(self.entry_of(Kind::Flags, name, &kv)?)
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Every flag and the shared evaluators as one flagd document:
    /// `{"flags": {...}, "$evaluators": {...}}`.
    pub async fn export_flags(&self) -> Result<Value> {
        let flags: serde_json::Map<String, Value> = self
            .list_flags()
            .await?
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect();
        let mut document = serde_json::Map::new();
        document.insert("flags".into(), Value::Object(flags));
        let (evaluators, _) = self.evaluators().await?;
        if !evaluators.is_empty() {
            document.insert(flags::EVALUATORS.into(), Value::Object(evaluators));
        }
        Ok(Value::Object(document))
    }

    /// Loads a flagd document: every flag is checked against the document's
    /// `$evaluators` first, and so is every stored flag the document leaves
    /// alone; only then are the flags (and the evaluators) that differ
    /// written, the evaluators first. Stored flags the document does not
    /// name are kept. `dry_run` reports without writing.
    pub async fn import_flags(&self, document: &str, dry_run: bool) -> Result<ImportReport> {
        let doc = flags::parse_document(document)?;
        let mut wanted = Vec::with_capacity(doc.flags.len() + 1);
        if !doc.evaluators.is_empty() {
            let key = self.flag_key(flags::EVALUATORS)?;
            let bytes = value::encode(&key, &Value::Object(doc.evaluators.clone()))?;
            wanted.push((flags::EVALUATORS.to_owned(), key, bytes));
        }
        for (name, definition) in &doc.flags {
            let key = self.flag_key(name)?;
            flags::validate_flag(&key, definition, &doc.evaluators)?;
            let bytes = value::encode(&key, definition)?;
            wanted.push((name.clone(), key, bytes));
        }
        if !doc.evaluators.is_empty() {
            for stored in self.list_flags().await? {
                if !doc.flags.contains_key(&stored.name) {
                    let key = self.flag_key(&stored.name)?;
                    flags::validate_flag(&key, &stored.value, &doc.evaluators)?;
                }
            }
        }
        self.write_changed(Kind::Flags, wanted, dry_run).await
    }

    /// Replaces the shared evaluators, refusing a change that would leave
    /// any stored flag with a `$ref` to nothing (or otherwise invalid).
    pub async fn set_evaluators(&self, evaluators: &flags::Evaluators) -> Result<Revision> {
        let key = self.flag_key(flags::EVALUATORS)?;
        let (_, current) = self.evaluators().await?;
        for flag in self.list_flags().await? {
            let flag_key = self.flag_key(&flag.name)?;
            flags::validate_flag(&flag_key, &flag.value, evaluators)?;
        }
        let bytes = value::encode(&key, &Value::Object(evaluators.clone()))?;
        self.put_if(key, bytes, current).await
    }
}

/// Counters of a live client, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Reads answered from the decoded-value cache.
    pub cache_hits: u64,
    /// Reads that had to decode the stored JSON.
    pub cache_misses: u64,
    /// Full re-reads of the namespace (start, compaction, outage) plus
    /// subscribers caught up after falling behind.
    pub resyncs: u64,
    /// How far the applied revision trails the newest revision etcd
    /// reported on the watch stream.
    pub lag_revisions: i64,
}

/// Evaluates a namespace's flags from memory. Made by [`Client::flags`];
/// cheap to clone.
#[derive(Clone)]
pub struct Flags {
    shared: Arc<Shared>,
    _client: Arc<Inner>,
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flags").finish_non_exhaustive()
    }
}

impl Flags {
    /// Full details of one evaluation: value, variant, reason, error code.
    pub fn details<T: flags::FlagValue>(
        &self,
        key: &str,
        default: T,
        context: &Value,
    ) -> flags::Details<T> {
        self.shared.flags.load().evaluate(key, default, context)
    }

    /// A boolean flag, or `default` on any problem.
    pub fn bool(&self, key: &str, default: bool, context: &Value) -> bool {
        self.details(key, default, context).value
    }

    /// A string flag, or `default` on any problem.
    pub fn string(&self, key: &str, default: &str, context: &Value) -> String {
        self.details(key, default.to_owned(), context).value
    }

    /// An integer flag, or `default` on any problem.
    pub fn int(&self, key: &str, default: i64, context: &Value) -> i64 {
        self.details(key, default, context).value
    }

    /// A float flag, or `default` on any problem.
    pub fn float(&self, key: &str, default: f64, context: &Value) -> f64 {
        self.details(key, default, context).value
    }

    /// An object flag, or `default` on any problem.
    pub fn object(&self, key: &str, default: Value, context: &Value) -> Value {
        self.details(key, default, context).value
    }

    /// The compiled flags as they are now.
    pub fn snapshot(&self) -> flags::FlagSet {
        flags::FlagSet::clone(&self.shared.flags.load())
    }

    /// Resolves at the next change of any flag (or of the evaluators) after
    /// this call: it starts listening at once, not when first polled.
    pub fn changed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shared.flag_changes.subscribe();
        rx.mark_unchanged();
        async move {
            let _ = rx.changed().await;
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so the password never reaches a log.
        f.debug_struct("Client")
            .field("endpoints", &self.inner.conn.endpoints)
            .field("namespace", &self.inner.space.namespace())
            .field("live", &self.inner.live.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// The namespace this client reads and writes.
    pub fn namespace(&self) -> &str {
        self.inner.space.namespace()
    }

    /// The etcd key that holds `name`, for example
    /// `/cfgd/prod/config/database.config`.
    pub fn etcd_key(&self, name: &str) -> Result<String> {
        self.inner.space.key(Kind::Config, name)
    }

    fn shared(&self, what: &'static str) -> Result<&Arc<Shared>> {
        self.inner.live.as_ref().ok_or(Error::NotLive { what })
    }

    /// A stream of every change to names starting with `prefix` (`""` for
    /// all), in revision order, from now on. See [`Subscription`].
    pub fn subscribe(&self, prefix: &str) -> Result<Subscription> {
        key::validate_prefix(prefix)?;
        let shared = self.shared("subscribe")?;
        Ok(Subscription::new(
            self.inner.clone(),
            shared.clone(),
            Kind::Config,
            prefix.to_owned(),
        ))
    }

    /// Calls `f` with every change to names starting with `prefix` (`""` for
    /// all), in revision order, from now on, until the returned handle is
    /// dropped. The cheapest way to follow changes: no task and no channel
    /// per callback.
    ///
    /// `f` runs on the watch's own task, right after the change is
    /// applied, so it must be quick and never block: hand longer work, and
    /// anything that awaits, to a task or a channel. It may use the
    /// client's other non-async methods, and add or drop callbacks. A
    /// callback that panics is logged and kept. A call already under way
    /// when the handle is dropped still finishes.
    ///
    /// Unlike a [`Subscription`], a callback never falls behind: it is
    /// called for each change before the watch reads further.
    ///
    /// ```no_run
    /// # fn demo(client: cfgd::Client) -> cfgd::Result<()> {
    /// let _keep = client.on_change("feature.", |change| {
    ///     println!("{} changed at {}", change.name(), change.revision());
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn on_change<F>(&self, prefix: &str, f: F) -> Result<OnChange>
    where
        F: FnMut(&Change) + Send + 'static,
    {
        key::validate_prefix(prefix)?;
        let shared = self.shared("on_change")?;
        Ok(OnChange::new(
            self.inner.clone(),
            shared.clone(),
            prefix.to_owned(),
            Box::new(f),
        ))
    }

    /// Like [`subscribe`](Self::subscribe), but first delivering every
    /// change after `revision` (for a consumer that reconnects, as SSE's
    /// `Last-Event-ID` does). Changes still held in memory (the last few
    /// thousand) come exactly as they happened; a resume from further back
    /// gets the current value of each name that changed since, flagged
    /// resync, deletions included.
    pub fn subscribe_from(&self, prefix: &str, revision: Revision) -> Result<Subscription> {
        key::validate_prefix(prefix)?;
        let shared = self.shared("subscribe")?;
        Ok(Subscription::resume(
            self.inner.clone(),
            shared.clone(),
            Kind::Config,
            prefix.to_owned(),
            revision,
        ))
    }

    /// A [`Live`] value that follows `name`: the stored value, else the
    /// defaults file's, else `default`.
    pub fn watch<T>(&self, name: &str, default: T) -> Result<Live<T>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        key::validate_name(name)?;
        let shared = self.shared("watch")?;
        Ok(Live::new(self.inner.clone(), shared, name, default))
    }

    /// The state of the link to etcd. A client built with `live(false)` has
    /// no standing link and always says `Connected` at revision 0.
    pub fn status(&self) -> Status {
        match &self.inner.live {
            Some(shared) => shared.status.borrow().clone(),
            None => Status::Connected { revision: 0 },
        }
    }

    /// A receiver that wakes on every change of [`status`](Self::status).
    pub fn status_changes(&self) -> Result<tokio::sync::watch::Receiver<Status>> {
        Ok(self.shared("status_changes")?.status.subscribe())
    }

    /// Counters for monitoring a live client (all zero for `live(false)`).
    pub fn stats(&self) -> Stats {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(shared) = &self.inner.live else {
            return Stats::default();
        };
        let applied = shared.read().revision;
        let etcd = shared.stats.etcd_revision.load(Relaxed);
        Stats {
            cache_hits: shared.stats.cache_hits.load(Relaxed),
            cache_misses: shared.stats.cache_misses.load(Relaxed),
            resyncs: shared.stats.resyncs.load(Relaxed),
            lag_revisions: (etcd - applied).max(0),
        }
    }

    /// Why the latest edit of the defaults file was refused, if it was.
    pub fn defaults_error(&self) -> Option<Arc<Error>> {
        let watch = self.inner.defaults.as_ref()?;
        watch
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads `name` as a `T`; `None` when it does not exist.
    ///
    /// A live client answers from memory: the value etcd's watch last
    /// delivered (or this client last wrote), decoded once per change.
    pub async fn get<T>(&self, name: &str) -> Result<Option<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        if let Some(shared) = &self.inner.live {
            // The hot path of a live client: no key string, no entry built.
            key::validate_name(name)?;
            return Ok(self.read_mirror(shared, name)?.map(|(value, _)| value));
        }
        // Boxed so that this future stays small: the etcd request's state
        // would otherwise be moved around on every cached read too.
        Ok(Box::pin(self.get_entry(name)).await?.map(|e| e.value))
    }

    /// Reads `name` as a `T`, or returns `default` when it is missing or
    /// anything goes wrong. Failures are logged (with `tracing`), never returned:
    /// this is the call for code that must keep running on its defaults.
    ///
    /// Precedence: etcd, then the snapshot, then the defaults file, then
    /// `default`.
    pub async fn get_or<T>(&self, name: &str, default: T) -> T
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        match self.get(name).await {
            Ok(Some(value)) => value,
            Ok(None) => default,
            Err(error) => {
                tracing::warn!(name, %error, "config read failed; using the default");
                default
            }
        }
    }

    /// Reads `name` with its revision and provenance ([`Entry::source`]).
    pub async fn get_entry<T>(&self, name: &str) -> Result<Option<Entry<T>>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let key = self.etcd_key(name)?;
        if let Some(shared) = &self.inner.live {
            return Ok(self.read_mirror(shared, name)?.map(|(value, meta)| Entry {
                name: name.to_owned(),
                value,
                revision: meta.revision,
                create_revision: meta.create_revision,
                version: meta.version,
                source: meta.source,
            }));
        }
        Ok(match self.fetch(&key, None).await? {
            Some(kv) => Some(self.entry(name, &kv)?),
            None => None,
        })
    }

    /// A read from the mirror (then the defaults file) of a live client.
    /// Decoded values are kept first in the entry itself, for the first type
    /// read, then in the bounded cache for other types.
    fn read_mirror<T>(&self, shared: &Shared, name: &str) -> Result<Option<(T, Meta)>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let count = |hit: bool| {
            let counter = if hit {
                &shared.stats.cache_hits
            } else {
                &shared.stats.cache_misses
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let found = {
            let mirror = shared.read();
            let Some((cache_name, stored)) =
                mirror.section(Kind::Config).entries.get_key_value(name)
            else {
                drop(mirror);
                let defaults = shared.defaults.load();
                let Some(raw) = defaults.get(name) else {
                    return Ok(None);
                };
                let value = value::decode(&self.etcd_key(name)?, 0, raw)?;
                return Ok(Some((value, Meta::defaults())));
            };
            let meta = Meta::of(stored);
            if let Some(value) = stored
                .decoded
                .get()
                .filter(|(type_id, _)| *type_id == TypeId::of::<T>())
                .and_then(|(_, any)| any.downcast_ref::<T>())
            {
                let value = value.clone();
                drop(mirror);
                count(true);
                return Ok(Some((value, meta)));
            }
            (cache_name.clone(), stored.clone(), meta)
        };
        let (cache_name, stored, meta) = found;
        let slot = (cache_name, TypeId::of::<T>());
        let cache = self.inner.cache.as_ref();
        if let Some(value) = cache
            .and_then(|c| c.get(&slot))
            .filter(|(revision, _)| *revision == stored.revision)
            .and_then(|(_, any)| any.downcast::<T>().ok())
        {
            count(true);
            return Ok(Some((T::clone(&value), meta)));
        }
        count(false);
        let value: T = value::decode(&self.etcd_key(name)?, stored.revision, &stored.raw)?;
        let shared_value: Arc<dyn Any + Send + Sync> = Arc::new(value.clone());
        if stored
            .decoded
            .set((TypeId::of::<T>(), shared_value.clone()))
            .is_err()
        {
            // The entry already holds another type: the bounded cache
            // keeps this one.
            if let Some(cache) = cache {
                cache.insert(slot, (stored.revision, shared_value));
            }
        }
        Ok(Some((value, meta)))
    }

    /// Reads `name` as it was at `revision` (while etcd still has that
    /// revision; see [`Error::Compacted`]).
    pub async fn get_entry_at<T: DeserializeOwned>(
        &self,
        name: &str,
        revision: Revision,
    ) -> Result<Option<Entry<T>>> {
        let key = self.etcd_key(name)?;
        Ok(match self.fetch(&key, Some(revision)).await? {
            Some(kv) => Some(self.entry(name, &kv)?),
            None => None,
        })
    }

    /// Stores `value` as compact JSON and returns the new revision.
    pub async fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let bytes = value::encode(&key, value)?;
        self.put(key, bytes).await
    }

    /// Stores JSON text after checking that it is JSON; white space between
    /// tokens is dropped, everything else is kept as written.
    pub async fn set_json(&self, name: &str, json: &str) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let bytes = value::compact_text(&key, json)?;
        self.put(key, bytes).await
    }

    /// Compare-and-set: stores `value` only if the key's revision is still
    /// `expected` (`0`: only if the key does not exist). Otherwise fails with
    /// [`Error::Conflict`] naming the current revision.
    pub async fn set_if<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
        expected: Revision,
    ) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let bytes = value::encode(&key, value)?;
        self.put_if(key, bytes, expected).await
    }

    /// [`set_json`](Self::set_json) with the compare-and-set of
    /// [`set_if`](Self::set_if).
    pub async fn set_json_if(
        &self,
        name: &str,
        json: &str,
        expected: Revision,
    ) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let bytes = value::compact_text(&key, json)?;
        self.put_if(key, bytes, expected).await
    }

    /// Deletes `name`. Returns the revision of the deletion, or `None` when
    /// there was nothing to delete.
    pub async fn delete(&self, name: &str) -> Result<Option<Revision>> {
        self.delete_key(self.etcd_key(name)?).await
    }

    /// Deletes `name` only if its revision is still `expected`; otherwise
    /// [`Error::Conflict`]. A key that is already gone is [`Error::NotFound`].
    pub async fn delete_if(&self, name: &str, expected: Revision) -> Result<Revision> {
        self.delete_key_if(self.etcd_key(name)?, expected).await
    }

    async fn delete_key(&self, key: String) -> Result<Option<Revision>> {
        let mut kv = self.kv().await?;
        let resp = self
            .call(
                &key,
                None,
                kv.delete(key.as_str(), Some(DeleteOptions::new())),
            )
            .await?;
        if resp.deleted() == 0 {
            return Ok(None);
        }
        let revision = header_revision(resp.header());
        self.applied(&key, None, revision);
        Ok(Some(revision))
    }

    async fn delete_key_if(&self, key: String, expected: Revision) -> Result<Revision> {
        let resp = self
            .txn_if(&key, expected, TxnOp::delete(key.as_str(), None))
            .await?;
        match resp.op_responses().first() {
            Some(TxnOpResponse::Delete(d)) if d.deleted() > 0 => {
                let revision = header_revision(resp.header());
                self.applied(&key, None, revision);
                Ok(revision)
            }
            _ => Err(Error::NotFound {
                key,
                revision: None,
            }),
        }
    }

    /// Every entry whose name starts with `prefix` (`""` for the whole
    /// namespace), sorted by name, all read at one revision.
    pub async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<Entry<T>>> {
        self.list_raw(Kind::Config, prefix)
            .await?
            .iter()
            .filter_map(|kv| {
                let name = self.inner.space.name_of(Kind::Config, kv.key())?;
                Some(self.entry(name, kv))
            })
            .collect()
    }

    async fn list_raw(&self, kind: Kind, prefix: &str) -> Result<Vec<KeyValue>> {
        key::validate_prefix(prefix)?;
        let start = self.inner.space.key_unchecked(kind, prefix);
        let end = prefix_end(start.clone().into_bytes());
        let mut from = start.clone().into_bytes();
        let mut at = None;
        let mut out = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE);
            if let Some(revision) = at {
                // Later pages read the revision of the first, so the list is
                // one consistent picture even while others write.
                options = options.with_revision(revision);
            }
            let mut kv = self.kv().await?;
            let mut resp = self
                .call(&start, at, kv.get(from.clone(), Some(options)))
                .await?;
            at.get_or_insert(header_revision(resp.header()));
            let more = resp.more();
            let page = resp.take_kvs();
            match page.last() {
                Some(last) if more => {
                    from = last.key().to_vec();
                    from.push(0);
                    out.extend(page);
                }
                _ => {
                    out.extend(page);
                    return Ok(out);
                }
            }
        }
    }

    /// Writes a JSON object of name → value, as `cfgctl import` does.
    ///
    /// Everything is checked first (names, JSON, sizes): one bad entry and
    /// nothing is written. Then only the names whose value differs are
    /// written, in etcd transactions of at most 128 puts, each guarded by
    /// the revisions read while planning, so a concurrent edit is reported
    /// as [`Error::Conflict`] instead of overwritten. Batches before a
    /// conflicting one stay written. With `dry_run` nothing is written.
    pub async fn import(&self, document: &str, dry_run: bool) -> Result<ImportReport> {
        let parsed: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(document).map_err(|cause| Error::InvalidJson {
                key: format!("{}config (import document)", self.inner.space.base()),
                cause,
            })?;
        let mut wanted = Vec::with_capacity(parsed.len());
        for (name, raw) in &parsed {
            let key = self.etcd_key(name)?;
            wanted.push((
                name.clone(),
                key.clone(),
                value::compact_text(&key, raw.get())?,
            ));
        }
        self.write_changed(Kind::Config, wanted, dry_run).await
    }

    /// Writes the (name, key, bytes) that differ from what `kind` holds, in
    /// guarded transactions of at most [`MAX_TXN_OPS`], and says what changed.
    async fn write_changed(
        &self,
        kind: Kind,
        wanted: Vec<(String, String, Vec<u8>)>,
        dry_run: bool,
    ) -> Result<ImportReport> {
        let current: HashMap<String, (Revision, Vec<u8>)> = self
            .list_raw(kind, "")
            .await?
            .into_iter()
            .map(|kv| {
                let name = self
                    .inner
                    .space
                    .name_of(kind, kv.key())
                    .unwrap_or_default()
                    .to_owned();
                (name, (kv.mod_revision(), kv.value().to_vec()))
            })
            .collect();
        let mut report = ImportReport::default();
        let mut writes = Vec::new();
        for (name, key, bytes) in wanted {
            match current.get(&name) {
                Some((_, old)) if *old == bytes => report.unchanged.push(name),
                Some((revision, _)) => {
                    report.updated.push(name);
                    writes.push((key, bytes, *revision));
                }
                None => {
                    report.created.push(name);
                    writes.push((key, bytes, 0));
                }
            }
        }
        report.created.sort();
        report.updated.sort();
        report.unchanged.sort();
        if dry_run {
            return Ok(report);
        }
        for batch in writes.chunks(MAX_TXN_OPS) {
            let compares: Vec<Compare> = batch
                .iter()
                .map(|(key, _, rev)| Compare::mod_revision(key.as_str(), CompareOp::Equal, *rev))
                .collect();
            let puts: Vec<TxnOp> = batch
                .iter()
                .map(|(key, bytes, _)| TxnOp::put(key.as_str(), bytes.clone(), None))
                .collect();
            let first = &batch[0].0;
            let mut kv = self.kv().await?;
            let resp = self
                .call(
                    first,
                    None,
                    kv.txn(Txn::new().when(compares).and_then(puts)),
                )
                .await?;
            if !resp.succeeded() {
                return Err(self.first_conflict(batch).await);
            }
            let revision = header_revision(resp.header());
            for (key, bytes, _) in batch {
                self.applied(key, Some(bytes.clone()), revision);
            }
            report.revision = Some(revision);
        }
        Ok(report)
    }

    /// Finds which key of a failed guarded batch moved.
    async fn first_conflict(&self, batch: &[(String, Vec<u8>, Revision)]) -> Error {
        for (key, _, expected) in batch {
            let current = match self.fetch(key, None).await {
                Ok(kv) => kv.map_or(0, |kv| kv.mod_revision()),
                Err(e) => return e,
            };
            if current != *expected {
                return Error::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    current,
                };
            }
        }
        Error::Conflict {
            key: batch[0].0.clone(),
            expected: batch[0].2,
            current: batch[0].2,
        }
    }

    /// Past values of `name`, newest first, at most `limit` of them: the
    /// revisions of its current life that etcd has not compacted.
    pub async fn history(&self, name: &str, limit: usize) -> Result<Vec<Entry>> {
        let key = self.etcd_key(name)?;
        let mut out = Vec::new();
        let mut at = None;
        while out.len() < limit {
            let kv = match self.fetch(&key, at).await {
                Ok(Some(kv)) => kv,
                Ok(None) | Err(Error::Compacted { .. }) => break,
                Err(e) => return Err(e),
            };
            let entry: Entry = self.entry(name, &kv)?;
            let first = entry.version <= 1;
            at = Some(entry.revision - 1);
            out.push(entry);
            if first {
                break;
            }
        }
        Ok(out)
    }

    /// Writes the value `name` had at `revision` as a new revision; history
    /// is never rewritten. Returns the new revision.
    pub async fn rollback(&self, name: &str, revision: Revision) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let Some(old) = self.fetch(&key, Some(revision)).await? else {
            return Err(Error::NotFound {
                key,
                revision: Some(revision),
            });
        };
        // Refuse to restore something that is not JSON (written by another
        // tool) rather than spread it further.
        value::decode::<IgnoredAny>(&key, old.mod_revision(), old.value())?;
        self.put(key, old.value().to_vec()).await
    }

    async fn fetch(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        let options = revision.map(|r| GetOptions::new().with_revision(r));
        let mut kv = self.kv().await?;
        let mut resp = self.call(key, revision, kv.get(key, options)).await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    async fn put(&self, key: String, bytes: Vec<u8>) -> Result<Revision> {
        let mut kv = self.kv().await?;
        let local = self.inner.live.is_some().then(|| bytes.clone());
        let resp = self
            .call(&key, None, kv.put(key.as_str(), bytes, None))
            .await?;
        let revision = header_revision(resp.header());
        self.applied(&key, local, revision);
        Ok(revision)
    }

    /// Shows this client's own write in its memory at once (live mode).
    fn applied(&self, key: &str, bytes: Option<Vec<u8>>, revision: Revision) {
        if let Some(shared) = &self.inner.live {
            for kind in [Kind::Config, Kind::Flags] {
                if let Some(name) = self.inner.space.name_of(kind, key.as_bytes()) {
                    shared.apply_local(kind, name, bytes, revision);
                    return;
                }
            }
        }
    }

    async fn kv(&self) -> Result<KvClient> {
        Ok(self.inner.etcd().await?.kv.clone())
    }

    async fn put_if(&self, key: String, bytes: Vec<u8>, expected: Revision) -> Result<Revision> {
        let local = self.inner.live.is_some().then(|| bytes.clone());
        let op = TxnOp::put(key.as_str(), bytes, None);
        let resp = self.txn_if(&key, expected, op).await?;
        let revision = header_revision(resp.header());
        self.applied(&key, local, revision);
        Ok(revision)
    }

    /// Runs `op` only if `key` is still at revision `expected`; otherwise
    /// reads the key in the same transaction to name its current revision.
    async fn txn_if(
        &self,
        key: &str,
        expected: Revision,
        op: TxnOp,
    ) -> Result<etcd_client::TxnResponse> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([op])
            .or_else([TxnOp::get(key, Some(GetOptions::new().with_keys_only()))]);
        let mut kv = self.kv().await?;
        let resp = self.call(key, None, kv.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(conflict(key.to_owned(), expected, &resp));
        }
        Ok(resp)
    }

    fn entry<T: DeserializeOwned>(&self, name: &str, kv: &KeyValue) -> Result<Entry<T>> {
        self.entry_of(Kind::Config, name, kv)
    }

    fn entry_of<T: DeserializeOwned>(
        &self,
        kind: Kind,
        name: &str,
        kv: &KeyValue,
    ) -> Result<Entry<T>> {
        let revision = kv.mod_revision();
        let value = value::decode(
            &self.inner.space.key_unchecked(kind, name),
            revision,
            kv.value(),
        )?;
        Ok(Entry {
            name: name.to_owned(),
            value,
            revision,
            create_revision: kv.create_revision(),
            version: kv.version(),
            source: Source::Etcd,
        })
    }

    /// Runs one etcd request under the request timeout and turns its failure
    /// into an [`Error`] that names the key.
    async fn call<T>(
        &self,
        key: &str,
        revision: Option<Revision>,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        let inner = &self.inner.conn;
        match tokio::time::timeout(inner.request_timeout, request).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(e, key, revision, &inner.endpoints, &inner.user)),
            Err(_) => Err(Error::Timeout {
                key: key.to_owned(),
                endpoints: inner.endpoints.clone(),
                after: inner.request_timeout,
            }),
        }
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| h.revision())
}

fn conflict(key: String, expected: Revision, resp: &etcd_client::TxnResponse) -> Error {
    let current = match resp.op_responses().first() {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().map_or(0, |kv| kv.mod_revision()),
        _ => 0,
    };
    Error::Conflict {
        key,
        expected,
        current,
    }
}

/// The smallest key above every key that starts with `prefix`.
fn prefix_end(mut prefix: Vec<u8>) -> Vec<u8> {
    // Keys are validated ASCII, so the last byte is never 0xff.
    if let Some(last) = prefix.last_mut() {
        *last += 1;
    }
    prefix
}

fn classify(
    e: etcd_client::Error,
    key: &str,
    revision: Option<Revision>,
    endpoints: &str,
    user: &Option<(String, String)>,
) -> Error {
    let key = key.to_owned();
    let status = match &e {
        etcd_client::Error::GRpcStatus(status) => status,
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            return Error::Unreachable {
                endpoints: endpoints.to_owned(),
                waited: Duration::ZERO,
                cause: Some(e),
            }
        }
        _ => return Error::Etcd { key, cause: e },
    };
    let message = status.message();
    match status.code() {
        Code::PermissionDenied => Error::PermissionDenied { key },
        Code::Unavailable => Error::Unreachable {
            endpoints: endpoints.to_owned(),
            waited: Duration::ZERO,
            cause: Some(e),
        },
        _ if user.is_none() && message.contains("user name is empty") => Error::AuthRequired {
            endpoints: endpoints.to_owned(),
        },
        code if code == Code::Unauthenticated || message.contains("authentication failed") => {
            Error::AuthFailed {
                user: user.as_ref().map(|(u, _)| u.clone()).unwrap_or_default(),
                message: message.trim_start_matches("etcdserver: ").to_owned(),
            }
        }
        _ if message.contains("required revision has been compacted") => Error::Compacted {
            key,
            revision: revision.unwrap_or_default(),
        },
        _ if message.contains("required revision is a future revision") => Error::FutureRevision {
            key,
            revision: revision.unwrap_or_default(),
        },
        _ => Error::Etcd { key, cause: e },
    }
}
