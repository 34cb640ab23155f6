//! One worker at a time: etcd's election API on `{root}/_workers/election`,
//! with a lease that the elected replica keeps alive.
//!
//! Background work (webhook deliveries, scheduled releases) must run in one
//! replica only, and must stop the moment that replica's claim ends. The
//! claim is the election's leader key, which etcd deletes when the lease
//! expires; a [`Fence`] compares its create revision in every transaction
//! a worker makes ([`Client::fenced`]), so a replica that was paused or cut
//! off past its lease can change nothing, even if it does not know yet.
//!
//! What etcd cannot fence (a request to a webhook receiver) is guarded by
//! [`Leader::holds`]: the lease's deadline by this machine's monotonic
//! clock, which keeps running while a process is stopped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp};
use tokio::sync::watch;

use crate::client::Client;
use crate::error::Result;

/// The election's name under the root: not a namespace, which must start
/// with a letter or a digit.
pub const ELECTION: &str = "_workers/election";

/// The default lease of the elected worker.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The leadership a worker's writes compare: the election key it holds and
/// that key's create revision. Once the lease expires the key is gone (or
/// another replica's), and every fenced transaction fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub(crate) key: Vec<u8>,
    pub(crate) rev: i64,
}

impl Fence {
    /// The compare that every fenced transaction adds.
    pub(crate) fn compare(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.rev)
    }

    /// The election key, as errors name it.
    pub fn key(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }
}

/// This replica's leadership while it lasts.
#[derive(Debug)]
pub struct Leader {
    fence: Fence,
    /// Milliseconds after `epoch` at which the lease runs out unless kept.
    deadline_ms: AtomicU64,
    epoch: Instant,
    /// True once the elector gave the leadership up.
    gone: watch::Sender<bool>,
}

impl Leader {
    /// What this leader's writes compare.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Whether the lease still holds by this machine's clock: false once
    /// its TTL passed since etcd last confirmed it. Checked before anything
    /// that etcd cannot fence, such as sending a webhook.
    pub fn holds(&self) -> bool {
        !*self.gone.borrow()
            && (self.epoch.elapsed().as_millis() as u64) < self.deadline_ms.load(Ordering::Acquire)
    }

    /// Resolves once the leadership is lost: what workers wait on to stop
    /// at their next step (a write already on its way is refused by its
    /// fence).
    pub async fn lost(&self) {
        let mut gone = self.gone.subscribe();
        let _ = gone.wait_for(|gone| *gone).await;
    }

    fn extend(&self, from: Instant, ttl: Duration) {
        let until = from.saturating_duration_since(self.epoch) + ttl;
        self.deadline_ms
            .store(until.as_millis() as u64, Ordering::Release);
    }
}

/// Campaigns for the election and holds it: see [`Client::elector`].
pub struct Elector {
    client: Client,
    ttl: Duration,
    id: String,
}

impl Client {
    /// An elector for the workers' election under this client's root,
    /// with a lease of `ttl` (whole seconds, at least 1), campaigning as
    /// `id` (the replica's name, which the election key's value holds).
    pub fn elector(&self, ttl: Duration, id: impl Into<String>) -> Elector {
        Elector {
            client: self.clone(),
            ttl: ttl.max(Duration::from_secs(1)),
            id: id.into(),
        }
    }

    /// The election key's name: `{root}/_workers/election`.
    pub(crate) fn election_name(&self) -> String {
        format!("{}/{ELECTION}", self.state.etcd().root)
    }

    /// After a fenced transaction failed: [`Error::Fenced`](crate::Error)
    /// if the fence no longer holds, or `None` when it still does (and
    /// something else the transaction compared moved).
    pub(crate) async fn fence_lost(&self, key: &str) -> Option<crate::Error> {
        let fence = self.author.fence.as_ref()?;
        let held = match self.fetch(&fence.key(), None).await {
            Ok(Some(kv)) => kv.create_revision() == fence.rev,
            Ok(None) => false,
            Err(e) => return Some(e),
        };
        (!held).then(|| crate::Error::Fenced {
            key: key.to_owned(),
            election: fence.key(),
        })
    }

    /// The fence's compare, when this handle is fenced.
    pub(crate) fn fence_compare(&self) -> Option<Compare> {
        self.author.fence.as_ref().map(Fence::compare)
    }
}

