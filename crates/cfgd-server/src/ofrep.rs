//! OFREP, the OpenFeature Remote Evaluation Protocol: any OpenFeature SDK's
//! stock OFREP provider evaluates cfgd flags with no cfgd-specific code.
//! The bulk answer names an SSE change stream (`eventStreams`), so a web
//! provider refetches as soon as a flag changes instead of on a timer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::auth::Scope;
use super::error::ApiError;
use super::rest::hex;
use super::AppState;
use crate::bodies::{
    BulkEvaluation, Endpoint, Evaluated, Evaluation, EvaluationFailed, EventStreamRef,
};
use cfgd_flags::{Details, ErrorCode, Json as AnyJson, Reason};

/// The namespace: the token's, when it is scoped to exactly one; else the
/// `X-Cfgd-Namespace` header's.
async fn namespace(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(ns) = headers.get("x-cfgd-namespace") {
        return ns
            .to_str()
            .map(str::to_owned)
            .map_err(|_| ApiError::bad_request("X-Cfgd-Namespace is not text"));
    }
    if !state.settings.no_auth {
        // Which token is it? Checking it for an impossible namespace tells
        // us nothing, so look it up by its scopes instead.
        if let Some(caller) = state.caller(headers).await? {
            let mut names = caller.scopes.keys().filter(|n| n.as_str() != "*");
            if let (Some(only), None, false) =
                (names.next(), names.next(), caller.scopes.contains_key("*"))
            {
                return Ok(only.clone());
            }
        }
    }
    Err(ApiError::bad_request(
        "which namespace? send X-Cfgd-Namespace (the token is not scoped to exactly one)",
    ))
}

fn context(state: &AppState, body: &Bytes) -> Result<Value, ApiError> {
    if body.len() > state.settings.max_context_bytes {
        state.metrics.refused("context");
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the evaluation request is {} bytes; at most {} (max_context_bytes)",
                body.len(),
                state.settings.max_context_bytes
            ),
        ));
    }
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    if request.is_null() {
        return Ok(Value::Object(Map::new()));
    }
    if !request.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a JSON object: {\"context\": {...}}",
        ));
    }
    match request.get("context") {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(Value::Object(c)) => Ok(Value::Object(c.clone())),
        Some(_) => Err(ApiError::bad_request("context must be a JSON object")),
    }
}

/// One evaluation as OFREP writes it, and whether it is an error (and so
/// its HTTP status when alone).
fn render(details: Details<AnyJson>) -> (StatusCode, Evaluation) {
    let key = details.flag_key;
    if let Some(code) = details.error_code {
        let status = match code {
            ErrorCode::FlagNotFound => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        let error_code = match code {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            _ => "GENERAL",
        };
        return (
            status,
            Evaluation::Failed(EvaluationFailed {
                key,
                error_code,
                error_details: details.error_message,
            }),
        );
    }
    debug_assert!(details.reason != Reason::Error);
    // No variant (disabled, or no default variant): no value, and the
    // provider answers with the caller's default.
    let value = details.variant.is_some().then_some(details.value.0);
    (
        StatusCode::OK,
        Evaluation::Evaluated(Evaluated {
            key,
            reason: details.reason.as_str().to_owned(),
            variant: details.variant,
            value,
            metadata: details.metadata,
        }),
    )
}

/// What every OFREP request needs: the namespace's flags, after the token
/// is checked, and the evaluation context from the body.
async fn request(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(cfgd::Flags, Value), ApiError> {
    let (_, flags, context) = request_in(state, headers, body).await?;
    Ok((flags, context))
}

async fn request_in(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(String, cfgd::Flags, Value), ApiError> {
    let ns = namespace(state, headers).await?;
    let client = state.authorized(headers, &ns, Scope::Read).await?;
    Ok((ns, client.flags()?, context(state, body)?))
}

/// The flag configuration's ETag: a digest of every flag's revision, the
/// same whatever the context. What a `refetchEvaluation` event carries.
fn config_etag(set: &cfgd_flags::FlagSet) -> String {
    let mut fingerprint: Vec<(String, i64)> = set.fingerprint().into_iter().collect();
    fingerprint.sort();
    hex(
        &Sha256::digest(serde_json::to_vec(&fingerprint).expect("serializes")),
        16,
    )
}

/// The ticket of namespace `ns`'s change stream: a browser's EventSource
/// cannot send a token, so the bulk answer hands its caller this instead,
/// good for nothing but hearing that `ns`'s flags changed.
fn ticket(state: &AppState, ns: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(state.stream_secret);
    hasher.update(ns.as_bytes());
    hex(&hasher.finalize(), 16)
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct BulkQuery {
    /// The configuration ETag a change event named: wait a moment for this
    /// replica to reach it.
    #[serde(rename = "flagConfigEtag")]
    flag_config_etag: Option<String>,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// The namespace whose flag changes to hear.
    #[param(value_type = cfgd::openapi::Namespace)]
    namespace: String,
    /// The ticket from a bulk evaluation's `eventStreams`.
    #[serde(default)]
    ticket: String,
}

/// `GET /ofrep/v1/events?namespace=NS&ticket=T`: OFREP's change
/// notifications (event-streams ADR). One `refetchEvaluation` event, with
/// the new configuration ETag, per burst of flag changes.
#[utoipa::path(
    get, path = "/ofrep/v1/events", tag = "ofrep", operation_id = "ofrepEvents",
    params(EventsQuery),
    responses(
        (status = 200, description = "One `refetchEvaluation` event, with the new configuration ETag, per burst of flag changes", content_type = "text/event-stream", body = crate::bodies::RefetchEvent),
    )
)]
pub(super) async fn events(
    State(state): State<Arc<AppState>>,
    axum::extract::Query(query): axum::extract::Query<EventsQuery>,
) -> Result<Response, ApiError> {
    cfgd::validate_namespace(&query.namespace).map_err(ApiError::from)?;
    let expected = ticket(&state, &query.namespace);
    if !state.settings.no_auth && query.ticket != expected {
        return Err(ApiError::forbidden(
            "not a ticket for this namespace: take the eventStreams URL from a bulk evaluation",
        ));
    }
    let flags = state.client(&query.namespace).await?.flags()?;
    // No token comes with an EventSource: the namespace's listeners share.
    let permit = state
        .stream_permit(&format!("ofrep-events:{}", query.namespace))
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                "too many change streams are open; the provider polls meanwhile",
            )
            .retry_after(super::limits::RETRY_AFTER_SECS)
        })?;
    let events = futures_util::stream::unfold((flags, permit), |(flags, permit)| async move {
        flags.changed().await;
        // A burst of changes is one event.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let data = json!({"type": "refetchEvaluation", "etag": config_etag(&flags.snapshot())});
        Some((Bytes::from(format!("data: {data}\n\n")), (flags, permit)))
    });
    Ok(super::sse::EventStream::response(Box::pin(events), &state))
}

