//! Overlays, for gray releases ([`crate::overlays`]): their settings and
//! values under `{root}/{ns}/overlays/{overlay}/`, reads as a client with
//! given labels sees them, and the end of a gray release: promote (the
//! overlay's values into the own layer, one release) or abandon.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::handle::{Client, Entry};
use super::layered::stored_entry;
use super::releases::{Release, ReleasePlan, Write};
use crate::effective;
use crate::error::{Error, Result};
use crate::key::{self, Kind};
use crate::layers;
use crate::mirror::{Layer, Stored};
use crate::overlays::{Labels, Overlay};
use crate::types::{Revision, Source};
use crate::value;

/// One overlay as stored ([`Client::overlays`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct OverlayEntry {
    /// Its name.
    pub name: String,
    /// Who sees it.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: Overlay,
    /// Its values by name (an unset marker hides the name from those who
    /// see the overlay: a gray deletion).
    pub values: BTreeMap<String, Value>,
    /// Its flags by name: whole definitions that replace the namespace's
    /// for those who see the overlay.
    pub flags: BTreeMap<String, Value>,
}

/// What one overlay holds ([`Client::overlay_keys`]).
#[derive(Default)]
struct OverlayKeys {
    /// Each of its keys, and the revision it was read at.
    keys: Vec<(String, Revision)>,
    values: BTreeMap<String, Value>,
    flags: BTreeMap<String, Value>,
}

impl Client {
    fn overlay_key(&self, overlay: &str, rest: &str) -> Result<String> {
        crate::overlays::validate_overlay_name(overlay).map_err(|e| Error::InvalidOverlay {
            key: self.state.space.key_unchecked(Kind::Overlays, overlay),
            reason: e.to_string(),
        })?;
        Ok(self
            .state
            .space
            .key_unchecked(Kind::Overlays, &format!("{overlay}/{rest}")))
    }

