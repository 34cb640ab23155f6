//! Single sign-on with an OpenID Connect provider: the `[oidc]` settings,
//! the provider's discovery document and keys, and the checks of the JWTs
//! it signs (ID tokens at sign-in, access tokens as bearer tokens).
//!
//! One verifier serves both: the token's signature against the issuer's
//! published keys (asymmetric algorithms only, so a key the issuer
//! publishes can never be used to forge), its issuer, audience, expiry and
//! not-before, with `leeway` for clocks that disagree.

mod http;
pub(crate) mod routes;
pub(crate) mod session;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::auth::Scope;

/// The `[oidc]` table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The issuer's URL, as its tokens name it; its discovery document is
    /// at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// This server's client id at the issuer.
    pub client_id: String,
    /// The client's secret.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Or a file holding it (its surrounding whitespace dropped).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Where the issuer sends the browser back: this server's
    /// `/oidc/callback`, as the browser reaches it.
    pub redirect_url: String,
    /// The claim that lists a user's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Group → namespace (or `"*"`) → scope, as tokens have them. A user
    /// gets the highest scope any of their groups gives.
    #[serde(default)]
    pub groups: HashMap<String, HashMap<String, Scope>>,
    /// The `aud` that bearer access tokens must carry (the API's resource
    /// at the issuer); `client_id` unless set.
    #[serde(default)]
    pub audience: Option<String>,
    /// The scopes asked for at sign-in.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Seconds a console session lasts.
    #[serde(default = "default_session_ttl", with = "crate::secs")]
    pub session_ttl: Duration,
    /// Seconds of clock difference forgiven in `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway", with = "crate::secs")]
    pub leeway: Duration,
    /// A PEM CA bundle that the issuer's HTTPS certificate may chain to,
    /// besides the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_groups_claim() -> String {
    "groups".into()
}
fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}
fn default_session_ttl() -> Duration {
    Duration::from_secs(8 * 3600)
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so that the client secret never reaches a log.
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_url", &self.redirect_url)
            .field("groups_claim", &self.groups_claim)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl OidcSettings {
    /// What a server must not start with.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let url = |what: &str, url: &str| match url.split_once("://") {
            Some(("http" | "https", rest)) if !rest.is_empty() => Ok(()),
            _ => Err(format!(
                "[oidc] {what} must be an http:// or https:// URL, not {url:?}"
            )),
        };
        url("issuer", &self.issuer)?;
        url("redirect_url", &self.redirect_url)?;
        if !self.redirect_url.ends_with("/oidc/callback") {
            return Err(format!(
                "[oidc] redirect_url must be this server's /oidc/callback, not {:?}",
                self.redirect_url
            ));
        }
        if self.client_id.is_empty() {
            return Err("[oidc] client_id is empty".into());
        }
        self.secret()?;
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err("[oidc] scopes must include \"openid\"".into());
        }
        if self.session_ttl < Duration::from_secs(60) || self.session_ttl > cfgd::sessions::MAX_TTL
        {
            return Err("[oidc] session_ttl must be from 60 seconds to 7 days".into());
        }
        for (group, scopes) in &self.groups {
            for namespace in scopes.keys().filter(|ns| *ns != "*") {
                cfgd::validate_namespace(namespace)
                    .map_err(|e| format!("[oidc.groups] {group:?}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The client secret, from the settings or its file.
    pub(crate) fn secret(&self) -> Result<String, String> {
        match (&self.client_secret, &self.client_secret_file) {
            (Some(secret), None) if !secret.is_empty() => Ok(secret.clone()),
            (None, Some(file)) => {
                let secret = std::fs::read_to_string(file)
                    .map_err(|e| format!("[oidc] client_secret_file {}: {e}", file.display()))?;
                match secret.trim() {
                    "" => Err(format!(
                        "[oidc] client_secret_file {} is empty",
                        file.display()
                    )),
                    secret => Ok(secret.to_owned()),
                }
            }
            _ => Err("[oidc] give exactly one of client_secret or client_secret_file".into()),
        }
    }

    /// The scopes `groups` give, each namespace at the highest of them.
    pub(crate) fn scopes_of(&self, groups: &[String]) -> HashMap<String, Scope> {
        let mut out: HashMap<String, Scope> = HashMap::new();
        for scopes in groups.iter().filter_map(|g| self.groups.get(g)) {
            for (namespace, scope) in scopes {
                let held = out.entry(namespace.clone()).or_insert(*scope);
                *held = (*held).max(*scope);
            }
        }
        out
    }
}

/// What the issuer's discovery document says, of what cfgd uses.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Discovery {
    issuer: String,
    pub(crate) authorization_endpoint: String,
    pub(crate) token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    pub(crate) userinfo_endpoint: Option<String>,
}

/// The issuer's keys as last fetched.
struct Keys {
    keys: Vec<Jwk>,
}

/// Keys are fetched again for an unknown `kid` at most this often, so that
/// tokens naming made-up keys cannot make cfgd hammer the issuer.
const REFETCH_AFTER: Duration = Duration::from_secs(10);

/// The only algorithms accepted: asymmetric ones.
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The issuer cfgd signs people in with, as it runs.
pub(crate) struct Oidc {
    pub(crate) settings: OidcSettings,
    pub(crate) secret: String,
    /// Signs sign-in attempts and derives CSRF tokens: from the client
    /// secret, which every replica has, so any replica checks them.
    pub(crate) key: [u8; 32],
    http: http::Http,
    discovery: tokio::sync::Mutex<Option<Discovery>>,
    /// The keys as last fetched: held only to look a key up.
    keys: std::sync::Mutex<Option<Keys>>,
    /// Held while the keys are fetched, one fetch at a time; it holds when
    /// the last one was tried, succeeded or not.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

/// What a verified token says of its holder.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) subject: String,
    pub(crate) email: Option<String>,
    pub(crate) groups: Vec<String>,
    pub(crate) claims: Map<String, Value>,
}

impl Identity {
    /// The actor of this holder's writes in the audit trail.
    pub(crate) fn actor(&self) -> String {
        match &self.email {
            Some(email) => format!("oidc:{} ({email})", self.subject),
            None => format!("oidc:{}", self.subject),
        }
    }
}

impl Oidc {
    /// The running issuer of validated `settings`.
    pub(crate) fn new(settings: OidcSettings) -> Result<Self, String> {
        let secret = settings.secret()?;
        let http = http::Http::new(settings.ca_file.as_deref(), Duration::from_secs(10))?;
        let key = crate::auth::hmac(secret.as_bytes(), b"cfgd oidc sign-in");
        Ok(Oidc {
            settings,
            secret,
            key,
            http,
            discovery: Default::default(),
            keys: Default::default(),
            fetching: Default::default(),
        })
    }

    /// The issuer's discovery document, fetched on first need (so that
    /// cfgd starts while the issuer is down) and kept.
    pub(crate) async fn discovery(&self) -> Result<Discovery, String> {
        let mut held = self.discovery.lock().await;
        if let Some(found) = &*held {
            return Ok(found.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let answer = self.http.get(&url, None).await?;
        if answer.status != 200 {
            return Err(format!("{url}: answered {}", answer.status));
        }
        let found: Discovery = serde_json::from_value(answer.body)
            .map_err(|e| format!("{url}: not a discovery document: {e}"))?;
        // OpenID Connect Discovery 4.3: the document names its own issuer.
        if found.issuer != self.settings.issuer {
            return Err(format!(
                "{url} names issuer {:?}, not {:?} as [oidc] issuer does",
                found.issuer, self.settings.issuer
            ));
        }
        *held = Some(found.clone());
        Ok(found)
    }

    /// The key that signed a token naming `kid`, fetching the issuer's
    /// keys when they are not known yet, or when `kid` is new to them and
    /// no fetch was tried just now (keys rotate). A lookup never waits on
    /// a fetch for a key already known.
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, String> {
        let unknown = || match kid {
            Some(kid) => format!("signed with a key the issuer does not publish (kid {kid:?})"),
            None => "the token names no key (kid) and the issuer publishes several".into(),
        };
        if let Some(key) = self.known(kid) {
            return Ok(key);
        }
        let mut tried = self.fetching.lock().await;
        // Another request may have fetched them while this one waited.
        if let Some(key) = self.known(kid) {
            return Ok(key);
        }
        if tried.is_some_and(|at| at.elapsed() < REFETCH_AFTER) {
            return Err(unknown());
        }
        *tried = Some(Instant::now());
        let url = self.discovery().await?.jwks_uri;
        let answer = self.http.get(&url, None).await?;
        if answer.status != 200 {
            return Err(format!("{url}: answered {}", answer.status));
        }
        // Each key on its own: one of a type unknown here spoils no other.
        let mut keys = Vec::new();
        for key in answer
            .body
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{url}: not a JWK set"))?
        {
            match serde_json::from_value::<Jwk>(key.clone()) {
                Ok(key) => keys.push(key),
                Err(e) => {
                    tracing::warn!(%url, error = %e, "a key of the issuer's JWK set is skipped")
                }
            }
        }
        *self.keys.lock().expect("not poisoned") = Some(Keys { keys });
        self.known(kid).ok_or_else(unknown)
    }

    /// The key named `kid` among those fetched (the only one, without a
    /// `kid`).
    fn known(&self, kid: Option<&str>) -> Option<Jwk> {
        let held = self.keys.lock().expect("not poisoned");
        let keys = &held.as_ref()?.keys;
        match kid {
            Some(kid) => keys
                .iter()
                .find(|k| k.common.key_id.as_deref() == Some(kid))
                .cloned(),
            None if keys.len() == 1 => keys.first().cloned(),
            None => None,
        }
    }

    /// Checks `token` (a JWT the issuer signed for `audience`) and says who
    /// it is for, or why it is refused.
    pub(crate) async fn verify(&self, token: &str, audience: &str) -> Result<Identity, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            "not a JWT this server accepts (its header does not parse, or names an unknown algorithm)"
                .to_owned()
        })?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(format!(
                "signed with {:?}, which is not accepted",
                header.alg
            ));
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("the issuer's key: {e}"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[audience]);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| refusal(&e))?
            .claims;
        Ok(self.identity(claims))
    }

    /// [`verify`](Self::verify) for a bearer access token: an ID token
    /// (its `nonce` tells it) is the sign-in's proof, not an API
    /// credential, even when `audience` is the client id.
    pub(crate) async fn verify_access(&self, token: &str) -> Result<Identity, String> {
        let identity = self.verify(token, self.audience()).await?;
        if identity.claims.contains_key("nonce") {
            return Err("an ID token (it has a nonce), not an access token".into());
        }
        Ok(identity)
    }

    /// Who `claims` name, with their groups and email.
    pub(crate) fn identity(&self, claims: Map<String, Value>) -> Identity {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // An address the issuer says it has not verified is not shown as
        // who made a change.
        let verified = claims.get("email_verified").and_then(Value::as_bool) != Some(false);
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .filter(|_| verified)
            .map(str::to_owned);
        let groups = groups(claims.get(&self.settings.groups_claim));
        Identity {
            subject,
            email,
            groups,
            claims,
        }
    }

    /// The audience of bearer access tokens.
    pub(crate) fn audience(&self) -> &str {
        self.settings
            .audience
            .as_deref()
            .unwrap_or(&self.settings.client_id)
    }

    /// `GET` of the userinfo endpoint with `access_token`, for an ID token
    /// that carries no groups claim.
    pub(crate) async fn userinfo(
        &self,
        access_token: &str,
    ) -> Result<Option<Map<String, Value>>, String> {
        let Some(url) = self.discovery().await?.userinfo_endpoint else {
            return Ok(None);
        };
        let answer = self.http.get(&url, Some(access_token)).await?;
        match (answer.status, answer.body) {
            (200, Value::Object(claims)) => Ok(Some(claims)),
            (status, _) => Err(format!("{url}: answered {status}")),
        }
    }

    /// Trades an authorization `code` (and its PKCE `verifier`) for tokens.
    pub(crate) async fn exchange(
        &self,
        code: &str,
        verifier: &str,
    ) -> Result<Map<String, Value>, String> {
        let endpoint = self.discovery().await?.token_endpoint;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.settings.redirect_url)
            .append_pair("code_verifier", verifier)
            .finish();
        let answer = self
            .http
            .post_form(&endpoint, form, (&self.settings.client_id, &self.secret))
            .await?;
        match (answer.status, answer.body) {
            (200, Value::Object(tokens)) => Ok(tokens),
            (status, body) => Err(format!(
                "the issuer refused the code ({status}): {} {}",
                body.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no error given"),
                body.get("error_description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            )
            .trim_end()
            .to_owned()),
        }
    }
}

/// A groups claim as a list: an array of strings, or one string.
fn groups(claim: Option<&Value>) -> Vec<String> {
    match claim {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// Why a token was refused, in words for the log and the caller.
fn refusal(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "expired".into(),
        K::ImmatureSignature => "not valid yet (nbf)".into(),
        K::InvalidIssuer => "issued by another issuer".into(),
        K::InvalidAudience => "meant for another audience (aud)".into(),
        K::InvalidSignature => "its signature does not verify".into(),
        K::MissingRequiredClaim(claim) => format!("it has no {claim:?} claim"),
        other => format!("{other:?}"),
    }
}

/// The scopes of `identity` under `settings`, for `/v1/whoami`.
pub(crate) fn scope_names(scopes: &HashMap<String, Scope>) -> BTreeMap<String, String> {
    scopes
        .iter()
        .map(|(ns, scope)| (ns.clone(), scope.as_str().to_owned()))
        .collect()
}
