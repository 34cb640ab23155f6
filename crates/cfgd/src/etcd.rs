//! The etcd connection: how to reach etcd (endpoints, user, TLS), the
//! connection once made, every request's timeout, and the mapping of etcd's
//! failures to an [`Error`] that names the key.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{ConnectOptions, GetOptions, KvClient};
use tokio::sync::OnceCell;

use crate::error::{Error, Result, TlsSetting};
use crate::key::{self, Kind};
use crate::mirror::{Named, Stored};
use crate::types::Revision;

/// HTTP/2 pings find a dead connection without waiting for TCP; etcd's
/// default `--grpc-keepalive-min-time` of 5 s forbids pinging faster.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer accepted, by reads and lists alike. etcd accepts
/// values up to 1.5 MiB from other tools, so a full page of the largest must
/// still decode; a namespace read whose page grew past it is retried
/// smaller rather than refused.
const MAX_DECODE: usize = 128 << 20;
/// Keys in the first page of a range read ([`Pager`]).
const LOAD_PAGE: i64 = 256;
/// After each page the next is sized from the bytes a key took so far, to
/// about `LOAD_PAGE_BYTES` (a quarter of what decodes, so keys several
/// times larger than those seen still fit), up to `LOAD_PAGE_MAX` keys:
/// etcd 3.4 walks the whole rest of the range on every page, so the fewer
/// pages the better. 100,000 small keys read 256 at a time take seconds;
/// sized this way, two requests.
const LOAD_PAGE_MAX: i64 = 131_072;
const LOAD_PAGE_BYTES: usize = MAX_DECODE / 4;

/// What it takes to reach etcd, as the client builder gathered it.
pub(crate) struct Settings<'a> {
    pub(crate) endpoints: &'a [String],
    pub(crate) root: &'a str,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) user: Option<&'a (String, String)>,
    pub(crate) ca_file: Option<&'a PathBuf>,
    pub(crate) client_cert: Option<&'a (PathBuf, PathBuf)>,
}

/// The connected etcd clients.
pub(crate) struct Etcd {
    pub(crate) client: etcd_client::Client,
    pub(crate) kv: KvClient,
}

