//! A connection's first request head is read here. An event stream request
//! (a bodyless HTTP/1.1 GET of a namespace's watch or of OFREP's events) is
//! then answered here to its end, through the same router as every request;
//! any other connection goes to hyper, with the bytes read so far handed
//! back to it first.
//!
//! Why streams leave hyper: hyper gives every connection an 8 KB read buffer
//! and an 8 KB write buffer for its whole life, with no setting to shrink
//! them, which was most of what an idle SSE client cost. Once its head is
//! written, an event stream only writes events and watches for its client
//! leaving; here it holds no buffer between events, and writes each event
//! from the bytes every stream shares (BENCHMARKS.md, "Hardening").

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Buf as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Where a connection goes once its first request head is read.
pub(super) enum First<I> {
    /// An event stream request, for [`stream`].
    Stream(I, Box<Request<Body>>),
    /// Anything else, for hyper, which reads the same bytes again.
    Http(Rewind<I>),
}

/// Past this much without a whole head, hyper takes the connection and
/// answers it under its own limit.
const HEAD_LIMIT: usize = 16 * 1024;
/// hyper's limit too.
const MAX_HEADERS: usize = 100;

/// Reads the first request head from `io`; `None` when the client leaves
/// (or fails) before sending a whole one.
pub(super) async fn first<I: AsyncRead + Unpin>(mut io: I) -> Option<First<I>> {
    let mut read = Vec::with_capacity(1024);
    loop {
        if io.read_buf(&mut read).await.ok()? == 0 {
            return None;
        }
        match parse(&read) {
            Parsed::Stream(request) => return Some(First::Stream(io, request)),
            Parsed::Partial if read.len() < HEAD_LIMIT => {}
            Parsed::Partial | Parsed::Other => return Some(First::Http(Rewind::new(io, read))),
        }
    }
}

enum Parsed {
    // Boxed: it is moved into the stream's task, which lives long.
    Stream(Box<Request<Body>>),
    Partial,
    Other,
}

fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let length = match head.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        // hyper answers it (400, 431).
        Err(_) => return Parsed::Other,
    };
    // Bytes past the head (a body, a pipelined request) are hyper's to read;
    // so is HTTP/1.0, which has no chunked encoding.
    if length != bytes.len() || head.method != Some("GET") || head.version != Some(1) {
        return Parsed::Other;
    }
    // The route is the parsed URI's, as the router sees it: the fuzzer
    // found `/v1/namespaces/pr#d/watch`, a stream route as text but
    // `/v1/namespaces/pr` once `#` starts a fragment.
    let Some(uri) = head
        .path
        .and_then(|path| Uri::try_from(path).ok())
        .filter(|uri| is_stream(uri.path()))
    else {
        return Parsed::Other;
    };
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    for field in head.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) else {
            return Parsed::Other;
        };
        let body =
            (name == header::CONTENT_LENGTH && value != "0") || name == header::TRANSFER_ENCODING;
        if body {
            return Parsed::Other;
        }
        request.headers_mut().append(name, value);
    }
    Parsed::Stream(Box::new(request))
}

/// For the `http_head` fuzz target: a head taken as an event stream's is a
/// bodyless GET of a stream route, whatever the bytes.
#[cfg(feature = "fuzzing")]
pub(crate) fn check_first_head(bytes: &[u8]) {
    if let Parsed::Stream(request) = parse(bytes) {
        assert_eq!(request.method(), Method::GET);
        let target = request.uri().path_and_query().map_or("", |p| p.as_str());
        assert!(is_stream(target), "{target:?} taken as a stream");
        assert!(!request.headers().contains_key(header::TRANSFER_ENCODING));
        assert!(request
            .headers()
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .all(|length| length == "0"));
    }
}

