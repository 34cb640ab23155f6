//! cfgd as an OpenFeature provider: services use the standard
//! `open-feature` API and cfgd evaluates from its live flags.
//!
//! The Rust SDK (0.3) has no event API yet, so configuration-changed events
//! come from [`CfgdProvider::events`]: one [`ConfigurationChanged`] per
//! change, naming the flags that changed, as the OpenFeature spec's
//! `PROVIDER_CONFIGURATION_CHANGED` event does.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, EvaluationResult, FlagMetadata, FlagMetadataValue, StructValue,
};
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::flags::{Details, ErrorCode, FlagValue, Reason, EVALUATORS};
use crate::Flags;

/// Some flags changed: the OpenFeature `PROVIDER_CONFIGURATION_CHANGED`
/// event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigurationChanged {
    /// The flags added, changed or removed (all of them when the shared
    /// evaluators changed).
    pub flags_changed: Vec<String>,
}

/// An OpenFeature provider over a live client's [`Flags`].
pub struct CfgdProvider {
    flags: Flags,
    metadata: ProviderMetadata,
    events: broadcast::Sender<ConfigurationChanged>,
    watcher: tokio::task::JoinHandle<()>,
}

impl CfgdProvider {
    /// A provider for `flags` (from [`Client::flags`](crate::Client::flags)).
    /// Needs a Tokio runtime: it watches for flag changes in a task.
    pub fn new(flags: Flags) -> Self {
        let (events, _) = broadcast::channel(64);
        let watcher = tokio::spawn(watch_changes(flags.clone(), events.clone()));
        CfgdProvider {
            flags,
            metadata: ProviderMetadata::new("cfgd"),
            events,
            watcher,
        }
    }

    /// Configuration-changed events from now on.
    pub fn events(&self) -> broadcast::Receiver<ConfigurationChanged> {
        self.events.subscribe()
    }