#[utoipa::path(
    post, path = "/ofrep/v1/evaluate/flags/{key}", tag = "ofrep", operation_id = "ofrepEvaluateFlag",
    params(("key" = String, Path, description = "The flag's key", example = "new-checkout"), crate::params::OfrepNamespace),
    request_body(content = Option<crate::bodies::EvaluationRequest>, description = "The evaluation context; absent: an empty one", content_type = "application/json"),
    responses(
        (status = 200, description = "The flag evaluated", body = crate::bodies::Evaluated),
        (status = 400, description = "The request, or the evaluation, failed", body = crate::bodies::OfrepBad),
        (status = 404, description = "No such flag", body = crate::bodies::EvaluationFailed),
    )
)]
pub(super) async fn evaluate_one(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (flags, context) = request(&state, &headers, &body).await?;
    let (status, body) = render(flags.details(&key, AnyJson(Value::Null), &context));
    Ok((status, Json(body)).into_response())
}

#[utoipa::path(
    post, path = "/ofrep/v1/evaluate/flags", tag = "ofrep", operation_id = "ofrepEvaluateAll",
    params(BulkQuery, crate::params::OfrepNamespace, crate::params::DocumentPreconditions),
    request_body(content = Option<crate::bodies::EvaluationRequest>, description = "The evaluation context; absent: an empty one", content_type = "application/json"),
    responses(
        (status = 200, description = "Every flag evaluated, and the change stream to listen to", body = crate::bodies::BulkEvaluation, headers(("ETag" = String, description = "A digest of the flags and the context"))),
        (status = 304, description = "Not modified", headers(("ETag" = String))),
    )
)]
pub(super) async fn evaluate_all(
    State(state): State<Arc<AppState>>,
    axum::extract::Query(query): axum::extract::Query<BulkQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (ns, flags, context) = request_in(&state, &headers, &body).await?;
    let mut set = flags.snapshot();
    // Asked for after a change event: give this replica a moment to reach
    // the configuration the event named, rather than answer older flags.
    if let Some(wanted) = &query.flag_config_etag {
        for _ in 0..20 {
            if config_etag(&set) == *wanted {
                break;
            }
            let changed = flags.changed();
            let _ = tokio::time::timeout(std::time::Duration::from_millis(50), changed).await;
            set = flags.snapshot();
        }
    }
    // The answer depends on the flags and the context only: hash both.
    let mut fingerprint: Vec<(String, i64)> = set.fingerprint().into_iter().collect();
    fingerprint.sort();
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&fingerprint).expect("serializes"));
    hasher.update(serde_json::to_vec(&context).expect("serializes"));
    let digest = hasher.finalize();
    let tag = format!("\"{}\"", hex(&digest, 16));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let etag = HeaderValue::from_str(&tag).expect("hex is a valid header");
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let mut keys: Vec<&str> = set.keys().collect();
    keys.sort_unstable();
    let flags = keys
        .into_iter()
        .map(|key| render(set.evaluate(key, AnyJson(Value::Null), &context)).1)
        .collect();
    let events = format!(
        "/ofrep/v1/events?namespace={ns}&ticket={}",
        ticket(&state, &ns)
    );
    Ok((
        StatusCode::OK,
        [(header::ETAG, etag)],
        Json(BulkEvaluation {
            flags,
            event_streams: vec![EventStreamRef {
                kind: "sse",
                endpoint: Endpoint {
                    request_uri: events,
                },
            }],
        }),
    )
        .into_response())
}
