//! `cfgd dev`: a throwaway etcd plus the server on it, seeded, for trying
//! cfgd with nothing set up. Everything is removed on Ctrl-C.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use cfgd_server::{AppState, Settings};
use serde_json::json;

/// The etcd this command started; killed (by its own handle) when dropped.
struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

fn start_etcd(dir: &std::path::Path) -> Result<(Etcd, String), String> {
    let client = free_port().map_err(|e| e.to_string())?;
    let peer = free_port().map_err(|e| e.to_string())?;
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.join("etcd.log")).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("etcd");
    cmd.args(["--name", "dev", "--data-dir"])
        .arg(dir.join("etcd"))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("dev={peer_url}")])
        .args(["--logger", "zap", "--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // If cfgd dies without cleaning up, the kernel still ends its etcd.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `etcd` from PATH ({e}); install it (Debian: etcd-server) or run `make run`"))?;
    Ok((Etcd(child), client_url))
}

async fn seed(endpoint: &str) -> cfgd::Result<()> {
    let client = cfgd::Client::builder()
        .endpoints([endpoint])
        .namespace("demo")
        .live(false)
        .connect()
        .await?;
    client
        .set(
            "database.config",
            &json!({"url": "postgres://db.internal/app", "pool_size": 20}),
        )
        .await?;
    client
        .set("feature.limits", &json!({"max_items": 10}))
        .await?;
    client
        .set_flag(
            "new-checkout",
            &json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                    "targeting": {"fractional": [["on", 25], ["off", 75]]}}),
        )
        .await?;
    client
        .set_flag(
            "banner-text",
            &json!({"state": "ENABLED", "variants": {"short": "Hi", "long": "Welcome back!"},
                    "defaultVariant": "short",
                    "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "long", null]}}),
        )
        .await?;
    Ok(())
}

pub(crate) async fn run(listen: Option<SocketAddr>) -> ExitCode {
    match dev(listen).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cfgd dev: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dev(listen: Option<SocketAddr>) -> Result<(), String> {
    crate::logs("text");
    let dir = tempfile::Builder::new()
        .prefix("cfgd-dev-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let (etcd, endpoint) = start_etcd(dir.path())?;
    // etcd takes a moment; connecting retries until it answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match seed(&endpoint).await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "etcd not ready yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(format!(
                    "etcd did not come up: {e} (log: {})",
                    dir.path().join("etcd.log").display()
                ))
            }
        }
    }
    let wanted = listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
    let listener = match tokio::net::TcpListener::bind(wanted).await {
        Ok(l) => l,
        Err(_) if listen.is_none() => tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?,
        Err(e) => return Err(format!("cannot listen on {wanted}: {e}")),
    };
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    // flagd's gRPC protocols too, on a free port: the demo namespace for
    // flagd providers, open as everything is here.
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let grpc_address = grpc.local_addr().map_err(|e| e.to_string())?;
    let settings = Settings {
        listen: wanted,
        endpoints: vec![endpoint.clone()],
        no_auth: true,
        grpc_listen: Some(grpc_address),
        grpc: cfgd_server::GrpcSettings {
            namespaces: vec!["demo".into()],
            default_namespace: Some("demo".into()),
        },
        ..Settings::default()
    };
    println!(
        "cfgd dev: etcd   {endpoint} (data in {})",
        dir.path().display()
    );
    println!("cfgd dev: server {url}");
    println!("cfgd dev: AUTH IS OFF: anyone who can reach {url} can read and write. For trying things only.");
    println!("cfgd dev: console {url}/ui/");
    println!("cfgd dev: gRPC   {grpc_address} (flagd sync and evaluation; namespace demo)");
    println!();
    println!("Try:");
    println!("  curl -s {url}/v1/namespaces/demo/config/database.config");
    println!("  curl -s -X PUT --data '{{\"max_items\": 50}}' {url}/v1/namespaces/demo/config/feature.limits");
    println!("  curl -s -N {url}/v1/namespaces/demo/watch");
    println!("  curl -s -X POST -H 'X-Cfgd-Namespace: demo' --data '{{\"context\": {{\"targetingKey\": \"u1\"}}}}' {url}/ofrep/v1/evaluate/flags/new-checkout");
    println!("  cfgctl --endpoints {endpoint} -n demo list -o table");
    println!("  cfgctl --endpoints {endpoint} -n demo flag eval banner-text --context '{{\"email\": \"a@example.com\"}}'");
    println!();
    println!("Ctrl-C stops everything and removes the data.");
    let state = AppState::new(settings);
    let grpc_state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = cfgd_server::grpc::serve(grpc, grpc_state).await {
            tracing::error!(error = %e, "the gRPC listener stopped");
        }
    });
    let result = cfgd_server::run(listener, state, crate::shutdown_signal()).await;
    drop(etcd);
    drop(dir);
    result.map_err(|e| e.to_string())
}
