//! flagd's evaluation services, `flagd.evaluation.v1` and `v2`: one
//! evaluation per call, and the event stream that tells RPC providers to
//! refetch.

use std::collections::HashMap;

use futures_util::StreamExt;
use serde_json::{Map, Value};
use tonic::{Request, Response, Status};

use cfgd_flags::{Details, ErrorCode, FlagValue, Json, Reason};

use super::convert::{from_struct, to_struct};
use super::*;

/// One evaluation, as both evaluation services answer it: the value (unset
/// when the flag gave none), reason, variant and metadata; or the gRPC
/// status flagd answers for the error.
struct Answer<T> {
    value: Option<T>,
    reason: String,
    variant: Option<String>,
    metadata: Option<prost_types::Struct>,
}

impl Grpc {
    async fn evaluate<T: FlagValue>(
        &self,
        request: &Request<impl Sized>,
        key: &str,
        context: Option<&prost_types::Struct>,
        default: T,
    ) -> Result<Answer<T>, Status> {
        let namespace = self.namespace(request, "").await?;
        let flags = self.client(&namespace).await?.flags().map_err(status)?;
        let context = Value::Object(context.map(from_struct).unwrap_or_default());
        answer(flags.details(key, default, &context))
    }
}

fn answer<T>(details: Details<T>) -> Result<Answer<T>, Status> {
    if let Some(code) = details.error_code {
        let message = details
            .error_message
            .unwrap_or_else(|| code.as_str().to_owned());
        return Err(match code {
            ErrorCode::FlagNotFound => Status::not_found(message),
            ErrorCode::TypeMismatch => Status::invalid_argument(message),
            ErrorCode::ParseError => Status::data_loss(message),
            _ => Status::unknown(message),
        });
    }
    let has_value = details.variant.is_some() && details.reason != Reason::Disabled;
    Ok(Answer {
        value: has_value.then_some(details.value),
        reason: details.reason.as_str().to_owned(),
        variant: details.variant,
        metadata: (!details.metadata.is_empty()).then(|| to_struct(details.metadata)),
    })
}

