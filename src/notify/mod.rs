//! Event notifications: the [`Event`] model, and (in this module's other
//! files) S3 operation classification, rules, formats, the `NotifyLayer`
//! and the `Dispatcher`.

pub mod dispatcher;
mod event;
mod retry;
mod spool;

pub use dispatcher::{
    Dispatcher, DispatcherBuilder, DispatcherError, DispatcherStats, DispatcherTask, EmitError,
    OverflowPolicy, SinkStats,
};
pub use event::{Event, EventId, S3Operation};
pub use retry::RetryPolicy;
pub use spool::{DeadLetter, FsyncPolicy, SpoolError};
