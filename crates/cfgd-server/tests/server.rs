//! The real `cfgd` binary against real etcd, over HTTP.

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

const CONFIG: &str = r#"
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

fn sha256_hex(text: &str) -> String {
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

fn start(etcd: &EtcdCluster) -> Server {
    start_with(etcd, &[])
}

pub(crate) fn start_with(etcd: &EtcdCluster, extra: &[&str]) -> Server {
    start_with_settings(etcd, "", extra)
}

/// [`start_with`], with `settings` (TOML keys) ahead of the tokens.
pub(crate) fn start_with_settings(etcd: &EtcdCluster, settings: &str, extra: &[&str]) -> Server {
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
            "127.0.0.1:0",
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
    let mut stream = TcpStream::connect(&server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        server.address,
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
const ADMIN: (&str, &str) = ("Authorization", "Bearer admin-secret");
const REVIEWER: (&str, &str) = ("Authorization", "Bearer reviewer-secret");

#[tokio::test]
async fn rest_config_with_auth_etags_and_validation() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let path = "/v1/namespaces/prod/config/db.pool";

    assert_eq!(http(&server, "GET", "/healthz", &[], "").status, 200);
    let ready = http(&server, "GET", "/readyz", &[], "");
    assert_eq!((ready.status, ready.body.contains("\"etcd\"")), (200, true));

    // Auth: none, unknown, out of scope.
    assert_eq!(http(&server, "GET", path, &[], "").status, 401);
    assert_eq!(
        http(
            &server,
            "GET",
            path,
            &[("Authorization", "Bearer nope")],
            ""
        )
        .status,
        401
    );
    let denied = http(&server, "PUT", path, &[READER], "1");
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(denied.body.contains("\"forbidden\""), "{}", denied.body);
    assert_eq!(
        http(&server, "GET", "/v1/namespaces/dev/config/x", &[READER], "").status,
        403
    );

    let put = http(&server, "PUT", path, &[OPS], r#"{"size": 10}"#);
    assert_eq!(put.status, 200, "{}", put.body);
    let tag = put.header("etag").unwrap().to_owned();

    let got = http(&server, "GET", path, &[READER], "");
    assert_eq!((got.status, got.body.as_str()), (200, r#"{"size":10}"#));
    assert_eq!(got.header("etag"), Some(tag.as_str()));
    assert_eq!(
        http(&server, "GET", path, &[READER, ("If-None-Match", &tag)], "").status,
        304
    );

    // A write from a stale ETag is refused; the right one goes through.
    let moved = http(&server, "PUT", path, &[OPS], r#"{"size": 20}"#);
    let stale = http(
        &server,
        "PUT",
        path,
        &[OPS, ("If-Match", &tag)],
        r#"{"size": 30}"#,
    );
    assert_eq!(stale.status, 412, "{}", stale.body);
    let fresh = moved.header("etag").unwrap();
    assert_eq!(
        http(&server, "PUT", path, &[OPS, ("If-Match", fresh)], "5").status,
        200
    );

    // Bad input changes nothing.
    let before = etcd.revision().await;
    let bad_json = http(&server, "PUT", path, &[OPS], "{nope");
    assert_eq!(bad_json.status, 400);
    assert!(
        bad_json.body.contains("not valid JSON"),
        "{}",
        bad_json.body
    );
    let bad_name = http(
        &server,
        "PUT",
        "/v1/namespaces/prod/config/bad%20name",
        &[OPS],
        "1",
    );
    assert_eq!(bad_name.status, 400, "{}", bad_name.body);
    let huge = format!("\"{}\"", "x".repeat((1 << 20) + 10));
    let too_big = http(&server, "PUT", path, &[OPS], &huge);
    assert_eq!(
        too_big.status,
        413,
        "{}",
        &too_big.body[..too_big.body.len().min(200)]
    );
    assert_eq!(etcd.revision().await, before, "nothing was written");

    if_match_any_means_it_exists(&server, &etcd, path, "6").await;
}

/// `If-Match: *` means "only if it exists", for writes and deletes alike:
/// on the existing `path` a write and a delete go through, and once it is
/// gone both answer 412 and write nothing. `If-None-Match: *` on a write is
/// the reverse: create only.
async fn if_match_any_means_it_exists(server: &Server, etcd: &EtcdCluster, path: &str, body: &str) {
    let any = ("If-Match", "*");
    assert_eq!(http(server, "PUT", path, &[OPS, any], body).status, 200);
    let deleted = http(server, "DELETE", path, &[OPS, any], "");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(http(server, "GET", path, &[READER], "").status, 404);
    assert_eq!(http(server, "DELETE", path, &[OPS], "").status, 404);
    let before = etcd.revision().await;
    assert_eq!(http(server, "PUT", path, &[OPS, any], body).status, 412);
    assert_eq!(http(server, "DELETE", path, &[OPS, any], "").status, 412);
    assert_eq!(etcd.revision().await, before, "nothing was written");
    // `If-None-Match: *` creates only: once, then 412 with nothing written.
    let absent = ("If-None-Match", "*");
    let created = http(server, "PUT", path, &[OPS, absent], body);
    assert_eq!(created.status, 200, "{}", created.body);
    let before = etcd.revision().await;
    assert_eq!(http(server, "PUT", path, &[OPS, absent], body).status, 412);
    assert_eq!(etcd.revision().await, before, "nothing was written");
}

#[tokio::test]
async fn rest_lists_history_and_flags() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    for (name, value) in [
        ("app/a", "1"),
        ("app/b", "2"),
        ("other", "3"),
        ("app/a", "4"),
    ] {
        let put = http(
            &server,
            "PUT",
            &format!("/v1/namespaces/prod/config/{name}"),
            &[OPS],
            value,
        );
        assert_eq!(put.status, 200, "{}", put.body);
    }
    let list = http(
        &server,
        "GET",
        "/v1/namespaces/prod/config?prefix=app/",
        &[READER],
        "",
    );
    assert_eq!(list.status, 200, "{}", list.body);
    let items: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    let names: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app/a", "app/b"]);
    assert_eq!(items[0]["value"], 4);

    let history = http(
        &server,
        "GET",
        "/v1/namespaces/prod/history/app/a",
        &[READER],
        "",
    );
    assert_eq!(history.status, 200, "{}", history.body);
    let versions: serde_json::Value = serde_json::from_str(&history.body).unwrap();
    let values: Vec<i64> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_i64().unwrap())
        .collect();
    assert_eq!(values, [4, 1]);
    let one = http(
        &server,
        "GET",
        "/v1/namespaces/prod/history/app/a?limit=1",
        &[READER],
        "",
    );
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&one.body).unwrap()[0]["value"],
        4
    );
    for bad in ["0", "1001", "x"] {
        let path = format!("/v1/namespaces/prod/history/app/a?limit={bad}");
        assert_eq!(
            http(&server, "GET", &path, &[READER], "").status,
            400,
            "limit={bad}"
        );
    }
    let none = http(
        &server,
        "GET",
        "/v1/namespaces/prod/history/app/none",
        &[READER],
        "",
    );
    assert_eq!(none.status, 404, "{}", none.body);

    // A name whose last segment is `history` is a name like any other.
    let jobs = "/v1/namespaces/prod/config/jobs/history";
    assert_eq!(
        http(&server, "PUT", jobs, &[OPS], r#"{"keep": 30}"#).status,
        200
    );
    let got = http(&server, "GET", jobs, &[READER], "");
    assert_eq!((got.status, got.body.as_str()), (200, r#"{"keep":30}"#));
    let past = http(
        &server,
        "GET",
        "/v1/namespaces/prod/history/jobs/history",
        &[READER],
        "",
    );
    assert_eq!(past.status, 200, "{}", past.body);

    // Flags: checked like every other write path.
    let flag = "/v1/namespaces/prod/flags/new-checkout";
    let good =
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}"#;
    let put = http(&server, "PUT", flag, &[OPS], good);
    assert_eq!(put.status, 200, "{}", put.body);
    let before = etcd.revision().await;
    let bad = http(
        &server,
        "PUT",
        flag,
        &[OPS],
        r#"{"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "off"}"#,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body.contains("invalid_flag") && bad.body.contains("defaultVariant"),
        "{}",
        bad.body
    );
    assert_eq!(http(&server, "PUT", flag, &[OPS], "{oops").status, 400);
    assert_eq!(etcd.revision().await, before, "nothing was written");
    let got = http(&server, "GET", flag, &[READER], "");
    assert_eq!(got.status, 200);
    assert!(
        got.body.contains("\"defaultVariant\":\"off\""),
        "{}",
        got.body
    );
    let listed = http(&server, "GET", "/v1/namespaces/prod/flags", &[READER], "");
    assert!(listed.body.contains("new-checkout"), "{}", listed.body);
    let stale = http(&server, "PUT", flag, &[OPS, ("If-Match", "\"1\"")], good);
    assert_eq!(stale.status, 412);
    if_match_any_means_it_exists(&server, &etcd, flag, good).await;
}

#[tokio::test]
async fn ofrep_single_and_bulk_evaluation() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let flags = [
        (
            "dark-mode",
            r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}"#,
        ),
        (
            "banner",
            r#"{"state": "ENABLED", "variants": {"a": "Hello", "b": "Hi"}, "defaultVariant": "a",
                      "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "b", null]}}"#,
        ),
        (
            "rollout",
            r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                       "targeting": {"fractional": [["on", 50], ["off", 50]]}}"#,
        ),
        (
            "paused",
            r#"{"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"}"#,
        ),
    ];
    for (name, definition) in flags {
        let put = http(
            &server,
            "PUT",
            &format!("/v1/namespaces/prod/flags/{name}"),
            &[OPS],
            definition,
        );
        assert_eq!(put.status, 200, "{}", put.body);
    }
    let eval = |key: &str, ctx: &str, auth: (&str, &str)| {
        let reply = http(
            &server,
            "POST",
            &format!("/ofrep/v1/evaluate/flags/{key}"),
            &[auth, ("Content-Type", "application/json")],
            &format!(r#"{{"context": {ctx}}}"#),
        );
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
        (reply.status, body)
    };
    // The reader token is scoped to prod only, so it names the namespace.
    let (status, body) = eval("dark-mode", "{}", READER);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"key": "dark-mode", "reason": "STATIC", "variant": "on", "value": true, "metadata": {}})
    );
    let (_, body) = eval("banner", r#"{"targetingKey": "u1", "plan": "pro"}"#, READER);
    assert_eq!(
        (body["value"].as_str(), body["reason"].as_str()),
        (Some("Hi"), Some("TARGETING_MATCH"))
    );
    let (_, body) = eval("banner", r#"{"targetingKey": "u1"}"#, READER);
    assert_eq!(
        (body["value"].as_str(), body["reason"].as_str()),
        (Some("Hello"), Some("DEFAULT"))
    );
    let (_, first) = eval("rollout", r#"{"targetingKey": "user-42"}"#, READER);
    let (_, again) = eval("rollout", r#"{"targetingKey": "user-42"}"#, READER);
    assert_eq!(first["variant"], again["variant"]);
    let (_, paused) = eval("paused", "{}", READER);
    assert_eq!(paused["reason"], "DISABLED");
    assert!(paused.get("value").is_none(), "{paused}");
    let (status, missing) = eval("nope", "{}", READER);
    assert_eq!(status, 404);
    assert_eq!(missing["errorCode"], "FLAG_NOT_FOUND");
    // The ops token spans every namespace: it must say which.
    let (status, _) = eval("dark-mode", "{}", OPS);
    assert_eq!(status, 400);
    let reply = http(
        &server,
        "POST",
        "/ofrep/v1/evaluate/flags/dark-mode",
        &[READER, ("X-Cfgd-Namespace", "dev")],
        "{}",
    );
    assert_eq!(reply.status, 403);

    // Bulk, with its ETag.
    let bulk = |extra: &[(&str, &str)]| {
        let mut headers = vec![READER];
        headers.extend_from_slice(extra);
        http(
            &server,
            "POST",
            "/ofrep/v1/evaluate/flags",
            &headers,
            r#"{"context": {"targetingKey": "u7"}}"#,
        )
    };
    let all = bulk(&[]);
    assert_eq!(all.status, 200, "{}", all.body);
    let parsed: serde_json::Value = serde_json::from_str(&all.body).unwrap();
    let keys: Vec<&str> = parsed["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["banner", "dark-mode", "paused", "rollout"]);
    let tag = all.header("etag").unwrap().to_owned();
    assert_eq!(bulk(&[("If-None-Match", &tag)]).status, 304);

    // Flipping a flag changes the next result, and the bulk ETag.
    let flip = http(
        &server,
        "PUT",
        "/v1/namespaces/prod/flags/dark-mode",
        &[OPS],
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}"#,
    );
    assert_eq!(flip.status, 200);
    common::eventually(Duration::from_secs(20), || async {
        eval("dark-mode", "{}", READER).1["value"] == false
    })
    .await;
    assert_eq!(bulk(&[("If-None-Match", &tag)]).status, 200);
}

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

    fn open_as(server: &Server, path: &str, last_event_id: Option<i64>, token: &str) -> Sse {
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

#[tokio::test]
async fn sse_watch_resumes_without_loss_and_sees_cfgctl_writes() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let put = |name: &str, value: &str| {
        let reply = http(
            &server,
            "PUT",
            &format!("/v1/namespaces/prod/config/{name}"),
            &[OPS],
            value,
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply
            .header("etag")
            .unwrap()
            .trim_matches('"')
            .parse::<i64>()
            .unwrap()
    };
    // The namespace's client must exist before the stream opens.
    put("warmup", "0");
    let mut sse = Sse::open(&server, "/v1/namespaces/prod/watch?prefix=app/", None);
    let first = put("app/a", "1");
    let second = put("app/b", "2");
    let a = sse.next();
    let b = sse.next();
    assert_eq!(
        (a.id, a.kind.as_str(), &a.data["value"]),
        (first, "put", &serde_json::json!(1))
    );
    assert_eq!((b.id, b.data["name"].as_str()), (second, Some("app/b")));
    assert_eq!(b.data["resync"], false);
    // Values other tools stored: JSON over several lines (with carriage
    // returns, which an SSE line cannot carry) arrives compact, and text
    // that is not JSON arrives as a string.
    let mut others = Sse::open(&server, "/v1/namespaces/prod/watch?prefix=other/", None);
    let mut raw = etcd.raw().await;
    for (name, text) in [
        ("other/pretty", "{\r\n  \"x\": 1\r\n}"),
        ("other/text", "plain words"),
    ] {
        raw.put(format!("/cfgd/prod/config/{name}"), text, None)
            .await
            .unwrap();
    }
    let (pretty, text) = (others.next(), others.next());
    assert_eq!(pretty.data["value"], serde_json::json!({"x": 1}));
    assert_eq!(text.data["value"], serde_json::json!("plain words"));
    drop((sse, others));

    // While the client is away.
    let c = put("app/c", "3");
    let gone = http(
        &server,
        "DELETE",
        "/v1/namespaces/prod/config/app/a",
        &[OPS],
        "",
    );
    assert_eq!(gone.status, 200);
    put("other", "4");
    let b2 = put("app/b", "5");

    let mut sse = Sse::open(&server, "/v1/namespaces/prod/watch?prefix=app/", Some(b.id));
    let missed: Vec<(i64, String, String)> = (0..3)
        .map(|_| {
            let e = sse.next();
            assert_eq!(e.data["resync"], false, "exact resume: {e:?}");
            (e.id, e.kind, e.data["name"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(missed[0], (c, "put".into(), "app/c".into()));
    assert_eq!(missed[1].1, "delete");
    assert_eq!(missed[1].2, "app/a");
    assert_eq!(missed[2], (b2, "put".into(), "app/b".into()));

    // A change made with cfgctl arrives too.
    let out = Command::new(cfgctl())
        .args([
            "--endpoints",
            &etcd.endpoints_arg(),
            "-n",
            "prod",
            "set",
            "app/from-cli",
            r#"{"x":1}"#,
        ])
        .output()
        .unwrap();
    common::stdout_of("cfgctl set", out);
    let e = sse.next();
    assert_eq!(
        (e.data["name"].as_str(), &e.data["value"]),
        (Some("app/from-cli"), &serde_json::json!({"x": 1}))
    );
    drop(sse);

    // A namespace the server has not loaded yet, written before it does:
    // a resume from before its first read gets current values, as resync.
    for (name, value) in [("app/x", "1"), ("app/y", "2"), ("app/x", "3")] {
        let out = Command::new(cfgctl())
            .args([
                "--endpoints",
                &etcd.endpoints_arg(),
                "-n",
                "late",
                "set",
                name,
                value,
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let out = Command::new(cfgctl())
        .args([
            "--endpoints",
            &etcd.endpoints_arg(),
            "-n",
            "late",
            "delete",
            "app/y",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut sse = Sse::open_as(
        &server,
        "/v1/namespaces/late/watch?prefix=app/",
        Some(1),
        "ops-secret",
    );
    let e = sse.next();
    assert_eq!(e.data["resync"], true, "{e:?}");
    assert_eq!(
        (e.kind.as_str(), e.data["name"].as_str(), &e.data["value"]),
        ("put", Some("app/x"), &serde_json::json!(3))
    );
}

/// Checks a Prometheus/OpenMetrics text exposition line by line and returns
/// its samples as (series, value).
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
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

fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .map_or(0.0, |(_, v)| *v)
}

#[tokio::test]
async fn one_etcd_watcher_serves_every_namespace_and_sse_client() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let mut streams = Vec::new();
    for ns in ["one", "two", "three"] {
        let path = format!("/v1/namespaces/{ns}/config/k");
        assert_eq!(http(&server, "PUT", &path, &[OPS], "1").status, 200);
        for _ in 0..3 {
            let path = format!("/v1/namespaces/{ns}/watch");
            streams.push(Sse::open_as(&server, &path, None, "ops-secret"));
        }
    }
    common::eventually(Duration::from_secs(20), || async {
        etcd.metric(0, "etcd_debugging_mvcc_watcher_total") == 1.0
    })
    .await;
}

/// One HTTPS request through curl, trusting `ca`: (status, body).
fn curl(ca: &std::path::Path, method: &str, url: &str, body: &str) -> (u16, String) {
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

#[tokio::test]
async fn https_listener_and_tls_to_etcd_with_client_certificates() {
    common::logs();
    let pki = common::pki::Pki::new();
    let etcd = EtcdCluster::single_tls(&pki);
    let paths = [
        pki.ca(),
        pki.client_cert(),
        pki.client_key(),
        pki.server_cert(),
        pki.server_key(),
    ];
    let [ca, client_cert, client_key, server_cert, server_key] =
        paths.each_ref().map(|p| p.to_str().unwrap());
    let server = start_with(
        &etcd,
        &[
            "--etcd-ca",
            ca,
            "--etcd-cert",
            client_cert,
            "--etcd-key",
            client_key,
            "--tls-cert",
            server_cert,
            "--tls-key",
            server_key,
        ],
    );
    let url = format!("https://{}/v1/namespaces/prod/config/limit", server.address);
    assert_eq!(curl(&pki.ca(), "PUT", &url, "7").0, 200);
    assert_eq!(curl(&pki.ca(), "GET", &url, ""), (200, "7".to_owned()));

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let mut plain = TcpStream::connect(&server.address).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    plain.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Half a TLS setup is refused at start, with one line naming it.
    for (args, says) in [
        (&["--tls-cert", server_cert][..], "tls_cert and tls_key"),
        (&["--tls-cert", server_cert, "--tls-key", ca][..], "TLS key"),
        (&["--etcd-cert", client_cert][..], "etcd_cert and etcd_key"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cfgd"))
            .args([
                "serve",
                "--no-auth",
                "--endpoints",
                &etcd.endpoints_arg(),
                "--etcd-ca",
                ca,
            ])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

#[tokio::test]
async fn metrics_parse_and_move() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let healthz =
        r#"cfgd_http_request_duration_seconds_count{route="/healthz",method="GET",status="200"}"#;
    let before = parse_metrics(&http(&server, "GET", "/metrics", &[], "").body);
    for _ in 0..3 {
        assert_eq!(http(&server, "GET", "/healthz", &[], "").status, 200);
    }
    let after = parse_metrics(&http(&server, "GET", "/metrics", &[], "").body);
    assert_eq!(sample(&after, healthz) - sample(&before, healthz), 3.0);

    http(&server, "PUT", "/v1/namespaces/prod/config/k", &[OPS], "1");
    let sse = Sse::open(&server, "/v1/namespaces/prod/watch", None);
    let open = parse_metrics(&http(&server, "GET", "/metrics", &[], "").body);
    assert_eq!(sample(&open, "cfgd_sse_clients"), 1.0);
    assert_eq!(
        sample(&open, r#"cfgd_etcd_connected{namespace="prod"}"#),
        1.0
    );
    drop(sse);
    common::eventually(Duration::from_secs(20), || async {
        let now = parse_metrics(&http(&server, "GET", "/metrics", &[], "").body);
        sample(&now, "cfgd_sse_clients") == 0.0
    })
    .await;
}

#[test]
fn cfgd_dev_serves_seeded_data_and_cleans_up_on_ctrl_c() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfgd"))
        .args(["dev", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cfgd dev");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // Owned at once, so a failing check below still ends it (its etcd dies
    // with it).
    let child = KillOnDrop(child);
    let mut line = |what: &str| {
        let mut l = String::new();
        out.read_line(&mut l)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        l
    };
    let etcd_line = line("etcd line");
    let data_dir = etcd_line
        .split("(data in ")
        .nth(1)
        .and_then(|r| r.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("{etcd_line:?}"))
        .to_owned();
    let server_line = line("server line");
    let address = server_line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .to_owned();
    let warning = line("auth warning");
    assert!(warning.contains("AUTH IS OFF"), "{warning}");
    let console = line("console line");
    assert_eq!(
        console.trim(),
        format!("cfgd dev: console http://{address}/ui/")
    );
    let server = Server {
        _child: child,
        address,
        _dir: tempfile::tempdir().unwrap(),
    };
    let got = http(
        &server,
        "GET",
        "/v1/namespaces/demo/config/database.config",
        &[],
        "",
    );
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(got.body.contains("pool_size"), "{}", got.body);
    let flag = http(
        &server,
        "POST",
        "/ofrep/v1/evaluate/flags/banner-text",
        &[("X-Cfgd-Namespace", "demo")],
        r#"{"context": {"email": "a@example.com"}}"#,
    );
    assert!(flag.body.contains("Welcome back!"), "{}", flag.body);
    let page = http(&server, "GET", "/ui/", &[], "");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<title>cfgd console</title>"),
        "{}",
        page.body
    );
    let who = http(&server, "GET", "/v1/whoami", &[], "");
    assert!(who.body.contains(r#""auth":false"#), "{}", who.body);
    assert!(std::path::Path::new(&data_dir).exists());

    // Ctrl-C: our own child, by its pid, not yet waited for.
    let Server {
        _child: mut child, ..
    } = server;
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGINT) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !std::path::Path::new(&data_dir).exists(),
        "{data_dir} removed"
    );
}

#[tokio::test]
async fn with_etcd_down_a_snapshot_serves_reads_and_writes_answer_503() {
    common::logs();
    let mut etcd = EtcdCluster::single();
    let snapshots = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cfgd"))
        .args(["serve", "--no-auth", "--snapshot"])
        .arg(snapshots.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("a directory; give a file"), "{stderr}");
    // One file for every namespace, in a directory cfgd makes.
    let file = snapshots.path().join("state/cfgd.json");
    let path = file.to_str().unwrap().to_owned();
    {
        let server = start_with(&etcd, &["--snapshot", &path, "--connect-timeout", "1"]);
        let mut revisions = Vec::new();
        for (ns, value) in [("prod", "3"), ("staging", "4")] {
            let url = format!("/v1/namespaces/{ns}/config/retries");
            let put = http(&server, "PUT", &url, &[OPS], value);
            assert_eq!(put.status, 200, "{}", put.body);
            revisions.push(put.header("etag").unwrap().trim_matches('"').to_owned());
        }
        common::eventually(Duration::from_secs(20), || async {
            std::fs::read_to_string(&file).is_ok_and(|t| {
                revisions
                    .iter()
                    .all(|r| t.contains(&format!("\"revision\":{r}")))
            })
        })
        .await;
    }
    etcd.kill(0);

    let server = start_with(&etcd, &["--snapshot", &path, "--connect-timeout", "1"]);
    let got = http(
        &server,
        "GET",
        "/v1/namespaces/prod/config/retries",
        &[READER],
        "",
    );
    assert_eq!((got.status, got.body.as_str()), (200, "3"));
    let staging = http(
        &server,
        "GET",
        "/v1/namespaces/staging/config/retries",
        &[OPS],
        "",
    );
    assert_eq!((staging.status, staging.body.as_str()), (200, "4"));
    let ready = http(&server, "GET", "/readyz", &[], "");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(
        ready.body.contains("\"source\":\"snapshot\""),
        "{}",
        ready.body
    );
    let write = http(
        &server,
        "PUT",
        "/v1/namespaces/prod/config/retries",
        &[OPS],
        "4",
    );
    assert_eq!(write.status, 503, "{}", write.body);
    assert!(
        write.body.contains("etcd_unavailable") && write.body.contains("unreachable"),
        "{}",
        write.body
    );
}

#[tokio::test]
async fn the_node_example_passes_against_a_live_cfgd() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    for (name, definition) in [
        (
            "dark-mode",
            r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}"#,
        ),
        (
            "banner",
            r#"{"state": "ENABLED", "variants": {"a": "Hello", "b": "Hi pro"}, "defaultVariant": "a",
                      "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "b", null]}}"#,
        ),
        (
            "rollout",
            r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                       "targeting": {"fractional": [["on", 50], ["off", 50]]}}"#,
        ),
    ] {
        let put = http(
            &server,
            "PUT",
            &format!("/v1/namespaces/prod/flags/{name}"),
            &[OPS],
            definition,
        );
        assert_eq!(put.status, 200, "{}", put.body);
    }
    let dir = crate::common::root().join("examples/node");
    assert!(
        dir.join("node_modules/@openfeature/ofrep-provider")
            .is_dir(),
        "the Node example's packages are not installed: run `make test` (npm ci in {})",
        dir.display()
    );
    let out = Command::new("node")
        .args(["--test", "test.mjs"])
        .current_dir(&dir)
        .env("CFGD_URL", format!("http://{}", server.address))
        .env("CFGD_TOKEN", "ops-secret")
        .env("CFGD_NAMESPACE", "prod")
        .output()
        .expect("run node (installed by `make test`)");
    let report = common::stdout_of("the Node example's test", out);
    assert!(
        report.contains("# pass 2") && report.contains("# fail 0"),
        "{report}"
    );
}

#[test]
fn the_compose_settings_file_is_valid() {
    let path = crate::common::root().join("deploy/cfgd.toml");
    let settings: cfgd_server::Settings =
        toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    settings.validate().unwrap();
    assert_eq!(settings.tokens.len(), 2);
}

fn example_binary(name: &str) -> std::path::PathBuf {
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

/// Stands in for the order service: answers every request with 200 and a
/// JSON list, until dropped.
struct OrderService {
    address: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl OrderService {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    return; // the listener closes: connections are refused
                }
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                let body = r#"[{"id": 1, "total": 42}]"#;
                let _ = write!(
                    stream,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        OrderService { address, stop }
    }
}

impl Drop for OrderService {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the stop.
        let _ = TcpStream::connect(&self.address);
    }
}

use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_service_example_follows_cfgd_live() {
    common::logs();
    let etcd = EtcdCluster::single();
    let ns = common::namespace("usersvc");
    let operator = cfgd::Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(&ns)
        .connect()
        .await
        .unwrap();
    operator
        .set(
            "user-service.circuit",
            &serde_json::json!({"failure_threshold": 2, "timeout_ms": 500, "open_ms": 60000}),
        )
        .await
        .unwrap();
    let off = serde_json::json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
    operator.set_flag("new-profile-page", &off).await.unwrap();

    let orders = OrderService::start();
    let mut child = Command::new(example_binary("user_service"))
        .env("CFGD_ENDPOINTS", etcd.endpoints_arg())
        .env("CFGD_NAMESPACE", &ns)
        .env("ORDER_SERVICE", &orders.address)
        .env("LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let address = first.trim().rsplit("http://").next().unwrap().to_owned();
    let service = Server {
        _child: KillOnDrop(child),
        address,
        _dir: tempfile::tempdir().unwrap(),
    };

    let created = http(
        &service,
        "POST",
        "/users",
        &[("Content-Type", "application/json")],
        r#"{"id": "u1", "name": "Ann"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(http(&service, "GET", "/users/u1", &[], "")
        .body
        .contains(r#""layout":"old""#));
    let ok = http(&service, "GET", "/users/u1/orders", &[], "");
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("\"total\":42"), "{}", ok.body);

    // The flag, flipped in cfgd, changes the next page.
    let on = serde_json::json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
    operator.set_flag("new-profile-page", &on).await.unwrap();
    common::eventually(Duration::from_secs(20), || async {
        http(&service, "GET", "/users/u1", &[], "")
            .body
            .contains(r#""layout":"new""#)
    })
    .await;

    // The order service goes away: two failures open the circuit.
    drop(orders);
    assert_eq!(
        http(&service, "GET", "/users/u1/orders", &[], "").status,
        502
    );
    assert_eq!(
        http(&service, "GET", "/users/u1/orders", &[], "").status,
        502
    );
    let open = http(&service, "GET", "/users/u1/orders", &[], "");
    assert_eq!(open.status, 503, "{}", open.body);
    assert!(open.body.contains("circuit open"), "{}", open.body);

    // New breaker settings in cfgd close the open breaker at once (the
    // example's on_change), though open_ms is still a minute, and set a
    // threshold it will not reach. Failures now stay 502s, counted afresh.
    operator
        .set(
            "user-service.circuit",
            &serde_json::json!({"failure_threshold": 100, "timeout_ms": 500, "open_ms": 60000}),
        )
        .await
        .unwrap();
    common::eventually(Duration::from_secs(20), || async {
        let answer = http(&service, "GET", "/users/u1/orders", &[], "");
        answer.status == 502 && answer.body.contains(r#""failures":1}"#)
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            http(&service, "GET", "/users/u1/orders", &[], "").status,
            502
        );
    }
}

#[tokio::test]
async fn rest_schemas_refuse_bad_values_with_422() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let schema = r#"{"properties": {"pool_size": {"type": "integer", "minimum": 1}}}"#;
    let path = "/v1/namespaces/prod/schemas/db.*";
    // Changing a schema needs admin scope.
    assert_eq!(http(&server, "PUT", path, &[OPS], schema).status, 403);
    let bad = http(&server, "PUT", path, &[ADMIN], r#"{"type": 5}"#);
    assert_eq!(
        (bad.status, bad.body.contains("invalid_schema")),
        (400, true),
        "{}",
        bad.body
    );
    let value = "/v1/namespaces/prod/config/db.main";
    assert_eq!(
        http(&server, "PUT", value, &[OPS], r#"{"pool_size": 0}"#).status,
        200
    );
    let conflict = http(&server, "PUT", path, &[ADMIN], schema);
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    assert!(conflict.body.contains("db.main"), "{}", conflict.body);
    let forced = http(
        &server,
        "PUT",
        &format!("{path}?force=true"),
        &[ADMIN],
        schema,
    );
    assert_eq!(forced.status, 200, "{}", forced.body);

    let before = etcd.revision().await;
    let refused = http(&server, "PUT", value, &[OPS], r#"{"pool_size": 0}"#);
    assert_eq!(refused.status, 422, "{}", refused.body);
    let body: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(body["error"]["code"], "schema_violation");
    assert_eq!(
        body["error"]["failures"],
        serde_json::json!([{"pointer": "/pool_size", "message": "0 is less than the minimum of 1"}])
    );
    assert_eq!(etcd.revision().await, before, "nothing was written");
    assert_eq!(
        http(&server, "PUT", value, &[OPS], r#"{"pool_size": 2}"#).status,
        200
    );

    let got = http(&server, "GET", path, &[READER], "");
    assert_eq!(got.status, 200, "{}", got.body);
    let listed = http(&server, "GET", "/v1/namespaces/prod/schemas", &[READER], "");
    assert!(listed.body.contains("\"name\":\"db.*\""), "{}", listed.body);
    assert_eq!(http(&server, "DELETE", path, &[ADMIN], "").status, 200);
    assert_eq!(http(&server, "GET", path, &[READER], "").status, 404);
    assert_eq!(
        http(&server, "PUT", value, &[OPS], r#"{"pool_size": 0}"#).status,
        200
    );
}

#[tokio::test]
async fn rest_diff_of_a_document_and_of_two_namespaces() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    for (ns, value) in [
        ("prod", r#"{"pool": 20, "old": 1}"#),
        ("staging", r#"{"pool": 30}"#),
    ] {
        let path = format!("/v1/namespaces/{ns}/config/db");
        assert_eq!(http(&server, "PUT", &path, &[OPS], value).status, 200);
    }
    let document = http(
        &server,
        "POST",
        "/v1/namespaces/prod/diff",
        &[READER],
        r#"{"db": {"pool": 25}, "new": true}"#,
    );
    assert_eq!(document.status, 200, "{}", document.body);
    let diffs: serde_json::Value = serde_json::from_str(&document.body).unwrap();
    assert_eq!(
        diffs,
        serde_json::json!([
            {"name": "db", "differences": [
                {"op": "changed", "path": "/pool", "from": 20, "to": 25},
                {"op": "removed", "path": "/old", "value": 1}]},
            {"name": "new", "differences": [{"op": "added", "path": "", "value": true}]}
        ])
    );
    let promote = http(
        &server,
        "GET",
        "/v1/namespaces/staging/diff?against=prod",
        &[OPS],
        "",
    );
    assert_eq!(promote.status, 200, "{}", promote.body);
    assert!(
        promote.body.contains(r#""path":"/pool","from":20,"to":30"#),
        "{}",
        promote.body
    );
    // Reading two namespaces needs read scope on both: the reader has prod only.
    let refused = http(
        &server,
        "GET",
        "/v1/namespaces/prod/diff?against=staging",
        &[READER],
        "",
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        http(&server, "GET", "/v1/namespaces/prod/diff", &[READER], "").status,
        400
    );
    let bad = http(
        &server,
        "POST",
        "/v1/namespaces/prod/diff",
        &[READER],
        "[1]",
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[tokio::test]
async fn rest_writes_are_audited_as_their_token_with_the_message() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let path = "/v1/namespaces/prod/config/db";
    let put = http(
        &server,
        "PUT",
        path,
        &[OPS, ("X-Cfgd-Message", "bigger pool")],
        "20",
    );
    assert_eq!(put.status, 200, "{}", put.body);
    let revision: i64 = put
        .header("etag")
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap();
    assert_eq!(http(&server, "PUT", path, &[READER], "1").status, 403);
    assert_eq!(http(&server, "DELETE", path, &[ADMIN], "").status, 200);

    let log = http(
        &server,
        "GET",
        "/v1/namespaces/prod/audit?prefix=db",
        &[READER],
        "",
    );
    assert_eq!(log.status, 200, "{}", log.body);
    let records: serde_json::Value = serde_json::from_str(&log.body).unwrap();
    let rows: Vec<(&str, &str, &str)> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap(),
                r["via"].as_str().unwrap(),
                r["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("admin", "http", "delete"), ("ops", "http", "set")]);
    assert_eq!(records[1]["message"], "bigger pool");
    assert_eq!(
        records[1]["revision"], revision,
        "the record shares the change's revision"
    );
    assert_eq!(records[0]["names"][0]["before"], revision);
    let by_ops = http(
        &server,
        "GET",
        "/v1/namespaces/prod/audit?actor=ops&limit=5",
        &[READER],
        "",
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&by_ops.body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        http(
            &server,
            "GET",
            "/v1/namespaces/prod/audit?limit=0",
            &[READER],
            ""
        )
        .status,
        400
    );
}

#[tokio::test]
async fn rest_releases_publish_show_and_revert() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let db = "/v1/namespaces/prod/config/db";
    assert_eq!(
        http(&server, "PUT", db, &[OPS], r#"{"pool": 1}"#).status,
        200
    );
    let body = r#"{"config": {"db": {"pool": 2}, "cache": true},
                   "flags": {"flags": {"beta": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}}"#;
    let releases = "/v1/namespaces/prod/releases";
    assert_eq!(http(&server, "POST", releases, &[READER], body).status, 403);
    let published = http(
        &server,
        "POST",
        releases,
        &[OPS, ("X-Cfgd-Message", "v2")],
        body,
    );
    assert_eq!(published.status, 200, "{}", published.body);
    let published: serde_json::Value = serde_json::from_str(&published.body).unwrap();
    let id = published["id"].as_str().unwrap().to_owned();
    assert_eq!(published["changes"].as_array().unwrap().len(), 3);
    let got = http(&server, "GET", db, &[READER], "");
    assert_eq!(
        got.header("etag"),
        Some(format!("\"{}\"", published["revision"]).as_str())
    );

    let list: serde_json::Value =
        serde_json::from_str(&http(&server, "GET", releases, &[READER], "").body).unwrap();
    assert_eq!(
        (
            list[0]["id"].as_str(),
            list[0]["actor"].as_str(),
            list[0]["message"].as_str()
        ),
        (Some(id.as_str()), Some("ops"), Some("v2"))
    );
    let shown = http(&server, "GET", &format!("{releases}/{id}"), &[READER], "");
    assert!(
        shown.body.contains(r#""path":"/pool","from":1,"to":2"#),
        "{}",
        shown.body
    );
    assert_eq!(
        http(&server, "GET", &format!("{releases}/nope"), &[READER], "").status,
        404
    );

    let revert = format!("{releases}/{id}/revert");
    assert_eq!(http(&server, "POST", &revert, &[OPS], "").status, 200);
    assert_eq!(
        http(&server, "GET", db, &[READER], "").body,
        r#"{"pool":1}"#
    );
    assert_eq!(
        http(
            &server,
            "GET",
            "/v1/namespaces/prod/flags/beta",
            &[READER],
            ""
        )
        .status,
        404
    );
    // Reverting the same release again: its keys moved (the revert moved them).
    let again = http(&server, "POST", &revert, &[OPS], "");
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("release_moved"), "{}", again.body);
}

#[tokio::test]
async fn rest_change_requests_protect_names_and_need_another_token() {
    common::logs();
    let etcd = EtcdCluster::single();
    let server = start(&etcd);
    let ns = "/v1/namespaces/prod";
    let limits = format!("{ns}/config/payments/limits");
    assert_eq!(http(&server, "PUT", &limits, &[OPS], "1").status, 200);
    let other = format!("{ns}/config/payments/other");
    assert_eq!(http(&server, "PUT", &other, &[OPS], "1").status, 200);

    // Only an admin sets the policy; a bad one is refused with the reason.
    let policy = format!("{ns}/policy");
    let body = r#"{"protected": ["payments/*"], "approvals": 1}"#;
    assert_eq!(http(&server, "PUT", &policy, &[OPS], body).status, 403);
    let bad = http(&server, "PUT", &policy, &[ADMIN], r#"{"approvals": 0}"#);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("invalid_policy"), "{}", bad.body);
    assert_eq!(http(&server, "PUT", &policy, &[ADMIN], body).status, 200);
    let shown = http(&server, "GET", &policy, &[READER], "");
    assert!(
        shown.body.contains(r#""protected":["payments/*"]"#),
        "{}",
        shown.body
    );

    // A direct write to a protected name is refused, for every scope.
    let revision = etcd.revision().await;
    for token in [OPS, ADMIN] {
        let refused = http(&server, "PUT", &limits, &[token], "2");
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert!(
            refused.body.contains(r#""code":"protected""#),
            "{}",
            refused.body
        );
        assert!(
            refused.body.contains("open a change request"),
            "{}",
            refused.body
        );
    }
    let release = http(
        &server,
        "POST",
        &format!("{ns}/releases"),
        &[OPS],
        r#"{"config": {"payments/limits": 2}}"#,
    );
    assert_eq!(release.status, 403, "{}", release.body);
    assert_eq!(etcd.revision().await, revision, "nothing written");

    // Token A opens a request; A cannot approve it, B can; then it merges
    // atomically, as one release.
    let requests = format!("{ns}/requests");
    let opened = http(
        &server,
        "POST",
        &requests,
        &[OPS, ("X-Cfgd-Message", "sale limits")],
        r#"{"config": {"payments/limits": 2, "payments/other": 2}}"#,
    );
    assert_eq!(opened.status, 201, "{}", opened.body);
    let opened: serde_json::Value = serde_json::from_str(&opened.body).unwrap();
    let id = opened["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (opened["author"].as_str(), opened["message"].as_str()),
        (Some("ops"), Some("sale limits"))
    );
    let step = |step: &str| format!("{requests}/{id}/{step}");
    let early = http(&server, "POST", &step("merge"), &[OPS], "");
    assert_eq!(early.status, 409, "{}", early.body);
    let own = http(&server, "POST", &step("approve"), &[OPS], "");
    assert_eq!(own.status, 403, "{}", own.body);
    assert!(own.body.contains("self_approval"), "{}", own.body);
    assert_eq!(
        http(&server, "POST", &step("approve"), &[READER], "").status,
        403
    );
    let approved = http(&server, "POST", &step("approve"), &[REVIEWER], "");
    assert_eq!(approved.status, 200, "{}", approved.body);
    let review = http(&server, "GET", &format!("{requests}/{id}"), &[READER], "");
    assert!(
        review.body.contains(r#""path":"","from":1,"to":2"#),
        "{}",
        review.body
    );
    let listed = http(
        &server,
        "GET",
        &format!("{requests}?state=open"),
        &[READER],
        "",
    );
    assert!(
        listed.body.contains(&format!(r#""id":"{id}""#)),
        "{}",
        listed.body
    );

    let merged = http(&server, "POST", &step("merge"), &[OPS], "");
    assert_eq!(merged.status, 200, "{}", merged.body);
    let merged: serde_json::Value = serde_json::from_str(&merged.body).unwrap();
    let at = merged["revision"].as_i64().unwrap();
    for name in [&limits, &other] {
        let got = http(&server, "GET", name, &[READER], "");
        assert_eq!(
            (got.body.as_str(), got.header("etag")),
            ("2", Some(format!("\"{at}\"").as_str()))
        );
    }

    // A request whose base moved cannot merge.
    let second = http(
        &server,
        "POST",
        &requests,
        &[OPS],
        r#"{"config": {"payments/other": 3}}"#,
    );
    let second: serde_json::Value = serde_json::from_str(&second.body).unwrap();
    let second = second["id"].as_str().unwrap().to_owned();
    let third = http(
        &server,
        "POST",
        &requests,
        &[REVIEWER],
        r#"{"config": {"payments/other": 4}}"#,
    );
    let third: serde_json::Value = serde_json::from_str(&third.body).unwrap();
    let third = third["id"].as_str().unwrap().to_owned();
    for (id, approver) in [(&second, REVIEWER), (&third, OPS)] {
        let path = format!("{requests}/{id}/approve");
        assert_eq!(http(&server, "POST", &path, &[approver], "").status, 200);
    }
    assert_eq!(
        http(
            &server,
            "POST",
            &format!("{requests}/{third}/merge"),
            &[REVIEWER],
            ""
        )
        .status,
        200
    );
    let stale = http(
        &server,
        "POST",
        &format!("{requests}/{second}/merge"),
        &[OPS],
        "",
    );
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert!(
        stale.body.contains("request_moved") && stale.body.contains("payments/other"),
        "{}",
        stale.body
    );
    assert_eq!(http(&server, "GET", &other, &[READER], "").body, "4");

    // Every step is in the audit trail, as its token.
    let log = http(
        &server,
        "GET",
        &format!("{ns}/audit?prefix=payments/limits"),
        &[READER],
        "",
    );
    let records: serde_json::Value = serde_json::from_str(&log.body).unwrap();
    let steps: Vec<(&str, &str)> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["request"].as_str() == Some(id.as_str()))
        .map(|r| (r["action"].as_str().unwrap(), r["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("request.merge", "ops"),
            ("request.approve", "reviewer"),
            ("request.create", "ops")
        ]
    );
}