/// The same evaluation service, for flagd.evaluation.v1 (plain fields) and
/// v2 (optional value and variant).
macro_rules! evaluation_service {
    ($module:ident, $optional:ident) => {
        #[tonic::async_trait]
        impl $module::service_server::Service for Grpc {
            type EventStreamStream = Stream_<$module::EventStreamResponse>;

            async fn resolve_boolean(
                &self,
                request: Request<$module::ResolveBooleanRequest>,
            ) -> Result<Response<$module::ResolveBooleanResponse>, Status> {
                let r = request.get_ref();
                let a = self.evaluate(&request, &r.flag_key, r.context.as_ref(), false).await?;
                Ok(Response::new($module::ResolveBooleanResponse {
                    value: $optional!(a.value),
                    reason: a.reason,
                    variant: $optional!(a.variant),
                    metadata: a.metadata,
                }))
            }

            async fn resolve_string(
                &self,
                request: Request<$module::ResolveStringRequest>,
            ) -> Result<Response<$module::ResolveStringResponse>, Status> {
                let r = request.get_ref();
                let a = self
                    .evaluate(&request, &r.flag_key, r.context.as_ref(), String::new())
                    .await?;
                Ok(Response::new($module::ResolveStringResponse {
                    value: $optional!(a.value),
                    reason: a.reason,
                    variant: $optional!(a.variant),
                    metadata: a.metadata,
                }))
            }

            async fn resolve_int(
                &self,
                request: Request<$module::ResolveIntRequest>,
            ) -> Result<Response<$module::ResolveIntResponse>, Status> {
                let r = request.get_ref();
                let a = self.evaluate(&request, &r.flag_key, r.context.as_ref(), 0i64).await?;
                Ok(Response::new($module::ResolveIntResponse {
                    value: $optional!(a.value),
                    reason: a.reason,
                    variant: $optional!(a.variant),
                    metadata: a.metadata,
                }))
            }

            async fn resolve_float(
                &self,
                request: Request<$module::ResolveFloatRequest>,
            ) -> Result<Response<$module::ResolveFloatResponse>, Status> {
                let r = request.get_ref();
                let a = self.evaluate(&request, &r.flag_key, r.context.as_ref(), 0f64).await?;
                Ok(Response::new($module::ResolveFloatResponse {
                    value: $optional!(a.value),
                    reason: a.reason,
                    variant: $optional!(a.variant),
                    metadata: a.metadata,
                }))
            }

            async fn resolve_object(
                &self,
                request: Request<$module::ResolveObjectRequest>,
            ) -> Result<Response<$module::ResolveObjectResponse>, Status> {
                let r = request.get_ref();
                let a = self
                    .evaluate(&request, &r.flag_key, r.context.as_ref(), Value::Null)
                    .await?;
                let value = a.value.and_then(|v| match v {
                    Value::Object(map) => Some(to_struct(map)),
                    _ => None,
                });
                Ok(Response::new($module::ResolveObjectResponse {
                    value,
                    reason: a.reason,
                    variant: $optional!(a.variant),
                    metadata: a.metadata,
                }))
            }

            async fn resolve_all(
                &self,
                request: Request<$module::ResolveAllRequest>,
            ) -> Result<Response<$module::ResolveAllResponse>, Status> {
                let namespace = self.namespace(&request, "").await?;
                let flags = self.client(&namespace).await?.flags().map_err(status)?;
                let context = Value::Object(
                    request.get_ref().context.as_ref().map(from_struct).unwrap_or_default(),
                );
                let mut out = HashMap::new();
                let snapshot = flags.snapshot();
                for key in snapshot.keys() {
                    let Ok(a) = answer(snapshot.evaluate(key, Json(Value::Null), &context)) else {
                        continue;
                    };
                    let Some(Json(value)) = a.value else { continue };
                    let value = match value {
                        Value::Bool(b) => $module::any_flag::Value::BoolValue(b),
                        Value::String(s) => $module::any_flag::Value::StringValue(s),
                        Value::Number(n) => {
                            $module::any_flag::Value::DoubleValue(n.as_f64().unwrap_or_default())
                        }
                        Value::Object(map) => $module::any_flag::Value::ObjectValue(to_struct(map)),
                        _ => continue,
                    };
                    out.insert(
                        key.to_owned(),
                        $module::AnyFlag {
                            reason: a.reason,
                            variant: $optional!(a.variant),
                            value: Some(value),
                            metadata: a.metadata,
                        },
                    );
                }
                Ok(Response::new($module::ResolveAllResponse {
                    flags: out,
                    metadata: None,
                }))
            }

            async fn event_stream(
                &self,
                request: Request<$module::EventStreamRequest>,
            ) -> Result<Response<Self::EventStreamStream>, Status> {
                let namespace = self.namespace(&request, "").await?;
                let permit = self.permit(&request, &namespace).await?;
                let client = self.client(&namespace).await?;
                let mut changes = client.subscribe_flags("").map_err(status)?;
                let mut shutdown = self.state.shutdown.subscribe();
                let state = self.state.clone();
                let event = |kind: &str, data: Option<Map<String, Value>>| {
                    Ok($module::EventStreamResponse {
                        r#type: kind.to_owned(),
                        data: data.map(to_struct),
                    })
                };
                let stream = async_stream(move |tx| async move {
                    let _open = (OpenStream::new(&state, "events"), permit);
                    if tx.send(event("provider_ready", None)).await.is_err() {
                        return;
                    }
                    let mut alive = tokio::time::interval(KEEP_ALIVE);
                    alive.tick().await;
                    loop {
                        let next = tokio::select! {
                            change = changes.next() => match change {
                                Some(change) => {
                                    let mut names = Map::new();
                                    names.insert(change.name().to_owned(), Value::Object(Map::new()));
                                    // A burst comes as one event.
                                    while let Some(Some(more)) = changes.next().now_or_never() {
                                        names.insert(more.name().to_owned(), Value::Object(Map::new()));
                                    }
                                    let data = Map::from_iter([("flags".to_owned(), Value::Object(names))]);
                                    event("configuration_change", Some(data))
                                }
                                None => return,
                            },
                            _ = alive.tick() => event("keep_alive", None),
                            _ = shutdown.wait_for(|ending| *ending) => return,
                        };
                        if tx.send(next).await.is_err() {
                            return;
                        }
                    }
                });
                Ok(Response::new(stream))
            }
        }
    };
}

macro_rules! optional {
    ($e:expr) => {
        $e
    };
}

macro_rules! plain {
    ($e:expr) => {
        $e.unwrap_or_default()
    };
}

evaluation_service!(v1, plain);
evaluation_service!(v2, optional);

use futures_util::FutureExt;
