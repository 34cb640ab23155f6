//! [`ClientBuilder`]: settings, and connecting a [`Client`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::handle::{Client, ClientState, Link};
use crate::audit::{Author, Via};
use crate::defaults;
use crate::error::{Error, Result};
use crate::etcd::{self, Connection};
use crate::key::{self, KeySpace};
use crate::namespace::LiveNamespace;
use crate::secret::Keyring;
use crate::snapshot;
use crate::types::Status;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CACHE_CAPACITY: u64 = 10_000;
/// Changes buffered per subscriber before it counts as lagging (and is
/// caught up from the mirror instead).
const DEFAULT_CHANNEL_CAPACITY: usize = 4096;

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
    link: Option<Arc<Link>>,
    actor: Option<String>,
    via: Via,
    /// PEM files: the CA that signs etcd's certificates, and this client's
    /// certificate and key.
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    secret_key_file: Option<PathBuf>,
    keyring: Option<Arc<Keyring>>,
    labels: crate::overlays::Labels,
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
            link: None,
            actor: None,
            via: Via::Library,
            ca_file: None,
            client_cert: None,
            secret_key_file: None,
            keyring: None,
            labels: Default::default(),
        }
    }
}

impl Client {
    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
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

    /// Who this client writes as, in the audit record of every write
    /// (`user@host` of the process unless given).
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// How this client's writes come, for the audit trail
    /// ([`Via::Library`] unless given).
    pub fn via(mut self, via: Via) -> Self {
        self.via = via;
        self
    }

    fn author(&self) -> Author {
        let mut author = Author::local();
        if let Some(actor) = &self.actor {
            author.actor = actor.clone();
        }
        author.via = self.via;
        author
    }

