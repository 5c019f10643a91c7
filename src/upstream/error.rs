//! Why a request did not reach the upstream or got no answer, and the S3
//! error each reason becomes.

use std::error::Error as StdError;
use std::time::Duration;

use crate::s3error::{S3Error, S3ErrorCode};

/// A request the upstream did not answer. Messages name the upstream's host
/// and port, never a path, query (presigned URLs carry signatures) or key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// No connection could be opened: DNS failure, connection refused, TLS
    /// handshake failure. `502 BadGateway`.
    #[error("The upstream {host} could not be reached: {cause}")]
    Unreachable {
        /// `host:port` of the upstream.
        host: String,
        /// What went wrong, from the transport.
        cause: String,
    },
    /// The TCP connection was not accepted in time. `504 GatewayTimeout`.
    #[error("The upstream {host} did not accept a connection within {timeout:?}")]
    ConnectTimeout {
        /// `host:port` of the upstream.
        host: String,
        /// The configured connect timeout.
        timeout: Duration,
    },
    /// No response head arrived in time. `504 GatewayTimeout`.
    #[error("The upstream {host} did not answer within {timeout:?}")]
    ResponseTimeout {
        /// `host:port` of the upstream.
        host: String,
        /// The configured response timeout.
        timeout: Duration,
    },
    /// The upstream closed the connection before answering; a retry usually
    /// works. `503 ServiceUnavailable`.
    #[error("The upstream {host} closed the connection before answering: {cause}")]
    ConnectionClosed {
        /// `host:port` of the upstream.
        host: String,
        /// What went wrong, from the transport.
        cause: String,
    },
    /// The request body failed while it was being sent (the client went
    /// away, or its payload failed verification). `400 IncompleteBody`.
    #[error("The request body could not be sent to the upstream {host}: {cause}")]
    RequestBody {
        /// `host:port` of the upstream.
        host: String,
        /// Why the body ended early.
        cause: String,
    },
    /// Any other transport failure (protocol error, ...). `502 BadGateway`.
    #[error("The request to the upstream {host} failed: {cause}")]
    Transport {
        /// `host:port` of the upstream.
        host: String,
        /// What went wrong, from the transport.
        cause: String,
    },
    /// The request cannot be sent at all (URI not absolute, bad scheme).
    /// `500 InternalError`: the layers in front should have made it right.
    #[error("The request cannot be sent upstream: {0}")]
    InvalidRequest(String),
}

impl UpstreamError {
    /// The S3 error the client receives.
    pub fn to_s3_error(&self) -> S3Error {
        let code = match self {
            UpstreamError::Unreachable { .. } | UpstreamError::Transport { .. } => {
                S3ErrorCode::BadGateway
            }
            UpstreamError::ConnectTimeout { .. } | UpstreamError::ResponseTimeout { .. } => {
                S3ErrorCode::GatewayTimeout
            }
            UpstreamError::ConnectionClosed { .. } => S3ErrorCode::ServiceUnavailable,
            UpstreamError::RequestBody { .. } => S3ErrorCode::IncompleteBody,
            UpstreamError::InvalidRequest(_) => S3ErrorCode::InternalError,
        };
        S3Error::new(code, self.to_string())
    }

    /// Sorts a failure of hyper-util's client into one of the reasons above.
    pub(crate) fn classify(
        error: hyper_util::client::legacy::Error,
        host: String,
        connect_timeout: Duration,
    ) -> UpstreamError {
        let cause = describe_causes(&error);
        if error.is_connect() {
            if chain(&error).any(is_timed_out) {
                return UpstreamError::ConnectTimeout {
                    host,
                    timeout: connect_timeout,
                };
            }
            return UpstreamError::Unreachable { host, cause };
        }
        let hyper_error = chain(&error).find_map(|e| e.downcast_ref::<hyper::Error>());
        match hyper_error {
            Some(e) if e.is_user() => UpstreamError::RequestBody { host, cause },
            Some(e) if e.is_canceled() || e.is_incomplete_message() || e.is_closed() => {
                UpstreamError::ConnectionClosed { host, cause }
            }
            _ => UpstreamError::Transport { host, cause },
        }
    }
}

fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |e: &&'a (dyn StdError + 'static)| {
        (*e).source()
    })
}

fn is_timed_out(error: &(dyn StdError + 'static)) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
}

/// The causes under hyper-util's generic "client error (Connect)", joined:
/// "tcp connect error: Connection refused (os error 111)".
fn describe_causes(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in chain(error).skip(1) {
        let text = e.to_string();
        // io::Error wrapping another error repeats the inner message.
        if parts.last().is_some_and(|last| last == &text) {
            continue;
        }
        parts.push(text);
    }
    if parts.is_empty() {
        error.to_string()
    } else {
        parts.join(": ")
    }
}

/// The client could not be built from its settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A root certificate given to
    /// [`add_root_certificate`](super::UpstreamClientBuilder::add_root_certificate)
    /// is not a PEM certificate rustls accepts.
    #[error("invalid root certificate: {0}")]
    RootCertificate(String),
    /// The TLS configuration could not be made.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}
