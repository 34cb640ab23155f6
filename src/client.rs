//! The config client: typed reads and writes of JSON values in one namespace.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, KvClient, Txn, TxnOp,
    TxnOpResponse,
};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;
use tonic::Code;

use crate::error::{Error, Result};
use crate::key::{self, KeySpace, Kind};
use crate::value;

/// An etcd revision: the ETag, compare-and-set token and resume point of
/// every value. `0` means "absent" wherever a revision is expected.
pub type Revision = i64;

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// Read from etcd by this request.
    Etcd,
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

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys fetched per `list` request: bounded so one page of 1 MiB values stays
/// far below the decoding limit below.
const LIST_PAGE: i64 = 64;
/// etcd accepts values up to 1.5 MiB from other tools, so a full page of the
/// largest values must still decode.
const MAX_DECODE: usize = 128 * 1024 * 1024;
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
        }
    }
}

impl ClientBuilder {
    /// A builder for `http://127.0.0.1:2379`, namespace `default`, root
    /// `/cfgd`, 5 s connect and request timeouts.
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
    /// [`Error::Unreachable`].
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

    /// Connects, and proves etcd answers by reading from it once, all within
    /// the connect timeout.
    pub async fn connect(self) -> Result<Client> {
        let space = KeySpace::new(&self.root, &self.namespace)?;
        if self.endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let endpoints = self.endpoints.join(",");
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            .with_keep_alive_while_idle(false);
        if let Some((name, password)) = &self.user {
            // etcd's auth tokens expire (5 minutes by default); a long-lived
            // service must renew them rather than start failing.
            options = options
                .with_user(name.as_str(), password.as_str())
                .with_auto_token_refresh(true);
        }
        let probe_key = space.kind_prefix(Kind::Config);
        let attempt = async {
            let etcd = etcd_client::Client::connect(&self.endpoints, Some(options)).await?;
            // The connection is lazy: only a request shows that etcd is there
            // and has a quorum. Being refused the read still proves both.
            let probe = etcd
                .kv_client()
                .get(
                    probe_key.as_str(),
                    Some(GetOptions::new().with_count_only()),
                )
                .await;
            match probe {
                Err(etcd_client::Error::GRpcStatus(s)) if s.code() == Code::PermissionDenied => {}
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            Ok(etcd)
        };
        let etcd = match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(etcd)) => etcd,
            Ok(Err(e)) => {
                return Err(match e {
                    etcd_client::Error::InvalidUri(_) | etcd_client::Error::InvalidArgs(_) => {
                        Error::InvalidEndpoints {
                            endpoints,
                            cause: e,
                        }
                    }
                    e => classify(e, &probe_key, None, &endpoints, &self.user),
                })
            }
            Err(_) => {
                return Err(Error::Unreachable {
                    endpoints,
                    waited: self.connect_timeout,
                    cause: None,
                })
            }
        };
        let kv = etcd.kv_client().max_decoding_message_size(MAX_DECODE);
        Ok(Client {
            inner: Arc::new(Inner {
                kv,
                space,
                endpoints,
                request_timeout: self.request_timeout,
                user: self.user,
            }),
        })
    }
}

/// A connection to cfgd's store, bound to one namespace.
///
/// Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    kv: KvClient,
    space: KeySpace,
    endpoints: String,
    request_timeout: Duration,
    user: Option<(String, String)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so the password never reaches a log.
        f.debug_struct("Client")
            .field("endpoints", &self.inner.endpoints)
            .field("namespace", &self.inner.space.namespace())
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

    /// Reads `name` as a `T`; `None` when it does not exist.
    pub async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        Ok(self.get_entry(name).await?.map(|e| e.value))
    }

    /// Reads `name` as a `T`, or returns `default` when it is missing or
    /// anything goes wrong. Failures are logged (with `tracing`), never returned:
    /// this is the call for code that must keep running on its defaults.
    pub async fn get_or<T: DeserializeOwned>(&self, name: &str, default: T) -> T {
        match self.get_entry(name).await {
            Ok(Some(entry)) => entry.value,
            Ok(None) => default,
            Err(error) => {
                tracing::warn!(name, %error, "config read failed; using the default");
                default
            }
        }
    }

    /// Reads `name` with its revision and provenance.
    pub async fn get_entry<T: DeserializeOwned>(&self, name: &str) -> Result<Option<Entry<T>>> {
        let key = self.etcd_key(name)?;
        Ok(match self.fetch(&key, None).await? {
            Some(kv) => Some(self.entry(name, &kv)?),
            None => None,
        })
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
        let key = self.etcd_key(name)?;
        let mut kv = self.inner.kv.clone();
        let resp = self
            .call(
                &key,
                None,
                kv.delete(key.as_str(), Some(DeleteOptions::new())),
            )
            .await?;
        Ok((resp.deleted() > 0).then(|| header_revision(resp.header())))
    }

    /// Deletes `name` only if its revision is still `expected`; otherwise
    /// [`Error::Conflict`]. A key that is already gone is [`Error::NotFound`].
    pub async fn delete_if(&self, name: &str, expected: Revision) -> Result<Revision> {
        let key = self.etcd_key(name)?;
        let resp = self
            .txn_if(&key, expected, TxnOp::delete(key.as_str(), None))
            .await?;
        match resp.op_responses().first() {
            Some(TxnOpResponse::Delete(d)) if d.deleted() > 0 => Ok(header_revision(resp.header())),
            _ => Err(Error::NotFound {
                key,
                revision: None,
            }),
        }
    }

    /// Every entry whose name starts with `prefix` (`""` for the whole
    /// namespace), sorted by name, all read at one revision.
    pub async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<Entry<T>>> {
        key::validate_prefix(prefix)?;
        let start = self.inner.space.key_unchecked(Kind::Config, prefix);
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
            let mut kv = self.inner.kv.clone();
            let resp = self
                .call(&start, at, kv.get(from.clone(), Some(options)))
                .await?;
            at.get_or_insert(header_revision(resp.header()));
            for kv in resp.kvs() {
                let Some(name) = self.inner.space.name_of(Kind::Config, kv.key()) else {
                    continue;
                };
                out.push(self.entry(name, kv)?);
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
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
        let mut kv = self.inner.kv.clone();
        let mut resp = self.call(key, revision, kv.get(key, options)).await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    async fn put(&self, key: String, bytes: Vec<u8>) -> Result<Revision> {
        let mut kv = self.inner.kv.clone();
        let resp = self
            .call(&key, None, kv.put(key.as_str(), bytes, None))
            .await?;
        Ok(header_revision(resp.header()))
    }

    async fn put_if(&self, key: String, bytes: Vec<u8>, expected: Revision) -> Result<Revision> {
        let op = TxnOp::put(key.as_str(), bytes, None);
        let resp = self.txn_if(&key, expected, op).await?;
        Ok(header_revision(resp.header()))
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
        let mut kv = self.inner.kv.clone();
        let resp = self.call(key, None, kv.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(conflict(key.to_owned(), expected, &resp));
        }
        Ok(resp)
    }

    fn entry<T: DeserializeOwned>(&self, name: &str, kv: &KeyValue) -> Result<Entry<T>> {
        let revision = kv.mod_revision();
        let value = value::decode(
            &self.inner.space.key_unchecked(Kind::Config, name),
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
        let inner = &self.inner;
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
