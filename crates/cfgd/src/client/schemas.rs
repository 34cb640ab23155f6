//! JSON Schemas by name pattern: stored, read, listed, deleted. Every write
//! of a value is checked against them (see `writes`).

use std::sync::Arc;

use serde_json::Value;

use super::handle::{Client, Entry};
use crate::error::{Error, Result};
use crate::key::Kind;
use crate::schema::{self, SchemaSet};
use crate::types::Revision;
use crate::value;

/// Names listed at most when a schema is refused for stored values.
const CONFLICTS_LISTED: usize = 20;

impl Client {
    /// The etcd key of the schema for `pattern` (a name, or a prefix then
    /// `*`), for example `/cfgd/prod/schemas/payments/*`.
    pub fn schema_etcd_key(&self, pattern: &str) -> Result<String> {
        schema::validate_pattern(pattern)?;
        Ok(self.state.space.key_unchecked(Kind::Schemas, pattern))
    }

    /// Stores the JSON Schema (draft 2020-12) that values matching
    /// `pattern` must pass from now on: an exact name, or a prefix ending
    /// in `*`; the most specific pattern governs a name.
    ///
    /// Refused with [`Error::InvalidSchema`] when it is not a valid schema,
    /// and with [`Error::SchemaConflict`], naming them, when values already
    /// stored that it would govern fail it, unless `force` is given.
    ///
    /// ```no_run
    /// # async fn demo(client: cfgd::Client) -> cfgd::Result<()> {
    /// let schema = serde_json::json!({
    ///     "type": "object",
    ///     "properties": {"pool_size": {"type": "integer", "minimum": 1}},
    ///     "required": ["pool_size"]
    /// });
    /// client.set_schema("database.*", &schema, false).await?;
    /// // From now on this is refused: /pool_size: 0 is less than the minimum of 1
    /// assert!(client.set("database.main", &serde_json::json!({"pool_size": 0})).await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn set_schema(&self, pattern: &str, schema: &Value, force: bool) -> Result<Revision> {
        let key = self.schema_etcd_key(pattern)?;
        let validator = schema::compile(&key, schema)?;
        let bytes = value::encode(&key, schema)?;
        if !force {
            self.refuse_if_stored_values_fail(pattern, &key, &bytes, &validator)
                .await?;
        }
        self.put(key, bytes, "schema.set").await
    }

    /// Checks a schema as [`set_schema`](Self::set_schema) would without
    /// `force`, storing nothing: that it is a valid schema, and that no
    /// stored value it would govern fails it.
    pub async fn check_schema(&self, pattern: &str, schema: &Value) -> Result<()> {
        let key = self.schema_etcd_key(pattern)?;
        let validator = schema::compile(&key, schema)?;
        let bytes = value::encode(&key, schema)?;
        self.refuse_if_stored_values_fail(pattern, &key, &bytes, &validator)
            .await
    }

    /// The names `pattern`'s new schema would govern, read now, whose values
    /// fail it.
    async fn refuse_if_stored_values_fail(
        &self,
        pattern: &str,
        key: &str,
        bytes: &[u8],
        validator: &jsonschema::Validator,
    ) -> Result<()> {
        // With the new schema in place, which names would it govern?
        let mut stored: Vec<(String, Arc<[u8]>, Revision)> = self
            .list_schemas()
            .await?
            .into_iter()
            .filter(|e| e.name != pattern)
            .map(|e| {
                (
                    e.name,
                    Arc::from(e.value.to_string().into_bytes()),
                    e.revision,
                )
            })
            .collect();
        stored.push((pattern.to_owned(), Arc::from(bytes), 0));
        let set = SchemaSet::from_store(
            stored.iter().map(|(p, raw, r)| (p.as_str(), raw, *r)),
            &SchemaSet::default(),
        );
        let prefix = pattern.strip_suffix('*').unwrap_or(pattern);
        let mut failing = Vec::new();
        for entry in self.list::<Value>(prefix).await? {
            if set.pattern_for(&entry.name) == Some(pattern)
                && !schema::failures(validator, &entry.value).is_empty()
            {
                failing.push(entry.name);
            }
        }
        if failing.is_empty() {
            return Ok(());
        }
        failing.truncate(CONFLICTS_LISTED);
        Err(Error::SchemaConflict {
            key: key.to_owned(),
            names: failing,
        })
    }

    /// The schema stored for `pattern`, read from etcd.
    pub async fn get_schema(&self, pattern: &str) -> Result<Option<Entry<Value>>> {
        let key = self.schema_etcd_key(pattern)?;
        match self.fetch(&key, None).await? {
            Some(kv) => Ok(Some(self.entry_of(Kind::Schemas, pattern, &kv)?)),
            None => Ok(None),
        }
    }

    /// Every stored schema, sorted by pattern (the entries' `name`).
    pub async fn list_schemas(&self) -> Result<Vec<Entry<Value>>> {
        let mut out = Vec::new();
        for kv in self.list_raw(Kind::Schemas, "").await? {
            if let Some(pattern) = self.state.space.name_of(Kind::Schemas, kv.key()) {
                out.push(self.entry_of(Kind::Schemas, pattern, &kv)?);
            }
        }
        Ok(out)
    }

    /// Deletes the schema for `pattern`; `None` when there was none. Values
    /// it governed are governed by the next most specific one, if any.
    pub async fn delete_schema(&self, pattern: &str) -> Result<Option<Revision>> {
        self.delete_key(self.schema_etcd_key(pattern)?, "schema.delete")
            .await
    }
}
