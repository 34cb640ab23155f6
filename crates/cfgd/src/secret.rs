//! Secrets encrypted at rest: names the namespace policy calls `secrets`
//! are stored in etcd as an envelope, never as plaintext.
//!
//! The envelope is one JSON object (so that tools that expect JSON in etcd
//! still read it) of which nothing is the value:
//!
//! ```text
//! {"$cfgd.secret":1,"key":"<key id>","nonce":"<base64>","data":"<base64>"}
//! ```
//!
//! `data` is XChaCha20-Poly1305 over the value's JSON text, with the value's
//! etcd key as associated data: an envelope copied to another name does
//! not open. `key` names the key that sealed it, so a reader holding
//! several keys (during a rotation) knows which to use, and one holding
//! none of them says which it lacks.
//!
//! A key file holds one key per line, `cfgd-secret-key-v1 <id> <base64>`,
//! with `#` comments; the first key seals, every key opens.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const KEY_LINE: &str = "cfgd-secret-key-v1";
const MARKER: &[u8] = b"{\"$cfgd.secret\"";

#[derive(Serialize, Deserialize)]
struct Envelope {
    #[serde(rename = "$cfgd.secret")]
    version: u8,
    key: String,
    nonce: String,
    data: String,
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The keys a client seals and opens secrets with: the first seals, all
/// open. Never printed: its `Debug` shows the key ids only.
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("ids", &self.ids()).finish()
    }
}

/// Whether stored bytes are a secret envelope rather than a value.
pub(crate) fn is_sealed(raw: &[u8]) -> bool {
    raw.trim_ascii_start().starts_with(MARKER)
}

/// The id of the key that sealed an envelope; `None` for anything else.
pub fn sealed_by(raw: &[u8]) -> Option<String> {
    if !is_sealed(raw) {
        return None;
    }
    serde_json::from_slice::<Envelope>(raw).ok().map(|e| e.key)
}

impl Keyring {
    /// A new key file's text: one fresh random key with a random id.
    pub fn generate() -> String {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        // The id only has to tell keys apart; a nonce is 24 random bytes.
        let id = hex(&random::<4>());
        format!(
            "# cfgd secret key: keep it out of etcd and of version control.\n\
             {KEY_LINE} {id} {}\n",
            B64.encode(key)
        )
    }

    /// Reads a key file.
    pub fn load(path: impl AsRef<Path>) -> Result<Keyring> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::SecretKey {
            reason: format!("cannot read the secret key file {}: {e}", path.display()),
        })?;
        Keyring::parse(&text).map_err(|reason| Error::SecretKey {
            reason: format!("{}: {reason}", path.display()),
        })
    }

    /// Parses a key file's text.
    pub fn parse(text: &str) -> std::result::Result<Keyring, String> {
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| format!("line {}: {what}", number + 1);
            let mut parts = line.split_ascii_whitespace();
            if parts.next() != Some(KEY_LINE) {
                return Err(bad(&format!(
                    "expected `{KEY_LINE} <id> <base64 key>` (make one with `cfgctl secret keygen`)"
                )));
            }
            let (Some(id), Some(material), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("expected an id and a key after the version"));
            };
            if !(1..=64).contains(&id.len())
                || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(bad("the key id must be 1 to 64 letters, digits or '-'"));
            }
            let material = B64
                .decode(material)
                .ok()
                .filter(|m| m.len() == 32)
                .ok_or_else(|| bad("the key must be 32 bytes in base64"))?;
            if keys.iter().any(|k: &Key| k.id == id) {
                return Err(bad(&format!("key id {id} appears twice")));
            }
            keys.push(Key {
                id: id.to_owned(),
                cipher: XChaCha20Poly1305::new_from_slice(&material).expect("32 bytes"),
            });
        }
        if keys.is_empty() {
            return Err("no key in the file".into());
        }
        Ok(Keyring { keys })
    }

    /// The ids of the keys, the sealing one first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// The id of the key that seals.
    pub fn sealing_id(&self) -> &str {
        &self.keys[0].id
    }

    /// This keyring with `other`'s keys added, `other`'s first key sealing:
    /// what a rotation writes with, while still opening the old values.
    pub fn rotating_to(self, other: Keyring) -> Keyring {
        let mut keys = other.keys;
        for key in self.keys {
            if !keys.iter().any(|k| k.id == key.id) {
                keys.push(key);
            }
        }
        Keyring { keys }
    }

    /// `plain` sealed for etcd key `key` (the associated data: the
    /// envelope opens only for the same `key`). Public for stores of
    /// their own that must hold secrets as etcd does, such as
    /// cfgd-agent's snapshot.
    pub fn seal(&self, key: &str, plain: &[u8]) -> Vec<u8> {
        let sealing = &self.keys[0];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let data = sealing
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: key.as_bytes(),
                },
            )
            .expect("in-memory encryption does not fail");
        serde_json::to_vec(&Envelope {
            version: 1,
            key: sealing.id.clone(),
            nonce: B64.encode(nonce),
            data: B64.encode(data),
        })
        .expect("serializes")
    }

    /// The plaintext of an envelope stored at etcd key `key`.
    pub fn open(&self, key: &str, raw: &[u8]) -> Result<Vec<u8>> {
        let fail = |reason: String| Error::Secret {
            key: key.to_owned(),
            reason,
        };
        let envelope: Envelope = serde_json::from_slice(raw)
            .map_err(|e| fail(format!("the stored secret envelope is malformed: {e}")))?;
        if envelope.version != 1 {
            return Err(fail(format!(
                "sealed with envelope version {}, which this cfgd does not know",
                envelope.version
            )));
        }
        let Some(with) = self.keys.iter().find(|k| k.id == envelope.key) else {
            return Err(fail(format!(
                "sealed under key {}, which is not in the secret key file (it holds {})",
                envelope.key,
                self.ids().join(", ")
            )));
        };
        let nonce = B64
            .decode(&envelope.nonce)
            .ok()
            .filter(|n| n.len() == 24)
            .ok_or_else(|| fail("the envelope's nonce is not 24 bytes in base64".into()))?;
        let data = B64
            .decode(&envelope.data)
            .map_err(|_| fail("the envelope's data is not base64".into()))?;
        with.cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &data,
                    aad: key.as_bytes(),
                },
            )
            .map_err(|_| {
                fail(format!(
                    "does not open under key {}: altered, or copied from another name",
                    envelope.key
                ))
            })
    }
}

