//! The sign-in routes: `GET /oidc` (is SSO on?), `GET /oidc/login` (off
//! to the issuer, with PKCE), `GET /oidc/callback` (back, into a session),
//! `POST /oidc/logout`; and the guard that refuses cookie-signed writes
//! without their CSRF token.
//!
//! The sign-in attempt (state, nonce, PKCE verifier, where to return) is
//! kept in a short-lived cookie signed with the key every replica derives
//! from the client secret, so the callback may reach any replica. Every
//! refusal is logged with its reason, and makes no session.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::session::{self, cookie, set_cookie, COOKIE, CSRF_HEADER};
use super::Oidc;
use crate::error::ApiError;
use crate::state::AppState;

/// The sign-in attempt's cookie, sent back to the `/oidc/` routes only.
const ATTEMPT: &str = "cfgd_oidc";
/// How long a person has at the issuer to sign in.
const ATTEMPT_TTL: Duration = Duration::from_secs(600);

/// What `GET /oidc` tells the console.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SsoInfo {
    /// Whether single sign-on is configured (`[oidc]`).
    enabled: bool,
    /// The issuer people sign in with.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    issuer: Option<String>,
    /// Where the console sends a person to sign in.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    login: Option<&'static str>,
}

/// One sign-in in progress, as its cookie holds it.
#[derive(Serialize, Deserialize)]
struct Attempt {
    state: String,
    nonce: String,
    verifier: String,
    return_to: String,
    expires_ms: u64,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LoginQuery {
    /// The console page to come back to (a path under `/ui/`).
    return_to: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallbackQuery {
    /// The authorization code.
    code: Option<String>,
    /// The sign-in's `state`, as sent to the issuer.
    state: Option<String>,
    /// The issuer's error, when it refused.
    error: Option<String>,
    /// The issuer's words for it.
    error_description: Option<String>,
}

fn configured(state: &AppState) -> Result<&Oidc, ApiError> {
    state.oidc.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "single sign-on is not configured: add [oidc] to the settings",
        )
    })
}

#[utoipa::path(
    get, path = "/oidc", tag = "sign-in", operation_id = "ssoInfo",
    responses((status = 200, description = "Whether SSO is on, and where to sign in", body = SsoInfo))
)]
pub(crate) async fn info(State(state): State<Arc<AppState>>) -> Response {
    let oidc = state.oidc.as_deref();
    axum::Json(SsoInfo {
        enabled: oidc.is_some(),
        issuer: oidc.map(|o| o.settings.issuer.clone()),
        login: oidc.map(|_| "/oidc/login"),
    })
    .into_response()
}

