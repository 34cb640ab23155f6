//! Webhook delivery: one task per webhook, following its namespace's
//! changes from its cursor. A slow or dead receiver holds up its own
//! webhook only. The cursor moves after a 2xx (or once an event is given
//! up on), so each receiver gets every change at least once, in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cfgd::election::Leader;
use cfgd::webhooks::{Attempt, Cursor, FailedEvent, FeedItem, Webhook};
use cfgd::{Client, Error};
use tokio::task::JoinSet;

use super::event::{Event, Told};
use super::post::Poster;
use crate::state::AppState;

/// How often the index of webhooks, and each webhook's requests (replay,
/// test), are read.
const LOOK: Duration = Duration::from_secs(1);

/// Starts a task per webhook in the index, and stops those removed.
pub(super) async fn run(state: Arc<AppState>, leader: Arc<Leader>) {
    let mut tasks = JoinSet::new();
    let mut running: HashMap<(String, String), tokio::task::AbortHandle> = HashMap::new();
    loop {
        while let Some(done) = tasks.try_join_next() {
            drop(done);
        }
        running.retain(|_, task| !task.is_finished());
        match state.worker_client("default").await {
            Ok(root) => match root.webhook_index().await {
                Ok(index) => {
                    running.retain(|key, task| {
                        let keep = index.contains(key);
                        if !keep {
                            task.abort();
                        }
                        keep
                    });
                    for key in index {
                        if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(key)
                        {
                            let (ns, id) = slot.key().clone();
                            slot.insert(tasks.spawn(follow(state.clone(), leader.clone(), ns, id)));
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "webhooks: cannot read the index"),
            },
            Err(error) => tracing::warn!(%error, "webhooks: cannot reach etcd"),
        }
        tokio::select! {
            _ = tokio::time::sleep(LOOK) => {}
            _ = leader.lost() => break,
        }
    }
    // Each delivery stops at its next step; one in flight finishes its
    // request, and its fenced write is refused.
    while tasks.join_next().await.is_some() {}
}

/// Delivers one webhook's events until it is removed or this replica stops
/// leading; etcd's failures are waited out.
async fn follow(state: Arc<AppState>, leader: Arc<Leader>, ns: String, id: String) {
    let mut pause = Duration::from_millis(500);
    loop {
        match deliver(&state, &leader, &ns, &id).await {
            Ok(()) => return,
            // Stopped by this replica's own clock: nothing was sent.
            Err(Error::Fenced { election, .. }) if election.is_empty() => return,
            Err(error @ Error::Fenced { .. }) => {
                super::fenced(&state, "webhook delivery", &error);
                return;
            }
            Err(error) => {
                tracing::warn!(namespace = %ns, webhook = %id, %error, "webhook delivery interrupted; going on");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One webhook's delivery: its definition, cursor and feed.
struct Delivery<'a> {
    state: &'a AppState,
    leader: &'a Leader,
    client: Client,
    ns: &'a str,
    webhook: Webhook,
    key: Vec<u8>,
    poster: Poster,
    cursor: Cursor,
    source: String,
}

async fn deliver(state: &AppState, leader: &Leader, ns: &str, id: &str) -> cfgd::Result<()> {
    let client = state.worker_client(ns).await?.fenced(leader.fence());
    let (webhook, key, created) = match client.webhook_for_delivery(id).await {
        Err(Error::NotFound { .. }) => return Ok(()),
        found => found?,
    };
    let settings = &state.settings.webhooks;
    let poster = Poster::new(
        &webhook.url,
        settings.allow_loopback,
        settings.timeout,
        &state.replica(),
    )?;
    let cursor = client.webhook_cursor(id).await?;
    let start = if cursor.revision == 0 {
        created
    } else {
        cursor.revision
    };
    let mut feed = client.change_feed(start).await?;
    let mut delivery = Delivery {
        state,
        leader,
        client,
        ns,
        webhook,
        key,
        poster,
        cursor,
        source: format!("{}/{ns}", state.settings.root),
    };
    let mut look = tokio::time::interval(LOOK);
    // The newest revision passed over unwanted, not yet in the cursor.
    let mut skipped = 0;
    loop {
        let item = tokio::select! {
            item = feed.next() => item?,
            _ = leader.lost() => return Err(stopped(&delivery.webhook.url)),
            _ = look.tick() => {
                match delivery.client.webhook_control(id).await? {
                    control if control.test.is_some() => {
                        delivery.test(control.test.as_deref().unwrap_or_default()).await?;
                    }
                    control => if let Some(from) = control.replay_from {
                        delivery.client.clear_control(id, &["replay"]).await?;
                        tracing::info!(namespace = %ns, webhook = %id, from, "webhook replay");
                        feed = delivery.client.change_feed(from.saturating_sub(1)).await?;
                    },
                }
                // Removed: the index drops it within a second, or here.
                if let Err(Error::NotFound { .. }) = delivery.client.webhook_deliveries(id).await.map(drop) {
                    return Ok(());
                }
                // Past the changes it does not want, so a restart skips them.
                if skipped > delivery.cursor.revision {
                    delivery.cursor.revision = skipped;
                    delivery.client.advance_cursor(id, delivery.cursor).await?;
                }
                continue;
            }
        };
        let revision = match &item {
            FeedItem::Change(change) => change.revision,
            FeedItem::Resync { to, .. } => *to,
            _ => 0,
        };
        let wanted = Told::of(ns, &item).filter(|told| {
            delivery.webhook.wants(&told.event_type)
                && match &item {
                    FeedItem::Change(change) => {
                        change.touches(&delivery.webhook.prefix)
                            // Not told of its own failures, which it would fail too.
                            && !(told.event_type == "io.cfgd.webhook.failed"
                                && change.names.iter().any(|n| n.name == id))
                    }
                    _ => true,
                }
        });
        let Some(told) = wanted else {
            skipped = skipped.max(revision);
            continue;
        };
        delivery.until_delivered(told).await?;
    }
}

impl Delivery<'_> {
    /// Sends an event until its receiver takes it, with growing, jittered
    /// gaps; past `retry_for` it is given up on, recorded as failed, and
    /// the cursor goes past it.
    async fn until_delivered(&mut self, told: Told) -> cfgd::Result<()> {
        let settings = &self.state.settings.webhooks;
        let first_ms = cfgd::schedules::now();
        let event = told.written(&self.source, self.webhook.format, first_ms);
        let mut gap = settings.retry_min;
        for attempt in 1u32.. {
            let mut sent = self.send(&event, attempt, None).await?;
            self.cursor.attempts += 1;
            if sent.delivered() {
                self.cursor.revision = event.revision.max(self.cursor.revision);
                return self.record(&sent, None, &[]).await;
            }
            let waited = Duration::from_millis(cfgd::schedules::now().saturating_sub(first_ms));
            if waited >= settings.retry_for {
                self.state.metrics.workers.attempt("given_up");
                if sent.error.is_none() {
                    sent.error = sent.status.map(|s| format!("HTTP {s}"));
                }
                let failed = FailedEvent::new(&sent, first_ms);
                tracing::warn!(namespace = %self.ns, webhook = %self.webhook.id, event = %event.id, "webhook event given up on after its retries");
                self.cursor.revision = event.revision.max(self.cursor.revision);
                return self.record(&sent, Some(&failed), &[]).await;
            }
            self.record(&sent, None, &[]).await?;
            // Waiting to retry, a test is still answered: it is when one
            // is most wanted.
            let wake = tokio::time::Instant::now() + jittered(gap);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => break,
                    _ = tokio::time::sleep(LOOK) => {
                        if let Some(nonce) = self.client.webhook_control(&self.webhook.id).await?.test {
                            self.test(&nonce).await?;
                        }
                    }
                    _ = self.leader.lost() => return Err(stopped(&self.webhook.url)),
                }
            }
            gap = (gap * 2).min(settings.retry_max);
        }
        unreachable!("attempts are counted in u32 but retried for a bounded time")
    }

    /// Sends a test event once and records its attempt.
    async fn test(&mut self, nonce: &str) -> cfgd::Result<()> {
        let told = Told::test(self.ns, nonce);
        let event = told.written(&self.source, self.webhook.format, cfgd::schedules::now());
        let sent = self.send(&event, 1, Some(nonce)).await?;
        self.cursor.attempts += 1;
        self.record(&sent, None, &["test"]).await
    }

    /// One attempt, as the log keeps it. Nothing goes out once this
    /// replica's lease ran out by its own clock.
    async fn send(
        &mut self,
        event: &Event,
        attempt: u32,
        test: Option<&str>,
    ) -> cfgd::Result<Attempt> {
        if !self.leader.holds() {
            return Err(stopped(&self.webhook.url));
        }
        let mut attempt = Attempt::new(
            self.cursor.attempts,
            &event.id,
            &event.event_type,
            event.revision,
            attempt,
            &self.state.replica(),
        );
        let sent = self.poster.send(event, &self.key, self.leader).await;
        if sent.unsent {
            return Err(stopped(&self.webhook.url));
        }
        let delivered = sent.status.is_some_and(|s| (200..300).contains(&s));
        if delivered {
            self.state.metrics.workers.attempt("delivered");
            self.state
                .metrics
                .workers
                .delivery_seconds
                .observe(sent.latency.as_secs_f64());
        } else {
            self.state.metrics.workers.attempt("failed");
        }
        attempt.latency_ms = sent.latency.as_secs_f64() * 1000.0;
        attempt.status = sent.status;
        attempt.error = sent.error;
        attempt.test = test.map(str::to_owned);
        Ok(attempt)
    }

    async fn record(
        &self,
        attempt: &Attempt,
        failed: Option<&FailedEvent>,
        answered: &[&str],
    ) -> cfgd::Result<()> {
        self.client
            .record_attempt(&self.webhook.id, self.cursor, attempt, failed, answered)
            .await
    }
}

/// What a worker that stopped leading answers: not a write etcd refused
/// (its `election` is empty), so not counted as fenced.
fn stopped(url: &str) -> Error {
    Error::Fenced {
        key: url.to_owned(),
        election: String::new(),
    }
}

/// `gap` times a random factor from 0.5 to 1.5, so that many webhooks that
/// failed together do not retry together.
fn jittered(gap: Duration) -> Duration {
    let random = u16::from_le_bytes(cfgd::secret::random()) as f64 / f64::from(u16::MAX);
    gap.mul_f64(0.5 + random)
}