/// The routes whose answer is an event stream.
fn is_stream(target: &str) -> bool {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    path == "/ofrep/v1/events"
        || path
            .strip_prefix("/v1/namespaces/")
            .and_then(|rest| rest.strip_suffix("/watch"))
            .is_some_and(|ns| !ns.is_empty() && !ns.contains('/'))
}

/// Answers `request` through `router` and writes the answer to `io`: the
/// head, then each event as it comes, until the stream ends (shutdown), the
/// client leaves, or a write fails. The connection is closed after it, as
/// its head says.
pub(super) async fn stream<I>(mut io: I, request: Box<Request<Body>>, router: axum::Router)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    use hyper::service::Service as _;
    // Boxed: the handler's future is large and lives only until the answer,
    // while this task's state lives as long as the stream.
    let answer = Box::pin(hyper_util::service::TowerToHyperService::new(router).call(*request));
    let Ok(response) = answer.await;
    let mut writing = Writing::new(response);
    if let Err(error) = poll_fn(|cx| writing.poll(&mut io, cx)).await {
        tracing::debug!(%error, "event stream closed");
    }
    // A TLS stream says goodbye properly; a client that does not read is
    // not waited for.
    let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
}

/// A response on its way out.
///
/// A body of unknown length (an event stream's) is not chunked: it ends
/// where the connection does (RFC 9112, 6.3), since the connection closes
/// after it anyway. So each event is written as it is, from the bytes
/// every stream sending it shares, with one plain write: chunking cost a
/// vectored write or a copy per event per stream, which showed in the
/// profile at ten thousand streams.
struct Writing {
    body: Body,
    /// What is left to write of the head or of one event; empty between
    /// events, so that nothing is held.
    out: Bytes,
    flushing: bool,
    /// Watching for the client leaving; off once it sent anything.
    reading: bool,
    read_wake: Option<ReadWake>,
    ended: bool,
}

/// Wakes a stream's task when its socket turns readable, and says so, so
/// that the socket is polled for reading only then rather than on every
/// wake: each such poll takes the socket's waiter lock, which showed in
/// the profile at ten thousand streams woken together.
struct ReadWake {
    flag: Arc<ReadFlag>,
    waker: Waker,
}

struct ReadFlag {
    woken: AtomicBool,
    task: Waker,
}

impl Wake for ReadFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl ReadWake {
    /// The waker to read with, if the socket may have something to read
    /// (or this is the first poll, or the task's waker changed).
    fn due(slot: &mut Option<ReadWake>, task: &Waker) -> Option<Waker> {
        match slot {
            Some(wake) if wake.flag.task.will_wake(task) => wake
                .flag
                .woken
                .swap(false, Ordering::AcqRel)
                .then(|| wake.waker.clone()),
            _ => {
                let flag = Arc::new(ReadFlag {
                    woken: AtomicBool::new(false),
                    task: task.clone(),
                });
                let waker = Waker::from(flag.clone());
                *slot = Some(ReadWake {
                    flag,
                    waker: waker.clone(),
                });
                Some(waker)
            }
        }
    }
}

