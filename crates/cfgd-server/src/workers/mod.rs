//! The workers: webhook deliveries and scheduled releases, run by one
//! replica at a time, elected through etcd ([`cfgd::election`]).
//!
//! Each replica campaigns; the elected one starts the workers, and stops
//! them the moment its lease is lost, before anything else. Every write
//! they make goes through a fenced client, so a replica that lost its lease
//! without knowing it yet (paused, cut off) changes nothing: etcd refuses
//! its transactions, and `cfgd_worker_fenced_writes` counts them.

use std::sync::Arc;

use cfgd::Client;
use tokio::task::JoinSet;

use crate::state::AppState;

pub(crate) mod event;
mod post;
mod schedules;
mod webhooks;

impl AppState {
    /// The workers' client of `namespace`: not live (they read what they
    /// need as they need it), sharing the server's etcd connection.
    pub(crate) async fn worker_client(&self, namespace: &str) -> cfgd::Result<Client> {
        let mut clients = self.workers.clients.lock().await;
        if let Some(client) = clients.get(namespace) {
            return Ok(client.clone());
        }
        let client = self
            .builder
            .clone()
            .live(false)
            .namespace(namespace)
            .connect()
            .await?;
        clients.insert(namespace.to_owned(), client.clone());
        Ok(client)
    }

    /// This replica's name: `[workers] replica`, or `{hostname}-{pid}`.
    pub(crate) fn replica(&self) -> String {
        self.settings.workers.replica.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "cfgd".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// Campaigns, and runs the workers while elected, until shutdown.
pub(crate) async fn run(state: Arc<AppState>) {
    if state.settings.workers.disabled {
        return;
    }
    let replica = state.replica();
    let elector = loop {
        match state.worker_client("default").await {
            Ok(client) => break client.elector(state.settings.workers.ttl, replica.clone()),
            Err(error) => {
                tracing::warn!(%error, "workers: cannot reach etcd to campaign; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    };
    let campaign = {
        let state = state.clone();
        let stop = state.shutdown.subscribe();
        tokio::spawn(async move { elector.run(&state.workers.leader, stop).await })
    };
    let mut leadership = state.workers.leader.subscribe();
    let mut stop = state.shutdown.subscribe();
    // The workers of the term they were started for.
    let mut running: Option<(Arc<cfgd::election::Leader>, JoinSet<()>)> = None;
    loop {
        let current = leadership.borrow_and_update().clone();
        let same = match (&current, &running) {
            (Some(now), Some((then, _))) => Arc::ptr_eq(now, then),
            (None, None) => true,
            _ => false,
        };
        if !same {
            if let Some((_, set)) = running.take() {
                stop_workers(&state, set).await;
                tracing::warn!(%replica, "this replica no longer leads: workers stopped");
            }
            if let Some(leader) = current {
                tracing::info!(%replica, "this replica leads: webhook and schedule workers started");
                state.metrics.workers.leader.set(1);
                let mut set = JoinSet::new();
                set.spawn(webhooks::run(state.clone(), leader.clone()));
                set.spawn(schedules::run(state.clone(), leader.clone()));
                running = Some((leader, set));
            }
        }
        tokio::select! {
            changed = leadership.changed() => if changed.is_err() { break },
            _ = stop.wait_for(|stopping| *stopping) => break,
        }
    }
    if let Some((_, mut set)) = running.take() {
        set.abort_all();
    }
    let _ = campaign.await;
}

/// Stops a term's workers. They saw the leadership go (`Leader::lost`) and
/// stop at their next step: nothing more goes out. One waiting on a
/// receiver gets its answer, and its fenced write is refused; past the
/// timeout it is cut off.
async fn stop_workers(state: &AppState, mut set: JoinSet<()>) {
    let finish = async { while set.join_next().await.is_some() {} };
    let limit = state.settings.webhooks.timeout + std::time::Duration::from_secs(1);
    if tokio::time::timeout(limit, finish).await.is_err() {
        set.abort_all();
    }
    state.metrics.workers.leader.set(0);
}

/// Counts a worker's write that etcd refused for its fence, and says so.
pub(crate) fn fenced(state: &AppState, what: &str, error: &cfgd::Error) {
    state.metrics.workers.fenced.inc();
    tracing::warn!(%error, what, "fenced: this replica lost the election, the write was refused");
}
