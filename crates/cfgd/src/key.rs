//! The key layout in etcd: `{root}/{namespace}/{kind}/{name}`.
//!
//! Everything here is validated before it can reach etcd, so a bad name is
//! rejected locally with a precise reason and never becomes a stray key.

use crate::error::{Error, Result};

/// The default root under which cfgd keeps its keys.
pub const DEFAULT_ROOT: &str = "/cfgd";

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// What a key holds; each kind is a separate subtree of the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Config,
    Flags,
    /// JSON Schemas by name pattern (see `schema`).
    Schemas,
    /// The namespace's policy (see `policy`): one key, `{base}policy`,
    /// whose name is `""`.
    Policy,
    /// The namespace's settings (see `meta`): one key, `{base}meta`, whose
    /// name is `""`.
    Meta,
    /// The namespaces that extend this one, one key each,
    /// `{base}extended-by/{child}`, written with the child's settings: what
    /// lets a write here find the namespaces it reaches.
    Children,
    /// Overlays for gray releases (see `overlays`): `{base}overlays/{o}/meta`
    /// (the selector) and `{base}overlays/{o}/config/{name}`, named here
    /// `{o}/meta` and `{o}/config/{name}`.
    Overlays,
}

impl Kind {
    pub(crate) const ALL: [Kind; 7] = [
        Kind::Config,
        Kind::Flags,
        Kind::Schemas,
        Kind::Policy,
        Kind::Meta,
        Kind::Children,
        Kind::Overlays,
    ];

    /// Whether the kind is one key (named `""`) rather than a subtree.
    pub(crate) fn is_single(self) -> bool {
        matches!(self, Kind::Policy | Kind::Meta)
    }

    pub(crate) fn segment(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Flags => "flags",
            Kind::Schemas => "schemas",
            Kind::Policy => "policy",
            Kind::Meta => "meta",
            Kind::Children => "extended-by",
            Kind::Overlays => "overlays",
        }
    }

    pub(crate) fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "config" => Some(Kind::Config),
            "flags" => Some(Kind::Flags),
            "schemas" => Some(Kind::Schemas),
            "policy" => Some(Kind::Policy),
            "meta" => Some(Kind::Meta),
            "extended-by" => Some(Kind::Children),
            "overlays" => Some(Kind::Overlays),
            _ => None,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Checks a namespace against `[a-z0-9][a-z0-9._-]{0,62}`.
pub fn validate_namespace(namespace: &str) -> Result<()> {
    let fail = |reason| {
        Err(Error::InvalidNamespace {
            namespace: namespace.to_owned(),
            reason,
        })
    };
    let bytes = namespace.as_bytes();
    match bytes.first() {
        None => return fail("it is empty"),
        Some(b) if !(b.is_ascii_lowercase() || b.is_ascii_digit()) => {
            return fail("it must start with a lowercase letter or a digit")
        }
        Some(_) => {}
    }
    if bytes.len() > 63 {
        return fail("it is longer than 63 characters");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
    {
        return fail("only a-z, 0-9, '.', '_' and '-' are allowed");
    }
    Ok(())
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._-".contains(&b)
}

/// Checks a key name: segments of `[A-Za-z0-9._-]+` joined by `/`, at most
/// 256 bytes, no `.` or `..` segment, no leading or trailing `/`.
pub fn validate_name(name: &str) -> Result<()> {
    check_name(name, false)
}

/// Checks a list prefix: anything that could begin a valid name, including
/// the empty prefix (the whole namespace) and one ending in `/`.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    check_name(prefix, true)
}

