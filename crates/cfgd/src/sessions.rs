//! Sign-in sessions that every replica of a server sees: one key per
//! session under `{root}/_sessions/`, on a lease that ends it when it
//! expires, so that signing out on one replica signs out on all of them and
//! nothing is left behind by sessions that were never closed.
//!
//! The record is the server's to define (opaque bytes here); the id is a
//! digest of the cookie's secret, never the secret itself, so that reading
//! etcd does not let anyone sign in.

use std::time::Duration;

use etcd_client::PutOptions;

use crate::client::Client;
use crate::error::{Error, Result};

/// Where sessions live under the root: not a namespace, which must start
/// with a letter or a digit.
pub const SESSIONS: &str = "_sessions";

/// The longest session etcd is asked to keep.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl Client {
    fn session_key(&self, id: &str) -> Result<String> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(Error::InvalidName {
                name: id.to_owned(),
                reason: "a session id is letters, digits and '-'",
            });
        }
        Ok(format!("{}/{SESSIONS}/{id}", self.state.etcd().root))
    }

    /// Stores session `id` with `record` for `ttl` (whole seconds, at least
    /// one, at most [`MAX_TTL`]), after which etcd deletes it.
    pub async fn open_session(&self, id: &str, record: &[u8], ttl: Duration) -> Result<()> {
        let key = self.session_key(id)?;
        let etcd = self.state.etcd();
        let raw = etcd.etcd().await?.client.clone();
        let ttl = ttl.clamp(Duration::from_secs(1), MAX_TTL).as_secs() as i64;
        let lease = raw
            .lease_client()
            .grant(ttl, None)
            .await
            .map_err(|e| etcd.classify(e, &key, None))?
            .id();
        let mut kv = etcd.kv().await?;
        kv.put(
            key.as_str(),
            record,
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .map_err(|e| etcd.classify(e, &key, None))?;
        Ok(())
    }

    /// Session `id`'s record, or `None` once it expired or was closed.
    pub async fn session(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let key = self.session_key(id)?;
        Ok(self.fetch(&key, None).await?.map(|kv| kv.value().to_vec()))
    }

    /// Ends session `id` now, with its lease; false if it was already gone.
    pub async fn close_session(&self, id: &str) -> Result<bool> {
        let key = self.session_key(id)?;
        let Some(kv) = self.fetch(&key, None).await? else {
            return Ok(false);
        };
        let etcd = self.state.etcd();
        let raw = etcd.etcd().await?.client.clone();
        if kv.lease() != 0 {
            // Revoking deletes the key with it; a lease that already ran
            // out is no failure.
            if raw.lease_client().revoke(kv.lease()).await.is_ok() {
                return Ok(true);
            }
        }
        let mut kv_client = etcd.kv().await?;
        let deleted = kv_client
            .delete(key.as_str(), None)
            .await
            .map_err(|e| etcd.classify(e, &key, None))?;
        Ok(deleted.deleted() > 0)
    }
}
