//! Values as stored in etcd: compact UTF-8 JSON text, nothing around it.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::Revision;

/// The largest value cfgd stores, in bytes. etcd's own request limit is
/// 1.5 MiB; keeping values well under it leaves room for the key and the
/// transaction around it.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;

pub(crate) fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>> {
    let bytes = serde_json::to_vec(value).map_err(|cause| Error::Encode {
        key: key.to_owned(),
        cause,
    })?;
    if mentions_unset(&bytes) {
        let parsed = serde_json::from_slice(&bytes).map_err(|cause| Error::Encode {
            key: key.to_owned(),
            cause,
        })?;
        check_unset(key, &parsed)?;
    }
    check_size(key, bytes)
}

/// Whether JSON text could hold the unset marker: spares parsing the
/// values that cannot.
pub(crate) fn mentions_unset(raw: &[u8]) -> bool {
    raw.windows(crate::layers::UNSET.len())
        .any(|w| w == crate::layers::UNSET.as_bytes())
}

/// Refuses a value whose unset markers are not each `{"$cfgd.unset": true}`
/// alone.
fn check_unset(key: &str, value: &serde_json::Value) -> Result<()> {
    crate::layers::check_unset(value).map_err(|reason| Error::InvalidUnset {
        key: key.to_owned(),
        reason,
    })
}

/// Validates JSON text and strips the white space between tokens.
///
/// Going through `serde_json::Value` would be simpler, but it would rewrite
/// numbers (`1e3` becomes `1000.0`, big integers lose digits): what the user
/// wrote is what etcd gets, less the white space.
pub(crate) fn compact_text(key: &str, text: &str) -> Result<Vec<u8>> {
    compact_json(key, text).map(|(bytes, _)| bytes)
}

/// [`compact_text`], with the value it parsed: a schema check then need not
/// parse it again.
pub(crate) fn compact_json(key: &str, text: &str) -> Result<(Vec<u8>, serde_json::Value)> {
    // Parsed whole, not skimmed with `IgnoredAny`, which takes numbers out
    // of range (`1e400`): stored, they could never be read back (found by
    // fuzzing).
    let parsed = serde_json::from_str(text).map_err(|cause| Error::InvalidJson {
        key: key.to_owned(),
        cause,
    })?;
    if mentions_unset(text.as_bytes()) {
        check_unset(key, &parsed)?;
    }
    let mut out = Vec::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in text.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if b.is_ascii_whitespace() {
            continue;
        }
        out.push(b);
    }
    Ok((check_size(key, out)?, parsed))
}

pub(crate) fn check_size(key: &str, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if bytes.len() > MAX_VALUE_LEN {
        return Err(Error::TooLarge {
            key: key.to_owned(),
            size: bytes.len(),
            limit: MAX_VALUE_LEN,
        });
    }
    Ok(bytes)
}

pub(crate) fn decode<T: DeserializeOwned>(
    key: &str,
    revision: Revision,
    bytes: &[u8],
) -> Result<T> {
    // Ciphertext never poses as a value: a secret reaches here as plaintext
    // only when this client opened it.
    if crate::secret::is_sealed(bytes) {
        return Err(crate::secret::no_key(key, bytes));
    }
    serde_json::from_slice(bytes).map_err(|cause| {
        // Only on the error path: tell "not JSON at all" apart from "JSON of
        // another shape", since the fixes differ (rewrite it vs. change the type).
        if serde_json::from_slice::<IgnoredAny>(bytes).is_err() {
            Error::CorruptValue {
                key: key.to_owned(),
                revision,
                cause,
            }
        } else {
            Error::Decode {
                key: key.to_owned(),
                revision,
                type_name: std::any::type_name::<T>(),
                cause,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(text: &str) -> String {
        String::from_utf8(compact_text("k", text).unwrap()).unwrap()
    }

    #[test]
    fn compaction_keeps_strings_and_numbers() {
        assert_eq!(compact(" { \"a b\" : [1e3, 2 ] }\n"), r#"{"a b":[1e3,2]}"#);
        assert_eq!(compact(r#""say \"hi \" \\ ""#), r#""say \"hi \" \\ ""#);
        assert_eq!(
            compact("123456789012345678901234567890"),
            "123456789012345678901234567890"
        );
    }

    #[test]
    fn bad_text_is_rejected() {
        for bad in [
            "",
            "hello",
            "{",
            "{\"a\":1} x",
            "[1,]",
            "'a'",
            "1e400",
            "[-1e999]",
        ] {
            assert!(
                matches!(compact_text("k", bad), Err(Error::InvalidJson { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn size_limit() {
        let just = format!("\"{}\"", "x".repeat(MAX_VALUE_LEN - 2));
        assert!(compact_text("k", &just).is_ok());
        let over = format!("\"{}\"", "x".repeat(MAX_VALUE_LEN - 1));
        assert!(matches!(
            compact_text("k", &over),
            Err(Error::TooLarge { size, .. }) if size == MAX_VALUE_LEN + 1
        ));
    }

    #[test]
    fn decode_errors_tell_corrupt_from_wrong_type() {
        assert!(matches!(
            decode::<u32>("k", 3, b"not json"),
            Err(Error::CorruptValue { revision: 3, .. })
        ));
        assert!(matches!(
            decode::<u32>("k", 3, b"\"text\""),
            Err(Error::Decode {
                type_name: "u32",
                ..
            })
        ));
        assert_eq!(decode::<u32>("k", 3, b"7").unwrap(), 7);
    }
}
