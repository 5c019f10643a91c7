//! What the dispatcher's tasks send each other: events from the handle to
//! the spool writer, and the writer's commands (reports, flush, close,
//! operators' changes).

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use super::spool::{DeadLetterFilter, Op, SpoolError};
use crate::notify::Event;

pub(super) struct Envelope {
    pub(super) sink: usize,
    pub(super) event: Event,
}

pub(super) enum Cmd {
    Ops(Vec<Op>),
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<Result<(), SpoolError>>),
    Admin(Admin),
}

pub(super) type Reply<T> = oneshot::Sender<Result<T, SpoolError>>;

/// An operator's change to the spool, run by the writer between commits.
pub(super) enum Admin {
    Redrive(DeadLetterFilter, Reply<BTreeMap<String, u64>>),
    Purge(DeadLetterFilter, Reply<BTreeMap<String, u64>>),
    /// Enable the sink of this index again; answers whether it was disabled.
    Enable(usize, Reply<bool>),
}
