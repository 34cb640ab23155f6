//! The namespace's policy: read, stored, deleted. Writes honour it (see
//! `writes`); change requests are how protected names change (`requests`).

use super::handle::Client;
use crate::error::{Error, Result};
use crate::key::Kind;
use crate::policy::Policy;
use crate::types::Revision;
use crate::value;

impl Client {
    /// The namespace's policy as stored in etcd now; the default (nothing
    /// protected, one approval) when none is.
    pub async fn policy(&self) -> Result<Policy> {
        let key = self.policy_key();
        match self.fetch(&key, None).await? {
            Some(kv) => Policy::parse(&key, kv.value()),
            None => Ok(Policy::default()),
        }
    }

    /// Stores the namespace's policy, after checking it
    /// ([`Error::InvalidPolicy`]).
    ///
    /// ```no_run
    /// # async fn demo(client: cfgd::Client) -> cfgd::Result<()> {
    /// client
    ///     .set_policy_json(r#"{"protected": ["payments/*"], "approvals": 1}"#)
    ///     .await?;
    /// // Refused from now on: payments/limits changes through a change request.
    /// assert!(client.set("payments/limits", &1).await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn set_policy(&self, policy: &Policy) -> Result<Revision> {
        let key = self.policy_key();
        policy.check().map_err(|reason| Error::InvalidPolicy {
            key: key.clone(),
            reason,
        })?;
        let bytes = value::encode(&key, policy)?;
        self.put(key, bytes, "policy.set").await
    }

    /// [`set_policy`](Self::set_policy) from JSON text.
    pub async fn set_policy_json(&self, json: &str) -> Result<Revision> {
        self.set_policy(&Policy::parse(&self.policy_key(), json.as_bytes())?)
            .await
    }

    /// Deletes the namespace's policy; `None` when there was none.
    pub async fn delete_policy(&self) -> Result<Option<Revision>> {
        self.delete_key(self.policy_key(), "policy.delete").await
    }

    fn policy_key(&self) -> String {
        self.state.space.key_unchecked(Kind::Policy, "")
    }
}
