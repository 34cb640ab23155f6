//! Limits against abuse, on the real `cfgd` binary: clients that send a
//! request's headers slowly (slowloris) are cut off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, EtcdCluster};
use crate::harness::{http, start_with, start_with_settings, Server, OPS, READER};

/// The server's `--header-read-timeout` in these tests.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How late past the timeout a close may come on a loaded 2-core machine
/// running hundreds of clients beside the server.
const SLACK: Duration = Duration::from_secs(6);
/// How long a slow client waits for the server before calling it a failure.
const GIVE_UP: Duration = Duration::from_secs(30);

/// Sends a request line, then a header line every 500 ms, never ending the
/// head. Returns how long the server kept the connection, or `None` when it
/// was still open after [`GIVE_UP`].
async fn hold_open<S>(stream: S) -> Option<Duration>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let (mut read, mut write) = tokio::io::split(stream);
    let writing = async {
        if write
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: cfgd\r\n")
            .await
            .is_err()
        {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if write.write_all(b"X-Slow: 1\r\n").await.is_err() {
                return;
            }
        }
    };
    let reading = async {
        // The server may answer 408 first; the close is what counts.
        let mut buf = [0u8; 512];
        while let Ok(n @ 1..) = read.read(&mut buf).await {
            let _ = n;
        }
    };
    tokio::select! {
        () = reading => Some(started.elapsed()),
        () = writing => Some(started.elapsed()),
        () = tokio::time::sleep(GIVE_UP) => None,
    }
}

/// Each slow client was cut off by the header read timeout: not before it,
/// and not long after.
fn check_closed(held: Vec<Option<Duration>>) {
    let count = held.len();
    let held: Vec<Duration> = held
        .into_iter()
        .enumerate()
        .map(|(i, h)| h.unwrap_or_else(|| panic!("slow client {i} still open after {GIVE_UP:?}")))
        .collect();
    let (first, last) = (held.iter().min().unwrap(), held.iter().max().unwrap());
    eprintln!("{count} slow clients closed after {first:?} to {last:?}");
    assert!(
        *first >= TIMEOUT - Duration::from_millis(200),
        "a slow client was closed after {first:?}, before the {TIMEOUT:?} timeout"
    );
    assert!(
        *last <= TIMEOUT + SLACK,
        "a slow client was closed only after {last:?}"
    );
}