#[utoipa::path(
    get, path = "/oidc/login", tag = "sign-in", operation_id = "ssoLogin",
    params(LoginQuery),
    responses(
        (status = 303, description = "To the issuer's sign-in page (authorization code with PKCE)"),
        (status = 404, description = "SSO is not configured", body = crate::bodies::ErrorBody),
        (status = 502, description = "The issuer does not answer", body = crate::bodies::ErrorBody),
    )
)]
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    Query(query): Query<LoginQuery>,
) -> Result<Response, ApiError> {
    let oidc = configured(&state)?;
    let discovery = oidc.discovery().await.map_err(|e| {
        tracing::warn!(error = %e, "SSO sign-in: the issuer's discovery failed");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "issuer_unreachable",
            format!("the identity provider: {e}"),
        )
    })?;
    let return_to = query
        .return_to
        .filter(|r| r.starts_with("/ui/") && !r.contains("//") && !r.contains('\\'))
        .unwrap_or_else(|| "/ui/".into());
    let attempt = Attempt {
        state: session::random_text(),
        nonce: session::random_text(),
        verifier: session::random_text(),
        return_to,
        expires_ms: cfgd::schedules::now() + ATTEMPT_TTL.as_millis() as u64,
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(attempt.verifier.as_bytes()));
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &oidc.settings.client_id)
        .append_pair("redirect_uri", &oidc.settings.redirect_url)
        .append_pair("scope", &oidc.settings.scopes.join(" "))
        .append_pair("state", &attempt.state)
        .append_pair("nonce", &attempt.nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let endpoint = &discovery.authorization_endpoint;
    let join = if endpoint.contains('?') { '&' } else { '?' };
    let location = format!("{endpoint}{join}{query}");
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(|_| {
            ApiError::bad_request("the issuer's authorization endpoint is not a URL")
        })?,
    );
    // Lax: the issuer's redirect back is a navigation from another site.
    headers.append(
        header::SET_COOKIE,
        set_cookie(
            ATTEMPT,
            &seal(oidc, &attempt),
            "/oidc",
            ATTEMPT_TTL,
            "Lax",
            secure(&state),
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[utoipa::path(
    get, path = "/oidc/callback", tag = "sign-in", operation_id = "ssoCallback",
    params(CallbackQuery),
    responses(
        (status = 303, description = "Signed in: to the console, with the session cookie"),
        (status = 400, description = "Refused (the reason is logged): no sign-in in progress in this browser, a code the issuer refuses (replayed, or without its PKCE verifier), an ID token of another issuer or audience, expired or tampered", body = crate::bodies::ErrorBody),
        (status = 404, description = "SSO is not configured", body = crate::bodies::ErrorBody),
    )
)]
pub(crate) async fn callback(
    State(state): State<Arc<AppState>>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let oidc = configured(&state)?;
    let (identity, return_to) = match finish(oidc, query, &headers).await {
        Ok(done) => done,
        Err(reason) => {
            tracing::warn!(%reason, "SSO sign-in refused");
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "sign_in_refused",
                format!("sign-in refused: {reason}"),
            ));
        }
    };
    let secret = session::open(&state.sessions().await?, oidc, &identity).await?;
    let scopes = oidc.settings.scopes_of(&identity.groups);
    tracing::info!(actor = %identity.actor(), groups = ?identity.groups, namespaces = scopes.len(), "signed in with SSO");
    let mut response = StatusCode::SEE_OTHER.into_response();
    let out = response.headers_mut();
    out.insert(
        header::LOCATION,
        HeaderValue::from_str(&return_to).unwrap_or(HeaderValue::from_static("/ui/")),
    );
    out.append(
        header::SET_COOKIE,
        set_cookie(
            COOKIE,
            &secret,
            "/",
            oidc.settings.session_ttl,
            "Strict",
            secure(&state),
        ),
    );
    out.append(
        header::SET_COOKIE,
        set_cookie(ATTEMPT, "", "/oidc", Duration::ZERO, "Lax", secure(&state)),
    );
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The callback's checks, in order; the refusal's reason otherwise.
async fn finish(
    oidc: &Oidc,
    query: CallbackQuery,
    headers: &HeaderMap,
) -> Result<(super::Identity, String), String> {
    if let Some(error) = query.error {
        return Err(format!(
            "the identity provider said {error}: {}",
            query.error_description.unwrap_or_default()
        ));
    }
    let attempt = cookie(headers, ATTEMPT)
        .and_then(|sealed| open(oidc, sealed))
        .ok_or("no sign-in in progress in this browser (its PKCE verifier is missing or expired): start again")?;
    if query.state.as_deref() != Some(attempt.state.as_str()) {
        return Err("the state is not this browser's sign-in".into());
    }
    let code = query.code.ok_or("no authorization code")?;
    let tokens = oidc.exchange(&code, &attempt.verifier).await?;
    let id_token = tokens
        .get("id_token")
        .and_then(|t| t.as_str())
        .ok_or("the issuer sent no ID token")?;
    let mut identity = oidc
        .verify(id_token, &oidc.settings.client_id)
        .await
        .map_err(|e| format!("the ID token: {e}"))?;
    if identity.claims.get("nonce").and_then(|n| n.as_str()) != Some(attempt.nonce.as_str()) {
        return Err("the ID token's nonce is not this sign-in's (a replayed token?)".into());
    }
    // Some issuers put groups (and email) only in userinfo.
    let access = tokens.get("access_token").and_then(|t| t.as_str());
    if let (false, Some(access)) = (
        identity.claims.contains_key(&oidc.settings.groups_claim),
        access,
    ) {
        if let Some(claims) = oidc.userinfo(access).await? {
            let more = oidc.identity(claims);
            if more.subject != identity.subject {
                return Err("userinfo names another subject than the ID token".into());
            }
            identity.groups = more.groups;
            identity.email = identity.email.or(more.email);
        }
    }
    Ok((identity, attempt.return_to))
}

#[utoipa::path(
    post, path = "/oidc/logout", tag = "sign-in", operation_id = "ssoLogout",
    params(("X-Cfgd-Csrf" = Option<String>, Header, description = "The session's CSRF token (from GET /v1/whoami), with the session cookie")),
    responses(
        (status = 204, description = "Signed out: the session is ended on every replica and its cookie removed"),
        (status = 403, description = "The session cookie came without its CSRF token", body = crate::bodies::ErrorBody),
    )
)]
pub(crate) async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let (Some(_), Some(secret)) = (state.oidc.as_deref(), cookie(&headers, COOKIE)) {
        if session::close(&state.sessions().await?, secret).await? {
            tracing::info!("signed out of an SSO session");
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(COOKIE, "", "/", Duration::ZERO, "Strict", secure(&state)),
    );
    Ok(response)
}

/// Refuses a write signed in by the session cookie alone that does not
/// carry the session's CSRF token. A request with a bearer credential is
/// judged by it, not by the cookie, and passes on (any other
/// `Authorization` header is refused by the handler).
pub(crate) async fn csrf_guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let headers = request.headers();
    if let (false, Some(oidc), None, Some(secret)) = (
        safe,
        state.oidc.as_deref(),
        crate::auth::bearer(headers),
        cookie(headers, COOKIE),
    ) {
        let expected = session::csrf(oidc, secret);
        let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !sent.is_some_and(|sent| crate::auth::same_text(sent, &expected)) {
            tracing::warn!(
                method = %request.method(),
                path = %request.uri().path(),
                "refused: a write signed in by the session cookie without its CSRF token"
            );
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "a write signed in by the session cookie must carry X-Cfgd-Csrf (from GET /v1/whoami)",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Cookies are `Secure` when the browser reaches the server over HTTPS:
/// it serves HTTPS, or its redirect URL says a proxy in front does.
fn secure(state: &AppState) -> bool {
    state.settings.scheme() == "https"
        || state
            .oidc
            .as_ref()
            .is_some_and(|o| o.settings.redirect_url.starts_with("https://"))
}

/// The attempt as cookie text: its JSON and an HMAC of it, base64url.
fn seal(oidc: &Oidc, attempt: &Attempt) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(attempt).expect("serializes"));
    let mac = URL_SAFE_NO_PAD.encode(crate::auth::hmac(&oidc.key, body.as_bytes()));
    format!("{body}.{mac}")
}

/// The attempt a cookie holds, if its HMAC is ours and it has not expired.
fn open(oidc: &Oidc, sealed: &str) -> Option<Attempt> {
    let (body, mac) = sealed.split_once('.')?;
    let expected = URL_SAFE_NO_PAD.encode(crate::auth::hmac(&oidc.key, body.as_bytes()));
    if !crate::auth::same_text(mac, &expected) {
        return None;
    }
    let attempt: Attempt = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
    (attempt.expires_ms > cfgd::schedules::now()).then_some(attempt)
}
