//! Reading through the cfgd server: the values and flags listed once,
//! then followed over two event streams (values, flags) resumed with
//! `Last-Event-ID`, so a thousand agents cost etcd nothing beyond the
//! server's own watch. Secrets, which lists and events redact, are read
//! one by one with a token of the `secrets` scope.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use super::http::{Event, Events, Server};
use super::{Backoff, Feed};
use crate::settings::Settings;
use crate::state::{Item, State};

/// No byte for this long (the server sends a heartbeat every 15 s by
/// default) means the connection is dead though no one closed it.
const SILENCE: Duration = Duration::from_secs(60);

/// The server client the settings describe; `read_token` false leaves
/// the token file alone (`cfgd-agent check`, where it may not exist).
pub fn server(settings: &Settings, read_token: bool) -> Result<Server> {
    let url = settings.server.as_deref().expect("a server source");
    let token = match &settings.token_file {
        Some(_) if !read_token => None,
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read token_file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("CFGD_AGENT_TOKEN").ok(),
    };
    let labels = match settings.labels.is_empty() {
        true => None,
        false => {
            let labels = cfgd::overlays::Labels::from_pairs(settings.labels.clone())
                .map_err(|e| anyhow!("labels: {e}"))?;
            Some(labels.to_string())
        }
    };
    Server::new(url, token, labels)
}

#[derive(Deserialize)]
struct Listed {
    name: String,
    value: Value,
    revision: i64,
    #[serde(default)]
    secret: bool,
}

#[derive(Deserialize)]
struct ChangeEvent {
    name: String,
    kind: String,
    #[serde(default)]
    value: Value,
    revision: i64,
    #[serde(default)]
    secret: bool,
}

/// Where the two streams stand, for resuming them.
#[derive(Default)]
struct Position {
    values: i64,
    flags: i64,
}

/// `event: reset`: the stream resumed from too far back. The list is read
/// again (one consistent answer) rather than the state emptied and
/// refilled event by event, which would publish it half full.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server asked for a reset: reading everything again")
    }
}

impl std::error::Error for Reset {}

/// Keeps `feed` current through the server, for as long as the agent runs.
pub async fn follow(server: Server, namespace: String, feed: Feed) {
    let mut backoff = Backoff::new();
    let mut held: Option<(State, Position)> = None;
    let mut warned = BTreeSet::new();
    loop {
        let mut reader = Reader {
            server: &server,
            namespace: &namespace,
            warned: &mut warned,
        };
        let error = reader.session(&feed, &mut held, &mut backoff).await;
        if error.downcast_ref::<Reset>().is_some() {
            tracing::info!("{error}");
            held = None;
            continue;
        }
        feed.unreachable(format!("server: {error:#}"));
        backoff.wait().await;
    }
}

struct Reader<'a> {
    server: &'a Server,
    namespace: &'a str,
    /// Secrets already warned about, so the log says it once.
    warned: &'a mut BTreeSet<String>,
}

