//! Scheduled releases over REST (the elected worker applies them):
//! - `POST /v1/namespaces/{ns}/schedules` with `{"at": TIME, …}` and one
//!   of `"config"`/`"flags"` (a release document), `"request"` (an
//!   approved change request's id) or `"rollout": {"flag", "to", "steps"}`
//!   schedules it (write scope; `X-Cfgd-Message` is its message);
//! - `GET …/schedules`, `GET …/schedules/{id}` (read);
//! - `POST …/schedules/{id}/cancel` (write).
//!
//! `TIME` is RFC 3339 in UTC (`2026-12-04T03:00:00Z`) or `+90s`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::auth::Scope;
use super::error::ApiError;
use super::rest::ok;
use super::AppState;

/// What `POST …/schedules` takes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleBody {
    /// When: RFC 3339 in UTC, or `+` and a duration (`+90s`, `+2h`).
    #[schema(example = "2026-12-04T03:00:00Z")]
    at: Option<String>,
    /// A release's values, name → value.
    #[serde(default)]
    config: Option<Map<String, Value>>,
    /// A release's flags, as a flagd document.
    #[serde(default)]
    flags: Option<Map<String, Value>>,
    /// An approved change request to merge then, as it is now.
    #[serde(default)]
    request: Option<String>,
    /// A flag's rollout in steps (`at` is then not given).
    #[serde(default)]
    rollout: Option<RolloutBody>,
}

/// A rollout in steps.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolloutBody {
    /// The flag.
    flag: String,
    /// The variant rolled out; for a flag of two variants, the one that is
    /// not the default unless given.
    #[serde(default)]
    to: Option<String>,
    /// `10%@TIME,50%@TIME,100%@TIME`.
    #[schema(example = "10%@+1h,50%@+1d,100%@+2d")]
    steps: String,
}

#[utoipa::path(
    post, path = "/v1/namespaces/{ns}/schedules", tag = "governance", operation_id = "createSchedule",
    params(crate::params::NsPath, crate::params::Message),
    request_body(content = ScheduleBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Scheduled: the schedules made (one per rollout step)", body = Vec<cfgd::schedules::Schedule>),
        (status = 400, description = "A time in the past or unreadable, bad steps, a request not approved", body = crate::bodies::ErrorBody),
        (status = 404, description = "No such change request, or flag to roll out", body = crate::bodies::ErrorBody),
        (status = 422, description = "A value fails the schema that governs it", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    let body: ScheduleBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be {{\"at\": TIME, \"config\": {{...}}, \"flags\": {{...}}}}, {{\"at\", \"request\"}} or {{\"rollout\": {{\"flag\", \"steps\"}}}}: {e}"
        ))
    })?;
    let now = cfgd::schedules::now();
    let at = || -> Result<u64, ApiError> {
        let at = body
            .at
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("\"at\" is missing: when the schedule applies"))?;
        Ok(cfgd::schedules::parse_time(at, now)?)
    };
    let kinds = [
        body.config.is_some() || body.flags.is_some(),
        body.request.is_some(),
        body.rollout.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(ApiError::bad_request(
            "give one of: \"config\"/\"flags\" (a release), \"request\" or \"rollout\"",
        ));
    }
    let made = if let Some(rollout) = &body.rollout {
        if body.at.is_some() {
            return Err(ApiError::bad_request(
                "a rollout's times are in its steps: leave \"at\" out",
            ));
        }
        let steps = cfgd::schedules::parse_steps(&rollout.steps, now)?;
        client
            .schedule_rollout(&rollout.flag, rollout.to.as_deref(), &steps)
            .await?
    } else if let Some(request) = &body.request {
        vec![client.schedule_request(request, at()?).await?]
    } else {
        let config = Value::Object(body.config.clone().unwrap_or_default()).to_string();
        let flags = body.flags.clone().map(|f| Value::Object(f).to_string());
        vec![
            client
                .schedule_release(&config, flags.as_deref(), at()?)
                .await?,
        ]
    };
    Ok(ok(&made))
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/schedules", tag = "governance", operation_id = "listSchedules",
    params(crate::params::NsPath),
    responses((status = 200, description = "Schedules, soonest first", body = Vec<cfgd::schedules::Schedule>))
)]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    Ok(ok(&client.schedules().await?))
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/schedules/{id}", tag = "governance", operation_id = "showSchedule",
    params(crate::params::IdPath),
    responses(
        (status = 200, description = "The schedule", body = cfgd::schedules::Schedule),
        (status = 404, description = "No such schedule", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    Path((ns, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    Ok(ok(&client.schedule(&id).await?))
}

#[utoipa::path(
    post, path = "/v1/namespaces/{ns}/schedules/{id}/cancel", tag = "governance", operation_id = "cancelSchedule",
    params(crate::params::IdPath),
    responses(
        (status = 200, description = "Cancelled", body = cfgd::schedules::Schedule),
        (status = 400, description = "It is not pending", body = crate::bodies::ErrorBody),
        (status = 404, description = "No such schedule", body = crate::bodies::ErrorBody),
    )
)]
pub(super) async fn cancel(
    State(state): State<Arc<AppState>>,
    Path((ns, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.authorized(&headers, &ns, Scope::Write).await?;
    Ok(ok(&client.cancel_schedule(&id).await?))
}
