//! [`AppState`]: what every request shares: the settings, one live client
//! per namespace over one etcd connection, metrics, limits.

use std::collections::HashMap;
use std::sync::Arc;

use cfgd::{Client, ClientBuilder};

use crate::auth::{self, Caller, Proof, Scope};
use crate::error::ApiError;
use crate::oidc::{session, Oidc};
use crate::settings::Settings;
use crate::{limits, metrics};

/// The header whose text goes with a write into the audit trail.
pub(crate) const MESSAGE_HEADER: &str = "x-cfgd-message";
/// The actor of writes made with auth off (`--no-auth`).
pub(crate) const ANONYMOUS: &str = "anonymous";

/// Shared by every request.
pub struct AppState {
    pub(crate) settings: Settings,
    pub(crate) builder: ClientBuilder,
    /// One live client per namespace, made on first use, all sharing one
    /// etcd connection and one watch.
    pub(crate) clients: tokio::sync::Mutex<HashMap<String, Client>>,
    /// Set at shutdown, ending SSE streams so the server can drain.
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    pub(crate) metrics: metrics::Metrics,
    /// Open long-lived streams, against the settings' caps.
    pub(crate) streams: Arc<limits::Streams>,
    /// Each token's writes, against `write_rate_per_token`.
    pub(crate) write_rates: limits::WriteRates,
    /// Signs the OFREP change streams' tickets: from `stream_secret`, so
    /// that replicas share it, or new at each start.
    pub(crate) stream_secret: [u8; 32],
    /// The elected worker's state (see `workers`).
    pub(crate) workers: crate::leadership::Workers,
    /// The `[oidc]` issuer, when single sign-on is on.
    pub(crate) oidc: Option<Arc<Oidc>>,
    /// The client that keeps console sessions, made on first use.
    sessions: tokio::sync::OnceCell<Client>,
}

impl AppState {
    /// State for `settings`, which [`Settings::validate`] has passed.
    pub fn new(settings: Settings) -> Arc<Self> {
        let oidc = settings.oidc.clone().map(|oidc| {
            Arc::new(Oidc::new(oidc).expect("validated [oidc] settings make an issuer"))
        });
        let builder = settings.builder();
        // Nothing is connected yet: namespaces attach as requests name them.
        let builder = builder
            .prepare()
            .expect("validated settings have a root and endpoints");
        let stream_secret = match &settings.stream_secret {
            Some(shared) => <sha2::Sha256 as sha2::Digest>::digest(shared.as_bytes()).into(),
            None => cfgd::secret::random(),
        };
        Arc::new(AppState {
            settings,
            builder,
            clients: Default::default(),
            shutdown: tokio::sync::watch::channel(false).0,
            metrics: metrics::Metrics::new(),
            stream_secret,
            streams: Default::default(),
            write_rates: Default::default(),
            workers: Default::default(),
            oidc,
            sessions: Default::default(),
        })
    }

    /// The client that stores console sessions (any namespace's would do:
    /// they live under the root).
    pub(crate) async fn sessions(&self) -> cfgd::Result<Client> {
        self.sessions
            .get_or_try_init(|| {
                self.builder
                    .clone()
                    .live(false)
                    .namespace("default")
                    .connect()
            })
            .await
            .cloned()
    }

