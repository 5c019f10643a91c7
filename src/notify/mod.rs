//! Event notifications: the [`Event`] model, and (in this module's other
//! files) S3 operation classification, rules, formats, the `NotifyLayer`
//! and the `Dispatcher`.

mod event;
mod retry;
mod spool;

pub use event::{Event, EventId, S3Operation};
pub use retry::RetryPolicy;
pub use spool::{DeadLetter, FsyncPolicy, SpoolError};
