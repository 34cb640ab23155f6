//! ETags and the preconditions of reads and writes: `If-Match` and
//! `If-None-Match` parsed, and what a conditional write must find.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};

use super::error::ApiError;
use cfgd::Revision;

pub(super) fn etag(revision: Revision) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\"")).expect("digits are a valid header")
}

/// The revisions an `If-Match` / `If-None-Match` header names (`*` is 0,
/// "any").
pub(super) fn revisions(
    headers: &HeaderMap,
    name: header::HeaderName,
) -> Result<Option<Vec<Revision>>, ApiError> {
    let Some(value) = headers.get(&name) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request(format!("{name} is not text")))?;
    text.split(',')
        .map(|tag| {
            let tag = tag.trim();
            if tag == "*" {
                return Ok(0);
            }
            // `"41"` as sent back from an ETag, `W/"41"`, or bare `41`.
            let bare = tag.strip_prefix("W/").unwrap_or(tag);
            let digits = bare
                .strip_prefix('"')
                .and_then(|b| b.strip_suffix('"'))
                .unwrap_or(bare);
            // At most 18 digits and no leading zero: far past any revision
            // etcd will reach, clear of i64 overflow, and one spelling per
            // revision (the document's pattern says the same). 0 is no
            // revision: `*` stands for it here, and must be written so.
            (digits.len() <= 18
                && !digits.starts_with('0')
                && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<Revision>().ok())
            .flatten()
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name}: {tag:?} is not a cfgd ETag (a quoted revision)"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The two kinds of value the REST routes address; what differs between
/// config and flags for reads and deletes.
#[derive(Clone, Copy)]
pub(super) enum Section {
    Config,
    Flags,
}

impl Section {
    pub(super) fn key(self, client: &cfgd::Client, name: &str) -> cfgd::Result<String> {
        match self {
            Section::Config => client.etcd_key(name),
            Section::Flags => client.flag_etcd_key(name),
        }
    }

    pub(super) async fn entry(
        self,
        client: &cfgd::Client,
        name: &str,
    ) -> cfgd::Result<Option<cfgd::Entry<serde_json::Value>>> {
        match self {
            Section::Config => client.get_entry(name).await,
            Section::Flags => client.get_flag(name).await,
        }
    }

    /// Deletes `name`, only at revision `expected` if given; `None` when
    /// there was nothing to delete.
    pub(super) async fn delete(
        self,
        client: &cfgd::Client,
        name: &str,
        expected: Option<Revision>,
    ) -> cfgd::Result<Option<Revision>> {
        match (self, expected) {
            (Section::Config, None) => client.delete(name).await,
            (Section::Config, Some(expected)) => client.delete_if(name, expected).await.map(Some),
            (Section::Flags, None) => client.delete_flag(name).await,
            (Section::Flags, Some(expected)) => {
                client.delete_flag_if(name, expected).await.map(Some)
            }
        }
    }
}

/// Whether the request names a precondition at all.
pub(super) fn is_conditional(headers: &HeaderMap) -> bool {
    headers.contains_key(header::IF_MATCH) || headers.contains_key(header::IF_NONE_MATCH)
}

/// The revision a conditional write must find, if `If-Match` asks for one.
/// `*` means "only if it exists", so it resolves to the current revision and
/// fails with 412 when there is none: the library's revision 0 would mean the
/// opposite, "only if absent".
pub(super) async fn if_match(
    headers: &HeaderMap,
    client: &cfgd::Client,
    section: Section,
    name: &str,
) -> Result<Option<Revision>, ApiError> {
    match revisions(headers, header::IF_MATCH)?.as_deref() {
        None => Ok(None),
        Some(&[0]) => match section.entry(client, name).await? {
            Some(entry) => Ok(Some(entry.revision)),
            None => Err(cfgd::Error::Conflict {
                key: section.key(client, name)?,
                expected: 0,
                current: 0,
            }
            .into()),
        },
        Some(&[expected]) => Ok(Some(expected)),
        Some(_) => Err(ApiError::bad_request("If-Match: give exactly one ETag")),
    }
}

/// The revision a `PUT` must find: `If-None-Match: *` creates only (the
/// name must not exist), else as [`if_match`].
pub(super) async fn put_precondition(
    headers: &HeaderMap,
    client: &cfgd::Client,
    section: Section,
    name: &str,
) -> Result<Option<Revision>, ApiError> {
    match revisions(headers, header::IF_NONE_MATCH)?.as_deref() {
        None => if_match(headers, client, section, name).await,
        // With If-Match too, the value must both exist (at a revision) and
        // not exist: never true, so 412, as HTTP has it, once both parse.
        Some(&[0]) if if_match(headers, client, section, name).await?.is_some() => {
            Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "conflict",
                "If-Match and If-None-Match: * never hold together (the value must exist and not exist)",
            ))
        }
        Some(&[0]) => Ok(Some(0)),
        Some(_) => Err(ApiError::bad_request(
            "If-None-Match on a write: only * (create, must not exist)",
        )),
    }
}

/// On a dry run, whether the precondition holds now: 412 when the value is
/// not at the revision it names (0: absent), as the write would answer.
pub(super) async fn would_hold(
    section: Section,
    client: &cfgd::Client,
    name: &str,
    expected: Option<Revision>,
) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let current = section.entry(client, name).await?.map_or(0, |e| e.revision);
    if current != expected {
        return Err(cfgd::Error::Conflict {
            key: section.key(client, name)?,
            expected,
            current,
        }
        .into());
    }
    Ok(())
}