impl Elector {
    /// Runs until `stop` turns true (then resigns, so that another replica
    /// takes over at once): campaigns, and while elected keeps the lease
    /// alive, sending `Some` on `leader` on election and `None` as soon as
    /// the lease is lost (etcd says so, or it could not be kept within its
    /// TTL). An etcd outage costs the leadership, nothing else: it
    /// campaigns again once etcd answers.
    pub async fn run(
        self,
        leader: &watch::Sender<Option<Arc<Leader>>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut pause = Duration::from_millis(200);
        while !*stop.borrow() {
            match self.term(leader, &mut stop).await {
                Ok(()) => pause = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!(error = %e, "workers' election: campaigning again");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
            if leader.borrow().is_some() {
                leader.send_replace(None);
            }
        }
    }

    /// One lease: campaign with it, then hold the election until it is lost.
    async fn term(
        &self,
        leader: &watch::Sender<Option<Arc<Leader>>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        let etcd = self.client.state.etcd();
        let name = self.client.election_name();
        let raw = etcd.etcd().await?.client.clone();
        let ttl_secs = self.ttl.as_secs() as i64;
        let call = |what: &'static str, e| etcd.classify(e, what, None);
        let lease = raw
            .lease_client()
            .grant(ttl_secs, None)
            .await
            .map_err(|e| call("lease grant", e))?
            .id();
        let result = self.hold(&raw, &name, lease, leader, stop).await;
        // The workers stop before anything else is asked of etcd.
        if leader.borrow().is_some() {
            leader.send_replace(None);
        }
        // Let the next replica take over now rather than at the lease's end.
        let _ =
            tokio::time::timeout(Duration::from_secs(1), raw.lease_client().revoke(lease)).await;
        result
    }

    async fn hold(
        &self,
        raw: &etcd_client::Client,
        name: &str,
        lease: i64,
        leader: &watch::Sender<Option<Arc<Leader>>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        let etcd = self.client.state.etcd();
        let call = |e| etcd.classify(e, name, None);
        let (keeper, answers) = raw.lease_client().keep_alive(lease).await.map_err(call)?;
        let mut keep = Keep {
            keeper,
            answers,
            unanswered: Default::default(),
        };
        let every = self.ttl / 3;
        let epoch = Instant::now();
        let mut deadline = epoch + self.ttl;
        // Campaigning blocks until elected; the lease is kept alive meanwhile.
        let mut election = raw.election_client();
        let campaign = election.campaign(name, self.id.as_bytes(), lease);
        tokio::pin!(campaign);
        let mut tick = tokio::time::interval(every);
        let elected = loop {
            tokio::select! {
                won = &mut campaign => break won.map_err(call)?,
                _ = tick.tick() => {
                    let (alive, sent) = keep.once(every).await?;
                    if !alive {
                        return Ok(());
                    }
                    deadline = sent + self.ttl;
                }
                _ = stop.changed() => return Ok(()),
            }
        };
        let Some(key) = elected.leader() else {
            return Ok(());
        };
        let me = Arc::new(Leader {
            fence: Fence {
                key: key.key().to_vec(),
                rev: key.rev(),
            },
            deadline_ms: AtomicU64::new(0),
            epoch,
            gone: watch::channel(false).0,
        });
        me.extend(deadline - self.ttl, self.ttl);
        tracing::info!(replica = %self.id, key = %me.fence.key(), "elected: this replica runs the workers");
        leader.send_replace(Some(me.clone()));
        let held = self.lead(&me, &mut keep, &mut tick, stop).await;
        me.gone.send_replace(true);
        held
    }

    /// Keeps the lease of `me` alive until it is lost or `stop` turns.
    async fn lead(
        &self,
        me: &Leader,
        keep: &mut Keep,
        tick: &mut tokio::time::Interval,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        let every = self.ttl / 3;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return Ok(()),
            }
            // A stopped process wakes here past its deadline: it gives the
            // workers up before it asks etcd anything.
            if !me.holds() {
                tracing::warn!(replica = %self.id, "lost the workers' election: the lease ran out before it was kept");
                return Ok(());
            }
            match keep.once(every).await {
                Ok((true, sent)) => me.extend(sent, self.ttl),
                Ok((false, _)) => {
                    tracing::warn!(replica = %self.id, "lost the workers' election: etcd says the lease expired");
                    return Ok(());
                }
                // Not confirmed: keep trying until the deadline says no.
                Err(e) => {
                    tracing::warn!(replica = %self.id, error = %e, "could not keep the workers' lease")
                }
            }
        }
    }
}

/// The lease's keep-alive stream, with the send time of each keep-alive
/// not answered yet: etcd answers them in order, so an answer that comes
/// late is paired with the keep-alive it answers, never a newer one.
struct Keep {
    keeper: etcd_client::LeaseKeeper,
    answers: etcd_client::LeaseKeepAliveStream,
    unanswered: std::collections::VecDeque<Instant>,
}

impl Keep {
    /// Sends one keep-alive and waits up to `within` for an answer: whether
    /// the lease is alive, and when the keep-alive it answers was sent (the
    /// lease then lasts at least its TTL from that time).
    async fn once(&mut self, within: Duration) -> Result<(bool, Instant)> {
        let lost = |what: &str| crate::Error::Etcd {
            key: ELECTION.to_owned(),
            cause: what.to_owned().into(),
        };
        self.unanswered.push_back(Instant::now());
        self.keeper
            .keep_alive()
            .await
            .map_err(|_| lost("the lease keep-alive stream closed"))?;
        match tokio::time::timeout(within, self.answers.message()).await {
            Ok(Ok(Some(answer))) => {
                let sent = self.unanswered.pop_front().expect("one was sent");
                Ok((answer.ttl() > 0, sent))
            }
            Ok(Ok(None)) => Err(lost("the lease keep-alive stream ended")),
            Ok(Err(_)) => Err(lost("the lease keep-alive failed")),
            Err(_) => Err(lost("no keep-alive answer in time")),
        }
    }
}
