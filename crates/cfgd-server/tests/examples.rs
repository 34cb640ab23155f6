//! The examples against a live cfgd: the Node service and the Rust user
//! service.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{self, EtcdCluster, KillOnDrop};

use super::harness::*;

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
