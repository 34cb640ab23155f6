//! `cfgd`: configuration and feature flags on etcd, over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use cfgd_server::{AppState, Settings};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cfgd",
    version,
    about = "cfgd server: config and flags on etcd over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API
    #[command(
        after_help = "Settings come from the flags below, their CFGD_* variables, or the \
        TOML file given with --config (flags win). Tokens are set in the file:\n\n  \
        [[tokens]]\n  name = \"order-service\"\n  secret_sha256 = \"<sha256 of the secret, hex>\"\n  \
        scopes = { prod = \"read\", \"*\" = \"read\" }"
    )]
    Serve(Box<ServeArgs>),
    /// Start a throwaway etcd and the server on it, seeded with examples (auth off)
    #[command(
        after_help = "Needs `etcd` on PATH. Everything lives in a temporary directory that \
        is removed on Ctrl-C. Not for production: anyone who can reach the port can write."
    )]
    Dev(DevArgs),
}

#[derive(clap::Args)]
struct DevArgs {
    /// Address for the server [default: 127.0.0.1:8080, or a free port if taken]
    #[arg(long, env = "CFGD_LISTEN")]
    listen: Option<SocketAddr>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "CFGD_LISTEN")]
    listen: Option<SocketAddr>,
    /// etcd endpoints, comma separated [default: http://127.0.0.1:2379]
    #[arg(long, env = "CFGD_ENDPOINTS", value_delimiter = ',')]
    endpoints: Option<Vec<String>>,
    /// TOML settings file (tokens, and any of these flags)
    #[arg(long, env = "CFGD_CONFIG")]
    config: Option<PathBuf>,
    /// Serve without authentication: anyone who can reach the port can read and write
    #[arg(long, env = "CFGD_NO_AUTH")]
    no_auth: bool,
    /// Snapshot file of every namespace served, kept current, to start while etcd is down
    #[arg(long, env = "CFGD_SNAPSHOT", value_name = "FILE")]
    snapshot: Option<PathBuf>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "CFGD_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Seconds to wait for etcd at start before serving a snapshot (or failing) [default: 5]
    #[arg(long, env = "CFGD_CONNECT_TIMEOUT", value_name = "SECONDS")]
    connect_timeout: Option<f64>,
    /// Seconds a client gets to send a request's headers (and an idle
    /// keep-alive connection to start its next request) before it is closed [default: 10]
    #[arg(long, env = "CFGD_HEADER_READ_TIMEOUT", value_name = "SECONDS")]
    header_read_timeout: Option<f64>,
    /// etcd user
    #[arg(long, env = "CFGD_ETCD_USER")]
    etcd_user: Option<String>,
    /// etcd password (prefer the environment variable)
    #[arg(long, env = "CFGD_ETCD_PASSWORD", hide_env_values = true)]
    etcd_password: Option<String>,
    /// TLS to etcd: PEM file of the CA that signs etcd's certificates (endpoints are then https://)
    #[arg(long, env = "CFGD_ETCD_CA", value_name = "FILE")]
    etcd_ca: Option<PathBuf>,
    /// TLS to etcd: PEM client certificate, for etcd's --client-cert-auth (with --etcd-key)
    #[arg(long, env = "CFGD_ETCD_CERT", value_name = "FILE")]
    etcd_cert: Option<PathBuf>,
    /// TLS to etcd: PEM private key of --etcd-cert
    #[arg(long, env = "CFGD_ETCD_KEY", value_name = "FILE")]
    etcd_key: Option<PathBuf>,
    /// Seal and open secrets (names the namespace policy calls secrets)
    /// with the keys in this file; `cfgctl secret keygen` makes one
    #[arg(long, env = "CFGD_SECRET_KEY_FILE", value_name = "FILE")]
    secret_key_file: Option<PathBuf>,
    /// A secret shared by the replicas behind one load balancer, so that an
    /// OFREP change-stream ticket one of them made is honoured by the others
    /// (prefer the environment variable) [default: random per start]
    #[arg(long, env = "CFGD_STREAM_SECRET", hide_env_values = true)]
    stream_secret: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key)
    #[arg(long, env = "CFGD_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "CFGD_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Serve flagd's gRPC protocols (sync, evaluation) on this address, for
    /// the stock flagd providers [default: off]
    #[arg(long, env = "CFGD_GRPC_LISTEN")]
    grpc_listen: Option<SocketAddr>,
    /// Namespaces the gRPC listener serves without a token, comma separated
    #[arg(long, env = "CFGD_GRPC_NAMESPACES", value_delimiter = ',')]
    grpc_namespaces: Option<Vec<String>>,
    /// The gRPC listener's namespace for calls that name none
    #[arg(long, env = "CFGD_GRPC_DEFAULT_NAMESPACE")]
    grpc_default_namespace: Option<String>,
}

