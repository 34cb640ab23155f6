//! The few requests cfgd makes to the identity provider (discovery, its
//! keys, the code exchange, userinfo): HTTP/1.1 over a connection of its
//! own each, HTTPS checked against the system's roots and `ca_file`, no
//! redirect followed, every one bounded by a timeout.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// The most an identity provider's answer may hold.
const MAX_ANSWER: usize = 1 << 20;

/// A client for one identity provider.
pub(crate) struct Http {
    tls: TlsConnector,
    timeout: Duration,
}

/// A request's answer: its status and its body as JSON.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: serde_json::Value,
}

impl Http {
    /// A client trusting the system's roots, and `ca_file`'s when given
    /// (a company's own CA, a test's).
    pub(crate) fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        // A machine without a system store still trusts `ca_file`.
        let (system, _) =
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(file) = ca_file {
            let pem = std::fs::read(file)
                .map_err(|e| format!("[oidc] ca_file {}: {e}", file.display()))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("[oidc] ca_file {}: {e}", file.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "[oidc] ca_file {}: no PEM certificate in it",
                    file.display()
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("[oidc] ca_file {}: {e}", file.display()))?;
            }
        } else if system == 0 {
            tracing::warn!("no system CA certificates found: an https issuer needs [oidc] ca_file");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Http {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// `GET url`, with `bearer` as its token when given.
    pub(crate) async fn get(&self, url: &str, bearer: Option<&str>) -> Result<Answer, String> {
        let mut headers = vec![("accept", "application/json".to_owned())];
        if let Some(token) = bearer {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        self.send("GET", url, headers, Bytes::new()).await
    }

    /// `POST url` with a form body, as the client `id` with `secret`
    /// (`client_secret_basic`).
    pub(crate) async fn post_form(
        &self,
        url: &str,
        form: String,
        (id, secret): (&str, &str),
    ) -> Result<Answer, String> {
        use base64::Engine;
        // RFC 6749 2.3.1: both are form-encoded before they are joined.
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            encode(id),
            encode(secret)
        ));
        let headers = vec![
            ("accept", "application/json".to_owned()),
            (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("authorization", format!("Basic {basic}")),
        ];
        self.send("POST", url, headers, Bytes::from(form)).await
    }

    async fn send(
        &self,
        method: &str,
        url: &str,
        headers: Vec<(&str, String)>,
        body: Bytes,
    ) -> Result<Answer, String> {
        tokio::time::timeout(self.timeout, self.exchange(method, url, headers, body))
            .await
            .map_err(|_| format!("{url}: no answer within {:?}", self.timeout))?
            .map_err(|e| format!("{url}: {e}"))
    }

    async fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: Vec<(&str, String)>,
        body: Bytes,
    ) -> Result<Answer, String> {
        let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the URL must be http:// or https://".into()),
        };
        let host = uri.host().ok_or("the URL names no host")?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let stream = tokio::net::TcpStream::connect((bare, port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header("host", uri.authority().map_or(host, |a| a.as_str()))
            .header("user-agent", concat!("cfgd/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let response = if https {
            let name = ServerName::try_from(bare.to_owned()).map_err(|e| e.to_string())?;
            let stream = self
                .tls
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            round_trip(TokioIo::new(stream), request).await?
        } else {
            round_trip(TokioIo::new(stream), request).await?
        };
        let status = response.status().as_u16();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        let body = match serde_json::from_slice(&bytes) {
            Ok(body) => body,
            Err(_) if !(200..300).contains(&status) => serde_json::Value::Null,
            Err(e) => return Err(format!("answered {status} with no JSON: {e}")),
        };
        Ok(Answer { status, body })
    }
}

async fn round_trip<I>(
    io: I,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}
