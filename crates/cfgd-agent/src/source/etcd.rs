//! Reading etcd directly, through the library: one live client, whose one
//! watch follows the namespace (its layers and the overlays the agent's
//! labels select). The library reconnects by itself once connected; only
//! the first connection is retried here.

use std::time::Duration;

use anyhow::{anyhow, Result};
use futures_util::{FutureExt, StreamExt};

use cfgd::{Change, ChangeKind, Client, Status, Subscription};

use super::{Backoff, Feed};
use crate::settings::Settings;
use crate::state::{Item, State};

/// The builder of the agent's client, checked without connecting.
pub fn builder(settings: &Settings) -> Result<cfgd::ClientBuilder> {
    let mut builder = Client::builder()
        .endpoints(settings.endpoints.iter().cloned())
        .namespace(settings.namespace.as_str())
        .root(settings.root.as_str())
        .connect_timeout(Duration::from_secs(3));
    if !settings.labels.is_empty() {
        let labels = cfgd::overlays::Labels::from_pairs(settings.labels.clone())
            .map_err(|e| anyhow!("labels: {e}"))?;
        builder = builder.labels(labels);
    }
    if let Some(user) = &settings.etcd_user {
        let path = settings
            .etcd_password_file
            .as_ref()
            .ok_or_else(|| anyhow!("etcd_user needs etcd_password_file"))?;
        let password = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("etcd_password_file {}: {e}", path.display()))?;
        builder = builder.user(user.as_str(), password.trim_end());
    }
    if let Some(ca) = &settings.ca_file {
        builder = builder.ca_file(ca);
    }
    if let Some(key) = &settings.secret_key_file {
        builder = builder.secret_key_file(key);
    }
    Ok(builder.prepare()?)
}

/// Keeps `feed` current from etcd, for as long as the agent runs.
pub async fn follow(builder: cfgd::ClientBuilder, feed: Feed) {
    let mut backoff = Backoff::new();
    loop {
        match connect(builder.clone()).await {
            Ok(client) => {
                backoff.reset();
                if let Err(e) = keep_current(&client, &feed).await {
                    feed.unreachable(format!("{e:#}"));
                }
            }
            Err(e) => feed.unreachable(format!("etcd: {e}")),
        }
        backoff.wait().await;
    }
}

async fn connect(builder: cfgd::ClientBuilder) -> cfgd::Result<Client> {
    let client = builder.connect().await?;
    // A namespace's settings say how its flags bucket.
    client.meta().await?;
    Ok(client)
}

async fn keep_current(client: &Client, feed: &Feed) -> Result<()> {
    let bucketing = client.meta().await?.fractional;
    // From revision 0: the current value of every name first, then each
    // change, on one stream per section; nothing falls between them.
    let mut values = client.subscribe_from("", 0)?;
    let mut flags = client.subscribe_flags_from("", 0)?;
    let mut status = client.status_changes()?;
    let mut state = State::default();
    state.bucketing = bucketing;
    let mut warned = std::collections::BTreeSet::new();
    drain(&mut values, &mut state, false, &mut warned).await;
    drain(&mut flags, &mut state, true, &mut warned).await;
    feed.publish(state.clone());
    loop {
        tokio::select! {
            change = values.next() => {
                let Some(change) = change else { return Err(anyhow!("the client's watch ended")) };
                apply(&change, &mut state, false, &mut warned);
                drain(&mut values, &mut state, false, &mut warned).await;
            }
            change = flags.next() => {
                let Some(change) = change else { return Err(anyhow!("the client's watch ended")) };
                apply(&change, &mut state, true, &mut warned);
                drain(&mut flags, &mut state, true, &mut warned).await;
            }
            changed = status.changed() => {
                if changed.is_err() {
                    return Err(anyhow!("the client closed"));
                }
                let now = status.borrow_and_update().clone();
                match now {
                    Status::Connected { .. } => feed.publish(state.clone()),
                    _ => {
                        feed.unreachable("etcd: the connection was lost; the library is reconnecting".into());
                    }
                }
                continue;
            }
        }
        feed.publish(state.clone());
    }
}

/// Everything the stream has ready, applied before one publish: a
/// transaction's changes arrive together, and one yield lets the library
/// finish handing them out.
async fn drain(
    stream: &mut Subscription,
    state: &mut State,
    flags: bool,
    warned: &mut std::collections::BTreeSet<String>,
) {
    for _ in 0..2 {
        while let Some(Some(change)) = stream.next().now_or_never() {
            apply(&change, state, flags, warned);
        }
        tokio::task::yield_now().await;
    }
}

fn apply(
    change: &Change,
    state: &mut State,
    flags: bool,
    warned: &mut std::collections::BTreeSet<String>,
) {
    state.revision = state.revision.max(change.revision());
    let name = change.name().to_owned();
    let value = match change.kind() {
        ChangeKind::Delete => None,
        ChangeKind::Put => {
            let raw = change.raw().unwrap_or_default();
            if change.is_secret() && cfgd::secret::sealed_by(raw).is_some() {
                // Sealed: this agent holds no key that opens it. Withheld,
                // so that every template that would render it misses it.
                if warned.insert(name.clone()) {
                    tracing::warn!(name = %name, "a secret this agent cannot open (no or another secret_key_file): withheld");
                }
                if !flags {
                    state.withhold(name);
                }
                return;
            } else {
                match serde_json::from_slice(raw) {
                    Ok(v) => Some(v),
                    Err(_) => Some(serde_json::Value::String(
                        String::from_utf8_lossy(raw).into_owned(),
                    )),
                }
            }
        }
    };
    let revision = change.revision();
    match (flags, value) {
        (true, Some(v)) => {
            state.flags.insert(name, (v, revision));
        }
        (true, None) => {
            state.flags.remove(&name);
        }
        (false, value) => {
            let secret = change.is_secret();
            state.set_value(
                name,
                value.map(|value| Item {
                    value,
                    secret,
                    revision,
                }),
            );
        }
    }
}