fn check_name(name: &str, prefix: bool) -> Result<()> {
    let fail = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return if prefix { Ok(()) } else { fail("it is empty") };
    }
    if name.len() > MAX_NAME_LEN {
        return fail("it is longer than 256 bytes");
    }
    if let Some(bad) = name.bytes().find(|&b| b != b'/' && !is_name_byte(b)) {
        return fail(if bad.is_ascii_whitespace() {
            "it contains white space"
        } else {
            "only A-Z, a-z, 0-9, '.', '_', '-' and '/' are allowed"
        });
    }
    if name.starts_with('/') {
        return fail("it must not start with '/'");
    }
    if !prefix && name.ends_with('/') {
        return fail("it must not end with '/'");
    }
    // Without collecting: reads validate every name they are given.
    let mut segments = name.split('/').peekable();
    while let Some(segment) = segments.next() {
        if prefix && segments.peek().is_none() {
            // The last segment of a prefix may be cut anywhere, even empty
            // ("app/"), and "." may be the start of ".env".
            break;
        }
        match segment {
            "" => return fail("it contains an empty segment ('//')"),
            "." | ".." => return fail("'.' and '..' are not allowed as segments"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a root prefix such as `/cfgd` or `/teams/a/cfgd`.
pub fn validate_root(root: &str) -> Result<()> {
    let fail = |reason| {
        Err(Error::InvalidRoot {
            root: root.to_owned(),
            reason,
        })
    };
    let Some(rest) = root.strip_prefix('/') else {
        return fail("it must start with '/'");
    };
    if rest.is_empty() || rest.ends_with('/') {
        return fail("it must name at least one segment and not end with '/'");
    }
    if rest
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || !s.bytes().all(is_name_byte))
    {
        return fail("segments must be non-empty and of A-Z, a-z, 0-9, '.', '_', '-'");
    }
    Ok(())
}

/// One namespace's corner of etcd: turns names into etcd keys and back.
#[derive(Debug, Clone)]
pub(crate) struct KeySpace {
    /// `{root}/{namespace}/`, with the trailing slash that keeps `app` from
    /// matching `app2`.
    base: String,
    namespace: String,
}

/// The section of a namespace that holds the audit trail: one record per
/// write, never mirrored by live clients.
pub(crate) const AUDIT: &str = "audit";
/// The section that holds change requests, likewise never mirrored.
pub(crate) const REQUESTS: &str = "requests";

/// `{base}{section}/`, for a namespace base ending in `/`.
pub(crate) fn trail_prefix(base: &str, section: &str) -> String {
    format!("{base}{section}/")
}

impl KeySpace {
    pub(crate) fn new(root: &str, namespace: &str) -> Result<Self> {
        validate_root(root)?;
        validate_namespace(namespace)?;
        Ok(KeySpace {
            base: format!("{root}/{namespace}/"),
            namespace: namespace.to_owned(),
        })
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `{root}/{namespace}/`: every key of the namespace starts with it.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The prefix of the namespace's audit trail, `{base}audit/`.
    pub(crate) fn audit_prefix(&self) -> String {
        trail_prefix(&self.base, AUDIT)
    }

    /// The key of audit record `id`.
    pub(crate) fn audit_key(&self, id: &str) -> String {
        format!("{}{id}", self.audit_prefix())
    }

    /// The prefix of the namespace's change requests, `{base}requests/`.
    pub(crate) fn requests_prefix(&self) -> String {
        trail_prefix(&self.base, REQUESTS)
    }

    /// The key of change request `id`, as given (unpadded ids included).
    pub(crate) fn request_key(&self, id: &str) -> String {
        format!("{}{id}", self.requests_prefix())
    }

    /// The etcd prefix of every key of `kind`, ending in `/`; for the
    /// policy and the settings, their one key.
    pub(crate) fn kind_prefix(&self, kind: Kind) -> String {
        kind_prefix(&self.base, kind)
    }

    /// The etcd key of a name, after validating it.
    pub(crate) fn key(&self, kind: Kind, name: &str) -> Result<String> {
        validate_name(name)?;
        Ok(self.key_unchecked(kind, name))
    }

    /// The etcd key for an already validated name (or prefix).
    pub(crate) fn key_unchecked(&self, kind: Kind, name: &str) -> String {
        // Pushed, not formatted: this runs on every write.
        let segment = kind.segment();
        let mut key = String::with_capacity(self.base.len() + segment.len() + 1 + name.len());
        key.push_str(&self.base);
        key.push_str(segment);
        if !kind.is_single() {
            key.push('/');
        }
        key.push_str(name);
        key
    }

    /// The name inside an etcd key of this namespace and kind.
    pub(crate) fn name_of<'k>(&self, kind: Kind, key: &'k [u8]) -> Option<&'k str> {
        // Piece by piece rather than against `kind_prefix`: this runs on
        // every write and every key read, and need not allocate.
        let rest = key
            .strip_prefix(self.base.as_bytes())?
            .strip_prefix(kind.segment().as_bytes())?;
        let name = if kind.is_single() {
            rest
        } else {
            rest.strip_prefix(b"/")?
        };
        std::str::from_utf8(name).ok()
    }
}

/// The etcd prefix of every key of `kind` under `base` (a namespace's
/// prefix, ending in `/`), itself ending in `/`; for a one-key kind, its key.
pub(crate) fn kind_prefix(base: &str, kind: Kind) -> String {
    if kind.is_single() {
        format!("{base}{}", kind.segment())
    } else {
        format!("{base}{}/", kind.segment())
    }
}

/// The one range of keys that holds every section a client mirrors (from
/// `config/` to `schemas/`, the policy and the settings between), leaving out the audit
/// trail: what a namespace's watch covers, and what a service's etcd role
/// may read (see `cfgctl admin roles`).
pub(crate) fn sections_range(base: &str) -> (Vec<u8>, Vec<u8>) {
    let prefixes = || Kind::ALL.iter().map(|&kind| kind_prefix(base, kind));
    let start = prefixes().min().expect("kinds").into_bytes();
    let end = prefixes()
        .map(|p| prefix_end(p.into_bytes()))
        .max()
        .expect("kinds");
    (start, end)
}

/// The kind and name of a key under `base` (a namespace's prefix, ending in
/// `/`); `None` for a key of no kind cfgd knows.
pub(crate) fn split_key<'k>(base: &str, key: &'k [u8]) -> Option<(Kind, &'k str)> {
    let rest = std::str::from_utf8(key.strip_prefix(base.as_bytes())?).ok()?;
    if let Some(single) = Kind::from_segment(rest).filter(|k| k.is_single()) {
        return Some((single, ""));
    }
    let (section, name) = rest.split_once('/')?;
    Some((
        Kind::from_segment(section).filter(|k| !k.is_single())?,
        name,
    ))
}