/// One connection to etcd, made (and probed) on first use, so that a client
/// that started offline connects later with the same settings.
pub(crate) struct Connection {
    etcd: OnceCell<Etcd>,
    options: ConnectOptions,
    endpoint_list: Vec<String>,
    connect_timeout: Duration,
    /// A key read to prove etcd answers and has a quorum.
    probe_key: String,
    /// TLS without a client certificate: an etcd with `--client-cert-auth`
    /// then refuses the connection, which says little by itself.
    without_client_cert: bool,
    /// The endpoints, comma separated, for messages.
    pub(crate) endpoints: String,
    pub(crate) root: String,
    pub(crate) request_timeout: Duration,
    user: Option<(String, String)>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so the password never reaches a log.
        f.debug_struct("Connection")
            .field("endpoints", &self.endpoints)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Checks the settings (a half-TLS setup fails here with one clear line,
    /// not at the first request with a transport error); connects nothing.
    pub(crate) fn new(settings: &Settings<'_>) -> Result<Self> {
        key::validate_root(settings.root)?;
        if settings.endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(settings.connect_timeout)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            .with_keep_alive_while_idle(false)
            // A member cut off from the others must not serve a watch that
            // can never see new writes.
            .with_require_leader(true);
        if let Some((name, password)) = settings.user {
            // etcd's auth tokens expire (5 minutes by default); a long-lived
            // service must renew them rather than start failing.
            options = options
                .with_user(name.as_str(), password.as_str())
                .with_auto_token_refresh(true);
        }
        options = tls(settings, options)?;
        Ok(Connection {
            etcd: OnceCell::new(),
            options,
            endpoint_list: settings.endpoints.to_vec(),
            connect_timeout: settings.connect_timeout,
            probe_key: format!("{}/", settings.root),
            without_client_cert: settings.ca_file.is_some() && settings.client_cert.is_none(),
            endpoints: settings.endpoints.join(","),
            root: settings.root.to_owned(),
            request_timeout: settings.request_timeout,
            user: settings.user.cloned(),
        })
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The etcd connection, made (and probed) on first use within the
    /// connect timeout.
    pub(crate) async fn etcd(&self) -> Result<&Etcd> {
        self.etcd.get_or_try_init(|| self.connect()).await
    }

    pub(crate) async fn kv(&self) -> Result<KvClient> {
        Ok(self.etcd().await?.kv.clone())
    }

    /// The error for etcd not answering within the connect timeout.
    pub(crate) fn silent(&self) -> Error {
        Error::Unreachable {
            endpoints: self.endpoints.clone(),
            waited: self.connect_timeout,
            cause: None,
        }
    }

    /// Runs one etcd request under the request timeout and turns its failure
    /// into an [`Error`] that names the key.
    pub(crate) async fn call<T>(
        &self,
        key: &str,
        revision: Option<Revision>,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.request_timeout, request).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.classify(e, key, revision)),
            Err(_) => Err(Error::Timeout {
                key: key.to_owned(),
                endpoints: self.endpoints.clone(),
                after: self.request_timeout,
            }),
        }
    }

    async fn connect(&self) -> Result<Etcd> {
        let attempt = async {
            let client =
                etcd_client::Client::connect(&self.endpoint_list, Some(self.options.clone()))
                    .await?;
            // The connection is lazy: only a request shows that etcd is there
            // and has a quorum. Being refused the read still proves both.
            let probe = client
                .kv_client()
                .get(
                    self.probe_key.as_str(),
                    Some(GetOptions::new().with_count_only()),
                )
                .await;
            match probe {
                Err(etcd_client::Error::GRpcStatus(s))
                    if s.code() as i32 == grpc::PERMISSION_DENIED => {}
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            Ok(client)
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(client)) => {
                let kv = client.kv_client().max_decoding_message_size(MAX_DECODE);
                Ok(Etcd { client, kv })
            }
            Ok(Err(
                e @ (etcd_client::Error::InvalidUri(_) | etcd_client::Error::InvalidArgs(_)),
            )) => Err(Error::InvalidEndpoints {
                endpoints: self.endpoints.clone(),
                cause: e.into(),
            }),
            Ok(Err(e)) if self.without_client_cert && wants_client_cert(&e) => Err(Error::Tls {
                what: format!(
                    "etcd at {} turned the connection down: with --client-cert-auth \
                     it wants a client certificate and key",
                    self.endpoints
                ),
                needs: Some(TlsSetting::ClientCert),
            }),
            Ok(Err(e)) => Err(self.classify(e, &self.probe_key, None)),
            Err(_) => Err(self.silent()),
        }
    }

    /// Maps etcd's failure of a request about `key` to an [`Error`].
    /// `TRANSIENT` messages are those of a member or leader going away.
    pub(crate) fn classify(
        &self,
        e: etcd_client::Error,
        key: &str,
        revision: Option<Revision>,
    ) -> Error {
        let key = key.to_owned();
        let unreachable = |e: etcd_client::Error| Error::Unreachable {
            endpoints: self.endpoints.clone(),
            waited: Duration::ZERO,
            cause: Some(e.into()),
        };
        let status = match &e {
            etcd_client::Error::GRpcStatus(status) => status,
            etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
                return unreachable(e)
            }
            _ => {
                return Error::Etcd {
                    key,
                    cause: e.into(),
                }
            }
        };
        let message = status.message();
        match status.code() as i32 {
            grpc::PERMISSION_DENIED => Error::PermissionDenied { key },
            grpc::UNAVAILABLE => unreachable(e),
            // A connection cut under the request (a member killed), or a
            // cluster between leaders: etcd is not there for now, as a 503
            // says, rather than broken.
            _ if TRANSIENT.iter().any(|t| message.contains(t)) => unreachable(e),
            _ if self.user.is_none() && message.contains("user name is empty") => {
                Error::AuthRequired {
                    endpoints: self.endpoints.clone(),
                }
            }
            code if code == grpc::UNAUTHENTICATED || message.contains("authentication failed") => {
                Error::AuthFailed {
                    user: self
                        .user
                        .as_ref()
                        .map(|(u, _)| u.clone())
                        .unwrap_or_default(),
                    message: message.trim_start_matches("etcdserver: ").to_owned(),
                }
            }
            _ if message.contains("required revision has been compacted") => Error::Compacted {
                key,
                revision: revision.unwrap_or_default(),
            },
            _ if message.contains("required revision is a future revision") => {
                Error::FutureRevision {
                    key,
                    revision: revision.unwrap_or_default(),
                }
            }
            _ => Error::Etcd {
                key,
                cause: e.into(),
            },
        }
    }
}

