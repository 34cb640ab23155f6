//! Scheduled releases: a release plan, or an approved change request,
//! pinned with the revisions it was based on and applied by the elected
//! worker at its time, as one release, compare-and-set on every base. If a
//! base moved the schedule is suspended, naming the keys: what was
//! approved is what ships, never edits made after it was scheduled.
//!
//! Stored at `{root}/{ns}/schedules/{id}`, with an index entry at
//! `{root}/_workers/schedules/{ns}/{id}` (its time) while it is pending, so
//! the worker finds what is due without reading every namespace. A flag
//! rollout in steps is one schedule per step, each after the one before.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, GetOptions, TxnOp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::audit::now_ms;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::Revision;
use crate::webhooks::decode;

mod apply;
mod time;

pub use apply::Outcome;
use time::check_future;
pub use time::{format_time, now, parse_steps, parse_time};

/// The section of a namespace that holds its schedules.
pub(crate) const SECTION: &str = "schedules";

/// Where a schedule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ScheduleState {
    /// Waiting for its time.
    Pending,
    /// Published as a release.
    Applied,
    /// Not applied: a base moved (see `moved`), or the step before it was
    /// not applied.
    Suspended,
    /// Cancelled before its time.
    Cancelled,
}

impl ScheduleState {
    /// `pending`, `applied`, `suspended` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleState::Pending => "pending",
            ScheduleState::Applied => "applied",
            ScheduleState::Suspended => "suspended",
            ScheduleState::Cancelled => "cancelled",
        }
    }
}

/// A scheduled release, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Schedule {
    /// `sc_` and 16 hex digits.
    pub id: String,
    /// When it is due, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Where it stands.
    pub state: ScheduleState,
    /// The values it sets, name → value.
    pub config: Map<String, Value>,
    /// The flags it sets, as a flagd document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Value>,
    /// The revision of each name it holds (flags as `flags/{name}`) when it
    /// was scheduled (0: absent): applying needs every one unchanged.
    pub base: BTreeMap<String, Revision>,
    /// The approved change request it merges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// That request's revision when it was scheduled.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub request_revision: Revision,
    /// The schedule this one follows (a rollout's previous step): it
    /// applies only after that one did, on what it left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// A rollout step's percentage, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// Who scheduled it.
    pub created_by: String,
    /// When, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Why, as its author said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The release it was published as (its audit record's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// When it was applied, suspended or cancelled.
    #[serde(default, skip_serializing_if = "is_zero_ms")]
    pub done_ms: u64,
    /// Why it was suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The names whose base moved, when suspended for that.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved: Vec<String>,
}

fn is_zero(revision: &Revision) -> bool {
    *revision == 0
}

fn is_zero_ms(ms: &u64) -> bool {
    *ms == 0
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidSchedule {
        reason: reason.into(),
    }
}

/// `schedule` with the values of names `policy` calls secret redacted.
fn redacted(policy: &crate::policy::Policy, mut schedule: Schedule) -> Schedule {
    for (name, value) in schedule.config.iter_mut() {
        if policy.is_secret(name) {
            *value = Value::String(crate::policy::REDACTED.to_owned());
        }
    }
    schedule
}