/// The smallest key above every key that starts with `prefix`.
pub(crate) fn prefix_end(mut prefix: Vec<u8>) -> Vec<u8> {
    // Keys are validated ASCII, so the last byte is never 0xff.
    if let Some(last) = prefix.last_mut() {
        *last += 1;
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for ok in ["prod", "a", "user-service", "0", "a.b_c-d", &"x".repeat(63)] {
            assert!(validate_namespace(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Prod", "-a", ".a", "a/b", "a b", "é", &"x".repeat(64)] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        for ok in [
            "database.config",
            "a/b/c",
            "A_b-c.d",
            ".env",
            "x..y",
            &"n".repeat(256),
        ] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            ".",
            "..",
            "a/./b",
            "a/../b",
            "a b",
            "a\nb",
            "ü",
            "a*",
            &"n".repeat(257),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefixes() {
        for ok in ["", "a", "a/", "a/b", "app/.", "data"] {
            assert!(validate_prefix(ok).is_ok(), "{ok}");
        }
        for bad in ["/", "/a", "a//", "../a", "a b", "./"] {
            assert!(validate_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roots() {
        for ok in ["/cfgd", "/a/b", "/x.y"] {
            assert!(validate_root(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/", "cfgd", "/cfgd/", "//a", "/a//b", "/a/.."] {
            assert!(validate_root(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layout_keeps_namespaces_apart() {
        let app = KeySpace::new("/cfgd", "app").unwrap();
        let app2 = KeySpace::new("/cfgd", "app2").unwrap();
        assert_eq!(
            app.key(Kind::Config, "database.config").unwrap(),
            "/cfgd/app/config/database.config"
        );
        let other = app2.key(Kind::Config, "x").unwrap();
        assert!(!other.starts_with(&app.kind_prefix(Kind::Config)));
        assert_eq!(app.name_of(Kind::Config, other.as_bytes()), None);
        assert_eq!(
            app.name_of(Kind::Config, b"/cfgd/app/config/a/b"),
            Some("a/b")
        );
        assert_eq!(app.name_of(Kind::Config, b"/cfgd/app/configx/a"), None);
        assert_eq!(app.name_of(Kind::Flags, b"/cfgd/app/config/a"), None);
        assert_eq!(app.name_of(Kind::Policy, b"/cfgd/app/policy"), Some(""));
        assert_eq!(app.name_of(Kind::Meta, b"/cfgd/app/meta"), Some(""));
        assert_eq!(
            split_key("/cfgd/app/", b"/cfgd/app/meta"),
            Some((Kind::Meta, ""))
        );
        assert_eq!(split_key("/cfgd/app/", b"/cfgd/app/meta/x"), None);
        for kind in Kind::ALL {
            let key = app.key_unchecked(kind, "x");
            assert_eq!(key, format!("{}x", app.kind_prefix(kind)));
            assert_eq!(app.name_of(kind, key.as_bytes()), Some("x"));
        }
    }
}
