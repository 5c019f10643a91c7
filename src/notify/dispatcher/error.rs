//! Why the dispatcher refused an event ([`EmitError`]) or could not run
//! ([`DispatcherError`]).

use super::spool::SpoolError;

/// Why [`Dispatcher::emit`](super::Dispatcher::emit) refused an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// No sink of that name was configured.
    #[error("no sink named {0:?}")]
    UnknownSink(String),
    /// The sink answered 410 Gone and was disabled (until
    /// [`Dispatcher::enable_sink`](super::Dispatcher::enable_sink)).
    #[error("sink {0:?} is disabled")]
    SinkDisabled(String),
    /// The queue is full and the policy is `DropNewest`.
    #[error("the dispatcher's queue is full")]
    QueueFull,
    /// The spool holds its maximum of events or bytes.
    #[error("the spool is full")]
    SpoolFull,
    /// The dispatcher is shutting down.
    #[error("the dispatcher is shut down")]
    Closed,
}

/// Why the dispatcher could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    /// Opening or writing the spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// Two sinks have the same name.
    #[error("sink {0:?} is configured twice")]
    DuplicateSink(String),
    /// No sink of that name was configured.
    #[error("no sink named {0:?}")]
    UnknownSink(String),
    /// The dispatcher was shut down.
    #[error("the dispatcher is shut down")]
    Closed,
    /// A task of the dispatcher panicked or was cancelled.
    #[error("dispatcher task failed: {0}")]
    Task(String),
}