    /// Who the request comes from: a token of the settings, a JWT access
    /// token of the `[oidc]` issuer, or the console's session cookie;
    /// `None` when it shows none of them. A bearer credential that is
    /// none of these is refused, with the reason logged.
    pub(crate) async fn caller(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<Option<Caller>, ApiError> {
        if let Some(presented) = auth::bearer(headers) {
            if let Some(token) = auth::token(&self.settings.tokens, presented) {
                return Ok(Some(Caller::of_token(token)));
            }
            let jwt = presented.split('.').count() == 3;
            let Some(oidc) = self.oidc.as_deref().filter(|_| jwt) else {
                return Err(ApiError::unauthorized("unknown token"));
            };
            return match oidc.verify_access(presented).await {
                Ok(identity) => Ok(Some(Caller {
                    name: identity.actor(),
                    scopes: oidc.settings.scopes_of(&identity.groups),
                    proof: Proof::Jwt,
                    groups: identity.groups,
                })),
                Err(reason) => {
                    tracing::warn!(%reason, "refused a bearer JWT");
                    Err(ApiError::unauthorized(format!(
                        "bearer JWT refused: {reason}"
                    )))
                }
            };
        }
        if headers.contains_key(axum::http::header::AUTHORIZATION) {
            return Err(ApiError::unauthorized(
                "the Authorization header must be Bearer <token>",
            ));
        }
        let (Some(oidc), Some(secret)) = (
            self.oidc.as_deref(),
            session::cookie(headers, session::COOKIE),
        ) else {
            return Ok(None);
        };
        match session::find(&self.sessions().await?, secret).await? {
            Some(record) => Ok(Some(Caller {
                name: record.identity().actor(),
                scopes: oidc.settings.scopes_of(&record.groups),
                proof: Proof::Session {
                    csrf: session::csrf(oidc, secret),
                },
                groups: record.groups,
            })),
            None => Err(ApiError::unauthorized(
                "the session has ended (signed out or expired): sign in again",
            )),
        }
    }

    /// The caller, which must have `needed` in `namespace`; `None` with
    /// auth off.
    pub(crate) async fn check(
        &self,
        headers: &axum::http::HeaderMap,
        namespace: &str,
        needed: Scope,
    ) -> Result<Option<Caller>, ApiError> {
        if self.settings.no_auth {
            return Ok(None);
        }
        let caller = self.caller(headers).await?.ok_or_else(missing)?;
        caller.may(namespace, needed)?;
        Ok(Some(caller))
    }

    /// The caller, which must show some credentials; `None` with auth off.
    pub(crate) async fn signed_in(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<Option<Caller>, ApiError> {
        if self.settings.no_auth {
            return Ok(None);
        }
        self.caller(headers).await?.ok_or_else(missing).map(Some)
    }

    /// Refuses to show secret `name`'s plaintext to a token without the
    /// secrets scope in `namespace`.
    pub(crate) async fn may_read_secrets(
        &self,
        headers: &axum::http::HeaderMap,
        namespace: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        self.check(headers, namespace, Scope::Secrets)
            .await
            .map(drop)
            .map_err(|_| {
                ApiError::forbidden(format!(
                    "{name} is a secret: reading its value takes a token with the secrets scope"
                ))
            })
    }

    /// The client of `namespace` for a request that needs `scope` there:
    /// the token is checked first, so nothing is connected for a refused one.
    pub(crate) async fn authorized(
        &self,
        headers: &axum::http::HeaderMap,
        namespace: &str,
        scope: Scope,
    ) -> Result<Client, ApiError> {
        let caller = self.check(headers, namespace, scope).await?;
        let client = self.client(namespace).await?;
        if scope == Scope::Read {
            return Ok(client);
        }
        // Writes are audited as the token, with the caller's reason.
        let actor = caller.as_ref().map_or(ANONYMOUS, |c| c.name.as_str());
        if let Some(rate) = self.settings.write_rate_per_token {
            if let Err(wait) = self.write_rates.take(actor, rate) {
                self.metrics.refused("write_rate");
                return Err(ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "too_many_writes",
                    format!("token {actor:?} writes faster than write_rate_per_token ({rate}/s)"),
                )
                .retry_after(wait));
            }
        }
        let client = client.with_actor(actor, cfgd::audit::Via::Http);
        Ok(match headers.get(MESSAGE_HEADER) {
            Some(message) => {
                let message = message.to_str().map_err(|_| {
                    ApiError::bad_request(format!("{MESSAGE_HEADER} must be visible ASCII"))
                })?;
                client.with_message(message)
            }
            None => client,
        })
    }

    /// A place for one more long-lived stream of `token` (its name, or a
    /// stand-in for callers without one), or the refusal, counted.
    pub(crate) fn stream_permit(&self, token: &str) -> Result<limits::Permit, limits::Full> {
        let permit = self.streams.acquire(
            token,
            self.settings.max_streams,
            self.settings.max_streams_per_token,
        );
        if let Err(full) = &permit {
            self.metrics.refused(match full {
                limits::Full::Server => "streams",
                limits::Full::Token => "streams_per_token",
            });
        }
        permit
    }

    /// [`stream_permit`](Self::stream_permit) for an HTTP request: the
    /// token it presents, and the refusal as 503 or 429 with `Retry-After`.
    pub(crate) async fn http_stream_permit(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<limits::Permit, ApiError> {
        let caller = self.caller(headers).await.ok().flatten();
        let token = caller.as_ref().map_or(ANONYMOUS, |c| c.name.as_str());
        self.stream_permit(token).map_err(|full| {
            let error = match full {
                limits::Full::Server => ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_streams",
                    "the server holds as many streams as it allows (max_streams); retry later",
                ),
                limits::Full::Token => ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "too_many_streams",
                    format!(
                        "token {token:?} holds as many streams as it may (max_streams_per_token); close one or retry later"
                    ),
                ),
            };
            error.retry_after(limits::RETRY_AFTER_SECS)
        })
    }

    /// Every namespace served so far, with its client, as of now.
    pub(crate) async fn served(&self) -> Vec<(String, Client)> {
        let clients = self.clients.lock().await;
        clients
            .iter()
            .map(|(ns, c)| (ns.clone(), c.clone()))
            .collect()
    }

    /// The live client of `namespace`, connecting it on first use.
    pub(crate) async fn client(&self, namespace: &str) -> cfgd::Result<Client> {
        cfgd::validate_namespace(namespace)?;
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(namespace) {
            return Ok(client.clone());
        }
        let mut builder = self.builder.clone().namespace(namespace);
        if let Some(file) = &self.settings.snapshot {
            builder = builder.snapshot(file);
        }
        let client = builder.connect().await?;
        clients.insert(namespace.to_owned(), client.clone());
        Ok(client)
    }
}

fn missing() -> ApiError {
    ApiError::unauthorized(
        "missing bearer token (Authorization: Bearer …), or sign in to the console",
    )
}
