//! Secrets at rest: sealing what the policy calls secret on its way to
//! etcd, opening it on the way back, and rotating the key.

use std::borrow::Cow;

use super::handle::Client;
use crate::error::{Error, Result, SchemaFailure};
use crate::key::Kind;
use crate::policy::Policy;
use crate::secret;
use crate::types::Revision;
use crate::value;

/// What [`Client::reseal_secrets`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResealReport {
    /// Names sealed again under the new key (or sealed for the first time:
    /// plaintext stored before the policy called them secret).
    pub resealed: Vec<String>,
    /// Names already under the new key: a resumed rotation skips them.
    pub current: Vec<String>,
}

impl Client {
    /// `raw` as read from `key`: a secret's plaintext, or `raw` itself.
    pub(super) fn opened<'r>(&self, key: &str, raw: &'r [u8]) -> Result<Cow<'r, [u8]>> {
        if !secret::is_sealed(raw) {
            return Ok(Cow::Borrowed(raw));
        }
        match &self.state.link.keyring {
            Some(keyring) => keyring.open(key, raw).map(Cow::Owned),
            None => Err(secret::no_key(key, raw)),
        }
    }

    /// A schema check's answer for `name`, safe to show: when the policy
    /// calls the name a secret, each failure says where and which rule but
    /// never quotes the value (the validator's own words would).
    pub(super) async fn unquoted(&self, name: &str, checked: Result<()>) -> Result<()> {
        let Err(Error::SchemaViolation {
            key,
            pattern,
            failures,
        }) = checked
        else {
            return checked;
        };
        // When the policy cannot be read, the value is taken for a secret.
        let secret = self
            .current_policy()
            .await
            .map_or(true, |policy| policy.is_secret(name));
        let failures = if secret {
            failures
                .into_iter()
                .map(|f| SchemaFailure {
                    message: format!(
                        "breaks the schema's `{}` rule (a secret: not quoted)",
                        f.rule
                    ),
                    ..f
                })
                .collect()
        } else {
            failures
        };
        Err(Error::SchemaViolation {
            key,
            pattern,
            failures,
        })
    }

    /// `bytes` as they go to `key`: sealed when `policy` calls the name a
    /// secret. Only values are sealed; flags are evaluated where they are.
    pub(crate) fn sealed_for(&self, policy: &Policy, key: &str, bytes: Vec<u8>) -> Result<Vec<u8>> {
        let Some(name) = self.state.space.name_of(Kind::Config, key.as_bytes()) else {
            return Ok(bytes);
        };
        if !policy.is_secret(name) {
            return Ok(bytes);
        }
        let Some(keyring) = &self.state.link.keyring else {
            return Err(Error::Secret {
                key: key.to_owned(),
                reason: "is a secret by the namespace policy, and writing it needs a secret key \
                         (give --secret-key-file or CFGD_SECRET_KEY_FILE)"
                    .into(),
            });
        };
        value::check_size(key, keyring.seal(key, &bytes))
    }

    /// Seals every secret of the namespace under this client's sealing key
    /// (the first of its key file), compare-and-set on each, so a write made
    /// meanwhile is never lost: `cfgctl secret rotate`. Values already under
    /// that key are skipped, so an interrupted run is finished by running it
    /// again. Values the policy calls secret that were stored as plaintext
    /// (before the policy said so) are sealed too. `each` is called with
    /// every name sealed, as it is written. The client must hold the keys
    /// the secrets are under now, and the new one first.
    pub async fn reseal_secrets(&self, mut each: impl FnMut(&str)) -> Result<ResealReport> {
        let Some(keyring) = self.state.link.keyring.clone() else {
            return Err(Error::SecretKey {
                reason: "resealing secrets needs a secret key file".into(),
            });
        };
        let policy = self.current_policy().await?;
        let mut report = ResealReport::default();
        for kv in self.list_raw(Kind::Config, "").await? {
            let Some(name) = self.state.space.name_of(Kind::Config, kv.key()) else {
                continue;
            };
            let name = name.to_owned();
            let sealed = secret::is_sealed(kv.value());
            if !sealed && !policy.is_secret(&name) {
                continue;
            }
            if secret::sealed_by(kv.value()).as_deref() == Some(keyring.sealing_id()) {
                report.current.push(name);
                continue;
            }
            let key = self.etcd_key(&name)?;
            let (mut raw, mut revision): (Vec<u8>, Revision) =
                (kv.value().to_vec(), kv.mod_revision());
            let written = loop {
                let plain = self.opened(&key, &raw)?.into_owned();
                let bytes = value::check_size(&key, keyring.seal(&key, &plain))?;
                match self
                    .put_admitted(&key, bytes, revision, "secret.reseal")
                    .await
                {
                    Ok(_) => break true,
                    // Written meanwhile: seal what is there now.
                    Err(Error::Conflict { .. }) => match self.fetch(&key, None).await? {
                        Some(now)
                            if secret::sealed_by(now.value()).as_deref()
                                == Some(keyring.sealing_id()) =>
                        {
                            break false
                        }
                        Some(now) => (raw, revision) = (now.value().to_vec(), now.mod_revision()),
                        None => break false,
                    },
                    Err(e) => return Err(e),
                }
            };
            if written {
                each(&name);
                report.resealed.push(name);
            }
        }
        Ok(report)
    }
}