/// Times `n` ordinary requests made one after another.
fn ordinary_requests(server: &Server, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let started = Instant::now();
            let reply = http(
                server,
                "GET",
                "/v1/namespaces/prod/config/limit",
                &[READER],
                "",
            );
            assert_eq!(
                reply.status, 200,
                "an ordinary request failed during the attack"
            );
            std::thread::sleep(Duration::from_millis(50));
            started.elapsed()
        })
        .collect()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_senders_are_cut_off_while_others_are_served() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = Arc::new(start_with(&etcd, &["--header-read-timeout", "2"]));
    let put = http(
        &server,
        "PUT",
        "/v1/namespaces/prod/config/limit",
        &[OPS],
        "7",
    );
    assert_eq!(put.status, 200);
    let quiet = {
        let server = server.clone();
        tokio::task::spawn_blocking(move || ordinary_requests(&server, 20))
            .await
            .unwrap()
    };

    let slow: Vec<_> = (0..300)
        .map(|_| {
            let address = server.address.clone();
            tokio::spawn(async move {
                let stream = TcpStream::connect(&address).await.expect("connect");
                hold_open(stream).await
            })
        })
        .collect();
    // Ordinary clients are served while the slow ones hold on.
    let busy = {
        let server = server.clone();
        tokio::task::spawn_blocking(move || ordinary_requests(&server, 20))
            .await
            .unwrap()
    };
    let mut held = Vec::new();
    for task in slow {
        held.push(task.await.unwrap());
    }
    eprintln!(
        "ordinary requests: median {:?} alone, {:?} beside 300 slow clients",
        median(quiet),
        median(busy)
    );
    check_closed(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_senders_are_cut_off_over_https() {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

    common::logs();
    let pki = common::pki::Pki::new();
    let etcd = EtcdCluster::single();
    let [cert, key] = [pki.server_cert(), pki.server_key()];
    let server = start_with(
        &etcd,
        &[
            "--header-read-timeout",
            "2",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(pki.ca()).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let slow: Vec<_> = (0..50)
        .map(|_| {
            let (address, connector) = (server.address.clone(), connector.clone());
            tokio::spawn(async move {
                let tcp = TcpStream::connect(&address).await.expect("connect");
                let name = ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await.expect("TLS handshake");
                hold_open(tls).await
            })
        })
        .collect();
    let mut held = Vec::new();
    for task in slow {
        held.push(task.await.unwrap());
    }
    check_closed(held);
}

/// Opens an SSE watch and returns the socket and the status line's code,
/// keeping the stream open while the socket lives.
async fn open_watch(server: &Server, token: &str) -> (TcpStream, u16, String) {
    let mut stream = TcpStream::connect(&server.address).await.unwrap();
    let request = format!(
        "GET /v1/namespaces/prod/watch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (stream, code, head)
}

#[tokio::test]
async fn stream_caps_answer_429_and_503_and_bodies_are_bounded() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start_with_settings(
        &etcd,
        "max_streams = 3\nmax_streams_per_token = 2\nmax_body_bytes = 4096\nmax_context_bytes = 2048",
        &[],
    );
    // The token's share: two, then 429 with Retry-After.
    let (_a, first, _) = open_watch(&server, "ops-secret").await;
    let (_b, second, _) = open_watch(&server, "ops-secret").await;
    assert_eq!((first, second), (200, 200));
    let (_, third, head) = open_watch(&server, "ops-secret").await;
    assert_eq!(third, 429, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 5"),
        "{head}"
    );
    // The server's: three in all, then 503, whoever asks.
    let (_c, other, _) = open_watch(&server, "reader-secret").await;
    assert_eq!(other, 200);
    let (_, full, head) = open_watch(&server, "reader-secret").await;
    assert_eq!(full, 503, "{head}");
    // A place comes back when a stream closes.
    drop(_a);
    let mut reopened = 0;
    for _ in 0..50 {
        let (s, code, _) = open_watch(&server, "ops-secret").await;
        if code == 200 {
            reopened = code;
            drop(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reopened, 200, "the closed stream's place came back");

    // Bodies over max_body_bytes are refused whole, with 413.
    let big = format!("\"{}\"", "x".repeat(5000));
    let put = http(
        &server,
        "PUT",
        "/v1/namespaces/prod/config/big",
        &[OPS],
        &big,
    );
    assert_eq!(put.status, 413, "{}", put.body);
    assert_eq!(
        http(
            &server,
            "GET",
            "/v1/namespaces/prod/config/big",
            &[READER],
            ""
        )
        .status,
        404
    );
    // So are OFREP contexts over max_context_bytes.
    let context = format!(r#"{{"context": {{"pad": "{}"}}}}"#, "y".repeat(3000));
    let ofrep = http(
        &server,
        "POST",
        "/ofrep/v1/evaluate/flags",
        &[OPS, ("X-Cfgd-Namespace", "prod")],
        &context,
    );
    assert_eq!(ofrep.status, 413, "{}", ofrep.body);
    assert!(ofrep.body.contains("max_context_bytes"), "{}", ofrep.body);

    // Each refusal is counted (the reopening above may have added more
    // 503s while the closed socket was noticed).
    let metrics = http(&server, "GET", "/metrics", &[], "").body;
    for limit in ["streams_per_token", "streams", "body", "context"] {
        let series = format!(r#"cfgd_limit_refusals_total{{limit="{limit}"}} "#);
        let count: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .unwrap_or_else(|| panic!("{series} in:\n{metrics}"))
            .trim()
            .parse()
            .unwrap();
        assert!(count >= 1.0, "{series}{count}");
    }
}

#[tokio::test]
async fn a_token_writing_too_fast_is_told_to_wait() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start_with_settings(&etcd, "write_rate_per_token = 2", &[]);
    let path = "/v1/namespaces/prod/config/rate";
    let codes: Vec<u16> = (0..3)
        .map(|i| http(&server, "PUT", path, &[OPS], &i.to_string()).status)
        .collect();
    assert_eq!(codes[..2], [200, 200]);
    let refused = http(&server, "PUT", path, &[OPS], "9");
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.body.contains("too_many_writes"), "{}", refused.body);
    // Reads are never rate limited, and the value is the last one let in.
    let got = http(&server, "GET", path, &[READER], "");
    assert!(["1", "2"].contains(&got.body.as_str()), "{}", got.body);
}

/// The server's resident memory, in KB.
fn rss_kb(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server._child.0.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Writes `count` values of 32 KB over ten names, and gives the server's
/// memory growth in KB.
fn write_burst(server: &Server, count: usize) -> i64 {
    let before = rss_kb(server) as i64;
    let pad = "z".repeat(32 * 1024);
    for i in 0..count {
        let body = format!(r#"{{"n": {i}, "pad": "{pad}"}}"#);
        let put = http(
            server,
            "PUT",
            &format!("/v1/namespaces/prod/config/big/{}", i % 10),
            &[OPS],
            &body,
        );
        assert_eq!(put.status, 200, "{}", put.body);
    }
    std::thread::sleep(Duration::from_millis(500));
    rss_kb(server) as i64 - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_clients_that_never_read_do_not_grow_memory_with_what_is_written() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start_with(&etcd, &[]);
    // A warm-up burst, then the same burst with no stream open...
    let server_ref = &server;
    tokio::task::block_in_place(|| write_burst(server_ref, 300));
    let alone = tokio::task::block_in_place(|| write_burst(server_ref, 300));
    // ...and with 50 streams whose clients never read a byte. Unbounded
    // buffering would hold 50 × 9.6 MB.
    let mut idle = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(&server.address).await.unwrap();
        let request = "GET /v1/namespaces/prod/watch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer reader-secret\r\n\r\n";
        stream.write_all(request.as_bytes()).await.unwrap();
        idle.push(stream);
    }
    let first = tokio::task::block_in_place(|| write_burst(server_ref, 300));
    let second = tokio::task::block_in_place(|| write_burst(server_ref, 300));
    eprintln!(
        "memory growth over 300 writes of 32 KB: {alone} KB with no stream; \
         with 50 clients that never read: {first} KB, then {second} KB"
    );
    // What they cost is bounded per client (hyper's write buffer), not
    // proportional to what is written: the second burst adds no more.
    assert!(
        first - alone < 50 * 512,
        "50 non-reading clients added {} KB",
        first - alone
    );
    assert!(
        second - alone < 8 * 1024,
        "memory kept growing with writes: {second} KB against {alone} KB"
    );
    drop(idle);
}

#[tokio::test]
async fn connections_past_the_cap_are_answered_503_and_closed() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start_with_settings(&etcd, "max_connections = 3", &[]);
    // Three connections that say nothing yet fill the server.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&server.address).await.unwrap());
    }
    // The server counts a connection once it has accepted it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(&server.address).await.unwrap();
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: cfgd\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut extra, "answered and closed, not held").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("retry-after: 5") && lower.contains("connection: close"),
        "{answer}"
    );
    assert!(answer.contains("too_many_connections"), "{answer}");
    // A place comes back when a connection closes; the refusal was counted.
    held.pop();
    let mut served = None;
    for _ in 0..50 {
        let reply = http(&server, "GET", "/metrics", &[], "");
        if reply.status == 200 {
            served = Some(reply.body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = served.expect("served again once a connection closed");
    assert!(
        metrics.contains(r#"cfgd_limit_refusals_total{limit="connections"} "#),
        "{metrics}"
    );
}

/// Everything the server sends until it closes; fails, saying `expect`,
/// if it is still open after 10 s.
async fn read_to_close(stream: &mut TcpStream, expect: &str) -> String {
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect(expect)
        .unwrap();
    answer
}

/// Reads from an event stream until `want` has come, or fails after 10 s.
async fn read_until(stream: &mut TcpStream, seen: &mut String, want: &str) {
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {want:?} in 10 s; got {seen:?}"))
            .unwrap();
        assert!(read > 0, "closed before {want:?}; got {seen:?}");
        seen.push_str(std::str::from_utf8(&buf[..read]).unwrap());
    }
}

/// Event streams are written by cfgd's own writer once their head is read
/// (src/server/conn.rs), not by hyper: the answer ends with the connection,
/// events come as they are, a heartbeat comes when nothing else does, a
/// request that is not an event stream on the same port is still hyper's,
/// and shutdown ends the stream by closing it.
#[tokio::test]
async fn event_streams_are_written_whole_and_end_at_shutdown() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start_with_settings(&etcd, "heartbeat = 0.3", &[]);
    let (mut stream, code, head) = open_watch(&server, "reader-secret").await;
    assert_eq!(code, 200, "{head}");
    let lower = head.to_ascii_lowercase();
    for field in [
        "content-type: text/event-stream",
        "cache-control: no-cache",
        "connection: close",
        "date: ",
    ] {
        assert!(lower.contains(field), "{field} in {head}");
    }
    assert!(!lower.contains("transfer-encoding"), "{head}");
    assert!(!lower.contains("content-length"), "{head}");

    let mut seen = String::new();
    read_until(&mut stream, &mut seen, ":\n\n").await;
    let put = http(
        &server,
        "PUT",
        "/v1/namespaces/prod/config/lean",
        &[OPS],
        "41",
    );
    assert_eq!(put.status, 200, "{}", put.body);
    let revision = put.header("etag").unwrap().trim_matches('"').to_owned();
    let event = format!("id: {revision}\nevent: put\ndata: {{");
    read_until(&mut stream, &mut seen, &event).await;
    read_until(&mut stream, &mut seen, "}\n\n").await;
    assert!(seen.contains(r#""name":"lean""#), "{seen}");
    // Idle again: heartbeats go on.
    let mut idle = String::new();
    read_until(&mut stream, &mut idle, ":\n\n").await;

    // Other requests on the same port are hyper's, keep-alive and all.
    let (mut plain, _, _) = open_watch(&server, "nobody").await;
    let refusal = read_to_close(&mut plain, "a refused stream is answered and closed").await;
    assert!(refusal.contains("unauthorized"), "{refusal}");
    assert_eq!(http(&server, "GET", "/healthz", &[], "").status, 200);

    // SIGTERM: the stream ends and its connection closes.
    let Server {
        _child: mut child, ..
    } = server;
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    read_to_close(&mut stream, "the stream closed at shutdown").await;
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
}