fn settings(args: ServeArgs) -> Result<Settings, String> {
    let mut settings = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Settings::default(),
    };
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    if let Some(endpoints) = args.endpoints {
        settings.endpoints = endpoints;
    }
    settings.no_auth |= args.no_auth;
    if args.snapshot.is_some() {
        settings.snapshot = args.snapshot;
    }
    if let Some(format) = args.log_format {
        settings.log_format = format;
    }
    for (flag, secs, setting) in [
        (
            "--connect-timeout",
            args.connect_timeout,
            &mut settings.connect_timeout,
        ),
        (
            "--header-read-timeout",
            args.header_read_timeout,
            &mut settings.header_read_timeout,
        ),
    ] {
        if let Some(secs) = secs {
            *setting = std::time::Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("{flag} {secs}: not a positive number of seconds"))?;
        }
    }
    if args.etcd_user.is_some() {
        settings.etcd_user = args.etcd_user;
    }
    if args.etcd_password.is_some() {
        settings.etcd_password = args.etcd_password;
    }
    for (flag, setting) in [
        (args.etcd_ca, &mut settings.etcd_ca),
        (args.etcd_cert, &mut settings.etcd_cert),
        (args.etcd_key, &mut settings.etcd_key),
        (args.tls_cert, &mut settings.tls_cert),
        (args.tls_key, &mut settings.tls_key),
        (args.secret_key_file, &mut settings.secret_key_file),
    ] {
        if flag.is_some() {
            *setting = flag;
        }
    }
    if args.stream_secret.is_some() {
        settings.stream_secret = args.stream_secret;
    }
    if args.grpc_listen.is_some() {
        settings.grpc_listen = args.grpc_listen;
    }
    if let Some(namespaces) = args.grpc_namespaces {
        settings.grpc.namespaces = namespaces;
    }
    if args.grpc_default_namespace.is_some() {
        settings.grpc.default_namespace = args.grpc_default_namespace;
    }
    settings.validate()?;
    Ok(settings)
}

pub(crate) fn logs(format: &str) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

mod dev;

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Serve(args) => *args,
        Command::Dev(args) => return dev::run(args.listen).await,
    };
    let settings = match settings(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cfgd: {e}");
            return ExitCode::from(2);
        }
    };
    logs(&settings.log_format);
    if settings.no_auth {
        tracing::warn!(
            "AUTH IS OFF (--no-auth): anyone who can reach {} can read and write",
            settings.listen
        );
    }
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cfgd: cannot listen on {}: {e}", settings.listen);
            return ExitCode::FAILURE;
        }
    };
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // On stdout, for scripts and tests that started us on port 0.
    println!("cfgd listening on {}://{address}", settings.scheme());
    let grpc = match settings.grpc_listen {
        Some(at) => match tokio::net::TcpListener::bind(at).await {
            Ok(l) => {
                let address = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
                println!("cfgd gRPC (flagd protocols) listening on {address}");
                Some(l)
            }
            Err(e) => {
                eprintln!("cfgd: cannot listen on {at} for gRPC: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let state = AppState::new(settings);
    if let Some(listener) = grpc {
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = cfgd_server::grpc::serve(listener, state).await {
                tracing::error!(error = %e, "the gRPC listener stopped");
            }
        });
    }
    match cfgd_server::run(listener, state, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cfgd: {e}");
            ExitCode::FAILURE
        }
    }
}