impl Reader<'_> {
    fn path(&self, rest: &str) -> String {
        format!("/v1/namespaces/{}/{rest}", self.namespace)
    }

    /// One connected stretch: returns why it ended.
    async fn session(
        &mut self,
        feed: &Feed,
        held: &mut Option<(State, Position)>,
        backoff: &mut Backoff,
    ) -> anyhow::Error {
        match self.run(feed, held, backoff).await {
            Ok(()) => anyhow!("the event stream ended"),
            Err(e) => e,
        }
    }

    async fn run(
        &mut self,
        feed: &Feed,
        held: &mut Option<(State, Position)>,
        backoff: &mut Backoff,
    ) -> Result<()> {
        let meta: Value = self
            .server
            .get_json(&self.path("meta"))
            .await?
            .unwrap_or_default();
        let bucketing = match meta["fractional"].as_str() {
            Some("v3") => cfgd::flags::Bucketing::V3,
            _ => cfgd::flags::Bucketing::V2,
        };
        let (mut state, mut at) = match held.take() {
            // Resumed: the streams replay what was missed.
            Some(held) => held,
            None => self.load().await?,
        };
        state.bucketing = bucketing;
        let result = self.stream(feed, &mut state, &mut at, backoff).await;
        if result
            .as_ref()
            .is_err_and(|e| e.downcast_ref::<Reset>().is_none())
        {
            *held = Some((state, at));
        }
        result
    }

    async fn stream(
        &mut self,
        feed: &Feed,
        state: &mut State,
        at: &mut Position,
        backoff: &mut Backoff,
    ) -> Result<()> {
        let mut values = self
            .server
            .events(&self.path("watch?prefix="), at.values)
            .await?;
        let mut flags = self
            .server
            .events(&self.path("watch?section=flags&prefix="), at.flags)
            .await?;
        backoff.reset();
        feed.publish(state.clone());
        loop {
            let (first, is_flags) = tokio::select! {
                e = next(&mut values) => (e, false),
                e = next(&mut flags) => (e, true),
            };
            let stream = match is_flags {
                true => &mut flags,
                false => &mut values,
            };
            let Some(mut event) = first? else {
                return Err(anyhow!("the event stream ended"));
            };
            loop {
                self.apply(event, state, at, is_flags).await?;
                match stream.ready()? {
                    Some(more) => event = more,
                    None => break,
                }
            }
            feed.publish(state.clone());
        }
    }

    /// Every value and flag, listed; the streams resume from the revision
    /// each list holds everything up to.
    async fn load(&mut self) -> Result<(State, Position)> {
        let mut state = State::default();
        let mut at = Position::default();
        let (listed, revision) = self
            .server
            .get_listed::<Vec<Listed>>(&self.path("config?prefix="))
            .await?
            .unwrap_or_default();
        for item in listed {
            at.values = at.values.max(item.revision);
            self.put(
                &mut state,
                item.name,
                item.value,
                item.secret,
                item.revision,
            )
            .await?;
        }
        // A server from before X-Cfgd-Revision: the newest value listed.
        at.values = revision.unwrap_or(at.values);
        let (flags, revision) = self
            .server
            .get_listed::<Vec<Listed>>(&self.path("flags"))
            .await?
            .unwrap_or_default();
        for flag in flags {
            at.flags = at.flags.max(flag.revision);
            state.flags.insert(flag.name, (flag.value, flag.revision));
        }
        at.flags = revision.unwrap_or(at.flags);
        state.revision = at.values.max(at.flags);
        Ok((state, at))
    }

    /// A listed or streamed value into `state`. A secret, which lists and
    /// events redact, is read on its own; one this token may not read is
    /// withheld (known to be there, not rendered). Any other failure ends
    /// the session, and the change is read again on resuming.
    async fn put(
        &mut self,
        state: &mut State,
        name: String,
        value: Value,
        secret: bool,
        revision: i64,
    ) -> Result<()> {
        let value = match secret {
            false => Some(value),
            true => match self
                .server
                .get_json(&self.path(&format!("config/{name}")))
                .await
            {
                Ok(value) => value,
                Err(e) if e.downcast_ref::<super::http::Refused>().is_some() => {
                    if self.warned.insert(name.clone()) {
                        tracing::warn!(name = %name, error = %format!("{e:#}"), "a secret this agent may not read: withheld (the token needs the secrets scope)");
                    }
                    state.withhold(name);
                    return Ok(());
                }
                Err(e) => return Err(e),
            },
        };
        // `None`: deleted between the event and the read.
        state.set_value(
            name,
            value.map(|value| Item {
                value,
                secret,
                revision,
            }),
        );
        Ok(())
    }

    async fn apply(
        &mut self,
        event: Event,
        state: &mut State,
        at: &mut Position,
        flags: bool,
    ) -> Result<()> {
        if event.event == "reset" {
            return Err(Reset.into());
        }
        if event.event != "put" && event.event != "delete" {
            return Ok(());
        }
        let change: ChangeEvent = serde_json::from_str(&event.data)
            .with_context(|| format!("an event that is not cfgd's: {:?}", event.event))?;
        let revision = change.revision;
        match (flags, change.kind.as_str()) {
            (true, "put") => {
                state.flags.insert(change.name, (change.value, revision));
            }
            (true, _) => {
                state.flags.remove(&change.name);
            }
            (false, "put") => {
                self.put(state, change.name, change.value, change.secret, revision)
                    .await?;
            }
            (false, _) => state.set_value(change.name, None),
        }
        // Only once applied: a change that failed is replayed on resuming.
        let position = match flags {
            true => &mut at.flags,
            false => &mut at.values,
        };
        *position = (*position).max(revision);
        state.revision = state.revision.max(revision);
        Ok(())
    }
}

async fn next(events: &mut Events) -> Result<Option<Event>> {
    tokio::time::timeout(SILENCE, events.next())
        .await
        .map_err(|_| anyhow!("nothing from the server for {SILENCE:?}, not even a heartbeat"))?
}
