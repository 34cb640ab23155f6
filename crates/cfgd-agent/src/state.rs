//! [`State`]: what the agent renders from (a namespace's effective values
//! and flags at one revision), and its snapshot on disk, which lets a
//! fresh agent render while etcd and the server are down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use cfgd::flags::{Bucketing, FlagSet};
use cfgd::secret::Keyring;

/// One value.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub value: Value,
    /// A secret: only into files of mode 0600 or stricter, never logged.
    pub secret: bool,
    pub revision: i64,
}

/// The namespace as the agent last read it.
#[derive(Debug, Default)]
pub struct State {
    pub values: BTreeMap<String, Item>,
    /// Flag definitions (and `$evaluators`) by name, with their revisions.
    pub flags: BTreeMap<String, (Value, i64)>,
    pub bucketing: Bucketing,
    /// The newest revision applied.
    pub revision: i64,
    /// Secrets that are there but this agent cannot open (no key, or a
    /// token without the secrets scope): missing to every template that
    /// would render them, never rendered without them.
    pub withheld: BTreeSet<String>,
    compiled: OnceLock<FlagSet>,
}

impl Clone for State {
    fn clone(&self) -> Self {
        State {
            values: self.values.clone(),
            flags: self.flags.clone(),
            bucketing: self.bucketing,
            revision: self.revision,
            withheld: self.withheld.clone(),
            compiled: OnceLock::new(),
        }
    }
}

impl State {
    /// Whether `other` renders the same as this (the revision aside).
    pub fn same_content(&self, other: &State) -> bool {
        self.values == other.values
            && self.flags == other.flags
            && self.bucketing == other.bucketing
            && self.withheld == other.withheld
    }

    /// `name` put (`Some`) or deleted, by either source: no longer withheld.
    pub fn set_value(&mut self, name: String, item: Option<Item>) {
        self.withheld.remove(&name);
        match item {
            Some(item) => self.values.insert(name, item),
            None => self.values.remove(&name),
        };
    }

    /// `name` is a secret this agent cannot open: missing, not rendered.
    pub fn withhold(&mut self, name: String) {
        self.values.remove(&name);
        self.withheld.insert(name);
    }

    /// The withheld secrets under `prefix`.
    pub fn withheld_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a String> {
        self.withheld.iter().filter(move |n| n.starts_with(prefix))
    }

    /// The flags, compiled once per state, leniently: a definition that
    /// does not compile answers its evaluations with an error, and the
    /// rest still evaluate.
    pub fn flag_set(&self) -> &FlagSet {
        self.compiled.get_or_init(|| {
            let raw: Vec<(&str, Vec<u8>, i64)> = self
                .flags
                .iter()
                .map(|(name, (def, rev))| (name.as_str(), def.to_string().into_bytes(), *rev))
                .collect();
            FlagSet::from_store(
                raw.iter().map(|(n, r, rev)| (*n, r.as_slice(), *rev)),
                self.bucketing,
                &FlagSet::default(),
            )
        })
    }

    /// The names under `prefix` and their items.
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Item)> {
        self.values
            .range(prefix.to_owned()..)
            .take_while(move |(n, _)| n.starts_with(prefix))
            .map(|(n, i)| (n.as_str(), i))
    }
}

/// The snapshot file: values in the clear, secrets sealed as etcd holds
/// them (left out when the agent has no key to seal them with).
#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    namespace: String,
    revision: i64,
    bucketing: String,
    values: BTreeMap<String, (Value, i64)>,
    #[serde(default)]
    secrets: BTreeMap<String, (String, i64)>,
    /// Secrets left out (no key to seal them with): missing when rendered
    /// from this snapshot.
    #[serde(default)]
    withheld: BTreeSet<String>,
    flags: BTreeMap<String, (Value, i64)>,
}

fn sealed_key(namespace: &str, name: &str) -> String {
    format!("cfgd-agent-snapshot/{namespace}/{name}")
}

/// The snapshot's text for `state`.
pub fn snapshot_text(state: &State, namespace: &str, keyring: Option<&Keyring>) -> String {
    let mut values = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let mut withheld = state.withheld.clone();
    for (name, item) in &state.values {
        if !item.secret {
            values.insert(name.clone(), (item.value.clone(), item.revision));
        } else if keyring.is_none() {
            withheld.insert(name.clone());
        } else if let Some(keyring) = keyring {
            let sealed = keyring.seal(
                &sealed_key(namespace, name),
                item.value.to_string().as_bytes(),
            );
            let sealed = String::from_utf8(sealed).expect("an envelope is JSON");
            secrets.insert(name.clone(), (sealed, item.revision));
        }
    }
    let snapshot = Snapshot {
        version: 1,
        namespace: namespace.to_owned(),
        revision: state.revision,
        bucketing: state.bucketing.as_str().to_owned(),
        values,
        secrets,
        withheld,
        flags: state.flags.clone(),
    };
    serde_json::to_string(&snapshot).expect("serializes")
}

/// The state a snapshot file holds.
pub fn load_snapshot(path: &Path, namespace: &str, keyring: Option<&Keyring>) -> Result<State> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the snapshot {}", path.display()))?;
    let snapshot: Snapshot = serde_json::from_str(&text)
        .map_err(|e| anyhow!("the snapshot {} is not one: {e}", path.display()))?;
    if snapshot.version != 1 {
        return Err(anyhow!(
            "the snapshot {} is of version {}, which this agent does not read",
            path.display(),
            snapshot.version
        ));
    }
    if snapshot.namespace != namespace {
        return Err(anyhow!(
            "the snapshot {} is of namespace {}, not {namespace}",
            path.display(),
            snapshot.namespace
        ));
    }
    let mut values: BTreeMap<String, Item> = snapshot
        .values
        .into_iter()
        .map(|(name, (value, revision))| {
            let item = Item {
                value,
                secret: false,
                revision,
            };
            (name, item)
        })
        .collect();
    let mut withheld = snapshot.withheld;
    for (name, (sealed, revision)) in snapshot.secrets {
        // Without the key a secret is missing, which the template's
        // `missing` policy then names.
        let Some(keyring) = keyring else {
            withheld.insert(name);
            continue;
        };
        let plain = keyring
            .open(&sealed_key(namespace, &name), sealed.as_bytes())
            .map_err(|e| anyhow!("the snapshot's secret {name}: {e}"))?;
        let value = serde_json::from_slice(&plain)
            .map_err(|e| anyhow!("the snapshot's secret {name} is not JSON: {e}"))?;
        let item = Item {
            value,
            secret: true,
            revision,
        };
        values.insert(name, item);
    }
    Ok(State {
        values,
        flags: snapshot.flags,
        bucketing: match snapshot.bucketing.as_str() {
            "v3" => Bucketing::V3,
            _ => Bucketing::V2,
        },
        revision: snapshot.revision,
        withheld,
        compiled: OnceLock::new(),
    })
}

/// A state shared by the source and every template: replaced whole.
pub type Shared = Arc<State>;
