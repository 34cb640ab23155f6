//! Bearer tokens with per-namespace scopes.

use std::collections::HashMap;

use axum::http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// What a token may do in a namespace; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read config and flags, evaluate flags, watch.
    Read,
    /// Also write and delete.
    Write,
    /// Also read the plaintext of secrets (names the policy calls
    /// `secrets`), which every other read shows as `"<redacted>"`.
    Secrets,
    /// Everything.
    Admin,
}

impl Scope {
    /// `read`, `write`, `secrets` or `admin`, as the settings write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Secrets => "secrets",
            Scope::Admin => "admin",
        }
    }
}

/// One `[[tokens]]` entry of the settings file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// A name for logs and metrics (the secret is never logged).
    pub name: String,
    /// The bearer secret as sent by clients.
    #[serde(default)]
    pub secret: Option<String>,
    /// Or its SHA-256, hex, so the file need not hold the secret.
    #[serde(default)]
    pub secret_sha256: Option<String>,
    /// Namespace (or `"*"` for any) → scope.
    pub scopes: HashMap<String, Scope>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so that no secret reaches a log.
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl Token {
    pub(super) fn validate(&self) -> Result<(), String> {
        match (&self.secret, &self.secret_sha256) {
            (Some(s), None) if !s.is_empty() => {}
            (None, Some(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {}
            (None, Some(_)) => {
                return Err(format!(
                    "token {:?}: secret_sha256 must be 64 hex digits",
                    self.name
                ))
            }
            _ => {
                return Err(format!(
                    "token {:?}: give exactly one of secret or secret_sha256",
                    self.name
                ))
            }
        }
        for namespace in self.scopes.keys() {
            if namespace != "*" {
                cfgd::validate_namespace(namespace)
                    .map_err(|e| format!("token {:?}: {e}", self.name))?;
            }
        }
        Ok(())
    }

    fn digest(&self) -> [u8; 32] {
        match (&self.secret, &self.secret_sha256) {
            (Some(secret), _) => Sha256::digest(secret.as_bytes()).into(),
            (None, Some(hex)) => {
                let mut out = [0u8; 32];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
                }
                out
            }
            (None, None) => [0; 32],
        }
    }

    /// The scope this token has in `namespace`, if any.
    pub fn scope(&self, namespace: &str) -> Option<Scope> {
        self.scopes
            .get(namespace)
            .or_else(|| self.scopes.get("*"))
            .copied()
    }
}

/// Compares digests in constant time, so timing tells nothing of a secret.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token the request presents, if any and known (`None` without one).
pub(super) fn identify<'t>(
    tokens: &'t [Token],
    headers: &HeaderMap,
) -> Result<Option<&'t Token>, ApiError> {
    let Some(presented) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Ok(None);
    };
    let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
    tokens
        .iter()
        .find(|t| same(&t.digest(), &digest))
        .map(Some)
        .ok_or_else(|| ApiError::unauthorized("unknown token"))
}

/// Checks the request's bearer token against `namespace` and `needed`.
/// With auth off, everything passes.
pub(super) fn check<'t>(
    tokens: &'t [Token],
    no_auth: bool,
    headers: &HeaderMap,
    namespace: &str,
    needed: Scope,
) -> Result<Option<&'t Token>, ApiError> {
    if no_auth {
        return Ok(None);
    }
    let token = identify(tokens, headers)?
        .ok_or_else(|| ApiError::unauthorized("missing bearer token (Authorization: Bearer …)"))?;
    match token.scope(namespace) {
        Some(scope) if scope >= needed => Ok(Some(token)),
        _ => Err(ApiError::forbidden(format!(
            "token {:?} may not {} namespace {namespace:?}",
            token.name,
            match needed {
                Scope::Read => "read",
                Scope::Write => "write to",
                Scope::Secrets => "read the secrets of",
                Scope::Admin => "administer",
            }
        ))),
    }
}
