//! Lanes: the in-memory hand-off from the spool writer to one sink's
//! worker, and the entries they carry.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::notify::Event;

pub(super) struct Lane {
    pub(super) state: Mutex<LaneState>,
    pub(super) notify: Notify,
}

pub(super) struct LaneState {
    pub(super) queue: VecDeque<Entry>,
    /// The writer stopped feeding `queue` at `spill_from`; from there on the
    /// worker reads the spool.
    pub(super) spilled: bool,
    pub(super) spill_from: u64,
    /// The last event diverted to the spool instead of the lane: the spill
    /// ends only once the worker has read it back, so an event diverted but
    /// not yet committed is never skipped.
    pub(super) spilled_through: Option<u64>,
    pub(super) disabled: bool,
}

impl Lane {
    /// A lane whose sink has events in the spool up to `spilled_through`
    /// (none: an empty lane the writer feeds at once); while there are, the
    /// worker reads them from the spool first.
    pub(super) fn new(spilled_through: Option<u64>) -> Self {
        Lane {
            state: Mutex::new(LaneState {
                queue: VecDeque::new(),
                spilled: spilled_through.is_some(),
                spill_from: 0,
                spilled_through,
                disabled: false,
            }),
            notify: Notify::new(),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) seq: u64,
    pub(super) attempts: u32,
    pub(super) spooled_ms: u64,
    /// Deliver alone: it was in a batch refused permanently.
    pub(super) solo: bool,
    pub(super) event: Event,
}