/// The error for an envelope a client cannot open: it holds no key.
pub(crate) fn no_key(key: &str, raw: &[u8]) -> Error {
    Error::Secret {
        key: key.to_owned(),
        reason: match sealed_by(raw) {
            Some(id) => format!(
                "is a secret sealed under key {id}; this client has no secret key \
                 (give --secret-key-file or CFGD_SECRET_KEY_FILE)"
            ),
            None => "is a malformed secret envelope".into(),
        },
    }
}

/// `N` bytes from the operating system's random source: the one source of
/// randomness of cfgd (keys, nonces, writer tags, passwords, a server's
/// stream secret).
pub fn random<const N: usize>() -> [u8; N] {
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// `bytes` as lowercase hex, two digits a byte: cfgd's one hex encoder.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_at_its_own_key() {
        let ring = Keyring::parse(&Keyring::generate()).unwrap();
        let sealed = ring.seal("/cfgd/a/config/db", br#"{"password":"hunter2"}"#);
        assert!(is_sealed(&sealed));
        assert!(!String::from_utf8_lossy(&sealed).contains("hunter2"));
        assert_eq!(sealed_by(&sealed).as_deref(), Some(ring.sealing_id()));
        assert_eq!(
            ring.open("/cfgd/a/config/db", &sealed).unwrap(),
            br#"{"password":"hunter2"}"#
        );
        let moved = ring.open("/cfgd/a/config/other", &sealed).unwrap_err();
        assert!(
            moved.to_string().contains("copied from another name"),
            "{moved}"
        );
        // Two seals of one value differ: the nonce is fresh each time.
        assert_ne!(
            sealed,
            ring.seal("/cfgd/a/config/db", br#"{"password":"hunter2"}"#)
        );
    }

    #[test]
    fn a_rotating_ring_opens_both_and_seals_with_the_new() {
        let old = Keyring::parse(&Keyring::generate()).unwrap();
        let sealed_old = old.seal("k", b"1");
        let new_text = Keyring::generate();
        let ring = old.rotating_to(Keyring::parse(&new_text).unwrap());
        let new = Keyring::parse(&new_text).unwrap();
        assert_eq!(ring.open("k", &sealed_old).unwrap(), b"1");
        assert_eq!(new.open("k", &ring.seal("k", b"2")).unwrap(), b"2");
        let err = new.open("k", &sealed_old).unwrap_err().to_string();
        assert!(err.contains("not in the secret key file"), "{err}");
    }

    #[test]
    fn bad_key_files_say_which_line() {
        for (text, says) in [
            ("", "no key"),
            ("cfgd-secret-key-v1 a", "line 1"),
            ("# c\nsecret", "line 2"),
            ("cfgd-secret-key-v1 a AAAA", "32 bytes"),
            ("cfgd-secret-key-v1 a/b AAAA", "key id"),
        ] {
            let err = Keyring::parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
        let key = Keyring::generate();
        let twice = format!("{key}{key}");
        assert!(Keyring::parse(&twice).unwrap_err().contains("twice"));
    }
}
