//! The plain types every layer shares: revisions, provenance, link status.

use std::time::SystemTime;

/// An etcd revision: the ETag, compare-and-set token and resume point of
/// every value. `0` means "absent" wherever a revision is expected.
pub type Revision = i64;

/// A serde `deserialize_with` for a whole number that JSON may carry as
/// `2` or `2.0`: JSON Schema counts 2.0 as an integer, and clients whose
/// numbers are all floats send it so. 2.5, -1 for an unsigned type, or a
/// string are refused, naming the number.
pub fn whole_number<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::Deserialize;
    let n = serde_json::Number::deserialize(d)?;
    n.as_i64()
        .or_else(|| {
            // Within ±2^53 a float is exact, so `as` loses nothing.
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
                .map(|f| f as i64)
        })
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number in range")))
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// Read from etcd by this request (a client built with `live(false)`).
    Etcd,
    /// From etcd, as kept current in memory by the client's watch.
    Cache,
    /// From the snapshot file; etcd has not been reached since start.
    Snapshot,
    /// From the defaults file; etcd does not hold the name.
    DefaultsFile,
    /// The default given in code.
    CodeDefault,
}

// The variants' first names differed by one letter; these keep code written
// against them compiling, in expressions and patterns alike.
#[allow(non_upper_case_globals)]
impl Source {
    /// Renamed [`Source::DefaultsFile`].
    #[deprecated(since = "0.2.0", note = "renamed Source::DefaultsFile")]
    pub const Defaults: Source = Source::DefaultsFile;
    /// Renamed [`Source::CodeDefault`].
    #[deprecated(since = "0.2.0", note = "renamed Source::CodeDefault")]
    pub const Default: Source = Source::CodeDefault;
}

/// The client's link to etcd, as seen by [`Client::status`](crate::Client::status).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Watching etcd; values are current.
    Connected {
        /// The last etcd revision applied.
        revision: Revision,
    },
    /// The connection was lost; last known values are served while it retries.
    Reconnecting {
        /// When the connection was lost.
        since: SystemTime,
        /// The last etcd revision applied.
        revision: Revision,
    },
    /// etcd was not reachable at start; values come from the snapshot file.
    Offline {
        /// Since when.
        since: SystemTime,
        /// The revision the snapshot was taken at.
        revision: Revision,
    },
}

impl Status {
    /// The last etcd revision the client has applied.
    pub fn revision(&self) -> Revision {
        match self {
            Status::Connected { revision }
            | Status::Reconnecting { revision, .. }
            | Status::Offline { revision, .. } => *revision,
        }
    }
}

/// Held by every handle made from a client (a `Live`, a subscription, a
/// callback) so that the client's background work lasts as long as they
/// do. Opaque here: the layers below the client only keep it.
pub(crate) type KeepAlive = std::sync::Arc<dyn std::any::Any + Send + Sync>;
