//! Scheduled releases: the worker looks for what is due every quarter
//! second and applies it through a fenced client, so a schedule is applied
//! within a second of its time, once, by the replica that leads.

use std::sync::Arc;
use std::time::Duration;

use cfgd::election::Leader;
use cfgd::schedules::Outcome;
use cfgd::Error;

use crate::state::AppState;

const LOOK: Duration = Duration::from_millis(250);

pub(super) async fn run(state: Arc<AppState>, leader: Arc<Leader>) {
    while leader.holds() {
        if let Err(error) = look(&state, &leader).await {
            if let Error::Fenced { .. } = error {
                super::fenced(&state, "schedule", &error);
                return;
            }
            tracing::warn!(%error, "schedules: cannot look for what is due; trying again");
        }
        tokio::select! {
            _ = tokio::time::sleep(LOOK) => {}
            _ = leader.lost() => return,
        }
    }
}

async fn look(state: &AppState, leader: &Leader) -> cfgd::Result<()> {
    let root = state.worker_client("default").await?;
    let (due, _) = root.due_schedules(cfgd::schedules::now()).await?;
    for (ns, id, _) in due {
        if !leader.holds() {
            return Ok(());
        }
        let client = state.worker_client(&ns).await?.fenced(leader.fence());
        match client.apply_schedule(&id).await {
            Ok(Outcome::Applied { release, revision }) => {
                state
                    .metrics
                    .workers
                    .schedules
                    .get_or_create(&crate::worker_metrics::Outcome { outcome: "applied" })
                    .inc();
                tracing::info!(namespace = %ns, schedule = %id, %release, revision, "schedule applied");
            }
            Ok(Outcome::Suspended { reason, .. }) => {
                state
                    .metrics
                    .workers
                    .schedules
                    .get_or_create(&crate::worker_metrics::Outcome {
                        outcome: "suspended",
                    })
                    .inc();
                tracing::warn!(namespace = %ns, schedule = %id, %reason, "schedule suspended");
            }
            Ok(_) => {}
            Err(error @ Error::Fenced { .. }) => return Err(error),
            Err(error) => {
                tracing::warn!(namespace = %ns, schedule = %id, %error, "schedule not applied yet")
            }
        }
    }
    Ok(())
}