/// Whether etcd turned the connection down for want of a client
/// certificate. etcd 3.4 hangs up right after the handshake (the request is
/// then cancelled or its stream broken, depending on timing); etcd 3.5
/// answers the handshake with a TLS alert, `BadCertificate` or, under
/// TLS 1.3, `CertificateRequired`. A down etcd says neither.
fn wants_client_cert(e: &etcd_client::Error) -> bool {
    let mut chain = String::new();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        chain.push_str(&format!("{err:?} "));
        next = err.source();
    }
    let alert = ["BadCertificate", "CertificateRequired"]
        .iter()
        .any(|a| chain.contains(a));
    let hung_up = matches!(e, etcd_client::Error::GRpcStatus(s)
        if matches!(s.code() as i32, grpc::CANCELLED | grpc::UNKNOWN));
    alert || hung_up
}

/// Adds the TLS settings to `options`, checking them against the endpoints.
fn tls(settings: &Settings<'_>, options: ConnectOptions) -> Result<ConnectOptions> {
    let endpoints = settings.endpoints;
    let https = endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    let wanted = settings.ca_file.is_some() || settings.client_cert.is_some();
    let fail = |what: &str, needs| {
        Err(Error::Tls {
            what: what.to_owned(),
            needs,
        })
    };
    if https > 0 && https < endpoints.len() {
        return fail("mixed http:// and https:// endpoints", None);
    }
    if !wanted {
        if https > 0 {
            return fail(
                "https:// endpoints need the CA that signs etcd's certificates",
                Some(TlsSetting::CaFile),
            );
        }
        return Ok(options);
    }
    if https == 0 {
        return fail(
            "a CA file or client certificate needs https:// endpoints",
            None,
        );
    }
    #[cfg(feature = "tls")]
    {
        // A file of the wrong kind (a key given as the CA) would otherwise
        // surface later as a puzzling handshake failure.
        let read = |path: &PathBuf, what: &str, holds: &str| -> Result<Vec<u8>> {
            let bytes = std::fs::read(path).map_err(|e| Error::Tls {
                what: format!("cannot read the {what} {}: {e}", path.display()),
                needs: None,
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
                    needs: None,
                });
            }
            Ok(bytes)
        };
        let Some(ca) = settings.ca_file else {
            return fail(
                "a client certificate needs the CA that signs etcd's certificates too",
                Some(TlsSetting::CaFile),
            );
        };
        let mut tls = etcd_client::TlsOptions::new().ca_certificate(
            etcd_client::Certificate::from_pem(read(ca, "CA file", "CERTIFICATE-----")?),
        );
        if let Some((cert, key)) = settings.client_cert {
            tls = tls.identity(etcd_client::Identity::from_pem(
                read(cert, "client certificate", "CERTIFICATE-----")?,
                read(key, "client key", "PRIVATE KEY-----")?,
            ));
        }
        Ok(options.with_tls(tls))
    }
    #[cfg(not(feature = "tls"))]
    fail("this build has no TLS: enable cfgd's `tls` feature", None)
}

/// What etcd or the transport says while a member or the leader is away.
const TRANSIENT: &[&str] = &[
    "transport error",
    "broken pipe",
    "connection reset",
    "etcdserver: request timed out",
    "etcdserver: leader changed",
    "etcdserver: no leader",
];

/// The revision an etcd answer was made at.
pub(crate) fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| h.revision())
}

/// One key range read page by page, every page at the revision of the
/// first, so the whole is one consistent picture even while others write:
/// the one paged reader of the crate, behind namespace loads and every list.
///
/// Each page is sized from the bytes per key of those before it, since
/// etcd 3.4 walks the whole rest of the range on every page: 100,000 names
/// in pages of a fixed 64 cost quadratic time, in a few large pages linear.
/// A page that grew past what decodes is asked for again, smaller.
pub(crate) struct Pager {
    from: Vec<u8>,
    end: Vec<u8>,
    at: Option<Revision>,
    page: i64,
    done: bool,
}

