//! Caps on long-lived streams (SSE, OFREP change streams, gRPC sync and
//! event streams): one pool for the server, and a share of it per token,
//! so that one client cannot hold every connection the machine has.
//! A refusal says when to retry: 503 (or `UNAVAILABLE`) when the server is
//! full, 429 (or `RESOURCE_EXHAUSTED`) when the token's share is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Seconds a refused client is told to wait before retrying.
pub(super) const RETRY_AFTER_SECS: u64 = 5;

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Full {
    /// Every stream the server allows is open.
    Server,
    /// Every stream this token may hold is open.
    Token,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_token: HashMap<String, usize>,
}

/// The open streams, counted.
#[derive(Default)]
pub(super) struct Streams {
    open: Mutex<Open>,
}

impl Streams {
    /// A place for one more stream of `token`, held until the permit drops.
    pub(super) fn acquire(
        self: &Arc<Self>,
        token: &str,
        max_total: usize,
        max_per_token: usize,
    ) -> Result<Permit, Full> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= max_total {
            return Err(Full::Server);
        }
        let mine = open.by_token.entry(token.to_owned()).or_default();
        if *mine >= max_per_token {
            return Err(Full::Token);
        }
        *mine += 1;
        open.total += 1;
        Ok(Permit {
            streams: self.clone(),
            token: token.to_owned(),
        })
    }
}

/// One open stream's place; given back on drop.
pub(super) struct Permit {
    streams: Arc<Streams>,
    token: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.by_token.get_mut(&self.token) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.by_token.remove(&self.token);
            }
        }
    }
}

/// A token bucket per token: `rate` writes a second, in bursts of up to
/// `rate` (at least one).
#[derive(Default)]
pub(super) struct WriteRates {
    buckets: Mutex<HashMap<String, (f64, std::time::Instant)>>,
}

impl WriteRates {
    /// Takes one write from `token`'s bucket; when it is empty, how many
    /// seconds until there is one.
    pub(super) fn take(&self, token: &str, rate: f64) -> Result<(), u64> {
        let burst = rate.max(1.0);
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (level, at) = buckets.entry(token.to_owned()).or_insert((burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *level) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_places_come_back() {
        let streams = Arc::new(Streams::default());
        let a1 = streams.acquire("a", 3, 2).unwrap();
        let _a2 = streams.acquire("a", 3, 2).unwrap();
        assert_eq!(streams.acquire("a", 3, 2).err(), Some(Full::Token));
        let _b1 = streams.acquire("b", 3, 2).unwrap();
        assert_eq!(streams.acquire("b", 3, 2).err(), Some(Full::Server));
        drop(a1);
        assert!(streams.acquire("b", 3, 2).is_ok());
    }

    #[test]
    fn write_rates_allow_a_burst_then_refuse_with_a_wait() {
        let rates = WriteRates::default();
        assert!(rates.take("a", 2.0).is_ok());
        assert!(rates.take("a", 2.0).is_ok());
        assert_eq!(rates.take("a", 2.0), Err(1));
        assert!(rates.take("b", 2.0).is_ok(), "each token has its own");
        assert_eq!(rates.take("c", 0.1).and(rates.take("c", 0.1)), Err(10));
    }
}
