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

/// Compares two texts (CSRF tokens) in constant time.
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    same(
        &Sha256::digest(a.as_bytes()).into(),
        &Sha256::digest(b.as_bytes()).into(),
    )
}

/// HMAC-SHA256 of `message` under `key`.
pub(crate) fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// How a caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Proof {
    /// A token of the settings file.
    Token,
    /// A JWT access token of the `[oidc]` issuer.
    Jwt,
    /// The console's session cookie; writes carry this CSRF token.
    Session { csrf: String },
}

/// Who a request comes from, once its credentials were checked.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// Its name in logs, metrics and the audit trail: the token's name, or
    /// `oidc:<subject>` (with the email when the issuer gave one).
    pub(crate) name: String,
    /// Namespace (or `"*"`) → scope.
    pub(crate) scopes: HashMap<String, Scope>,
    pub(crate) proof: Proof,
    /// An SSO user's groups, as the issuer named them.
    pub(crate) groups: Vec<String>,
}

impl Caller {
    /// The caller of local token `token`.
    pub(crate) fn of_token(token: &Token) -> Self {
        Caller {
            name: token.name.clone(),
            scopes: token.scopes.clone(),
            proof: Proof::Token,
            groups: Vec::new(),
        }
    }

    /// The scope this caller has in `namespace`, if any.
    pub(crate) fn scope(&self, namespace: &str) -> Option<Scope> {
        self.scopes
            .get(namespace)
            .or_else(|| self.scopes.get("*"))
            .copied()
    }

    /// Refuses this caller unless it has `needed` in `namespace`.
    pub(crate) fn may(&self, namespace: &str, needed: Scope) -> Result<(), ApiError> {
        match self.scope(namespace) {
            Some(scope) if scope >= needed => Ok(()),
            _ => Err(ApiError::forbidden(format!(
                "{} {:?} may not {} namespace {namespace:?}",
                if self.proof == Proof::Token {
                    "token"
                } else {
                    "user"
                },
                self.name,
                match needed {
                    Scope::Read => "read",
                    Scope::Write => "write to",
                    Scope::Secrets => "read the secrets of",
                    Scope::Admin => "administer",
                }
            ))),
        }
    }
}

/// The bearer credential of the request, if it sends one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The local token whose secret is `presented`, if any.
pub(crate) fn token<'t>(tokens: &'t [Token], presented: &str) -> Option<&'t Token> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    tokens.iter().find(|t| same(&t.digest(), &digest))
}