/// A schedule id.
fn new_id() -> String {
    let bytes: [u8; 8] = crate::secret::random();
    format!(
        "sc_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

impl Client {
    /// `{base}schedules/{id}`, the id checked first.
    pub(crate) fn schedule_key(&self, id: &str) -> Result<String> {
        let key = format!("{}{SECTION}/{id}", self.state.space.base());
        let ok = id.len() == 19
            && id.starts_with("sc_")
            && id[3..].bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(Error::NotFound {
                key,
                revision: None,
            });
        }
        Ok(key)
    }

    /// `{root}/_workers/schedules/{ns}/{id}`.
    pub(crate) fn schedule_index_key(&self, id: &str) -> String {
        format!(
            "{}/_workers/schedules/{}/{id}",
            self.state.etcd().root,
            self.namespace()
        )
    }

    /// Schedules a release of `config` (a JSON object of name → value) and
    /// optional `flags` (a flagd document) for `at_ms`: checked now as
    /// [`plan_release`](Self::plan_release) checks one, pinned to the
    /// revisions it read, and applied then by the elected worker.
    pub async fn schedule_release(
        &self,
        config: &str,
        flags: Option<&str>,
        at_ms: u64,
    ) -> Result<Schedule> {
        check_future(at_ms, now_ms())?;
        let plan = self.plan_release(config, flags).await?;
        if plan.writes.is_empty() {
            return Err(invalid("the release changes nothing that is stored now"));
        }
        let mut schedule = self.new_schedule(at_ms);
        schedule.config = self.sealed_document(config).await?;
        schedule.flags = flags.and_then(|f| serde_json::from_str(f).ok());
        schedule.base = plan.read.iter().cloned().collect();
        self.put_schedule(&schedule, "schedule.create").await?;
        self.shown(schedule).await
    }

    /// Schedules approved change request `id` to be merged at `at_ms`, as it
    /// is now: if it changes after, it is suspended rather than merged.
    pub async fn schedule_request(&self, id: &str, at_ms: u64) -> Result<Schedule> {
        check_future(at_ms, now_ms())?;
        let request = self.get_request(id).await?;
        let needed = self.current_policy().await?.approvals as usize;
        let has = request.approvals.len();
        if request.state != crate::client::requests::RequestState::Open {
            return Err(invalid(format!(
                "change request {id} is {}: only an open, approved one can be scheduled",
                request.state.as_str()
            )));
        }
        if has < needed || has == 0 {
            return Err(invalid(format!(
                "change request {id} is not approved (it has {has} approval(s) and needs {})",
                needed.max(1)
            )));
        }
        let mut schedule = self.new_schedule(at_ms);
        schedule.config = request.config.clone();
        schedule.flags = request.flags.clone();
        schedule.base = request.base.clone();
        schedule.request = Some(request.id.clone());
        schedule.request_revision = request.revision;
        self.put_schedule(&schedule, "schedule.create").await?;
        self.shown(schedule).await
    }

    /// Schedules a flag's rollout in steps: at each `(percent, at_ms)`, the
    /// flag's targeting becomes `percent`% `to` and the rest its default
    /// variant, nothing more. Each step applies only after the one before
    /// did, on the definition it left; a step whose flag moved otherwise is
    /// suspended, and the steps after it with it. `to` may be left out for
    /// a flag of two variants: the one that is not the default.
    pub async fn schedule_rollout(
        &self,
        name: &str,
        to: Option<&str>,
        steps: &[(u32, u64)],
    ) -> Result<Vec<Schedule>> {
        let now = now_ms();
        for (_, at) in steps {
            check_future(*at, now)?;
        }
        let key = self.flag_key(name)?;
        let entry = self.get_flag(name).await?.ok_or(Error::NotFound {
            key: key.clone(),
            revision: None,
        })?;
        let Value::Object(definition) = entry.value else {
            return Err(invalid(format!(
                "{key}: the stored definition is not a JSON object"
            )));
        };
        let default = definition
            .get("defaultVariant")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                invalid(format!(
                    "{key}: the flag has no defaultVariant to roll out from"
                ))
            })?;
        let variants: Vec<String> = definition
            .get("variants")
            .and_then(Value::as_object)
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default();
        let to = match to {
            Some(to) => to.to_owned(),
            None => match variants
                .iter()
                .filter(|v| **v != default)
                .collect::<Vec<_>>()[..]
            {
                [only] => only.clone(),
                _ => {
                    return Err(invalid(format!(
                        "{key}: say which variant rolls out (it has {})",
                        variants.join(", ")
                    )))
                }
            },
        };
        if to == default || !variants.contains(&to) {
            return Err(invalid(format!(
                "{key}: variant {to:?} cannot roll out: it must be one of the flag's ({}) other than its default {default:?}",
                variants.join(", ")
            )));
        }
        let mut made: Vec<Schedule> = Vec::new();
        for (percent, at) in steps {
            let mut rollout = crate::Rollout::new();
            if *percent > 0 {
                rollout = rollout.variant(&to, *percent);
            }
            if *percent < 100 {
                rollout = rollout.variant(&default, 100 - percent);
            }
            let mut step = definition.clone();
            step.insert("targeting".into(), rollout.targeting(&key)?);
            let mut flags = Map::new();
            flags.insert(name.to_owned(), Value::Object(step));
            let mut schedule = self.new_schedule(*at);
            schedule.flags = Some(serde_json::json!({ "flags": flags }));
            schedule.percent = Some(*percent);
            match made.last() {
                Some(previous) => schedule.after = Some(previous.id.clone()),
                None => {
                    schedule.base = [(format!("flags/{name}"), entry.revision)].into();
                }
            }
            made.push(schedule);
        }
        // Checked whole before any is stored: a bad definition stores none.
        for schedule in &made {
            let document = schedule.flags.as_ref().map(Value::to_string);
            let doc = crate::flags::parse_document(document.as_deref().unwrap_or("{}"))?;
            for (flag, definition) in &doc.flags {
                crate::flags::validate_flag(
                    &self.flag_etcd_key(flag)?,
                    definition,
                    &doc.evaluators,
                )?;
            }
        }
        // One transaction: all the steps or none.
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        for schedule in &made {
            let (c, o) = self.schedule_ops(schedule, "schedule.create")?;
            compares.extend(c);
            ops.extend(o);
        }
        let first = self.schedule_key(&made[0].id)?;
        self.plain_txn(&first, compares, ops).await?;
        tracing::info!(
            namespace = self.namespace(),
            flag = name,
            steps = made.len(),
            "rollout scheduled"
        );
        Ok(made)
    }

    /// A release document as a schedule keeps it: the values of names the
    /// policy calls secret sealed, as etcd holds them (applying opens them).
    async fn sealed_document(&self, config: &str) -> Result<Map<String, Value>> {
        let policy = self.current_policy().await?;
        let mut document: Map<String, Value> = serde_json::from_str(config).unwrap_or_default();
        for (name, value) in document.iter_mut() {
            if !policy.is_secret(name) || crate::secret::is_sealed(value.to_string().as_bytes()) {
                continue;
            }
            let key = self.etcd_key(name)?;
            let sealed = self.sealed_for(&policy, &key, value.to_string().into_bytes())?;
            *value = serde_json::from_slice(&sealed).expect("an envelope is JSON");
        }
        Ok(document)
    }

    /// `schedule` as answered: secrets' values redacted.
    async fn shown(&self, schedule: Schedule) -> Result<Schedule> {
        Ok(redacted(&*self.current_policy().await?, schedule))
    }

    fn new_schedule(&self, at_ms: u64) -> Schedule {
        Schedule {
            id: new_id(),
            at_ms,
            state: ScheduleState::Pending,
            config: Map::new(),
            flags: None,
            base: BTreeMap::new(),
            request: None,
            request_revision: 0,
            after: None,
            percent: None,
            created_by: self.author.actor.clone(),
            created_ms: now_ms(),
            message: self.author.message.clone(),
            release: None,
            done_ms: 0,
            reason: None,
            moved: Vec::new(),
        }
    }

    /// Stores a new schedule with its index entry and audit record.
    async fn put_schedule(&self, schedule: &Schedule, action: &str) -> Result<()> {
        let key = self.schedule_key(&schedule.id)?;
        let (compares, ops) = self.schedule_ops(schedule, action)?;
        self.plain_txn(&key, compares, ops).await?;
        tracing::info!(namespace = self.namespace(), schedule = %schedule.id, at = %format_time(schedule.at_ms), "release scheduled");
        Ok(())
    }

    /// What storing a new schedule compares and writes.
    fn schedule_ops(
        &self,
        schedule: &Schedule,
        action: &str,
    ) -> Result<(Vec<Compare>, Vec<TxnOp>)> {
        let key = self.schedule_key(&schedule.id)?;
        let (record, _) = self.trail_op(action, SECTION, &schedule.id);
        let ops = vec![
            TxnOp::put(
                key.as_str(),
                serde_json::to_vec(schedule).expect("serializes"),
                None,
            ),
            TxnOp::put(
                self.schedule_index_key(&schedule.id),
                schedule.at_ms.to_string(),
                None,
            ),
            record,
        ];
        let absent = Compare::create_revision(key.as_str(), CompareOp::Equal, 0);
        Ok((vec![absent], ops))
    }

    /// This namespace's schedules, soonest first (secrets' values redacted).
    pub async fn schedules(&self) -> Result<Vec<Schedule>> {
        let prefix = format!("{}{SECTION}/", self.state.space.base());
        let mut out: Vec<Schedule> = self.records(&prefix).await?;
        out.sort_by_key(|s| s.at_ms);
        let policy = self.current_policy().await?;
        Ok(out.into_iter().map(|s| redacted(&policy, s)).collect())
    }

    /// One schedule, with its key's revision.
    pub(crate) async fn stored_schedule(&self, id: &str) -> Result<(Schedule, Revision)> {
        let key = self.schedule_key(id)?;
        let kv = self.fetch(&key, None).await?.ok_or(Error::NotFound {
            key: key.clone(),
            revision: None,
        })?;
        Ok((decode(&kv)?, kv.mod_revision()))
    }

    /// One schedule (secrets' values redacted).
    pub async fn schedule(&self, id: &str) -> Result<Schedule> {
        self.shown(self.stored_schedule(id).await?.0).await
    }

    /// Cancels a pending schedule.
    pub async fn cancel_schedule(&self, id: &str) -> Result<Schedule> {
        let (mut schedule, revision) = self.stored_schedule(id).await?;
        if schedule.state != ScheduleState::Pending {
            return Err(invalid(format!(
                "schedule {id} is {}: only a pending one can be cancelled",
                schedule.state.as_str()
            )));
        }
        schedule.state = ScheduleState::Cancelled;
        schedule.done_ms = now_ms();
        self.finish_schedule(&schedule, revision, "schedule.cancel", Vec::new())
            .await?;
        self.shown(schedule).await
    }

    /// Stores a schedule that is done (applied by `extra`, suspended,
    /// cancelled) and drops its index entry, if it is still at `revision`.
    pub(crate) async fn finish_schedule(
        &self,
        schedule: &Schedule,
        revision: Revision,
        action: &str,
        extra: Vec<TxnOp>,
    ) -> Result<Revision> {
        let key = self.schedule_key(&schedule.id)?;
        let mut ops = vec![
            TxnOp::put(
                key.as_str(),
                serde_json::to_vec(schedule).expect("serializes"),
                None,
            ),
            TxnOp::delete(self.schedule_index_key(&schedule.id), None),
        ];
        if !action.is_empty() {
            ops.push(self.trail_op(action, SECTION, &schedule.id).0);
        }
        ops.extend(extra);
        let unchanged = Compare::mod_revision(key.as_str(), CompareOp::Equal, revision);
        self.plain_txn(&key, vec![unchanged], ops).await
    }

    /// The pending schedules of every namespace under the root due by
    /// `now_ms`, as `(namespace, id, at_ms)`, soonest first; and when the
    /// next one not yet due is.
    pub async fn due_schedules(
        &self,
        now_ms: u64,
    ) -> Result<(Vec<(String, String, u64)>, Option<u64>)> {
        let prefix = format!("{}/_workers/schedules/", self.state.etcd().root);
        let mut kv = self.state.etcd().kv().await?;
        let resp = self
            .state
            .etcd()
            .call(
                &prefix,
                None,
                kv.get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
            )
            .await?;
        let mut due = Vec::new();
        let mut next: Option<u64> = None;
        for kv in resp.kvs() {
            let Some(rest) = kv
                .key()
                .get(prefix.len()..)
                .and_then(|r| std::str::from_utf8(r).ok())
            else {
                continue;
            };
            let Some((ns, id)) = rest.split_once('/') else {
                continue;
            };
            let at: u64 = std::str::from_utf8(kv.value())
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if at <= now_ms {
                due.push((ns.to_owned(), id.to_owned(), at));
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        due.sort_by_key(|d| d.2);
        Ok((due, next))
    }
}
