//! The dispatcher's counters: the atomics its tasks update and the
//! snapshots ([`DispatcherStats`], [`SinkStats`]) the handle reads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A snapshot of the dispatcher's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatcherStats {
    /// Accepted by `emit` and neither committed to the spool nor
    /// acknowledged yet.
    pub queued: u64,
    /// Events in the spool waiting for delivery (all sinks).
    pub spooled: u64,
    /// Bytes of those events' records.
    pub spool_bytes: u64,
    /// Refused by `emit` because the spool was full.
    pub spool_full: u64,
    /// Refused by `emit` because the queue was full (`DropNewest`).
    pub dropped: u64,
    /// Group commits made.
    pub commits: u64,
    /// Events their sink acknowledged before they were due for the spool:
    /// never written to it (see [`FsyncPolicy`](crate::notify::FsyncPolicy)).
    pub delivered_unspooled: u64,
    /// Per sink, in the order they were added.
    pub sinks: Vec<SinkStats>,
}

impl DispatcherStats {
    /// Events delivered, all sinks.
    pub fn delivered(&self) -> u64 {
        self.sinks.iter().map(|s| s.delivered).sum()
    }

    /// Events dead-lettered, all sinks.
    pub fn dead_lettered(&self) -> u64 {
        self.sinks.iter().map(|s| s.dead_lettered).sum()
    }

    /// Names of the sinks disabled by a 410.
    pub fn disabled_sinks(&self) -> Vec<&str> {
        self.sinks
            .iter()
            .filter(|s| s.disabled)
            .map(|s| s.name.as_str())
            .collect()
    }
}

/// Counters of one sink.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// The name given to [`DispatcherBuilder::sink`](super::DispatcherBuilder::sink).
    pub name: String,
    /// Accepted by `emit` for this sink.
    pub accepted: u64,
    /// In the spool, not yet delivered.
    pub pending: u64,
    /// Delivered and acknowledged.
    pub delivered: u64,
    /// Events whose delivery failed transiently and was scheduled again.
    pub retried: u64,
    /// Events the sink refused permanently.
    pub failed_permanent: u64,
    /// Events moved to the dead-letter table (refused, or given up on).
    pub dead_lettered: u64,
    /// Events in the dead-letter table now.
    pub dead_letters: u64,
    /// Dead letters moved back for delivery by [`Dispatcher::redrive`](super::Dispatcher::redrive).
    pub redriven: u64,
    /// Refused by `emit` because the sink is disabled.
    pub rejected_disabled: u64,
    /// The sink answered 410 Gone and gets nothing more until
    /// [`Dispatcher::enable_sink`](super::Dispatcher::enable_sink) or a restart.
    pub disabled: bool,
}

#[derive(Default)]
pub(super) struct SinkCounters {
    pub(super) accepted: AtomicU64,
    pub(super) pending: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) failed_permanent: AtomicU64,
    pub(super) dead_lettered: AtomicU64,
    pub(super) dead_letters: AtomicU64,
    pub(super) redriven: AtomicU64,
    pub(super) rejected_disabled: AtomicU64,
    pub(super) disabled: AtomicBool,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) queued: AtomicU64,
    pub(super) spooled: AtomicU64,
    pub(super) spool_bytes: AtomicU64,
    pub(super) spool_full: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) commits: AtomicU64,
    pub(super) delivered_unspooled: AtomicU64,
    pub(super) full_logged: AtomicBool,
    pub(super) sinks: Vec<SinkCounters>,
}

impl Counters {
    pub(super) fn snapshot(&self, names: &[Arc<str>]) -> DispatcherStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DispatcherStats {
            queued: get(&self.queued),
            spooled: get(&self.spooled),
            spool_bytes: get(&self.spool_bytes),
            spool_full: get(&self.spool_full),
            dropped: get(&self.dropped),
            commits: get(&self.commits),
            delivered_unspooled: get(&self.delivered_unspooled),
            sinks: names
                .iter()
                .zip(&self.sinks)
                .map(|(name, c)| SinkStats {
                    name: name.to_string(),
                    accepted: get(&c.accepted),
                    pending: get(&c.pending),
                    delivered: get(&c.delivered),
                    retried: get(&c.retried),
                    failed_permanent: get(&c.failed_permanent),
                    dead_lettered: get(&c.dead_lettered),
                    dead_letters: get(&c.dead_letters),
                    redriven: get(&c.redriven),
                    rejected_disabled: get(&c.rejected_disabled),
                    disabled: c.disabled.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

pub(super) fn saturating_sub(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}
