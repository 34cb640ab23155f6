//! [`ErrorKind`]: the few kinds of failure that front ends tell apart.

use super::Error;

#[doc = include_str!("kinds.md")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's input breaks a rule (a name, a namespace, JSON, a flag
    /// definition, a schema or policy document, the builder's settings);
    /// nothing was sent to etcd.
    InvalidInput,
    /// A value, or a release, over its size limit.
    TooLarge,
    /// A value that fails the JSON Schema of its name.
    SchemaViolation,
    /// What is stored conflicts with it: a schema that values already
    /// stored would fail, or `extends` that names a missing namespace or
    /// makes a cycle.
    SchemaConflict,
    /// TLS settings or files that cannot be used.
    Tls,
    /// The key, or the revision of it asked for, does not exist.
    NotFound,
    /// A compare-and-set lost: the key is not at the revision expected.
    Conflict,
    /// What a release or change request was made against moved since.
    Moved,
    /// The namespace policy refuses it: a protected name, approving one's
    /// own change request.
    Refused,
    /// A change request that cannot do that in its state.
    WrongState,
    /// A secret this client cannot open or seal.
    Sealed,
    /// etcd could not be reached.
    Unavailable,
    /// etcd did not answer in time.
    Timeout,
    /// etcd refused the user and password, or wants them.
    Unauthenticated,
    /// etcd refused the user access to the key.
    PermissionDenied,
    /// What etcd holds is not what cfgd expects (a value that is not JSON,
    /// or not of the type asked for).
    InvalidData,
    /// The revision asked for is compacted away or not yet written.
    RevisionUnavailable,
    /// Anything else: etcd's other failures, unreadable snapshot or
    /// defaults files.
    Other,
}

impl ErrorKind {
    /// Every kind, in the order of the table above.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::InvalidInput,
        ErrorKind::TooLarge,
        ErrorKind::SchemaViolation,
        ErrorKind::SchemaConflict,
        ErrorKind::Tls,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Moved,
        ErrorKind::Refused,
        ErrorKind::WrongState,
        ErrorKind::Sealed,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::InvalidData,
        ErrorKind::RevisionUnavailable,
        ErrorKind::Other,
    ];
}

pub(super) fn of(error: &Error) -> ErrorKind {
    use ErrorKind as K;
    match error {
        Error::InvalidNamespace { .. }
        | Error::InvalidName { .. }
        | Error::InvalidRoot { .. }
        | Error::NoEndpoints
        | Error::InvalidEndpoints { .. }
        | Error::InvalidJson { .. }
        | Error::InvalidFlag { .. }
        | Error::InvalidSchema { .. }
        | Error::InvalidPolicy { .. }
        | Error::InvalidMeta { .. }
        | Error::InvalidUnset { .. }
        | Error::InvalidOverlay { .. }
        | Error::InvalidWebhook { .. }
        | Error::InvalidSchedule { .. }
        | Error::Encode { .. }
        | Error::SecretKey { .. }
        | Error::NotLive { .. } => K::InvalidInput,
        Error::TooLarge { .. } | Error::ReleaseTooLarge { .. } => K::TooLarge,
        Error::SchemaViolation { .. } => K::SchemaViolation,
        Error::SchemaConflict { .. } | Error::InvalidExtends { .. } => K::SchemaConflict,
        Error::Tls { .. } => K::Tls,
        Error::NotFound { .. } => K::NotFound,
        Error::Conflict { .. } | Error::Fenced { .. } => K::Conflict,
        Error::ReleaseMoved { .. } | Error::RequestMoved { .. } => K::Moved,
        Error::Protected { .. } | Error::SelfApproval { .. } | Error::Extended { .. } => K::Refused,
        Error::RequestState { .. } => K::WrongState,
        Error::Secret { .. } => K::Sealed,
        Error::Unreachable { .. } => K::Unavailable,
        Error::Timeout { .. } => K::Timeout,
        Error::AuthFailed { .. } | Error::AuthRequired { .. } => K::Unauthenticated,
        Error::PermissionDenied { .. } => K::PermissionDenied,
        Error::CorruptValue { .. } | Error::Decode { .. } => K::InvalidData,
        Error::Compacted { .. } | Error::FutureRevision { .. } => K::RevisionUnavailable,
        Error::Roles { .. }
        | Error::Snapshot { .. }
        | Error::Defaults { .. }
        | Error::Etcd { .. } => K::Other,
    }
}

/// The stable machine name of `error`'s variant, for error bodies.
pub(super) fn code(error: &Error) -> &'static str {
    match error {
        Error::InvalidFlag { .. } => "invalid_flag",
        Error::InvalidSchema { .. } => "invalid_schema",
        Error::InvalidPolicy { .. } => "invalid_policy",
        Error::InvalidMeta { .. } => "invalid_meta",
        Error::InvalidUnset { .. } => "invalid_unset",
        Error::InvalidExtends { .. } => "invalid_extends",
        Error::InvalidOverlay { .. } => "invalid_overlay",
        Error::Extended { .. } => "extended",
        Error::TooLarge { .. } | Error::ReleaseTooLarge { .. } => "too_large",
        Error::SchemaViolation { .. } => "schema_violation",
        Error::SchemaConflict { .. } => "schema_conflict",
        Error::NotFound { .. } => "not_found",
        Error::Conflict { .. } => "conflict",
        Error::Fenced { .. } => "fenced",
        Error::InvalidWebhook { .. } => "invalid_webhook",
        Error::InvalidSchedule { .. } => "invalid_schedule",
        Error::ReleaseMoved { .. } => "release_moved",
        Error::RequestMoved { .. } => "request_moved",
        Error::Protected { .. } => "protected",
        Error::SelfApproval { .. } => "self_approval",
        Error::RequestState { .. } => "request_state",
        Error::Secret { .. } => "secret",
        Error::CorruptValue { .. } | Error::Decode { .. } => "corrupt_value",
        Error::Compacted { .. } | Error::FutureRevision { .. } => "revision_unavailable",
        e => match of(e) {
            ErrorKind::InvalidInput | ErrorKind::Tls => "invalid_request",
            ErrorKind::Unavailable | ErrorKind::Timeout => "etcd_unavailable",
            _ => "internal",
        },
    }
}
