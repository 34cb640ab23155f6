//! [`run`]: serving the router until shutdown, over plain TCP or TLS.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use crate::error::ApiError;
use crate::routes::app;
use crate::state::AppState;
use crate::{conn, limits, timer, tls};

/// Serves `app` on `listener` (with TLS when the settings name a
/// certificate) until `shutdown` resolves, then stops accepting and lets
/// requests in flight finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Namespaces in the snapshot are loaded now, so that they are served
    // (and /readyz says so) even if etcd is down from the start.
    if let Some(file) = &state.settings.snapshot {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let namespaces = cfgd::snapshot_namespaces(file, &state.settings.root)
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "not serving the snapshot; it is replaced once etcd answers");
                Vec::new()
            });
        for ns in namespaces {
            if let Err(error) = state.client(&ns).await {
                tracing::warn!(namespace = ns, %error, "not serving this namespace's snapshot");
            }
        }
    }
    let pruning = tokio::spawn(prune_audit(state.clone()));
    let workers = tokio::spawn(crate::workers::run(state.clone()));
    let served = match state
        .settings
        .listener_tls()
        .map_err(std::io::Error::other)?
    {
        Some(config) => serve(tls::Listener::new(listener, config)?, state, shutdown).await,
        None => serve(listener, state, shutdown).await,
    };
    pruning.abort();
    // Resigning lets another replica take the workers at once.
    let stopping = workers.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), workers)
        .await
        .is_err()
    {
        stopping.abort();
    }
    served
}

/// Keeps each served namespace's audit trail within the settings' age and
/// count, every 10 minutes.
pub(crate) async fn prune_audit(state: Arc<AppState>) {
    const EVERY: Duration = Duration::from_secs(600);
    let settings = &state.settings;
    let max_age = (settings.audit_max_age_days > 0.0)
        .then(|| Duration::from_secs_f64(settings.audit_max_age_days * 86_400.0));
    let max_records = (settings.audit_max_records > 0).then_some(settings.audit_max_records);
    if max_age.is_none() && max_records.is_none() {
        return;
    }
    loop {
        tokio::time::sleep(EVERY).await;
        for (namespace, client) in state.served().await {
            match client.prune_audit(max_age, max_records).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(namespace, pruned, "audit records pruned"),
                Err(error) => tracing::warn!(namespace, %error, "pruning audit records failed"),
            }
        }
    }
}

/// Serves each connection: an event stream by [`conn`], any other with
/// hyper's HTTP/1. Both under a header read timeout, which `axum::serve`
/// does not set: without it a client that sends a header line every few
/// seconds keeps its connection forever.
pub(crate) async fn serve<L>(
    mut listener: L,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;

    let router = app(state.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(timer::LazyTimer)
        .header_read_timeout(state.settings.header_read_timeout)
        // What a connection may hold waiting for its client: hyper's ~400
        // KB default, times every SSE client that stops reading, is what a
        // server full of them would hold. Bodies stream past this buffer.
        .max_buf_size(64 * 1024);
    let mut connections = tokio::task::JoinSet::new();
    // Past max_connections a connection gets one answer, 503, and is closed:
    // cheaper than leaving it waiting, and the client knows to retry.
    let mut refusing = http.clone();
    refusing.keep_alive(false);
    let busy = Router::new().fallback(|| async {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "the server holds as many connections as it allows (max_connections); retry later",
        )
        .retry_after(limits::RETRY_AFTER_SECS)
    });
    tokio::pin!(shutdown);
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // Reap finished connections so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        if connections.len() >= state.settings.max_connections {
            state.metrics.refused("connections");
            let refusal =
                refusing.serve_connection(TokioIo::new(io), TowerToHyperService::new(busy.clone()));
            let limit = state.settings.header_read_timeout;
            tokio::spawn(async move { drop(tokio::time::timeout(limit, refusal).await) });
            continue;
        }
        let (router, http) = (router.clone(), http.clone());
        let header_read_timeout = state.settings.header_read_timeout;
        let mut ending = state.shutdown.subscribe();
        connections.spawn(async move {
            let first = tokio::select! {
                first = tokio::time::timeout(header_read_timeout, conn::first(io)) => first,
                _ = ending.wait_for(|ending| *ending) => return,
            };
            let io = match first {
                Ok(Some(conn::First::Stream(io, request))) => {
                    return conn::stream(io, request, router).await;
                }
                Ok(Some(conn::First::Http(io))) => io,
                // Slow or gone before a whole head: closed.
                Ok(None) | Err(_) => return,
            };
            // Boxed, so that a stream's task is not as large as hyper's state.
            let mut connection =
                Box::pin(http.serve_connection(TokioIo::new(io), TowerToHyperService::new(router)));
            tokio::select! {
                _ = connection.as_mut() => {}
                () = async { drop(ending.wait_for(|ending| *ending).await) } => {
                    // Finish the request in flight, then close.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    // Open SSE streams end now; other requests finish.
    state.shutdown.send_replace(true);
    let drain = state.settings.drain_timeout;
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, drained).await.is_err() {
        tracing::warn!(
            ?drain,
            "requests still in flight after the drain timeout; stopping anyway"
        );
        connections.abort_all();
    }
    Ok(())
}
