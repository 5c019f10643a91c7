//! [`SinkBuildError`]: the one error every sink builder returns.

use super::SinkError;

/// Why a sink could not be built: a setting it refuses (from `build()`, or
/// checked first by `connect()`), or, for the sinks that connect while being
/// built, the connection that failed ([`Connect`](Self::Connect), transient
/// or permanent as [`SinkError`] says).
///
/// Messages never repeat a secret (a password in a URL, a setting's value).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SinkBuildError {
    /// The URL does not parse or is not of a kind the sink speaks.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// A PEM root certificate holds no certificate or does not parse.
    #[error("invalid root certificate: {0}")]
    InvalidCertificate(String),
    /// A signing secret is malformed (a Standard Webhooks secret must be
    /// `whsec_<base64>` with a non-empty key).
    #[error("invalid signing secret: {0}")]
    InvalidSecret(&'static str),
    /// A setting was refused. The value is not repeated: it may be a
    /// password.
    #[error("invalid setting {key:?}: {reason}")]
    InvalidSetting {
        /// The setting's name (`region`, a librdkafka key, `topic`, ...).
        key: String,
        /// Why.
        reason: String,
    },
    /// The output could not be opened (a JSON-lines file).
    #[error("cannot open {0}")]
    Open(String),
    /// The client library could not be set up (a Kafka producer).
    #[error("cannot create the client: {0}")]
    Client(String),
    /// Connecting failed: [`SinkError::Transient`] when the destination
    /// cannot be reached now (try again later), [`SinkError::Permanent`]
    /// when it refused (credentials, a malformed address).
    #[error("{0}")]
    Connect(SinkError),
}

impl SinkBuildError {
    /// Whether trying again later may succeed (a connection that failed
    /// transiently); a refused setting never will.
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkBuildError::Connect(SinkError::Transient { .. }))
    }
}

impl From<SinkError> for SinkBuildError {
    /// A failed connection attempt.
    fn from(error: SinkError) -> Self {
        SinkBuildError::Connect(error)
    }
}
