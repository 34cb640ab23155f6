//! Console sessions after an SSO sign-in: a random secret in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` over TLS). Its digest names the
//! session in etcd ([`cfgd::sessions`]), where every replica finds it and
//! from where signing out removes it; the record holds the user's groups,
//! which are mapped to scopes at each request, so a change of `[oidc.groups]`
//! applies to sessions already open.
//!
//! Writes made with the cookie carry `X-Cfgd-Csrf`: an HMAC of the
//! session's secret, which `/v1/whoami` hands the console and which a page
//! of another site cannot read.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use base64::Engine;
use cfgd::Client;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Identity, Oidc};
use crate::error::ApiError;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "cfgd_session";
/// The header that a cookie-signed write carries.
pub(crate) const CSRF_HEADER: &str = "x-cfgd-csrf";

/// What etcd keeps of a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) email: Option<String>,
    pub(crate) groups: Vec<String>,
    /// When it ends, in milliseconds since the Unix epoch.
    pub(crate) expires_ms: u64,
}

impl Record {
    /// Who the session is, as a verified token would say.
    pub(crate) fn identity(&self) -> Identity {
        Identity {
            subject: self.subject.clone(),
            email: self.email.clone(),
            groups: self.groups.clone(),
            claims: Default::default(),
        }
    }
}

/// The value of cookie `name` in the request, if sent.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value; `max_age` 0 removes the cookie.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: Duration,
    same_site: &str,
    secure: bool,
) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite={same_site}{secure}",
        max_age.as_secs()
    );
    HeaderValue::from_str(&text).expect("cookie values are base64url")
}

/// A new random secret, as text that a cookie may hold.
pub(crate) fn random_text() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cfgd::secret::random::<32>())
}

/// The session's name in etcd: the secret's digest, never the secret.
fn id_of(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// The CSRF token of the session whose secret is `secret`.
pub(crate) fn csrf(oidc: &Oidc, secret: &str) -> String {
    hex(&crate::auth::hmac(
        &oidc.key,
        format!("csrf\0{secret}").as_bytes(),
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens a session for `identity`; its secret, for the cookie.
pub(crate) async fn open(
    store: &Client,
    oidc: &Oidc,
    identity: &Identity,
) -> Result<String, ApiError> {
    let ttl = oidc.settings.session_ttl;
    let record = Record {
        subject: identity.subject.clone(),
        email: identity.email.clone(),
        groups: identity.groups.clone(),
        expires_ms: cfgd::schedules::now() + ttl.as_millis() as u64,
    };
    let secret = random_text();
    let bytes = serde_json::to_vec(&record).expect("a record serializes");
    store.open_session(&id_of(&secret), &bytes, ttl).await?;
    Ok(secret)
}

/// The open session whose secret is `secret`, if any.
pub(crate) async fn find(store: &Client, secret: &str) -> Result<Option<Record>, ApiError> {
    if secret.is_empty() || secret.len() > 64 {
        return Ok(None);
    }
    let Some(bytes) = store.session(&id_of(secret)).await? else {
        return Ok(None);
    };
    let record: Record = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt_value",
            format!("a session record in etcd: {e}"),
        )
    })?;
    // etcd's lease ends it within a second of this anyway.
    Ok((record.expires_ms > cfgd::schedules::now()).then_some(record))
}

/// Ends the session whose secret is `secret`.
pub(crate) async fn close(store: &Client, secret: &str) -> Result<bool, ApiError> {
    if secret.is_empty() || secret.len() > 64 {
        return Ok(false);
    }
    Ok(store.close_session(&id_of(secret)).await?)
}