impl Writing {
    fn new(response: Response<Body>) -> Self {
        let (parts, body) = response.into_parts();
        let bodiless = parts.status.is_informational()
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        let mut head = Vec::with_capacity(512);
        let status = parts.status;
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(status.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        head.extend_from_slice(b"\r\n");
        let framing = [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
            header::DATE,
        ];
        for (name, value) in &parts.headers {
            if !framing.contains(name) {
                field(&mut head, name.as_str(), value.as_bytes());
            }
        }
        if let (false, Some(length)) = (bodiless, body.size_hint().exact()) {
            field(&mut head, "content-length", length.to_string().as_bytes());
        }
        field(&mut head, "connection", b"close");
        let date = httpdate::fmt_http_date(SystemTime::now());
        field(&mut head, "date", date.as_bytes());
        head.extend_from_slice(b"\r\n");
        Writing {
            body,
            out: head.into(),
            flushing: false,
            reading: true,
            read_wake: None,
            ended: bodiless,
        }
    }

    /// Ready with `Ok` once the whole response is written.
    fn poll<I>(&mut self, io: &mut I, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let waker = if self.reading {
            ReadWake::due(&mut self.read_wake, cx.waker())
        } else {
            None
        };
        if let Some(waker) = waker {
            let mut scratch = [0; 64];
            let mut read = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *io).poll_read(&mut Context::from_waker(&waker), &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()))
                }
                // Nothing more is expected of an event stream's client: as
                // hyper does, leave what it sent unread from now on.
                Poll::Ready(Ok(())) => self.reading = false,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {}
            }
        }
        loop {
            while !self.out.is_empty() {
                let wrote = ready!(Pin::new(&mut *io).poll_write(cx, &self.out))?;
                if wrote == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.out.advance(wrote);
                self.flushing = true;
            }
            if self.flushing {
                ready!(Pin::new(&mut *io).poll_flush(cx))?;
                self.flushing = false;
                self.out = Bytes::new();
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.out = data;
                    }
                }
                Some(Err(error)) => return Poll::Ready(Err(io::Error::other(error))),
                None => self.ended = true,
            }
        }
    }
}

fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `io` with bytes already read from it put back in front, for hyper.
pub(super) struct Rewind<I> {
    read: Option<(Vec<u8>, usize)>,
    io: I,
}

impl<I> Rewind<I> {
    fn new(io: I, read: Vec<u8>) -> Self {
        Rewind {
            read: Some((read, 0)),
            io,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some((read, at)) = &mut self.read {
            let take = (read.len() - *at).min(buf.remaining());
            buf.put_slice(&read[*at..*at + take]);
            *at += take;
            if *at == read.len() {
                self.read = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_event_stream_routes_leave_hyper() {
        assert!(is_stream("/v1/namespaces/prod/watch"));
        assert!(is_stream("/v1/namespaces/prod/watch?prefix=a"));
        assert!(is_stream("/ofrep/v1/events"));
        assert!(!is_stream("/v1/namespaces//watch"));
        assert!(!is_stream("/v1/namespaces/a/b/watch"));
        assert!(!is_stream("/v1/namespaces/prod/config"));
        assert!(!is_stream("/ofrep/v1/events/x"));
    }

    fn parsed(head: &str) -> Parsed {
        parse(head.as_bytes())
    }

    #[test]
    fn a_bodyless_get_of_a_stream_is_parsed_with_its_headers() {
        let Parsed::Stream(request) = parsed(
            "GET /v1/namespaces/prod/watch?prefix=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n",
        ) else {
            panic!("not parsed as a stream");
        };
        assert_eq!(request.uri(), "/v1/namespaces/prod/watch?prefix=a");
        assert_eq!(request.headers()["last-event-id"], "7");
        assert_eq!(request.headers()["host"], "x");
    }

    #[test]
    fn anything_else_goes_to_hyper() {
        let watch = "GET /v1/namespaces/prod/watch HTTP/1.1\r\n";
        assert!(matches!(parsed(watch), Parsed::Partial));
        for other in [
            format!("{watch}Content-Length: 3\r\n\r\nabc"),
            format!("{watch}Transfer-Encoding: chunked\r\n\r\n"),
            format!("{watch}\r\nGET / HTTP/1.1\r\n\r\n"),
            "GET /v1/namespaces/prod/watch HTTP/1.0\r\n\r\n".into(),
            "POST /v1/namespaces/prod/watch HTTP/1.1\r\n\r\n".into(),
            "GET /healthz HTTP/1.1\r\n\r\n".into(),
            // A stream route as text, but `/v1/namespaces/pr` as a URI.
            "GET /v1/namespaces/pr#d/watch HTTP/1.1\r\n\r\n".into(),
            "NOT HTTP\r\n\r\n".into(),
        ] {
            assert!(matches!(parsed(&other), Parsed::Other), "{other:?}");
        }
    }
}
