//! POSTing a signed event to a receiver over HTTP/1.1, on one kept-alive
//! connection per webhook (made again after any failure). The receiver's
//! host is resolved for each connection and refused on loopback or
//! link-local addresses unless allowed, so a name cannot be pointed at
//! the machine itself after it was checked.

use std::time::{Duration, Instant};

use cfgd::webhooks::Receiver;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::event::{signature, Event};
use cfgd::election::Leader;

/// One webhook's connection to its receiver.
pub(crate) struct Poster {
    receiver: Receiver,
    url: String,
    allow_loopback: bool,
    timeout: Duration,
    replica: String,
    connection: Option<SendRequest<Full<Bytes>>>,
}

/// How an attempt went: the receiver's status, or why there was none.
pub(crate) struct Sent {
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) latency: Duration,
    /// Not sent at all: the lease ran out while connecting.
    pub(crate) unsent: bool,
}

/// Why an attempt went no further.
enum Failed {
    /// The request may have gone out; this is what went wrong.
    Error(String),
    /// It never left: this replica's lease ran out first.
    Unsent,
}

impl From<String> for Failed {
    fn from(error: String) -> Self {
        Failed::Error(error)
    }
}

impl Poster {
    pub(crate) fn new(
        url: &str,
        allow_loopback: bool,
        timeout: Duration,
        replica: &str,
    ) -> cfgd::Result<Self> {
        Ok(Poster {
            receiver: Receiver::parse(url)?,
            url: url.to_owned(),
            allow_loopback,
            timeout,
            replica: replica.to_owned(),
            connection: None,
        })
    }

    /// Sends `event`, signed with `key`, waiting up to the timeout; not at
    /// all once `leader` no longer holds, checked again just before the
    /// request leaves (connecting may take a while).
    pub(crate) async fn send(&mut self, event: &Event, key: &[u8], leader: &Leader) -> Sent {
        let started = Instant::now();
        let answer = tokio::time::timeout(self.timeout, self.attempt(event, key, leader)).await;
        let latency = started.elapsed();
        let mut unsent = false;
        let (status, error) = match answer {
            Ok(Ok(status)) => (Some(status), None),
            Ok(Err(Failed::Error(error))) => (None, Some(error)),
            Ok(Err(Failed::Unsent)) => {
                unsent = true;
                (
                    None,
                    Some("not sent: this replica's lease ran out".to_owned()),
                )
            }
            Err(_) => (None, Some(format!("no answer within {:?}", self.timeout))),
        };
        if !status.is_some_and(|s| (200..300).contains(&s)) {
            // Whatever the connection's state, the next try starts afresh.
            self.connection = None;
        }
        Sent {
            status,
            error,
            latency,
            unsent,
        }
    }

    async fn attempt(&mut self, event: &Event, key: &[u8], leader: &Leader) -> Result<u16, Failed> {
        let connection = match self.connection.as_mut().filter(|c| !c.is_closed()) {
            Some(connection) => connection,
            None => self
                .connection
                .insert(self.connect().await.map_err(Failed::Error)?),
        };
        connection
            .ready()
            .await
            .map_err(|e| Failed::Error(format!("{}: connection lost: {e}", self.url)))?;
        let timestamp = cfgd::schedules::now() / 1000;
        let authority = match self.receiver.host.contains(':') {
            true => format!("[{}]:{}", self.receiver.host, self.receiver.port),
            false => format!("{}:{}", self.receiver.host, self.receiver.port),
        };
        let request = hyper::Request::post(&self.receiver.path)
            .header("host", authority)
            .header("content-type", event.content_type)
            .header("user-agent", concat!("cfgd/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature(key, &event.id, timestamp, &event.body),
            )
            .header("cfgd-replica", &self.replica)
            .body(Full::new(Bytes::from(event.body.clone())))
            .map_err(|e| format!("{}: {e}", self.url))?;
        if !leader.holds() {
            return Err(Failed::Unsent);
        }
        let response = connection
            .send_request(request)
            .await
            .map_err(|e| Failed::Error(format!("{}: {e}", self.url)))?;
        let status = response.status().as_u16();
        // Read to the end, so the connection can carry the next event.
        let _ = response.into_body().collect().await;
        Ok(status)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        if self.receiver.https {
            return Err(format!(
                "{}: https receivers are not supported yet; use http:// (behind a TLS proxy)",
                self.url
            ));
        }
        let addresses = self
            .receiver
            .resolve(self.allow_loopback)
            .await
            .map_err(|e| e.to_string())?;
        let mut last = String::new();
        for address in addresses {
            match tokio::net::TcpStream::connect(address).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let (sender, connection) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .map_err(|e| format!("{}: {e}", self.url))?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    return Ok(sender);
                }
                Err(e) => last = format!("{}: cannot connect to {address}: {e}", self.url),
            }
        }
        Err(last)
    }
}