    /// Seal and open secrets with the keys in this file (see
    /// [`crate::secret`]; `cfgctl secret keygen` makes one). Names the
    /// namespace policy calls `secrets` are then written encrypted and read
    /// as plaintext. Without a key, writing one is refused and reading one
    /// fails with [`Error::Secret`]. The file is read at
    /// [`connect`](Self::connect); a client made with
    /// [`share`](Self::share) uses the keys of the client it shares.
    pub fn secret_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.secret_key_file = Some(path.into());
        self
    }

    /// [`secret_key_file`](Self::secret_key_file) with keys already read.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(Arc::new(keyring));
        self
    }

    /// This client's labels (`region=eu,canary=true,instance=i-42`): the
    /// overlays whose selector they match (and, with a `percent`, whose
    /// share the `instance` label buckets into) lie above the namespace's
    /// own layer in everything a live client reads ([`crate::overlays`]).
    /// Without labels a client sees no overlay.
    ///
    /// ```
    /// let labels: cfgd::overlays::Labels = "canary=true,instance=i-42".parse().unwrap();
    /// let builder = cfgd::Client::builder().namespace("prod").labels(labels);
    /// ```
    pub fn labels(mut self, labels: crate::overlays::Labels) -> Self {
        self.labels = labels;
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
        self.link = Some(client.state.link.clone());
        self
    }

    /// The connection this builder would open, unopened, for a process that
    /// attaches namespaces to it as they are needed.
    pub(crate) fn link(&self) -> Result<Arc<Link>> {
        if let Some(link) = &self.link {
            return Ok(link.clone());
        }
        let connection = Connection::new(&etcd::Settings {
            endpoints: &self.endpoints,
            root: &self.root,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            user: self.user.as_ref(),
            ca_file: self.ca_file.as_ref(),
            client_cert: self.client_cert.as_ref(),
        })?;
        let keyring = match (&self.keyring, &self.secret_key_file) {
            (Some(keyring), _) => Some(keyring.clone()),
            (None, Some(path)) => Some(Arc::new(Keyring::load(path)?)),
            (None, None) => None,
        };
        Ok(Arc::new(Link::new(connection, keyring)))
    }

    /// Prepares the etcd connection these settings describe, without
    /// connecting: it reads the TLS files and the secret key file and checks
    /// them against the endpoints, so bad settings fail here. Every client
    /// connected from the returned builder or its clones then shares that
    /// one connection and its one watch, as with [`share`](Self::share):
    /// for a process, such as a server, that opens namespaces as requests
    /// name them.
    ///
    /// ```no_run
    /// # fn demo() -> cfgd::Result<()> {
    /// let shared = cfgd::Client::builder()
    ///     .endpoints(["http://127.0.0.1:2379"])
    ///     .prepare()?;
    /// // Later, for each namespace asked for:
    /// let orders = shared.clone().namespace("orders");
    /// # drop(orders);
    /// # Ok(()) }
    /// ```
    pub fn prepare(mut self) -> Result<Self> {
        self.link = Some(self.link()?);
        Ok(self)
    }

    /// Connects and proves etcd answers, within the connect timeout. In live
    /// mode it also reads the namespace and starts the watch; if etcd cannot
    /// be reached and a snapshot file exists, it starts from the snapshot
    /// ([`Status::Offline`]) and keeps trying in the background.
    pub async fn connect(self) -> Result<Client> {
        let link = self.link()?;
        let space = KeySpace::new(&link.etcd.root, &self.namespace)?;
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
        let state = ClientState {
            link,
            space,
            live: None,
            cache: None,
            tasks: Default::default(),
            defaults: None,
        };
        if !self.live {
            state.etcd().etcd().await?;
            return Ok(Client {
                state: Arc::new(state),
                author: Arc::new(self.author()),
            });
        }
        self.connect_live(state).await
    }

    async fn connect_live(self, mut state: ClientState) -> Result<Client> {
        let shared = Arc::new(LiveNamespace::new(
            state.space.base().to_owned(),
            self.channel_capacity,
            Status::Connected { revision: 0 },
            state.link.keyring.clone(),
            self.labels.clone(),
        ));
        if let Some(path) = &self.defaults_file {
            shared.defaults.store(Arc::new(defaults::read(path)?));
            let namespace = Arc::downgrade(&shared);
            state.defaults = Some(defaults::watch(path.clone(), move |values| {
                if let Some(namespace) = namespace.upgrade() {
                    namespace.apply_defaults(values);
                }
            })?);
        }
        let snapshot = self.snapshot.as_ref().map(|path| snapshot::Settings {
            path: path.clone(),
            root: state.etcd().root.clone(),
            namespace: self.namespace.clone(),
            redact: self.redact.clone(),
        });
        let hub = state.link.hub();
        hub.attach(&shared);
        let conn = state.etcd();
        let deadline = tokio::time::Instant::now() + conn.connect_timeout();
        let online = async {
            let etcd = conn.etcd().await?;
            let read =
                crate::namespace::read(&etcd.client, shared.root(), &shared.name, &shared.labels);
            match tokio::time::timeout_at(deadline, read).await {
                Ok(loaded) => loaded.map_err(|e| conn.classify(e, &shared.base, None)),
                Err(_) => Err(conn.silent()),
            }
        }
        .await;
        match (online, &snapshot) {
            (Ok(read), _) => {
                let revision = read.revision;
                hub.activated(&shared, read);
                shared.status.send_replace(Status::Connected { revision });
                hub.wait_for_watch(&shared, deadline).await;
            }
            (Err(e), Some(settings)) if e.is_unreachable() => {
                let Some(mut read) = snapshot::load(settings)? else {
                    return Err(e);
                };
                crate::namespace::with_overlays(&mut read.layers, &shared.labels);
                let revision = read.revision;
                tracing::warn!(error = %e, path = %settings.path.display(), "etcd unreachable; serving the snapshot");
                shared.load_snapshot(read);
                shared.status.send_replace(Status::Offline {
                    since: SystemTime::now(),
                    revision,
                });
                // The hub reads the namespace once etcd answers.
                hub.needs_load(&shared);
            }
            (Err(e), _) => return Err(e),
        }
        state.cache = Some(moka::sync::Cache::new(self.cache_capacity));
        state.live = Some(shared.clone());
        let state = Arc::new(state);
        if let Some(settings) = snapshot {
            let writer = tokio::spawn(snapshot_writer(shared.clone(), settings));
            state
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(writer);
        }
        Ok(Client {
            state,
            author: Arc::new(self.author()),
        })
    }
}

/// Writes the snapshot after each burst of changes, unless the mirror only
/// holds what the snapshot itself gave (offline start). The client aborts
/// this task when its last handle drops.
async fn snapshot_writer(namespace: Arc<LiveNamespace>, settings: snapshot::Settings) {
    loop {
        namespace.dirty.notified().await;
        tokio::time::sleep(snapshot::DEBOUNCE).await;
        if matches!(*namespace.status.borrow(), Status::Offline { .. }) {
            continue;
        }
        let part = snapshot::encode(&settings, &namespace.read());
        let to = settings.clone();
        let written =
            tokio::task::spawn_blocking(move || snapshot::merge_and_write(&to, part)).await;
        match written {
            Ok(Ok(())) => tracing::debug!(path = %settings.path.display(), "snapshot written"),
            Ok(Err(error)) => {
                tracing::warn!(path = %settings.path.display(), %error, "writing the snapshot failed")
            }
            Err(_) => return,
        }
    }
}
