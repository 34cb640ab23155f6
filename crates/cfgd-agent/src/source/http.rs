//! HTTP/1.1 to the cfgd server on hyper's connection API: a GET's JSON,
//! and an event stream read event by event. Enough for the agent's few
//! requests, without a client crate's pool and TLS stacks.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::FutureExt;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

/// The server and what every request carries.
#[derive(Clone)]
pub struct Server {
    /// `host:port`.
    authority: String,
    /// The path the API sits under (`""`, or `/cfgd` behind a proxy).
    base: String,
    token: Option<String>,
    labels: Option<String>,
}

const TIMEOUT: Duration = Duration::from_secs(10);

impl Server {
    pub fn new(url: &str, token: Option<String>, labels: Option<String>) -> Result<Server> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("server {url:?}: give http://host:port"))?;
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            bail!("server {url:?} names no host");
        }
        let authority = match authority.contains(':') {
            true => authority.to_owned(),
            false => format!("{authority}:80"),
        };
        Ok(Server {
            authority,
            base: base.to_owned(),
            token,
            labels,
        })
    }

    async fn send(
        &self,
        path: &str,
        extra: &[(&str, String)],
    ) -> Result<hyper::Response<Incoming>> {
        let stream = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(&self.authority))
            .await
            .map_err(|_| {
                anyhow!(
                    "{}: no answer to connect within {TIMEOUT:?}",
                    self.authority
                )
            })?
            .with_context(|| format!("cannot connect to {}", self.authority))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("{}: HTTP handshake", self.authority))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::get(format!("{}{path}", self.base))
            .header("host", &self.authority)
            .header(
                "user-agent",
                concat!("cfgd-agent/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(labels) = &self.labels {
            request = request.header("x-cfgd-labels", labels);
        }
        for (name, value) in extra {
            request = request.header(*name, value);
        }
        let request = request.body(Empty::<Bytes>::new())?;
        tokio::time::timeout(TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| {
                anyhow!(
                    "{}: no answer to GET {path} within {TIMEOUT:?}",
                    self.authority
                )
            })?
            .with_context(|| format!("GET {path}"))
    }

    /// A GET answered with JSON; `None` for 404. A refusal (401, 403) is a
    /// [`Refused`] error, told apart from the server being unwell.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        Ok(self.get_listed(path).await?.map(|(value, _)| value))
    }

    /// [`get_json`](Self::get_json), with the answer's `X-Cfgd-Revision`.
    pub async fn get_listed<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<(T, Option<i64>)>> {
        let response = self.send(path, &[]).await?;
        let status = response.status();
        let revision = response
            .headers()
            .get("x-cfgd-revision")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let body = tokio::time::timeout(TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| anyhow!("GET {path}: the body did not arrive within {TIMEOUT:?}"))??
            .to_bytes();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Refused(format!("GET {path}: {status}: {}", error_message(&body))).into());
        }
        if !status.is_success() {
            bail!("GET {path}: {status}: {}", error_message(&body));
        }
        let value = serde_json::from_slice(&body)
            .with_context(|| format!("GET {path}: the answer is not the JSON expected"))?;
        Ok(Some((value, revision)))
    }

    /// An event stream from `path`, resumed after `last_event_id`.
    pub async fn events(&self, path: &str, last_event_id: i64) -> Result<Events> {
        let response = self
            .send(
                path,
                &[
                    ("last-event-id", last_event_id.to_string()),
                    ("accept", "text/event-stream".into()),
                ],
            )
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.into_body().collect().await?.to_bytes();
            bail!("GET {path}: {status}: {}", error_message(&body));
        }
        Ok(Events {
            body: response.into_body(),
            buffer: Vec::new(),
        })
    }
}

/// The server refused the token (401 or 403): no retry will change that.
#[derive(Debug)]
pub struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The `message` of cfgd's `{"error": {"code", "message"}}`, else the text.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}

/// One server-sent event.
#[derive(Debug, Default, PartialEq)]
pub struct Event {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// An event stream's events, as they arrive.
pub struct Events {
    body: Incoming,
    buffer: Vec<u8>,
}

impl Events {
    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(event) = self.take_event() {
                return Ok(Some(event));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// An event that has arrived already (in the buffer, or in frames the
    /// connection holds), without waiting: a burst of events (a
    /// transaction's) is applied before the state is published.
    pub fn ready(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(event) = self.take_event() {
                return Ok(Some(event));
            }
            match self.body.frame().now_or_never() {
                Some(Some(frame)) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                // Ended, or nothing more yet: `next` says which.
                Some(None) | None => return Ok(None),
            }
        }
    }

    fn take_event(&mut self) -> Option<Event> {
        loop {
            let (end, skip) = find_end(&self.buffer)?;
            let block: Vec<u8> = self.buffer.drain(..end + skip).collect();
            let text = String::from_utf8_lossy(&block[..end]);
            let mut event = Event::default();
            let mut data = Vec::new();
            for line in text.lines() {
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "" => {} // a comment (heartbeat)
                    "id" => event.id = Some(value.to_owned()),
                    "event" => event.event = value.to_owned(),
                    "data" => data.push(value),
                    _ => {}
                }
            }
            if data.is_empty() && event.id.is_none() {
                continue;
            }
            event.data = data.join("\n");
            if event.event.is_empty() {
                event.event = "message".into();
            }
            return Some(event);
        }
    }
}

/// Where the first event in `buffer` ends, and the blank line's length.
fn find_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}
