//! [`FlagSet`]: a namespace's flags, compiled, and evaluated by name.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::definition::{kind_of, Check, Flag};
use crate::evaluation::Resolution;
use crate::*;

/// A set of flags with their shared evaluators and metadata, compiled, ready
/// to evaluate. Cheap to clone.
#[derive(Clone, Default)]
pub struct FlagSet {
    /// Every evaluation looks its flag up here: foldhash rather than
    /// SipHash, as only the set's own names are ever inserted.
    flags: Arc<foldhash::HashMap<String, Arc<Flag>>>,
    metadata: Arc<Map<String, Value>>,
    /// For a set built from etcd: the revision each flag was compiled from,
    /// and that of `$evaluators`, so a rebuild recompiles only what changed.
    revisions: Arc<HashMap<String, i64>>,
    evaluators_revision: i64,
    /// How `fractional` buckets, for every flag of the set.
    bucketing: Bucketing,
}

impl std::fmt::Debug for FlagSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagSet")
            .field("flags", &self.flags.len())
            .finish_non_exhaustive()
    }
}

impl FlagSet {
    /// Loads a flagd document: `{"flags": {...}, "$evaluators": {...},
    /// "metadata": {...}}`. As flagd does with its files, a flag whose
    /// targeting cannot be compiled is still loaded and reports
    /// `PARSE_ERROR` when evaluated; use [`validate_document`] to refuse it.
    pub fn from_document(document: &str) -> Result<FlagSet> {
        FlagSet::from_document_with(document, Bucketing::V2)
    }

    /// [`from_document`](Self::from_document), with `fractional` bucketing
    /// as `bucketing` says.
    pub fn from_document_with(document: &str, bucketing: Bucketing) -> Result<FlagSet> {
        let parsed = parse_document(document)?;
        let mut flags =
            foldhash::HashMap::with_capacity_and_hasher(parsed.flags.len(), Default::default());
        for (name, definition) in &parsed.flags {
            let flag = Flag::parse(definition, &parsed.evaluators, Check::Lenient, bucketing)
                .map_err(|reason| InvalidFlag {
                    key: name.clone(),
                    reason,
                })?;
            flags.insert(name.clone(), Arc::new(flag));
        }
        Ok(FlagSet {
            flags: Arc::new(flags),
            metadata: Arc::new(parsed.metadata),
            bucketing,
            ..FlagSet::default()
        })
    }

    /// Whether both were built from the same stored revisions, with the
    /// same bucketing.
    pub fn same_revisions(&self, other: &FlagSet) -> bool {
        self.evaluators_revision == other.evaluators_revision
            && self.revisions == other.revisions
            && self.bucketing == other.bucketing
    }

    /// How `fractional` buckets in this set.
    pub fn bucketing(&self) -> Bucketing {
        self.bucketing
    }

    /// Builds the set from stored definitions (name → (JSON, revision)),
    /// reusing every compiled flag of `previous` whose definition and
    /// evaluators have not changed. A definition that does not even parse
    /// is kept as a flag that answers `PARSE_ERROR`. A change of
    /// `bucketing` recompiles every flag.
    pub fn from_store<'a>(
        stored: impl Iterator<Item = (&'a str, &'a [u8], i64)>,
        bucketing: Bucketing,
        previous: &FlagSet,
    ) -> FlagSet {
        let mut definitions = Vec::new();
        let mut evaluators = (Evaluators::new(), 0);
        for (name, raw, revision) in stored {
            if name == EVALUATORS {
                if let Ok(Value::Object(map)) = serde_json::from_slice(raw) {
                    evaluators = (map, revision);
                }
            } else {
                definitions.push((name, raw, revision));
            }
        }
        let same_evaluators =
            evaluators.1 == previous.evaluators_revision && bucketing == previous.bucketing;
        let mut flags =
            foldhash::HashMap::with_capacity_and_hasher(definitions.len(), Default::default());
        let mut revisions = HashMap::with_capacity(definitions.len());
        for (name, raw, revision) in definitions {
            let reuse = same_evaluators
                && previous.revisions.get(name) == Some(&revision)
                && previous.flags.contains_key(name);
            let flag = if reuse {
                previous.flags[name].clone()
            } else {
                let parsed = serde_json::from_slice(raw)
                    .map_err(|e| format!("not valid JSON: {e}"))
                    .and_then(|def| Flag::parse(&def, &evaluators.0, Check::Lenient, bucketing));
                Arc::new(parsed.unwrap_or_else(Flag::broken))
            };
            flags.insert(name.to_owned(), flag);
            revisions.insert(name.to_owned(), revision);
        }
        FlagSet {
            flags: Arc::new(flags),
            metadata: Arc::default(),
            revisions: Arc::new(revisions),
            evaluators_revision: evaluators.1,
            bucketing,
        }
    }

    /// Evaluates `key` as a `T`, never failing: problems give `default`
    /// with a reason and error code saying why.
    pub fn evaluate<T: FlagValue>(&self, key: &str, default: T, context: &Value) -> Details<T> {
        let flag = self.flags.get(key);
        let resolution = match flag {
            Some(flag) => flag.resolve(key, context),
            None => Resolution::error(ErrorCode::FlagNotFound, format!("flag {key:?} not found")),
        };
        let mut metadata = Map::new();
        if let Some(flag) = flag {
            // The flag's entries override the set's. Most have none, and
            // extending by nothing would still reserve.
            for source in [&*self.metadata, &flag.metadata] {
                if !source.is_empty() {
                    metadata.extend(source.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut details = Details {
            flag_key: key.to_owned(),
            value: default,
            variant: None,
            reason: resolution.reason,
            error_code: resolution.error.as_ref().map(|(c, _)| *c),
            error_message: resolution.error.map(|(_, m)| m),
            metadata,
        };
        if let Some(value) = resolution.value {
            match T::from_variant(value) {
                Some(typed) => {
                    details.value = typed;
                    details.variant = resolution.variant.map(str::to_owned);
                }
                None => {
                    details.reason = Reason::Error;
                    details.error_code = Some(ErrorCode::TypeMismatch);
                    details.error_message = Some(format!(
                        "{key}: variant {:?} is {}, not {}",
                        resolution.variant.unwrap_or_default(),
                        kind_of(value),
                        T::TYPE
                    ));
                }
            }
        }
        details
    }

    /// Each flag's name and the revision it was compiled from (0 for a set
    /// loaded from a document), and the evaluators' revision under
    /// [`EVALUATORS`]: what tells two builds apart.
    pub fn fingerprint(&self) -> HashMap<String, i64> {
        let mut out: HashMap<String, i64> = self
            .flags
            .keys()
            .map(|k| (k.clone(), self.revisions.get(k).copied().unwrap_or(0)))
            .collect();
        out.insert(EVALUATORS.to_owned(), self.evaluators_revision);
        out
    }

    /// Names of the flags in the set, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.keys().map(String::as_str)
    }
}
