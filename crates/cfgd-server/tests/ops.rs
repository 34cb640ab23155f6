//! Operations: HTTPS, metrics, `cfgd dev`, a snapshot while etcd is down,
//! the compose settings file.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{self, EtcdCluster, KillOnDrop};

use super::harness::*;

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

#[test]
fn the_compose_settings_file_is_valid() {
    let path = crate::common::root().join("deploy/cfgd.toml");
    let settings: cfgd_server::Settings =
        toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    settings.validate().unwrap();
    assert_eq!(settings.tokens.len(), 2);
}