    /// Stores overlay `overlay`'s settings (who sees it), creating it.
    /// Refused ([`Error::InvalidOverlay`]) unless they are valid.
    pub async fn set_overlay_json(&self, overlay: &str, json: &str) -> Result<Revision> {
        let key = self.overlay_key(overlay, "meta")?;
        let settings = Overlay::parse(json).map_err(|e| Error::InvalidOverlay {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        let bytes = value::encode(&key, &settings)?;
        self.put(key, bytes, "overlay.set").await
    }

    /// Stores `name`'s value in overlay `overlay` (JSON text; the unset
    /// marker hides the name from the overlay's clients). The overlay must
    /// exist.
    pub async fn set_in_overlay(&self, overlay: &str, name: &str, json: &str) -> Result<Revision> {
        key::validate_name(name)?;
        let meta = self.overlay_key(overlay, "meta")?;
        if self.fetch(&meta, None).await?.is_none() {
            return Err(Error::NotFound {
                key: meta,
                revision: None,
            });
        }
        let key = self.overlay_key(overlay, &format!("config/{name}"))?;
        let bytes = value::compact_text(&key, json)?;
        self.put(key, bytes, "overlay.set").await
    }

    /// Stores flag `name`'s definition in overlay `overlay`: the clients
    /// who see the overlay evaluate it instead of the namespace's (the
    /// unset marker hides the flag from them). Checked as
    /// [`set_flag`](Self::set_flag) checks one. The overlay must exist.
    pub async fn set_flag_in_overlay(
        &self,
        overlay: &str,
        name: &str,
        definition: &Value,
    ) -> Result<Revision> {
        let meta = self.overlay_key(overlay, "meta")?;
        if self.fetch(&meta, None).await?.is_none() {
            return Err(Error::NotFound {
                key: meta,
                revision: None,
            });
        }
        let bytes = if layers::is_unset(definition) {
            key::validate_name(name)?;
            value::encode(&meta, definition)?
        } else {
            self.checked_flag(name, definition).await?.1
        };
        let key = self.overlay_key(overlay, &format!("flags/{name}"))?;
        self.put(key, bytes, "overlay.set").await
    }

    /// The namespace's overlays, by name, read from etcd.
    pub async fn overlays(&self) -> Result<Vec<OverlayEntry>> {
        let mut out: BTreeMap<String, OverlayEntry> = BTreeMap::new();
        for kv in self.list_raw(Kind::Overlays, "").await? {
            let Some(name) = self.state.space.name_of(Kind::Overlays, kv.key()) else {
                continue;
            };
            let Some((overlay, rest)) = name.split_once('/') else {
                continue;
            };
            let entry = out
                .entry(overlay.to_owned())
                .or_insert_with(|| OverlayEntry {
                    name: overlay.to_owned(),
                    settings: Overlay::default(),
                    values: BTreeMap::new(),
                    flags: BTreeMap::new(),
                });
            let text = String::from_utf8_lossy(kv.value());
            if rest == "meta" {
                entry.settings = Overlay::parse(&text).unwrap_or_default();
            } else if let Some(value_name) = rest.strip_prefix("config/") {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let plain = self.opened(&key, kv.value())?;
                let value =
                    serde_json::from_slice(&plain).unwrap_or(Value::String(text.into_owned()));
                entry.values.insert(value_name.to_owned(), value);
            } else if let Some(flag) = rest.strip_prefix("flags/") {
                let value =
                    serde_json::from_slice(kv.value()).unwrap_or(Value::String(text.into_owned()));
                entry.flags.insert(flag.to_owned(), value);
            }
        }
        Ok(out.into_values().collect())
    }

    /// Removes overlay `overlay` and its values, in one transaction with
    /// its audit record; `None` when there was no such overlay.
    pub async fn abandon_overlay(&self, overlay: &str) -> Result<Option<Release>> {
        let keys = self.overlay_keys(overlay).await?.keys;
        if keys.is_empty() {
            return Ok(None);
        }
        let writes = keys
            .into_iter()
            .map(|(key, before)| Write {
                key,
                bytes: None,
                before,
            })
            .collect();
        let plan = ReleasePlan::of(writes, Vec::new(), Vec::new());
        self.publish_as(&plan, "release.abandon", None).await
    }

    /// Ends a gray release: overlay `overlay`'s values, each laid over the
    /// own layer's, are written to the own layer, and the overlay is
    /// removed, as one release (one transaction, one audit record), so that
    /// every client then sees them without the overlay. An unset in the
    /// overlay deletes the own value, or unsets it when a lower layer gives
    /// one. `None` when there was no such overlay.
    pub async fn promote_overlay(&self, overlay: &str) -> Result<Option<Release>> {
        let OverlayKeys {
            keys,
            values,
            flags,
        } = self.overlay_keys(overlay).await?;
        if keys.is_empty() {
            return Ok(None);
        }
        let mut writes = Vec::new();
        let mut pairs = Vec::new();
        for (name, value) in &values {
            let key = self.etcd_key(name)?;
            let layers = self.layer_entries(Kind::Config, name).await?;
            let own_layer = layers.iter().rev().find(|l| !l.overlay);
            let own = own_layer.and_then(|l| l.get(Kind::Config, name));
            let own_value: Option<Value> = own
                .as_ref()
                .and_then(|s| serde_json::from_slice(&s.raw).ok());
            let below = layers.len() > 1
                && layers[..layers.len() - 1]
                    .iter()
                    .any(|l| l.get(Kind::Config, name).is_some());
            let merged = layers::merge([("own", own_value.as_ref()), (overlay, Some(value))]);
            let next = match (merged, below) {
                (Some(v), _) => Some(v),
                (None, true) => Some(serde_json::json!({ layers::UNSET: true })),
                (None, false) => None,
            };
            if next.is_none() && own.is_none() {
                continue;
            }
            let bytes = next.as_ref().map(|v| value::encode(&key, v)).transpose()?;
            if let Some(bytes) = &bytes {
                self.check_reach(name, Some(bytes), None).await?;
            }
            pairs.push((name.clone(), own_value, next));
            writes.push(Write {
                key,
                bytes,
                before: own.map_or(0, |s| s.revision),
            });
        }
        for (name, definition) in flags {
            let key = self.flag_etcd_key(&name)?;
            let own = self.fetch(&key, None).await?;
            let bytes = if layers::is_unset(&definition) {
                // Gone for everyone: the namespace's own flag goes, or an
                // unset hides an inherited one.
                let layers = self.layer_entries(Kind::Flags, &name).await?;
                let below = layers
                    .iter()
                    .filter(|l| !l.overlay)
                    .rev()
                    .skip(1)
                    .any(|l| l.get(Kind::Flags, &name).is_some());
                if !below && own.is_none() {
                    continue;
                }
                below
                    .then(|| value::encode(&key, &definition))
                    .transpose()?
            } else {
                Some(value::encode(&key, &definition)?)
            };
            let before: Option<Value> = own
                .as_ref()
                .and_then(|kv| serde_json::from_slice(kv.value()).ok());
            let after = bytes.as_ref().and_then(|b| serde_json::from_slice(b).ok());
            pairs.push((format!("flags/{name}"), before, after));
            writes.push(Write {
                key,
                bytes,
                before: own.map_or(0, |kv| kv.mod_revision()),
            });
        }
        let changes = crate::diff::diff_named(
            pairs
                .iter()
                .map(|(n, b, a)| (n.as_str(), b.as_ref(), a.as_ref())),
        );
        writes.extend(keys.into_iter().map(|(key, before)| Write {
            key,
            bytes: None,
            before,
        }));
        let plan = ReleasePlan::of(writes, changes, Vec::new());
        self.publish_as(&plan, "release.promote", None).await
    }

    /// Every key of overlay `overlay` with its revision, and its values and
    /// flags by name, in one read.
    async fn overlay_keys(&self, overlay: &str) -> Result<OverlayKeys> {
        let start = self.overlay_key(overlay, "")?;
        let mut read = OverlayKeys::default();
        for kv in self.list_keys(start.clone()).await? {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let rest = &key[start.len()..];
            if let Some(name) = rest.strip_prefix("config/") {
                let plain = self.opened(&key, kv.value())?;
                let value = value::decode::<Value>(&key, kv.mod_revision(), &plain)?;
                read.values.insert(name.to_owned(), value);
            } else if let Some(flag) = rest.strip_prefix("flags/") {
                let text = String::from_utf8_lossy(kv.value());
                let value =
                    serde_json::from_slice(kv.value()).unwrap_or(Value::String(text.into_owned()));
                read.flags.insert(flag.to_owned(), value);
            }
            read.keys.push((key, kv.mod_revision()));
        }
        Ok(read)
    }

    /// `name` as a client with `labels` sees it: the effective value with
    /// the overlays the labels select laid over it (what REST's
    /// `X-Cfgd-Labels` reads). Without labels, [`get_entry`](Self::get_entry).
    pub async fn get_entry_labeled(
        &self,
        name: &str,
        labels: &Labels,
    ) -> Result<Option<Entry<Value>>> {
        if labels.is_empty() {
            return self.get_entry(name).await;
        }
        let key = self.etcd_key(name)?;
        let mut layers = self.layer_entries(Kind::Config, name).await?;
        // A labelled live client's own mirror already holds its overlays.
        layers.retain(|l| !l.overlay);
        let overlays: Vec<(String, Stored)> = match &self.state.live {
            Some(live) => {
                let mirror = live.read();
                mirror
                    .own(Kind::Overlays)
                    .entries
                    .iter()
                    .map(|(n, s)| (n.to_string(), s.clone()))
                    .collect()
            }
            None => self
                .list_raw(Kind::Overlays, "")
                .await?
                .iter()
                .filter_map(|kv| {
                    let name = self.state.space.name_of(Kind::Overlays, kv.key())?;
                    Some((name.to_owned(), Stored::from_etcd(kv)))
                })
                .collect(),
        };
        let chosen =
            crate::namespace::chosen(overlays.iter().map(|(n, s)| (n.as_str(), s)), labels);
        for overlay in chosen {
            let wanted = format!("{overlay}/config/{name}");
            let mut layer = Layer::new(
                crate::namespace::overlay_layer(self.namespace(), &overlay).into(),
                String::new(),
            );
            layer.overlay = true;
            if let Some((_, stored)) = overlays.iter().find(|(n, _)| *n == wanted) {
                let mut stored = stored.clone();
                let overlay_key = self.overlay_key(&overlay, &format!("config/{name}"))?;
                stored.raw = self.opened(&overlay_key, &stored.raw)?.into_owned().into();
                layer
                    .section_mut(Kind::Config)
                    .entries
                    .insert(name.into(), stored);
            }
            layers.push(layer);
        }
        effective::effective(&layers, Kind::Config, name)
            .map(|(stored, _)| stored_entry(&key, name, &stored, Source::Cache))
            .transpose()
    }
}
