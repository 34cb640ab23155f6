//! The namespace's settings (`meta`): read and stored. A live client
//! applies a change to them as it comes, like any other change.

use super::handle::Client;
use crate::error::Result;
use crate::key::Kind;
use crate::meta::Meta;
use crate::types::Revision;
use crate::value;

impl Client {
    /// The namespace's settings as stored in etcd now; the defaults when
    /// none are.
    pub async fn meta(&self) -> Result<Meta> {
        let key = self.meta_key();
        match self.fetch(&key, None).await? {
            Some(kv) => Meta::parse(&key, kv.value()),
            None => Ok(Meta::default()),
        }
    }

    /// Stores the namespace's settings.
    ///
    /// ```no_run
    /// # async fn demo(client: cfgd::Client) -> cfgd::Result<()> {
    /// use cfgd::flags::Bucketing;
    ///
    /// let meta = client.meta().await?.with_fractional(Bucketing::V3);
    /// client.set_meta(&meta).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_meta(&self, meta: &Meta) -> Result<Revision> {
        let key = self.meta_key();
        let bytes = value::encode(&key, meta)?;
        self.put(key, bytes, "meta.set").await
    }

    /// [`set_meta`](Self::set_meta) from JSON text, refused
    /// ([`Error::InvalidMeta`](crate::Error::InvalidMeta)) unless it is an
    /// object of known fields with valid values.
    pub async fn set_meta_json(&self, json: &str) -> Result<Revision> {
        self.set_meta(&Meta::parse(&self.meta_key(), json.as_bytes())?)
            .await
    }

    fn meta_key(&self) -> String {
        self.state.space.key_unchecked(Kind::Meta, "")
    }
}
