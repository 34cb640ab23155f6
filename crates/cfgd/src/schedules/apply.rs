//! Applying a due schedule: the elected worker's side, through a fenced
//! client. The release and the schedule marked applied are one
//! transaction, which also compares every base and the schedule itself,
//! so a schedule is applied once or not at all.

use etcd_client::{Compare, CompareOp, TxnOp};
use serde_json::Value;

use super::{Schedule, ScheduleState};
use crate::audit::{now_ms, Via};
use crate::client::releases::RequestStep;
use crate::client::requests::RequestState;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::key::Kind;
use crate::types::Revision;

/// What applying a schedule came to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Published as release `release` at `revision`.
    Applied {
        /// The release's id.
        release: String,
        /// Its revision.
        revision: Revision,
    },
    /// Not applied, for `reason`; `moved` names the keys whose base moved.
    Suspended {
        /// Why.
        reason: String,
        /// The names that moved since it was scheduled.
        moved: Vec<String>,
    },
    /// Its time has not come, or the step before it is still pending.
    Waiting,
    /// It was applied, suspended or cancelled already.
    Done,
}

impl Client {
    /// Applies schedule `id` if it is due and pending (the worker calls this
    /// through a [`fenced`](Client::fenced) client): its release,
    /// compare-and-set on every base, or its change request merged. A base
    /// that moved suspends it, naming the keys, and nothing of it is
    /// written.
    pub async fn apply_schedule(&self, id: &str) -> Result<Outcome> {
        let (mut schedule, revision) = self.stored_schedule(id).await?;
        if schedule.state != ScheduleState::Pending {
            // Finished, but its index entry outlived it: drop that.
            self.plain_txn(
                &self.schedule_index_key(id),
                Vec::new(),
                vec![TxnOp::delete(self.schedule_index_key(id), None)],
            )
            .await?;
            return Ok(Outcome::Done);
        }
        if schedule.at_ms > now_ms() {
            return Ok(Outcome::Waiting);
        }
        if let Some(previous) = schedule.after.clone() {
            match self.stored_schedule(&previous).await {
                Ok((before, _)) => match before.state {
                    ScheduleState::Pending => return Ok(Outcome::Waiting),
                    ScheduleState::Applied => {
                        // On what the step before left: each flag must be
                        // as that step set it, whatever its revision (the
                        // step's release record may be pruned since).
                        let left = before.flags.as_ref().and_then(|d| d.get("flags"));
                        for name in flag_names(&schedule) {
                            let now = self.get_flag(&name).await?;
                            let set = left.and_then(|f| f.get(&name));
                            match now {
                                Some(entry) if Some(&entry.value) == set => {
                                    schedule
                                        .base
                                        .insert(format!("flags/{name}"), entry.revision);
                                }
                                _ => {
                                    let reason = format!(
                                        "flags/{name} changed after the step before it, {previous}"
                                    );
                                    let moved = vec![format!("flags/{name}")];
                                    return self.suspend(schedule, revision, reason, moved).await;
                                }
                            }
                        }
                    }
                    other => {
                        let reason =
                            format!("the step before it, {previous}, was {}", other.as_str());
                        return self.suspend(schedule, revision, reason, Vec::new()).await;
                    }
                },
                Err(Error::NotFound { .. }) => {
                    let reason = format!("the step before it, {previous}, is gone");
                    return self.suspend(schedule, revision, reason, Vec::new()).await;
                }
                Err(e) => return Err(e),
            }
        }
        let author = self
            .with_actor(schedule.created_by.clone(), Via::Schedule)
            .with_message(match &schedule.message {
                Some(message) => format!("schedule {id}: {message}"),
                None => format!("schedule {id}"),
            });
        if let Some(request) = schedule.request.clone() {
            return author.apply_request(schedule, revision, &request).await;
        }
        let config = Value::Object(schedule.config.clone()).to_string();
        let flags = schedule.flags.as_ref().map(Value::to_string);
        let plan = match author.plan_release(&config, flags.as_deref()).await {
            Ok(plan) => plan,
            Err(e) if e.is_unreachable() => return Err(e),
            Err(e) => {
                return self
                    .suspend(schedule, revision, e.to_string(), Vec::new())
                    .await
            }
        };
        let moved: Vec<String> = plan
            .read
            .iter()
            .filter(|(label, at)| schedule.base.get(label).copied().unwrap_or(0) != *at)
            .map(|(label, _)| label.clone())
            .collect();
        if !moved.is_empty() {
            let reason = format!("changed since it was scheduled: {}", moved.join(", "));
            return self.suspend(schedule, revision, reason, moved).await;
        }
        let key = self.schedule_key(id)?;
        let index = self.schedule_index_key(id);
        let written: Vec<&str> = plan.writes.iter().map(|w| w.key.as_str()).collect();
        // The names it holds but does not change are compared too: the
        // whole of what was scheduled must be as it was.
        let unchanged: Vec<Compare> = plan
            .read
            .iter()
            .map(|(label, at)| (self.label_key(label), *at))
            .filter(|(key, _)| !written.contains(&key.as_str()))
            .map(|(key, at)| Compare::mod_revision(key, CompareOp::Equal, at))
            .collect();
        let mut applied = schedule.clone();
        let step = RequestStep {
            id: None,
            with: Box::new(move |release: &str| {
                applied.state = ScheduleState::Applied;
                applied.release = Some(release.to_owned());
                applied.done_ms = now_ms();
                let mut compares = unchanged;
                compares.push(Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    revision,
                ));
                let ops = vec![
                    TxnOp::put(
                        key.as_str(),
                        serde_json::to_vec(&applied).expect("serializes"),
                        None,
                    ),
                    TxnOp::delete(index, None),
                ];
                (compares, ops)
            }),
        };
        match author.publish_as(&plan, "release", Some(step)).await {
            Ok(Some(release)) => {
                tracing::info!(namespace = self.namespace(), schedule = id, release = %release.id, "schedule applied");
                Ok(Outcome::Applied {
                    release: release.id,
                    revision: release.revision,
                })
            }
            Ok(None) => {
                // What it sets is what is stored: done, with no release.
                schedule.state = ScheduleState::Applied;
                schedule.done_ms = now_ms();
                schedule.reason = Some("nothing to change: the values were already set".into());
                self.finish_schedule(&schedule, revision, "", Vec::new())
                    .await?;
                Ok(Outcome::Applied {
                    release: String::new(),
                    revision: 0,
                })
            }
            // A base moved between reading and writing: the next look
            // finds which, and suspends it.
            Err(Error::Conflict { .. }) => Ok(Outcome::Waiting),
            Err(e) => Err(e),
        }
    }

    /// Merges a scheduled change request, if it is still as scheduled.
    async fn apply_request(
        &self,
        schedule: Schedule,
        revision: Revision,
        request: &str,
    ) -> Result<Outcome> {
        let now = match self.get_request(request).await {
            Ok(now) => now,
            Err(Error::NotFound { .. }) => {
                let reason = format!("change request {request} is gone");
                return self.suspend(schedule, revision, reason, Vec::new()).await;
            }
            Err(e) => return Err(e),
        };
        if now.state != RequestState::Open || now.revision != schedule.request_revision {
            let reason = format!(
                "change request {request} changed after it was scheduled (it is {} now)",
                now.state.as_str()
            );
            return self.suspend(schedule, revision, reason, Vec::new()).await;
        }
        let key = self.schedule_key(&schedule.id)?;
        let index = self.schedule_index_key(&schedule.id);
        let mut applied = schedule.clone();
        let extra: crate::client::releases::StepOps<'_> = Box::new(move |release: &str| {
            applied.state = ScheduleState::Applied;
            applied.release = Some(release.to_owned());
            applied.done_ms = now_ms();
            let compares = vec![Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                revision,
            )];
            let ops = vec![
                TxnOp::put(
                    key.as_str(),
                    serde_json::to_vec(&applied).expect("serializes"),
                    None,
                ),
                TxnOp::delete(index, None),
            ];
            (compares, ops)
        });
        match self
            .merge_request_with(request, Some(schedule.request_revision), Some(extra))
            .await
        {
            Ok(release) => Ok(Outcome::Applied {
                release: release.id,
                revision: release.revision,
            }),
            // The schedule or the request moved under the merge: look again.
            Err(Error::Conflict { .. }) => Ok(Outcome::Waiting),
            Err(Error::RequestMoved { names, .. }) => {
                let reason = format!("changed since it was scheduled: {}", names.join(", "));
                self.suspend(schedule, revision, reason, names).await
            }
            Err(e) if e.is_unreachable() || matches!(e, Error::Fenced { .. }) => Err(e),
            Err(e) => {
                self.suspend(schedule, revision, e.to_string(), Vec::new())
                    .await
            }
        }
    }

    async fn suspend(
        &self,
        mut schedule: Schedule,
        revision: Revision,
        reason: String,
        moved: Vec<String>,
    ) -> Result<Outcome> {
        tracing::warn!(namespace = self.namespace(), schedule = %schedule.id, %reason, "schedule suspended");
        schedule.state = ScheduleState::Suspended;
        schedule.done_ms = now_ms();
        schedule.reason = Some(reason.clone());
        schedule.moved = moved.clone();
        self.finish_schedule(&schedule, revision, "schedule.suspend", Vec::new())
            .await?;
        Ok(Outcome::Suspended { reason, moved })
    }

    /// The etcd key of a plan's label (`name`, or `flags/{name}`).
    fn label_key(&self, label: &str) -> String {
        match label.strip_prefix("flags/") {
            Some(flag) => self.state.space.key_unchecked(Kind::Flags, flag),
            None => self.state.space.key_unchecked(Kind::Config, label),
        }
    }
}

/// The flags a schedule's document sets.
fn flag_names(schedule: &Schedule) -> Vec<String> {
    schedule
        .flags
        .as_ref()
        .and_then(|d| d.get("flags"))
        .and_then(Value::as_object)
        .map(|f| f.keys().cloned().collect())
        .unwrap_or_default()
}
