//! The dispatcher's port: the [`Sink`] trait every destination implements,
//! with [`SinkError`] and [`BoxFuture`]. Public as `s3tap::sink::{Sink,
//! SinkError, BoxFuture}`, whose module docs write down the contract.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::notify::Event;

/// A boxed future, as sinks return them (the trait stays object safe so the
/// dispatcher can hold sinks of different types).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a delivery failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// Try again later (network error, 5xx, 429, broker unavailable).
    #[error("transient: {message}")]
    Transient {
        /// What happened, for logs (never secrets).
        message: String,
        /// The wait the receiver asked for (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Never deliverable as it is (4xx, bad credentials, rejected payload).
    #[error("permanent: {message}")]
    Permanent {
        /// What happened.
        message: String,
    },
    /// The endpoint is gone (HTTP 410): stop sending to it.
    #[error("endpoint disabled: {message}")]
    Disabled {
        /// What happened.
        message: String,
    },
    /// Some events of the batch failed; the others were delivered.
    #[error("{} events of the batch failed", failed.len())]
    Partial {
        /// Index in the batch and reason, for each failed event.
        failed: Vec<(usize, SinkError)>,
    },
}

impl SinkError {
    /// A transient failure.
    pub fn transient(message: impl Into<String>) -> Self {
        SinkError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent failure.
    pub fn permanent(message: impl Into<String>) -> Self {
        SinkError::Permanent {
            message: message.into(),
        }
    }
}

/// A destination for events.
pub trait Sink: Send + Sync + 'static {
    /// A short name for logs and metrics (`webhook:orders`, `kafka`, ...).
    fn name(&self) -> &str;

    /// The largest batch this sink accepts.
    fn max_batch(&self) -> usize {
        1
    }

    /// Delivers `batch` (never empty). Must be idempotent by event id.
    fn deliver<'a>(&'a self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>>;
}
