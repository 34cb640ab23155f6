//! Looking back: a name's history, as values or as what each revision
//! changed, and the audit trail.

use super::handle::{Client, Entry};
use crate::audit::{AuditRecord, UNATTRIBUTED};
use crate::diff::{self, Difference, NamedDiff};
use crate::error::{Error, Result};
use crate::key::{self, Kind};
use crate::policy::REDACTED;
use etcd_client::GetOptions;

impl Client {
    /// Each revision of `name` in [`history`](Self::history) (newest first,
    /// at most `limit`) with what it changed from the one before it; the
    /// oldest one kept is compared with nothing (all added).
    pub async fn history_diff(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<(Entry, Vec<Difference>)>> {
        let history = self.history(name, limit.saturating_add(1)).await?;
        let secret = self.current_policy().await?.is_secret(name);
        let mut out = Vec::with_capacity(history.len());
        for (i, entry) in history.iter().enumerate().take(limit) {
            let differences = match history.get(i + 1) {
                Some(older) => diff::diff(&older.value, &entry.value),
                None => vec![Difference::Added {
                    path: String::new(),
                    value: entry.value.clone(),
                }],
            };
            let mut differences = NamedDiff {
                name: name.to_owned(),
                differences,
            };
            if secret || entry.secret {
                differences.redact(REDACTED);
            }
            out.push((entry.clone(), differences.differences));
        }
        Ok(out)
    }

    /// The audit trail, newest first: at most `limit` writes that touched
    /// a name starting with `prefix`, made by `actor` when one is given.
    ///
    /// A change made without cfgd (etcdctl, another tool) has no record.
    /// So that the trail has no silent hole, each current value or flag
    /// whose revision no record accounts for, within the span the records
    /// returned cover, is listed as a record with actor `unattributed`.
    /// (A delete made without cfgd leaves nothing to find.)
    pub async fn audit_log(
        &self,
        prefix: &str,
        actor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        key::validate_prefix(prefix)?;
        let start = self.state.space.audit_prefix();
        let mut records = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let complete = self
            .newest_first(&start, |kv| {
                let Ok(mut record) = serde_json::from_slice::<AuditRecord>(kv.value()) else {
                    tracing::warn!(key = %String::from_utf8_lossy(kv.key()), "not an audit record");
                    return true;
                };
                record.revision = kv.mod_revision();
                seen.insert(record.revision);
                if record.touches(prefix) && actor.is_none_or(|a| a == record.actor) {
                    records.push(record);
                }
                records.len() < limit
            })
            .await?;
        if actor.is_none_or(|a| a == UNATTRIBUTED) {
            // Older than the oldest record returned is beyond what was read.
            let since = if complete {
                0
            } else {
                records.last().map_or(0, |r| r.revision)
            };
            for kind in [Kind::Config, Kind::Flags] {
                for kv in self.list_raw(kind, prefix).await? {
                    let revision = kv.mod_revision();
                    if revision <= since || seen.contains(&revision) {
                        continue;
                    }
                    let Some(name) = self.state.space.name_of(kind, kv.key()) else {
                        continue;
                    };
                    records.push(AuditRecord::unattributed(kind.segment(), name, revision));
                }
            }
            records.sort_by_key(|r| std::cmp::Reverse(r.revision));
            records.truncate(limit);
        }
        Ok(records)
    }

    /// Past values of `name`, newest first, at most `limit` of them: the
    /// revisions of its current life that etcd has not compacted.
    pub async fn history(&self, name: &str, limit: usize) -> Result<Vec<Entry>> {
        let key = self.etcd_key(name)?;
        let mut out = Vec::new();
        let mut at = None;
        while out.len() < limit {
            let kv = match self.fetch(&key, at).await {
                Ok(Some(kv)) => kv,
                Ok(None) | Err(Error::Compacted { .. }) => break,
                Err(e) => return Err(e),
            };
            let entry: Entry = self.entry(name, &kv)?;
            let first = entry.version <= 1;
            at = Some(entry.revision - 1);
            out.push(entry);
            if first {
                break;
            }
        }
        Ok(out)
    }

    /// Prunes the audit trail: records older than `max_age`, and all but
    /// the newest `max_records`. Returns how many were deleted. Ids start
    /// with the time, so each rule is one range delete, read from keys only.
    pub async fn prune_audit(
        &self,
        max_age: Option<std::time::Duration>,
        max_records: Option<usize>,
    ) -> Result<u64> {
        let start = self.state.space.audit_prefix();
        let etcd = self.state.etcd();
        let mut deleted = 0;
        if let Some(age) = max_age {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let cutoff = now.saturating_sub(age).as_millis();
            let end = format!("{start}{cutoff:013}");
            let mut kv = etcd.kv().await?;
            let options = etcd_client::DeleteOptions::new().with_range(end);
            let resp = etcd
                .call(&start, None, kv.delete(start.as_str(), Some(options)))
                .await?;
            deleted += resp.deleted().max(0) as u64;
        }
        if let Some(keep) = max_records {
            let end = key::prefix_end(start.clone().into_bytes());
            let mut kv = etcd.kv().await?;
            let count = GetOptions::new().with_range(end.clone()).with_count_only();
            let total = etcd
                .call(&start, None, kv.get(start.as_str(), Some(count)))
                .await?
                .count();
            let excess = (total.max(0) as usize).saturating_sub(keep);
            if excess > 0 {
                // The key of the last record to go, oldest first.
                let oldest = GetOptions::new()
                    .with_range(end)
                    .with_keys_only()
                    .with_limit(excess as i64);
                let resp = etcd
                    .call(&start, None, kv.get(start.as_str(), Some(oldest)))
                    .await?;
                if let Some(last) = resp.kvs().last() {
                    let mut through = last.key().to_vec();
                    through.push(0);
                    let options = etcd_client::DeleteOptions::new().with_range(through);
                    let resp = etcd
                        .call(&start, None, kv.delete(start.as_str(), Some(options)))
                        .await?;
                    deleted += resp.deleted().max(0) as u64;
                }
            }
        }
        Ok(deleted)
    }
}
