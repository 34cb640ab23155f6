//! The audit trail over REST: `GET /v1/namespaces/{ns}/audit?prefix=&actor=&limit=`,
//! newest first, as `cfgctl log` shows it. Read scope.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::auth::Scope;
use super::error::ApiError;
use super::rest::ok;
use super::AppState;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Only records that touched a name under this prefix.
    #[serde(default)]
    #[param(required = false, value_type = cfgd::openapi::Prefix)]
    prefix: String,
    /// Only records of this actor.
    actor: Option<String>,
    /// How many (100 unless given).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/audit", tag = "governance", operation_id = "listAudit",
    params(crate::params::NsPath, AuditQuery),
    responses((status = 200, description = "Audit records, newest first", body = Vec<cfgd::audit::AuditRecord>))
)]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    Path(ns): Path<String>,
    Query(query): Query<AuditQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let limit = crate::params::limit(query.limit, 100)?;
    let client = state.authorized(&headers, &ns, Scope::Read).await?;
    let records = client
        .audit_log(&query.prefix, query.actor.as_deref(), limit)
        .await?;
    Ok(ok(&records))
}
