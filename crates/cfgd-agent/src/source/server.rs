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

/// Keeps `feed` current through the server, for as long as the agent runs.
pub async fn follow(server: Server, namespace: String, feed: Feed) {
    let mut backoff = Backoff::new();
    let mut held: Option<(State, Position)> = None;
    loop {
        let mut reader = Reader {
            server: &server,
            namespace: &namespace,
            warned: BTreeSet::new(),
        };
        let error = reader.session(&feed, &mut held, &mut backoff).await;
        feed.unreachable(format!("server: {error:#}"));
        backoff.wait().await;
    }
}

struct Reader<'a> {
    server: &'a Server,
    namespace: &'a str,
    warned: BTreeSet<String>,
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
        *held = Some((state, at));
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
            self.apply_all(first, stream, state, at, is_flags).await?;
            feed.publish(state.clone());
        }
    }

    /// Every value and flag, listed; the streams start after the newest.
    async fn load(&mut self) -> Result<(State, Position)> {
        let mut state = State::default();
        let mut at = Position::default();
        let listed: Vec<Listed> = self
            .server
            .get_json(&self.path("config?prefix="))
            .await?
            .unwrap_or_default();
        for item in listed {
            at.values = at.values.max(item.revision);
            if let Some(value) = self.opened(&item.name, item.value, item.secret).await? {
                let entry = Item {
                    value,
                    secret: item.secret,
                    revision: item.revision,
                };
                state.values.insert(item.name, entry);
            }
        }
        let flags: Vec<Listed> = self
            .server
            .get_json(&self.path("flags"))
            .await?
            .unwrap_or_default();
        for flag in flags {
            at.flags = at.flags.max(flag.revision);
            state.flags.insert(flag.name, (flag.value, flag.revision));
        }
        state.revision = at.values.max(at.flags);
        Ok((state, at))
    }

    /// A listed or streamed value, with a secret's plaintext read on its
    /// own; `None` for a secret this token may not read.
    async fn opened(&mut self, name: &str, value: Value, secret: bool) -> Result<Option<Value>> {
        if !secret {
            return Ok(Some(value));
        }
        match self
            .server
            .get_json(&self.path(&format!("config/{name}")))
            .await
        {
            Ok(value) => Ok(value),
            Err(e) => {
                if self.warned.insert(name.to_owned()) {
                    tracing::warn!(name = %name, error = %format!("{e:#}"), "a secret this agent cannot read: left out (the token needs the secrets scope)");
                }
                Ok(None)
            }
        }
    }

    /// `first`, and every event already buffered behind it.
    async fn apply_all(
        &mut self,
        first: Result<Option<Event>>,
        stream: &mut Events,
        state: &mut State,
        at: &mut Position,
        flags: bool,
    ) -> Result<()> {
        let mut event = first?;
        loop {
            let Some(e) = event else {
                return Err(anyhow!("the event stream ended"));
            };
            self.apply(e, state, at, flags).await?;
            if !stream.has_buffered() {
                return Ok(());
            }
            event = stream.next().await?;
        }
    }

    async fn apply(
        &mut self,
        event: Event,
        state: &mut State,
        at: &mut Position,
        flags: bool,
    ) -> Result<()> {
        if event.event == "reset" {
            // Resumed from too far back: the full set follows.
            match flags {
                true => state.flags.clear(),
                false => state.values.clear(),
            }
            return Ok(());
        }
        if event.event != "put" && event.event != "delete" {
            return Ok(());
        }
        let change: ChangeEvent = serde_json::from_str(&event.data)
            .with_context(|| format!("an event that is not cfgd's: {:?}", event.event))?;
        let position = match flags {
            true => &mut at.flags,
            false => &mut at.values,
        };
        *position = (*position).max(change.revision);
        state.revision = state.revision.max(change.revision);
        match (flags, change.kind.as_str()) {
            (true, "put") => {
                state
                    .flags
                    .insert(change.name, (change.value, change.revision));
            }
            (true, _) => {
                state.flags.remove(&change.name);
            }
            (false, "put") => {
                match self
                    .opened(&change.name, change.value, change.secret)
                    .await?
                {
                    Some(value) => {
                        let item = Item {
                            value,
                            secret: change.secret,
                            revision: change.revision,
                        };
                        state.values.insert(change.name, item);
                    }
                    None => {
                        state.values.remove(&change.name);
                    }
                }
            }
            (false, _) => {
                state.values.remove(&change.name);
            }
        }
        Ok(())
    }
}

async fn next(events: &mut Events) -> Result<Option<Event>> {
    tokio::time::timeout(SILENCE, events.next())
        .await
        .map_err(|_| anyhow!("nothing from the server for {SILENCE:?}, not even a heartbeat"))?
}
