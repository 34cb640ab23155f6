//! Exit codes: the one table from [`cfgd::ErrorKind`] to the codes
//! `cfgctl --help` documents, and the errors of cfgctl's own making.

use cfgd::ErrorKind;

/// What `--help` says of them; [`code`] keeps to it.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other error
  2  usage error or invalid input (bad flag, name, JSON or size)
  3  not found
  4  conflict (--if-revision did not match; a key moved under a release or request)
  5  etcd unreachable or not answering in time
  6  refused by the namespace policy (a protected name without --force, approving
     your own request, a request not open or short of approvals)
  7  a secret this client cannot open or seal (no --secret-key-file, or not its key)";

/// A mistake in what the user typed (not a failure of etcd): exit code 2.
#[derive(Debug)]
pub(crate) struct Invalid(pub(crate) String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// `diff --exit-code` found something: exit 1, with nothing more to say.
#[derive(Debug)]
pub(crate) struct Differs;

impl std::fmt::Display for Differs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the two sides differ")
    }
}

impl std::error::Error for Differs {}

/// The exit code of each kind of library error (`cfgd::ErrorKind`'s docs
/// show the table).
pub(crate) fn for_kind(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::InvalidInput
        | ErrorKind::TooLarge
        | ErrorKind::SchemaViolation
        | ErrorKind::SchemaConflict
        | ErrorKind::Tls => 2,
        ErrorKind::NotFound => 3,
        ErrorKind::Conflict | ErrorKind::Moved => 4,
        ErrorKind::Unavailable | ErrorKind::Timeout => 5,
        ErrorKind::Refused | ErrorKind::WrongState => 6,
        ErrorKind::Sealed => 7,
        _ => 1,
    }
}

/// The exit code for `err`.
pub(crate) fn code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<Invalid>().is_some() {
        return 2;
    }
    match err.downcast_ref::<cfgd::Error>() {
        Some(e) => for_kind(e.kind()),
        None => 1,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_error_kind_exits_with_the_documented_code() {
        for (kind, row) in crate::kinds::documented() {
            assert_eq!(super::for_kind(kind).to_string(), row.exit, "{kind:?}");
        }
    }
}