    fn resolve<T: FlagValue + Default>(
        &self,
        key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<T>> {
        let details: Details<T> = self.flags.details(key, T::default(), &to_json(context));
        resolution(details)
    }
}

impl Drop for CfgdProvider {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

async fn watch_changes(flags: Flags, events: broadcast::Sender<ConfigurationChanged>) {
    let mut before = flags.snapshot().fingerprint();
    loop {
        flags.changed().await;
        let after = flags.snapshot().fingerprint();
        let evaluators_changed = before.get(EVALUATORS) != after.get(EVALUATORS);
        let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        let flags_changed: Vec<String> = names
            .into_iter()
            .filter(|name| name.as_str() != EVALUATORS)
            .filter(|name| evaluators_changed || before.get(*name) != after.get(*name))
            .cloned()
            .collect();
        if !flags_changed.is_empty() {
            // No listener is fine.
            let _ = events.send(ConfigurationChanged { flags_changed });
        }
        before = after;
    }
}

/// The OpenFeature SDK does not hand the caller's default to providers, so
/// "use the caller's default" (a disabled flag, a flag without a default
/// variant) is an error result, which the SDK turns into that default.
fn resolution<T>(details: Details<T>) -> EvaluationResult<ResolutionDetails<T>> {
    if let Some(code) = details.error_code {
        let code = match code {
            ErrorCode::FlagNotFound => EvaluationErrorCode::FlagNotFound,
            ErrorCode::TypeMismatch => EvaluationErrorCode::TypeMismatch,
            ErrorCode::ParseError => EvaluationErrorCode::ParseError,
            _ => EvaluationErrorCode::General("GENERAL".into()),
        };
        return Err(EvaluationError {
            code,
            message: details.error_message,
        });
    }
    let Some(variant) = details.variant else {
        let why = match details.reason {
            Reason::Disabled => "flag is disabled",
            _ => "flag has no default variant",
        };
        return Err(EvaluationError {
            code: EvaluationErrorCode::General(why.into()),
            message: Some(format!(
                "{}: {why}; use the caller's default",
                details.flag_key
            )),
        });
    };
    let reason = match details.reason {
        Reason::Static => EvaluationReason::Static,
        Reason::Default => EvaluationReason::Default,
        Reason::TargetingMatch => EvaluationReason::TargetingMatch,
        Reason::Split => EvaluationReason::Split,
        Reason::Disabled => EvaluationReason::Disabled,
        _ => EvaluationReason::Error,
    };
    let mut metadata = FlagMetadata::default();
    for (key, value) in details.metadata {
        let value = match value {
            Value::Bool(b) => FlagMetadataValue::Bool(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => FlagMetadataValue::Int(i),
                None => FlagMetadataValue::Float(n.as_f64().unwrap_or_default()),
            },
            Value::String(s) => FlagMetadataValue::String(s),
            _ => continue,
        };
        metadata.values.insert(key, value);
    }
    Ok(ResolutionDetails {
        value: details.value,
        variant: Some(variant),
        reason: Some(reason),
        flag_metadata: Some(metadata),
    })
}

/// The context as targeting sees it: custom fields plus `targetingKey`.
fn to_json(context: &EvaluationContext) -> Value {
    let mut map = Map::new();
    for (key, value) in &context.custom_fields {
        let value = match value {
            EvaluationContextFieldValue::Bool(b) => Value::Bool(*b),
            EvaluationContextFieldValue::Int(i) => Value::from(*i),
            EvaluationContextFieldValue::Float(f) => Value::from(*f),
            EvaluationContextFieldValue::String(s) => Value::String(s.clone()),
            EvaluationContextFieldValue::DateTime(t) => Value::from(t.unix_timestamp()),
            // An opaque Rust value: a serde_json::Value is used as is.
            EvaluationContextFieldValue::Struct(any) => match any.downcast_ref::<Value>() {
                Some(v) => v.clone(),
                None => continue,
            },
        };
        map.insert(key.clone(), value);
    }
    if let Some(key) = &context.targeting_key {
        map.insert("targetingKey".into(), Value::String(key.clone()));
    }
    Value::Object(map)
}

/// An object variant as OpenFeature's `StructValue`.
#[derive(Default)]
struct Struct(StructValue);

impl FlagValue for Struct {
    const TYPE: &'static str = "object";
    fn from_variant(value: &Value) -> Option<Self> {
        let Value::Object(map) = value else {
            return None;
        };
        Some(Struct(StructValue {
            fields: map
                .iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<HashMap<_, _>>(),
        }))
    }
}

fn to_value(v: &Value) -> open_feature::Value {
    match v {
        Value::Null => open_feature::Value::Struct(StructValue::default()),
        Value::Bool(b) => open_feature::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => open_feature::Value::Int(i),
            None => open_feature::Value::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => open_feature::Value::String(s.clone()),
        Value::Array(items) => open_feature::Value::Array(items.iter().map(to_value).collect()),
        Value::Object(map) => open_feature::Value::Struct(StructValue {
            fields: map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        }),
    }
}

#[async_trait]
impl FeatureProvider for CfgdProvider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    fn status(&self) -> ProviderStatus {
        ProviderStatus::Ready
    }

    async fn resolve_bool_value(
        &self,
        key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(key, context)
    }

    async fn resolve_int_value(
        &self,
        key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(key, context)
    }

    async fn resolve_float_value(
        &self,
        key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(key, context)
    }

    async fn resolve_string_value(
        &self,
        key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(key, context)
    }

    async fn resolve_struct_value(
        &self,
        key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        let details: Details<Struct> =
            self.flags
                .details(key, Struct::default(), &to_json(context));
        resolution(Details {
            flag_key: details.flag_key,
            value: details.value.0,
            variant: details.variant,
            reason: details.reason,
            error_code: details.error_code,
            error_message: details.error_message,
            metadata: details.metadata,
        })
    }
}