impl Pager {
    /// The keys from `start` up to (not including) `end`, at `at` when
    /// given, else at the revision the first page finds.
    pub(crate) fn new(start: Vec<u8>, end: Vec<u8>, at: Option<Revision>) -> Self {
        Pager {
            from: start,
            end,
            at,
            page: LOAD_PAGE,
            done: false,
        }
    }

    /// The revision the pages are read at, once the first is read.
    pub(crate) fn revision(&self) -> Option<Revision> {
        self.at
    }

    /// The next page, `None` once the range is read. `get` sends one range
    /// request (etcd's `get` of a key with options).
    pub(crate) async fn next<F, Fut>(
        &mut self,
        mut get: F,
    ) -> std::result::Result<Option<Vec<etcd_client::KeyValue>>, etcd_client::Error>
    where
        F: FnMut(Vec<u8>, GetOptions) -> Fut,
        Fut: Future<Output = std::result::Result<etcd_client::GetResponse, etcd_client::Error>>,
    {
        if self.done {
            return Ok(None);
        }
        let mut resp = loop {
            let mut options = GetOptions::new()
                .with_range(self.end.clone())
                .with_limit(self.page);
            if let Some(revision) = self.at {
                options = options.with_revision(revision);
            }
            match get(self.from.clone(), options).await {
                Ok(resp) => break resp,
                Err(etcd_client::Error::GRpcStatus(status))
                    if self.page > 1 && status.code() as i32 == grpc::OUT_OF_RANGE =>
                {
                    self.page = (self.page / 16).max(1);
                }
                Err(e) => return Err(e),
            }
        };
        self.at.get_or_insert(header_revision(resp.header()));
        let more = resp.more();
        let kvs = resp.take_kvs();
        let bytes: usize = kvs.iter().map(|kv| kv.key().len() + kv.value().len()).sum();
        if let Some(per_key) = bytes.checked_div(kvs.len()) {
            let fits = (LOAD_PAGE_BYTES / per_key.max(1)) as i64;
            self.page = fits.clamp(1, LOAD_PAGE_MAX);
        }
        match kvs.last() {
            Some(last) if more => {
                self.from = last.key().to_vec();
                self.from.push(0);
            }
            _ => self.done = true,
        }
        Ok(Some(kvs))
    }
}

/// Reads what a live client mirrors of the namespace under `base` (each
/// section of [`Kind::ALL`]; never the audit trail or change requests, of
/// which there may be 100,000), at one revision: `at`, or the newest.
pub(crate) async fn read_namespace(
    etcd: &etcd_client::Client,
    base: &str,
    mut at: Option<Revision>,
) -> std::result::Result<(Revision, Vec<Named>), etcd_client::Error> {
    let mut fresh = Vec::new();
    let kv = etcd.kv_client().max_decoding_message_size(MAX_DECODE);
    for kind in Kind::ALL {
        let start = key::kind_prefix(base, kind).into_bytes();
        let end = key::prefix_end(start.clone());
        let mut pager = Pager::new(start, end, at);
        while let Some(page) = pager
            .next(|from, options| {
                let mut kv = kv.clone();
                async move { kv.get(from, Some(options)).await }
            })
            .await?
        {
            for kv in &page {
                if let Some((section, name)) = key::split_key(base, kv.key()) {
                    fresh.push((section, Arc::from(name), Stored::from_etcd(kv)));
                }
            }
        }
        at = pager.revision();
    }
    Ok((at.unwrap_or_default(), fresh))
}

/// The gRPC status codes etcd answers with that cfgd tells apart, by their
/// numbers in the gRPC spec: naming them so keeps etcd-client's transport
/// types out of cfgd's own dependencies.
mod grpc {
    pub(super) const CANCELLED: i32 = 1;
    pub(super) const UNKNOWN: i32 = 2;
    pub(super) const PERMISSION_DENIED: i32 = 7;
    pub(super) const OUT_OF_RANGE: i32 = 11;
    pub(super) const UNAVAILABLE: i32 = 14;
    pub(super) const UNAUTHENTICATED: i32 = 16;
}
