//! Whole namespaces in and out: `export` as one JSON document, `import`
//! of one.
use std::collections::HashSet;

use serde_json::Value;

use super::handle::{Client, ImportReport};
use super::releases::redact_secrets;
use crate::diff::NamedDiff;
use crate::error::{Error, Result};
use crate::key::Kind;
use crate::policy::REDACTED;
use crate::secret;
use crate::value;

impl Client {
    /// Every value whose name starts with `prefix` as one JSON object of
    /// name → value, read at one revision: the document
    /// [`import`](Self::import) takes back. Secrets stay sealed in it (their
    /// envelopes), so a backup never holds their plaintext; importing it
    /// into the same namespace opens them again.
    pub async fn export(&self, prefix: &str) -> Result<Value> {
        Ok(Value::Object(self.document(prefix, true).await?.0))
    }

    /// The values under `prefix` as name → value, secrets sealed or opened,
    /// and the names of the secrets.
    pub(super) async fn document(
        &self,
        prefix: &str,
        sealed: bool,
    ) -> Result<(serde_json::Map<String, Value>, HashSet<String>)> {
        self.document_of(prefix, sealed, false).await
    }

    /// [`document`](Self::document); with `own`, of this namespace's own
    /// layer only.
    pub(super) async fn document_of(
        &self,
        prefix: &str,
        sealed: bool,
        own: bool,
    ) -> Result<(serde_json::Map<String, Value>, HashSet<String>)> {
        let mut document = serde_json::Map::new();
        let mut secrets = HashSet::new();
        // A layered namespace's document is its effective values.
        let effective = match own {
            true => None,
            false => self.effective_under(prefix).await?,
        };
        if let Some(entries) = effective {
            for (name, stored) in entries {
                let key = self.state.space.key_unchecked(Kind::Config, &name);
                let raw = match sealed && stored.is_secret() {
                    true => stored.as_stored(),
                    false => &stored.raw,
                };
                let value = value::decode(&key, stored.revision, raw)?;
                if stored.is_secret() {
                    secrets.insert(name.clone());
                }
                document.insert(name, value);
            }
            return Ok((document, secrets));
        }
        for kv in self.list_raw(Kind::Config, prefix).await? {
            let Some(name) = self.state.space.name_of(Kind::Config, kv.key()) else {
                continue;
            };
            let is_secret = secret::is_sealed(kv.value());
            let value = if sealed && is_secret {
                serde_json::from_slice(kv.value()).map_err(|cause| Error::CorruptValue {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    revision: kv.mod_revision(),
                    cause,
                })?
            } else {
                // The etcd key as read names the value: no key made per name.
                let key = std::str::from_utf8(kv.key()).unwrap_or(name);
                value::decode(key, kv.mod_revision(), &self.opened(key, kv.value())?)?
            };
            if is_secret {
                secrets.insert(name.to_owned());
            }
            document.insert(name.to_owned(), value);
        }
        Ok((document, secrets))
    }

    /// Hides the values of secrets in `changes`: those the policy calls
    /// secret, and the `sealed` names (stored sealed whatever the policy
    /// says now).
    pub(super) async fn redacted(
        &self,
        sealed: &HashSet<String>,
        mut changes: Vec<NamedDiff>,
    ) -> Result<Vec<NamedDiff>> {
        redact_secrets(&*self.current_policy().await?, &mut changes);
        for change in changes.iter_mut().filter(|c| sealed.contains(&c.name)) {
            change.redact(REDACTED);
        }
        Ok(changes)
    }

    /// Writes a JSON object of name → value, as `cfgctl import` does.
    ///
    /// Everything is checked first (names, JSON, sizes, schemas): one bad entry and
    /// nothing is written. Then only the names whose value differs are
    /// written, in etcd transactions of at most 128 puts, each guarded by
    /// the revisions read while planning, so a concurrent edit is reported
    /// as [`Error::Conflict`] instead of overwritten. Batches before a
    /// conflicting one stay written. With `dry_run` nothing is written.
    pub async fn import(&self, document: &str, dry_run: bool) -> Result<ImportReport> {
        let parsed: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(document).map_err(|cause| Error::InvalidJson {
                key: format!("{}config (import document)", self.state.space.base()),
                cause,
            })?;
        let schemas = self.schemas().await?;
        let mut wanted = Vec::with_capacity(parsed.len());
        for (name, raw) in &parsed {
            let key = self.etcd_key(name)?;
            let bytes = value::compact_text(&key, raw.get())?;
            // An export keeps secrets sealed; importing it opens them.
            let bytes = self.opened(&key, &bytes)?.into_owned();
            self.unquoted(name, schemas.check(&key, name, &bytes))
                .await?;
            wanted.push((name.clone(), key, bytes));
        }
        self.write_changed(Kind::Config, wanted, dry_run, "import")
            .await
    }
}
