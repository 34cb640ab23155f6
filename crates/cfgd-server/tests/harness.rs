//! What the server's end-to-end tests share: the `cfgd` binary started on
//! real etcd, HTTP and SSE clients on raw sockets, metrics parsing.
#![allow(dead_code)] // each test file uses a different part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{self, EtcdCluster, KillOnDrop};

pub(crate) struct Server {
    pub(crate) _child: KillOnDrop,
    pub(crate) address: String,
    pub(crate) _dir: tempfile::TempDir,
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) const CONFIG: &str = r#"
[[tokens]]
name = "ops"
secret = "ops-secret"
scopes = { "*" = "write" }

[[tokens]]
name = "reviewer"
secret = "reviewer-secret"
scopes = { "*" = "write" }

[[tokens]]
name = "admin"
secret = "admin-secret"
scopes = { "*" = "admin" }

[[tokens]]
name = "vault"
secret = "vault-secret"
scopes = { "*" = "secrets" }

[[tokens]]
name = "reader"
# sha256("reader-secret")
secret_sha256 = "SHA"
scopes = { prod = "read" }
"#;

pub(crate) fn sha256_hex(text: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("sha256sum (coreutils)");
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

pub(crate) fn start(etcd: &EtcdCluster) -> Server {
    start_with(etcd, &[])
}

pub(crate) fn start_with(etcd: &EtcdCluster, extra: &[&str]) -> Server {
    start_with_settings(etcd, "", extra)
}

/// [`start`], holding the secret key file at `key`.
pub(crate) fn start_with_key(etcd: &EtcdCluster, key: &std::path::Path) -> Server {
    start_with_settings(
        etcd,
        &format!("secret_key_file = {:?}", key.to_str().unwrap()),
        &[],
    )
}

/// [`start_with`], with `settings` (TOML keys) ahead of the tokens.
pub(crate) fn start_with_settings(etcd: &EtcdCluster, settings: &str, extra: &[&str]) -> Server {
    start_on(etcd, "127.0.0.1:0", settings, extra)
}

/// [`start_with_settings`] on `listen`, for settings that must name the
/// server's own address before it starts (an SSO redirect URL).
pub(crate) fn start_on(etcd: &EtcdCluster, listen: &str, settings: &str, extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfgd.toml");
    let text = format!(
        "{settings}\n{}",
        CONFIG.replace("SHA", &sha256_hex("reader-secret"))
    );
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfgd"))
        .args([
            "serve",
            "--listen",
            listen,
            "--endpoints",
            &etcd.endpoints_arg(),
        ])
        .arg("--config")
        .arg(&config)
        .args(extra)
        .env_remove("CFGD_NO_AUTH")
        .stdout(Stdio::piped())
        // Kept for tests that read the logs (what must never be in them).
        .stderr(std::fs::File::create(dir.path().join("cfgd.log")).unwrap())
        .spawn()
        .expect("start cfgd");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let address = first
        .trim()
        .strip_prefix("cfgd listening on http://")
        .or_else(|| first.trim().strip_prefix("cfgd listening on https://"))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    Server {
        _child: KillOnDrop(child),
        address,
        _dir: dir,
    }
}

/// One HTTP/1.1 request with `Connection: close`, enough for these tests.
pub(crate) fn http(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    http_to(&server.address, method, path, headers, body)
}

/// [`http`] to any `address` (host:port).
pub(crate) fn http_to(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a full response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

pub(crate) const OPS: (&str, &str) = ("Authorization", "Bearer ops-secret");
pub(crate) const READER: (&str, &str) = ("Authorization", "Bearer reader-secret");
pub(crate) const ADMIN: (&str, &str) = ("Authorization", "Bearer admin-secret");
pub(crate) const REVIEWER: (&str, &str) = ("Authorization", "Bearer reviewer-secret");

/// An SSE stream read from a raw HTTP/1.0 connection (so the body is not
/// chunked), event by event.
pub(crate) struct Sse {
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
pub(crate) struct SseEvent {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) data: serde_json::Value,
}

impl Sse {
    pub(crate) fn open(server: &Server, path: &str, last_event_id: Option<i64>) -> Sse {
        Self::open_as(server, path, last_event_id, "reader-secret")
    }

    pub(crate) fn open_as(
        server: &Server,
        path: &str,
        last_event_id: Option<i64>,
        token: &str,
    ) -> Sse {
        Self::open_with(server, path, last_event_id, token, &[])
    }

    /// [`open_as`](Self::open_as), sending `extra` headers too.
    pub(crate) fn open_with(
        server: &Server,
        path: &str,
        last_event_id: Option<i64>,
        token: &str,
        extra: &[(&str, &str)],
    ) -> Sse {
        let mut stream = TcpStream::connect(&server.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut request = format!(
            "GET {path} HTTP/1.0\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n"
        );
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        for (name, value) in extra {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        if !status.contains(" 200 ") {
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
            panic!("{status}{rest}");
        }
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
        }
        Sse { reader }
    }

    pub(crate) fn next(&mut self) -> SseEvent {
        let (mut id, mut kind, mut data) = (None, None, None);
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .expect("an SSE line within the timeout");
            assert!(n > 0, "the stream ended");
            let line = line.trim_end();
            if line.is_empty() {
                if let (Some(id), Some(kind), Some(data)) = (id.take(), kind.take(), data.take()) {
                    return SseEvent { id, kind, data };
                }
                continue; // a heartbeat comment ended
            }
            if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().parse().unwrap());
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data = Some(serde_json::from_str(v.trim()).unwrap());
            }
        }
    }
}

pub(crate) fn cfgctl() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("cfgctl");
    assert!(
        path.exists(),
        "{} not built; run `cargo test --workspace`",
        path.display()
    );
    path
}

/// Checks a Prometheus/OpenMetrics text exposition line by line and returns
/// its samples as (series, value).
pub(crate) fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut saw_eof = false;
    for line in text.lines() {
        assert!(!saw_eof, "nothing may follow # EOF");
        if line == "# EOF" {
            saw_eof = true;
            continue;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let kind = parts.next().unwrap();
            assert!(
                ["HELP", "TYPE", "UNIT"].contains(&kind),
                "bad comment line {line:?}"
            );
            assert!(
                parts.next().is_some_and(|n| n.starts_with("cfgd_")),
                "{line:?}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.push((series.to_owned(), value));
    }
    assert!(saw_eof, "an OpenMetrics exposition ends with # EOF");
    samples
}

pub(crate) fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .map_or(0.0, |(_, v)| *v)
}

/// One HTTPS request through curl, trusting `ca`: (status, body).
pub(crate) fn curl(ca: &std::path::Path, method: &str, url: &str, body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-X",
            method,
            "-H",
            "Authorization: Bearer ops-secret",
        ])
        .args(["--data-binary", body, "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .expect("run curl (installed by `make test`)");
    let text = common::stdout_of(format!("curl {url}"), out);
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_owned())
}

pub(crate) fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} not built; run `cargo test --all-features`",
        path.display()
    );
    path
}
