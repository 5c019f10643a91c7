//! The [`Dispatcher`]: takes events from producers without ever making them
//! wait, spools them durably, and delivers them to sinks in batches with
//! retries.
//!
//! # How an event travels
//!
//! ```text
//! emit() ──try_send──► ingress queue ──► spool writer ──(due and not yet acked)──► redb spool
//!    │ (full: overflow list,               │ hands over at once                        │
//!    │  drained first)                     ▼                                           │
//!    ▼                           lane (bounded, in memory) ──► sink worker ◄───────────┘
//! never awaits                   "spilled" when full: the        │    (reads the spool
//!                                worker reads the spool          ▼     while spilled)
//!                                                           Sink::deliver
//!                     ack: delete from the spool, or never write it if not yet due
//!                     transient: back off, retry · permanent: dead letter · 410: disable the sink
//! ```
//!
//! Operators act on what failed through the handle: list and inspect the
//! dead letters ([`Dispatcher::dead_letters_matching`],
//! [`Dispatcher::dead_letter`]), deliver them again
//! ([`Dispatcher::redrive`]) or drop them ([`Dispatcher::purge`]), chosen
//! by a [`DeadLetterFilter`] (sink, event id, age), and enable a sink a
//! `410` disabled ([`Dispatcher::enable_sink`]). These run in the spool
//! writer between two group commits, so they see every accepted event.
//!
//! - [`Dispatcher::emit`] is synchronous: a `try_send` on a bounded channel.
//!   When the channel is full the [`OverflowPolicy`] decides; the default,
//!   [`SpillToSpool`](OverflowPolicy::SpillToSpool), puts the event on an
//!   overflow list that the spool writer drains first. Nothing is dropped
//!   until the spool's own bound is reached, and then `emit` says so
//!   ([`EmitError::SpoolFull`]).
//! - One writer task owns all writes to the spool: new events, acks,
//!   reschedules and dead letters go into one transaction per group commit
//!   (see [`FsyncPolicy`]). It hands each event to its sink's lane as soon as
//!   it takes it, and writes the event to the spool only once it is due: under
//!   the default `Interval` policy, when it has waited a full interval without
//!   an acknowledgement (at once if the lane spilled or a delivery failed). An
//!   event acknowledged before it is due is never written: with a healthy
//!   sink, the spool costs next to nothing, and it fills only when a sink is
//!   slow or down, which is when it is needed.
//! - Each sink has its own worker and its own in-memory lane. A sink that is
//!   slow or down fills only its own lane; the writer then stops feeding the
//!   lane ("spilled") and the worker later catches up by reading the spool
//!   from where the lane stopped. Memory stays bounded and other sinks and
//!   producers do not notice.
//! - Delivery is at-least-once: an event is deleted from the spool (or
//!   never written) only after its sink acknowledged it, and everything in
//!   the spool is delivered again after a restart (with the attempt count
//!   and next-attempt time it had). Sinks de-duplicate by [`EventId`](crate::notify::EventId).
//! - A batch is up to `min(sink.max_batch(), batch max)` events, sent when
//!   full or when its first event has waited `linger`. After a transient
//!   failure the whole sink waits (exponential backoff with full jitter, at
//!   least the `Retry-After` it was given, see [`RetryPolicy`]). A batch
//!   refused permanently is retried one event at a time, so one poisoned
//!   event does not dead-letter its neighbours.
//! - [`Dispatcher::shutdown`] stops accepting, commits everything not yet
//!   acknowledged, delivers until the deadline and leaves the rest in the
//!   spool.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use s3tap::notify::{Dispatcher, Event, FsyncPolicy, S3Operation};
//! use s3tap::sink::JsonLinesSink;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let log = dir.path().join("events.jsonl");
//! let (dispatcher, task) = Dispatcher::builder()
//!     .sink("log", Arc::new(JsonLinesSink::file(&log)?))
//!     .batch(500, Duration::from_millis(5))
//!     .spool(dir.path().join("spool.redb"), FsyncPolicy::default())
//!     .build()
//!     .await?;
//!
//! let event = Event::new(S3Operation::PutObject, "PUT", 200, "https://s3.example/b/k");
//! let id = event.id.clone();
//! dispatcher.emit("log", event)?; // never waits
//!
//! let stats = dispatcher.shutdown(Duration::from_secs(5)).await;
//! task.await?;
//! assert_eq!(stats.sinks[0].delivered, 1);
//! assert!(std::fs::read_to_string(&log)?.contains(id.as_str()));
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use redb::Durability;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub(super) mod retry;
pub(super) mod spool;

use self::retry::RetryPolicy;
use self::spool::{
    now_ms, Append, DeadLetter, DeadLetterFilter, FsyncPolicy, Op, Spool, SpoolError, Stored,
};
use crate::notify::Event;
use crate::sink::{Sink, SinkError};

/// What [`Dispatcher::emit`] does when the ingress queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Put the event on an overflow list that the spool writer drains
    /// before the queue. The caller never waits and nothing is dropped; the
    /// list is bounded by the spool's limits, beyond which `emit` answers
    /// [`EmitError::SpoolFull`].
    #[default]
    SpillToSpool,
    /// Refuse the event with [`EmitError::QueueFull`] (counted as dropped).
    DropNewest,
    /// Block the calling thread until there is room. Off the async runtime,
    /// or on a multi-threaded runtime (through `block_in_place`), this
    /// applies backpressure to the producer; on a current-thread runtime,
    /// where blocking would stop the writer itself, it falls back to
    /// `SpillToSpool`. Prefer [`Dispatcher::emit_wait`] in async code.
    Block,
}

/// Why [`Dispatcher::emit`] refused an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// No sink of that name was configured.
    #[error("no sink named {0:?}")]
    UnknownSink(String),
    /// The sink answered 410 Gone and was disabled (until
    /// [`Dispatcher::enable_sink`]).
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
    /// never written to it (see [`FsyncPolicy`]).
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
    /// The name given to [`DispatcherBuilder::sink`].
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
    /// Dead letters moved back for delivery by [`Dispatcher::redrive`].
    pub redriven: u64,
    /// Refused by `emit` because the sink is disabled.
    pub rejected_disabled: u64,
    /// The sink answered 410 Gone and gets nothing more until
    /// [`Dispatcher::enable_sink`] or a restart.
    pub disabled: bool,
}

#[derive(Default)]
struct SinkCounters {
    accepted: AtomicU64,
    pending: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    failed_permanent: AtomicU64,
    dead_lettered: AtomicU64,
    dead_letters: AtomicU64,
    redriven: AtomicU64,
    rejected_disabled: AtomicU64,
    disabled: AtomicBool,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    spooled: AtomicU64,
    spool_bytes: AtomicU64,
    spool_full: AtomicU64,
    dropped: AtomicU64,
    commits: AtomicU64,
    delivered_unspooled: AtomicU64,
    full_logged: AtomicBool,
    sinks: Vec<SinkCounters>,
}

impl Counters {
    fn snapshot(&self, names: &[Arc<str>]) -> DispatcherStats {
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

struct Envelope {
    sink: usize,
    event: Event,
}

/// Builds a [`Dispatcher`]; see the [module docs](self).
pub struct DispatcherBuilder {
    sinks: Vec<(String, Arc<dyn Sink>)>,
    queue_capacity: usize,
    batch_max: usize,
    linger: Duration,
    retry: RetryPolicy,
    spool: Option<PathBuf>,
    fsync: FsyncPolicy,
    overflow: OverflowPolicy,
    max_spool_events: u64,
    max_spool_bytes: u64,
    lane_capacity: Option<usize>,
}

impl std::fmt::Debug for DispatcherBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherBuilder")
            .field(
                "sinks",
                &self.sinks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("queue_capacity", &self.queue_capacity)
            .field("batch_max", &self.batch_max)
            .field("linger", &self.linger)
            .field("retry", &self.retry)
            .field("spool", &self.spool)
            .field("fsync", &self.fsync)
            .field("overflow", &self.overflow)
            .field("max_spool_events", &self.max_spool_events)
            .field("max_spool_bytes", &self.max_spool_bytes)
            .finish()
    }
}

impl Default for DispatcherBuilder {
    fn default() -> Self {
        DispatcherBuilder {
            sinks: Vec::new(),
            queue_capacity: 10_000,
            batch_max: 1_000,
            linger: Duration::from_millis(5),
            retry: RetryPolicy::default(),
            spool: None,
            fsync: FsyncPolicy::default(),
            overflow: OverflowPolicy::default(),
            max_spool_events: 10_000_000,
            max_spool_bytes: 1 << 30,
            lane_capacity: None,
        }
    }
}

impl DispatcherBuilder {
    /// Adds a sink under `name`, the name producers pass to
    /// [`Dispatcher::emit`] and the key of its events in the spool (keep it
    /// stable across restarts).
    pub fn sink(mut self, name: impl Into<String>, sink: Arc<dyn Sink>) -> Self {
        self.sinks.push((name.into(), sink));
        self
    }

    /// The bound of the ingress queue (default 10 000 events).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// The largest batch (default 1000; each sink's own
    /// [`max_batch`](Sink::max_batch) caps it too) and how long the first
    /// event of a batch waits for more (default 5 ms).
    pub fn batch(mut self, max: usize, linger: Duration) -> Self {
        self.batch_max = max.max(1);
        self.linger = linger;
        self
    }

    /// How failed deliveries are retried (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Spools to the redb file at `path` (created if absent; events left in
    /// it are delivered again). Without this call the spool lives in memory:
    /// the same batching and retries, but nothing survives a restart.
    pub fn spool(mut self, path: impl Into<PathBuf>, fsync: FsyncPolicy) -> Self {
        self.spool = Some(path.into());
        self.fsync = fsync;
        self
    }

    /// Bounds the spool (default 10 million events or 1 GiB of event
    /// records, whichever comes first). Beyond it `emit` refuses events with
    /// [`EmitError::SpoolFull`] and counts them. The check is made when
    /// events are accepted, so the spool may pass the bound by what is
    /// queued at that moment.
    pub fn spool_limits(mut self, max_events: u64, max_bytes: u64) -> Self {
        self.max_spool_events = max_events;
        self.max_spool_bytes = max_bytes;
        self
    }

    /// What `emit` does when the queue is full (default
    /// [`OverflowPolicy::SpillToSpool`]).
    pub fn overflow(mut self, policy: OverflowPolicy) -> Self {
        self.overflow = policy;
        self
    }

    /// How many events each sink holds in memory (default the larger of
    /// 4 × batch and 4096); beyond it the sink's events wait in the spool.
    pub fn lane_capacity(mut self, events: usize) -> Self {
        self.lane_capacity = Some(events.max(1));
        self
    }

    /// Opens the spool, re-queues what it holds and starts the writer and
    /// one worker per sink on the current tokio runtime.
    ///
    /// Returns the handle for producers and the task, which completes once
    /// the dispatcher has shut down (after [`Dispatcher::shutdown`], or when
    /// every handle is dropped, which flushes the queue to the spool without
    /// waiting for sinks).
    pub async fn build(self) -> Result<(Dispatcher, DispatcherTask), DispatcherError> {
        let mut names: Vec<Arc<str>> = Vec::with_capacity(self.sinks.len());
        for (name, _) in &self.sinks {
            if names.iter().any(|n| **n == **name) {
                return Err(DispatcherError::DuplicateSink(name.clone()));
            }
            names.push(Arc::from(name.as_str()));
        }
        let path = self.spool.clone();
        let (spool, recovered) = tokio::task::spawn_blocking(move || Spool::open(path.as_deref()))
            .await
            .map_err(|e| DispatcherError::Task(e.to_string()))??;
        let spool = Arc::new(spool);

        let counters = Arc::new(Counters {
            sinks: names.iter().map(|_| SinkCounters::default()).collect(),
            ..Counters::default()
        });
        counters.spooled.store(
            recovered.sinks.values().map(|(n, _)| n).sum(),
            Ordering::Relaxed,
        );
        counters
            .spool_bytes
            .store(recovered.bytes, Ordering::Relaxed);
        for (name, (count, _)) in &recovered.sinks {
            match names.iter().position(|n| **n == **name) {
                Some(i) => counters.sinks[i].pending.store(*count, Ordering::Relaxed),
                None => tracing::warn!(
                    sink = %name,
                    events = count,
                    "the spool holds events for a sink that is not configured; they stay in the spool"
                ),
            }
        }
        for (i, name) in names.iter().enumerate() {
            if let Some(dead) = recovered.dead.get(&**name) {
                counters.sinks[i]
                    .dead_lettered
                    .store(*dead, Ordering::Relaxed);
                counters.sinks[i]
                    .dead_letters
                    .store(*dead, Ordering::Relaxed);
            }
        }

        let lanes: Vec<Arc<Lane>> = names
            .iter()
            .map(|name| {
                let last = recovered.sinks.get(&**name).map(|(_, max)| *max);
                Arc::new(Lane {
                    state: Mutex::new(LaneState {
                        queue: VecDeque::new(),
                        // Start by reading whatever the spool holds.
                        spilled: last.is_some(),
                        spill_from: 0,
                        spilled_through: last,
                        disabled: false,
                    }),
                    notify: Notify::new(),
                })
            })
            .collect();
        if recovered.sinks.values().any(|(n, _)| *n > 0) {
            tracing::info!(
                events = counters.spooled.load(Ordering::Relaxed),
                "re-queueing events left in the spool"
            );
        }

        let (tx, ingress) = mpsc::channel(self.queue_capacity);
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (shutdown_tx, shutdown_rx) = watch::channel(None);
        let wake = Arc::new(Notify::new());
        let overflow = Arc::new(Mutex::new(Vec::new()));

        let mut workers = Vec::new();
        for (i, (_, sink)) in self.sinks.iter().enumerate() {
            let batch_max = self.batch_max.min(sink.max_batch().max(1));
            let window = self
                .lane_capacity
                .unwrap_or_else(|| (batch_max * 4).max(4096));
            let worker = Worker {
                index: i,
                name: names[i].clone(),
                sink: sink.clone(),
                lane: lanes[i].clone(),
                spool: spool.clone(),
                cmds: cmd_tx.clone(),
                counters: counters.clone(),
                retry: self.retry.clone(),
                batch_max,
                linger: self.linger,
                window,
                ready: VecDeque::new(),
                waiting: BTreeMap::new(),
                blocked_until: None,
                failures: 0,
                first_ready: None,
                shutdown: shutdown_rx.clone(),
            };
            workers.push(tokio::spawn(worker.run()));
        }
        let lane_capacity: Vec<usize> = self
            .sinks
            .iter()
            .map(|(_, sink)| {
                let batch_max = self.batch_max.min(sink.max_batch().max(1));
                self.lane_capacity
                    .unwrap_or_else(|| (batch_max * 4).max(4096))
            })
            .collect();

        let writer = Writer {
            spool: spool.clone(),
            names: names.clone(),
            lanes,
            lane_capacity,
            counters: counters.clone(),
            ingress,
            ingress_open: true,
            cmds: cmd_rx,
            overflow: overflow.clone(),
            wake: wake.clone(),
            fsync: self.fsync,
            next_seq: recovered.next_seq,
            closing: None,
            unspooled: VecDeque::new(),
            unspooled_from: recovered.next_seq,
            tick: 0,
            grace_ticks: match self.fsync {
                FsyncPolicy::Interval(_) => 1,
                FsyncPolicy::Always | FsyncPolicy::Never => 0,
            },
            touched: vec![false; names.len()],
            admin: Vec::new(),
        };
        let writer = tokio::spawn(writer.run());

        let slot = Arc::new(Mutex::new(Some(spool)));
        let (request_tx, request_rx) = mpsc::channel(1);
        let (done_tx, done_rx) = watch::channel(None);
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let admin_tx = cmd_tx.clone();
        let supervisor = Supervisor {
            writer,
            workers,
            shutdown: shutdown_tx,
            cmds: cmd_tx,
            requests: request_rx,
            done: done_tx,
            counters: counters.clone(),
            names: names.clone(),
            spool: slot.clone(),
        };
        let task = DispatcherTask(tokio::spawn(supervisor.run()));
        let dispatcher = Dispatcher {
            inner: Arc::new(Inner {
                names,
                index,
                tx,
                overflow,
                wake,
                policy: self.overflow,
                closed: AtomicBool::new(false),
                counters,
                max_events: self.max_spool_events,
                max_bytes: self.max_spool_bytes,
                spool: slot,
                cmds: admin_tx,
                requests: request_tx,
                done: done_rx,
            }),
        };
        Ok((dispatcher, task))
    }
}

/// The task of a running dispatcher; completes when it has shut down.
#[derive(Debug)]
pub struct DispatcherTask(JoinHandle<Result<(), DispatcherError>>);

impl Future for DispatcherTask {
    type Output = Result<(), DispatcherError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined
                .map_err(|e| DispatcherError::Task(e.to_string()))
                .and_then(std::convert::identity)
        })
    }
}

/// The producers' handle to the dispatcher: cheap to clone, `emit` never
/// waits. See the [module docs](self).
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, usize>,
    tx: mpsc::Sender<Envelope>,
    overflow: Arc<Mutex<Vec<Envelope>>>,
    wake: Arc<Notify>,
    policy: OverflowPolicy,
    closed: AtomicBool,
    counters: Arc<Counters>,
    max_events: u64,
    max_bytes: u64,
    /// Emptied at shutdown, so the file is closed once the tasks are done.
    spool: Arc<Mutex<Option<Arc<Spool>>>>,
    /// To the spool writer, for the operator's changes (redrive, purge,
    /// enable): only the writer writes to the spool.
    cmds: mpsc::Sender<Cmd>,
    requests: mpsc::Sender<Instant>,
    done: watch::Receiver<Option<DispatcherStats>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("sinks", &self.inner.names)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A builder.
    pub fn builder() -> DispatcherBuilder {
        DispatcherBuilder::default()
    }

    /// Accepts `event` for the sink named `sink`. Never waits for a sink or
    /// the disk (unless the policy is [`OverflowPolicy::Block`]).
    pub fn emit(&self, sink: &str, event: Event) -> Result<(), EmitError> {
        let index = self.admit(sink)?;
        let envelope = Envelope { sink: index, event };
        match self.inner.tx.try_send(envelope) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(EmitError::Closed),
            Err(mpsc::error::TrySendError::Full(envelope)) => match self.inner.policy {
                OverflowPolicy::SpillToSpool => self.spill(envelope),
                OverflowPolicy::DropNewest => {
                    self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return Err(EmitError::QueueFull);
                }
                OverflowPolicy::Block => self.block(envelope)?,
            },
        }
        self.accepted(index);
        Ok(())
    }

    /// Accepts each event for its sink, as [`emit`](Self::emit) does, and
    /// returns the first refusal (the other events are still offered).
    pub fn emit_routed<S: AsRef<str>>(
        &self,
        routed: impl IntoIterator<Item = (S, Event)>,
    ) -> Result<(), EmitError> {
        let mut first = Ok(());
        for (sink, event) in routed {
            if let Err(e) = self.emit(sink.as_ref(), event) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// Like [`emit`](Self::emit), but waits for room in the queue instead of
    /// applying the overflow policy: backpressure for async producers that
    /// can afford it.
    pub async fn emit_wait(&self, sink: &str, event: Event) -> Result<(), EmitError> {
        let index = self.admit(sink)?;
        self.inner
            .tx
            .send(Envelope { sink: index, event })
            .await
            .map_err(|_| EmitError::Closed)?;
        self.accepted(index);
        Ok(())
    }

    fn admit(&self, sink: &str) -> Result<usize, EmitError> {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::Relaxed) {
            return Err(EmitError::Closed);
        }
        let Some(&index) = inner.index.get(sink) else {
            return Err(EmitError::UnknownSink(sink.to_owned()));
        };
        let counters = &inner.counters;
        if counters.sinks[index].disabled.load(Ordering::Relaxed) {
            counters.sinks[index]
                .rejected_disabled
                .fetch_add(1, Ordering::Relaxed);
            return Err(EmitError::SinkDisabled(sink.to_owned()));
        }
        let held =
            counters.queued.load(Ordering::Relaxed) + counters.spooled.load(Ordering::Relaxed);
        if held >= inner.max_events
            || counters.spool_bytes.load(Ordering::Relaxed) >= inner.max_bytes
        {
            counters.spool_full.fetch_add(1, Ordering::Relaxed);
            if !counters.full_logged.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    events = held,
                    max_events = inner.max_events,
                    max_bytes = inner.max_bytes,
                    "notification spool is full: refusing events until sinks catch up"
                );
            }
            return Err(EmitError::SpoolFull);
        }
        Ok(index)
    }

    fn accepted(&self, index: usize) {
        let counters = &self.inner.counters;
        counters.queued.fetch_add(1, Ordering::Relaxed);
        counters.sinks[index]
            .accepted
            .fetch_add(1, Ordering::Relaxed);
    }

    fn spill(&self, envelope: Envelope) {
        self.inner
            .overflow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(envelope);
        self.inner.wake.notify_one();
    }

    fn block(&self, envelope: Envelope) -> Result<(), EmitError> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let tx = &self.inner.tx;
        match Handle::try_current() {
            Err(_) => tx.blocking_send(envelope).map_err(|_| EmitError::Closed),
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(tx.send(envelope)).is_ok())
                    .then_some(())
                    .ok_or(EmitError::Closed)
            }
            Ok(_) => {
                self.spill(envelope);
                Ok(())
            }
        }
    }

    /// The names of the configured sinks.
    pub fn sinks(&self) -> impl Iterator<Item = &str> {
        self.inner.names.iter().map(|n| &**n)
    }

    /// A snapshot of the counters (a few atomic loads).
    pub fn stats(&self) -> DispatcherStats {
        self.inner.counters.snapshot(&self.inner.names)
    }

    /// Up to `limit` events in the dead-letter table. After a shutdown the
    /// spool is closed and this answers [`DispatcherError::Closed`].
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, DispatcherError> {
        self.dead_letters_matching(&DeadLetterFilter::all(), limit)
            .await
    }

    /// Up to `limit` dead letters that `filter` selects, by sink and
    /// sequence number.
    pub async fn dead_letters_matching(
        &self,
        filter: &DeadLetterFilter,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, DispatcherError> {
        let filter = filter.clone();
        self.read_spool(move |spool| spool.dead_letters(&filter, limit))
            .await
    }

    /// The dead letter of the event with id `id`, if there is one (with
    /// several sinks, the first sink's).
    pub async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, DispatcherError> {
        let filter = DeadLetterFilter::all().id(id);
        Ok(self
            .dead_letters_matching(&filter, 1)
            .await?
            .into_iter()
            .next())
    }

    /// Moves the dead letters `filter` selects back into the spool, as if
    /// just accepted (no attempt made, a fresh retry budget), and delivers
    /// them again; they keep their event id, so receivers can de-duplicate.
    /// A disabled sink's redriven events wait until it is enabled. Returns
    /// how many were moved, per sink.
    pub async fn redrive(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<BTreeMap<String, u64>, DispatcherError> {
        self.check_sink(filter)?;
        let (reply, answer) = oneshot::channel();
        self.admin(Admin::Redrive(filter.clone(), reply), answer)
            .await
    }

    /// Deletes the dead letters `filter` selects. Returns how many, per
    /// sink.
    pub async fn purge(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<BTreeMap<String, u64>, DispatcherError> {
        self.check_sink(filter)?;
        let (reply, answer) = oneshot::channel();
        self.admin(Admin::Purge(filter.clone(), reply), answer)
            .await
    }

    /// Enables again a sink that was disabled by a `410 Gone`, without a
    /// restart: `emit` accepts its events again and its worker delivers
    /// what waited in the spool meanwhile. Returns whether it was disabled.
    /// Its dead letters stay where they are; [`redrive`](Self::redrive)
    /// them if they should go too.
    pub async fn enable_sink(&self, sink: &str) -> Result<bool, DispatcherError> {
        let Some(&index) = self.inner.index.get(sink) else {
            return Err(DispatcherError::UnknownSink(sink.to_owned()));
        };
        let (reply, answer) = oneshot::channel();
        self.admin(Admin::Enable(index, reply), answer).await
    }

    /// How full the spool is: the larger of events held over the event
    /// limit and record bytes over the byte limit (see
    /// [`DispatcherBuilder::spool_limits`]), from 0 up (past 1 when the
    /// spool overshot its bound).
    pub fn spool_fill(&self) -> f64 {
        let inner = &*self.inner;
        let c = &inner.counters;
        let held = c.queued.load(Ordering::Relaxed) + c.spooled.load(Ordering::Relaxed);
        let bytes = c.spool_bytes.load(Ordering::Relaxed);
        let ratio = |value: u64, max: u64| {
            if max == 0 {
                f64::INFINITY
            } else {
                value as f64 / max as f64
            }
        };
        ratio(held, inner.max_events).max(ratio(bytes, inner.max_bytes))
    }

    /// Per sink, in the order they were added: how long its oldest event
    /// still waiting for delivery has waited (`None` when it waits for
    /// nothing). Events not yet committed to the spool are at most a group
    /// commit old and are not counted.
    pub async fn oldest_undelivered(
        &self,
    ) -> Result<Vec<(String, Option<Duration>)>, DispatcherError> {
        let names = self.inner.names.clone();
        let oldest = self
            .read_spool({
                let names = names.clone();
                move |spool| spool.oldest(&names)
            })
            .await?;
        let now = now_ms();
        Ok(names
            .iter()
            .zip(oldest)
            .map(|(name, at)| {
                (
                    name.to_string(),
                    at.map(|at| Duration::from_millis(now.saturating_sub(at))),
                )
            })
            .collect())
    }

    fn check_sink(&self, filter: &DeadLetterFilter) -> Result<(), DispatcherError> {
        match &filter.sink {
            Some(sink) if !self.inner.index.contains_key(sink.as_str()) => {
                Err(DispatcherError::UnknownSink(sink.clone()))
            }
            _ => Ok(()),
        }
    }

    async fn read_spool<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Spool) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, DispatcherError> {
        let spool = self
            .inner
            .spool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(DispatcherError::Closed)?;
        tokio::task::spawn_blocking(move || read(&spool))
            .await
            .map_err(|e| DispatcherError::Task(e.to_string()))?
            .map_err(DispatcherError::from)
    }

    async fn admin<T>(
        &self,
        command: Admin,
        answer: oneshot::Receiver<Result<T, SpoolError>>,
    ) -> Result<T, DispatcherError> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(DispatcherError::Closed);
        }
        self.inner
            .cmds
            .send(Cmd::Admin(command))
            .await
            .map_err(|_| DispatcherError::Closed)?;
        answer
            .await
            .map_err(|_| DispatcherError::Closed)?
            .map_err(DispatcherError::from)
    }

    /// Stops accepting events, commits what is queued, delivers until
    /// `drain` has passed and leaves the rest in the spool for the next
    /// start. Returns the final counters. Calling it again (from any clone)
    /// waits for the same shutdown.
    pub async fn shutdown(&self, drain: Duration) -> DispatcherStats {
        self.inner.closed.store(true, Ordering::SeqCst);
        let _ = self.inner.requests.try_send(Instant::now() + drain);
        let mut done = self.inner.done.clone();
        let result = done.wait_for(|stats| stats.is_some()).await;
        match result {
            Ok(stats) => stats.clone().expect("waited for Some"),
            Err(_) => self.stats(),
        }
    }
}

// ---------------------------------------------------------------------------
// Lanes: the in-memory hand-off from the writer to one sink's worker.

struct Lane {
    state: Mutex<LaneState>,
    notify: Notify,
}

struct LaneState {
    queue: VecDeque<Entry>,
    /// The writer stopped feeding `queue` at `spill_from`; from there on the
    /// worker reads the spool.
    spilled: bool,
    spill_from: u64,
    /// The last event diverted to the spool instead of the lane: the spill
    /// ends only once the worker has read it back, so an event diverted but
    /// not yet committed is never skipped.
    spilled_through: Option<u64>,
    disabled: bool,
}

impl Lane {
    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    attempts: u32,
    spooled_ms: u64,
    /// Deliver alone: it was in a batch refused permanently.
    solo: bool,
    event: Event,
}

// ---------------------------------------------------------------------------
// The spool writer.

enum Cmd {
    Ops(Vec<Op>),
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<Result<(), SpoolError>>),
    Admin(Admin),
}

type Reply<T> = oneshot::Sender<Result<T, SpoolError>>;

/// An operator's change to the spool, run by the writer between commits.
enum Admin {
    Redrive(DeadLetterFilter, Reply<BTreeMap<String, u64>>),
    Purge(DeadLetterFilter, Reply<BTreeMap<String, u64>>),
    /// Enable the sink of this index again; answers whether it was disabled.
    Enable(usize, Reply<bool>),
}

/// An event handed to its sink (or diverted to the spool) but not yet
/// committed.
struct Unspooled {
    sink: usize,
    /// The writer's tick when it arrived; it falls due for the spool once
    /// `grace_ticks` more ticks have passed without an acknowledgement.
    tick: u64,
    /// Due at the next commit whatever its age: it is not in a lane (the
    /// lane spilled, or the sink is disabled), or its sink failed it.
    due_now: bool,
    spooled_ms: u64,
    /// A copy of what went to the lane. Cloning is several times cheaper
    /// than encoding the spool record, which only due events pay for (on
    /// the commit's blocking thread).
    event: Event,
}

struct Writer {
    spool: Arc<Spool>,
    names: Vec<Arc<str>>,
    lanes: Vec<Arc<Lane>>,
    lane_capacity: Vec<usize>,
    counters: Arc<Counters>,
    ingress: mpsc::Receiver<Envelope>,
    ingress_open: bool,
    cmds: mpsc::Receiver<Cmd>,
    overflow: Arc<Mutex<Vec<Envelope>>>,
    wake: Arc<Notify>,
    fsync: FsyncPolicy,
    next_seq: u64,
    closing: Option<oneshot::Sender<Result<(), SpoolError>>>,
    /// Accepted and not yet committed, in sequence order from
    /// `unspooled_from`; `None` once committed or acknowledged.
    unspooled: VecDeque<Option<Unspooled>>,
    unspooled_from: u64,
    /// Ticks so far: one per group commit (or per interval without one).
    tick: u64,
    /// Ticks an event may wait for its acknowledgement before it is due:
    /// one under `Interval`, none otherwise.
    grace_ticks: u64,
    /// Lanes that got events since their worker was last woken.
    touched: Vec<bool>,
    /// Operator commands waiting for the end of the current commit.
    admin: Vec<Admin>,
}

/// The most dead letters redriven in one transaction.
const REDRIVE_CHUNK: usize = 10_000;
/// The most events in one group commit; more wait for the next.
const MAX_COMMIT: usize = 16_384;
/// The most events held unspooled; more wait in the queue.
const MAX_UNSPOOLED: usize = 4 * MAX_COMMIT;
const CHECKPOINT: Duration = Duration::from_secs(1);
/// How often, between ticks, the writer hands arrivals to the lanes. Well
/// inside the default 5 ms grace, and however busy the proxy is, hand-overs
/// wake the writer and each worker at most 500 times a second (1 ms measured
/// the same on/off ratio with twice the wake-ups).
const HANDOVER: Duration = Duration::from_millis(2);

impl Writer {
    async fn run(mut self) -> Result<(), DispatcherError> {
        let mut ops: Vec<Op> = Vec::new();
        let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
        let mut last_tick = Instant::now();
        let mut dirty = false; // non-durable commits since the last checkpoint
        let mut last_checkpoint = Instant::now();
        loop {
            if self.unspooled.is_empty() && ops.is_empty() && flushes.is_empty() {
                let checkpoint_at = last_checkpoint + CHECKPOINT;
                tokio::select! {
                    biased;
                    cmd = self.cmds.recv() => if !self.take_cmd(cmd, &mut ops, &mut flushes) {
                        let _ = self.close(&mut ops).await;
                        return Ok(());
                    },
                    _ = self.wake.notified() => {}
                    envelope = self.ingress.recv(), if self.ingress_open => match envelope {
                        Some(envelope) => self.accept(envelope),
                        None => self.ingress_open = false,
                    },
                    _ = tokio::time::sleep_until(checkpoint_at), if dirty => {
                        self.checkpoint().await;
                        dirty = false;
                        last_checkpoint = Instant::now();
                        continue;
                    }
                }
            }
            if let FsyncPolicy::Interval(interval) = self.fsync {
                // Until the tick, hand arrivals to their lanes every
                // `HANDOVER` step: the sooner a sink has an event, the likelier
                // its acknowledgement beats the event's due time, while a
                // busy proxy still wakes this task (and each worker) about
                // once a step rather than once per event.
                let tick_at = last_tick + interval;
                while flushes.is_empty() && self.closing.is_none() && self.admin.is_empty() {
                    self.take_arrivals();
                    self.wake_workers();
                    let step_at = (Instant::now() + HANDOVER).min(tick_at);
                    tokio::select! {
                        biased;
                        cmd = self.cmds.recv() => if !self.take_cmd(cmd, &mut ops, &mut flushes) {
                            let _ = self.close(&mut ops).await;
                            return Ok(());
                        },
                        _ = tokio::time::sleep_until(step_at) => {
                            if step_at == tick_at {
                                break;
                            }
                        }
                    }
                }
            }
            self.gather(&mut ops, &mut flushes);
            if let Some(reply) = self.closing.take() {
                let result = self.close(&mut ops).await;
                for reply in flushes.drain(..) {
                    let _ = reply.send(());
                }
                let _ = reply.send(result);
                return Ok(());
            }
            self.settle(&mut ops);
            // A flush asks for everything accepted so far, due or not; so
            // does an operator's command, which then sees every event in
            // the spool.
            let mut appends = self.take_due(!flushes.is_empty() || !self.admin.is_empty());
            self.tick += 1;
            last_tick = Instant::now();
            if appends.is_empty() && ops.is_empty() {
                self.run_admin().await;
                self.answer_flushes_once_drained(&mut flushes);
                continue;
            }
            let durability = match self.fsync {
                FsyncPolicy::Never => Durability::None,
                _ => Durability::Immediate,
            };
            self.commit(&mut appends, &mut ops, durability).await;
            self.run_admin().await;
            if matches!(durability, Durability::None) {
                dirty = true;
                if last_checkpoint.elapsed() >= CHECKPOINT {
                    self.checkpoint().await;
                    dirty = false;
                    last_checkpoint = Instant::now();
                }
            }
            self.answer_flushes_once_drained(&mut flushes);
        }
    }

    /// Runs the operators' commands, after a commit that left nothing
    /// accepted uncommitted (see `take_due`): what they read and move in
    /// the spool is then everything. An `Enable` whose sink still has
    /// uncommitted events waits for the next commit.
    async fn run_admin(&mut self) {
        let pending = std::mem::take(&mut self.admin);
        for admin in pending {
            match admin {
                Admin::Redrive(filter, reply) => {
                    let result = self.redrive(filter).await;
                    let _ = reply.send(result);
                }
                Admin::Purge(filter, reply) => {
                    let spool = self.spool.clone();
                    let result = tokio::task::spawn_blocking(move || spool.purge(&filter))
                        .await
                        .unwrap_or(Err(SpoolError::Task))
                        .map(|purged| {
                            for (name, n) in &purged {
                                if let Some(i) = self.names.iter().position(|x| **x == **name) {
                                    saturating_sub(&self.counters.sinks[i].dead_letters, *n);
                                }
                            }
                            purged.into_iter().collect()
                        });
                    let _ = reply.send(result);
                }
                Admin::Enable(index, reply) => {
                    let uncommitted = self
                        .unspooled
                        .iter()
                        .any(|u| u.as_ref().is_some_and(|u| u.sink == index));
                    if uncommitted {
                        self.admin.push(Admin::Enable(index, reply));
                        continue;
                    }
                    let _ = reply.send(Ok(self.enable(index)));
                }
            }
        }
    }

    /// Redrives in transactions of at most `REDRIVE_CHUNK` events, so a
    /// large dead-letter table never makes one huge transaction.
    async fn redrive(
        &mut self,
        filter: DeadLetterFilter,
    ) -> Result<BTreeMap<String, u64>, SpoolError> {
        let filter = Arc::new(filter);
        let mut by_sink = BTreeMap::new();
        loop {
            let moved = self.redrive_chunk(filter.clone(), &mut by_sink).await?;
            if moved < REDRIVE_CHUNK {
                return Ok(by_sink);
            }
        }
    }

    async fn redrive_chunk(
        &mut self,
        filter: Arc<DeadLetterFilter>,
        by_sink: &mut BTreeMap<String, u64>,
    ) -> Result<usize, SpoolError> {
        let spool = self.spool.clone();
        let from = self.next_seq;
        let (moved, next_seq) =
            tokio::task::spawn_blocking(move || spool.redrive(&filter, REDRIVE_CHUNK, from))
                .await
                .map_err(|_| SpoolError::Task)??;
        let count = moved.len();
        // The redriven events took the numbers `from..next_seq`: keep the
        // window of uncommitted events contiguous across them.
        for _ in from..next_seq {
            if !self.unspooled.is_empty() {
                self.unspooled.push_back(None);
            }
        }
        self.next_seq = next_seq;
        let c = &self.counters;
        for (name, seq, bytes) in moved {
            c.spooled.fetch_add(1, Ordering::Relaxed);
            c.spool_bytes.fetch_add(bytes, Ordering::Relaxed);
            if let Some(i) = self.names.iter().position(|x| **x == *name) {
                let sink = &c.sinks[i];
                sink.pending.fetch_add(1, Ordering::Relaxed);
                sink.redriven.fetch_add(1, Ordering::Relaxed);
                saturating_sub(&sink.dead_letters, 1);
                // As for an event diverted from a full lane: the worker
                // reads it back from the spool.
                let mut state = self.lanes[i].lock();
                if !state.spilled {
                    state.spilled = true;
                    state.spill_from = seq;
                }
                state.spilled_through = Some(state.spilled_through.map_or(seq, |s| s.max(seq)));
                self.touched[i] = true;
            }
            *by_sink.entry(name).or_default() += 1;
        }
        self.wake_workers();
        Ok(count)
    }

    /// Lets the worker of sink `index` deliver again, from the start of its
    /// events in the spool (everything it held was dropped when it was
    /// disabled, and everything accepted since is committed).
    fn enable(&mut self, index: usize) -> bool {
        let was = self.counters.sinks[index]
            .disabled
            .swap(false, Ordering::Relaxed);
        let lane = &self.lanes[index];
        {
            let mut state = lane.lock();
            if !state.disabled {
                return was;
            }
            state.disabled = false;
            state.spilled = true;
            state.spill_from = 0;
            let last = self.next_seq.checked_sub(1);
            state.spilled_through = match (state.spilled_through, last) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        tracing::warn!(sink = %self.names[index], "sink enabled again by the operator");
        lane.notify.notify_one();
        true
    }

    /// A flush asked for everything accepted before it: it is answered once
    /// the queue, the overflow list and the uncommitted events are all
    /// empty; until then the loop gathers and commits again.
    fn answer_flushes_once_drained(&self, flushes: &mut Vec<oneshot::Sender<()>>) {
        if !flushes.is_empty()
            && self.ingress.is_empty()
            && self.overflow_is_empty()
            && self.unspooled.is_empty()
        {
            for reply in flushes.drain(..) {
                let _ = reply.send(());
            }
        }
    }

    /// Takes one command; `false` once the channel is closed (the
    /// supervisor and every worker are gone).
    fn take_cmd(
        &mut self,
        cmd: Option<Cmd>,
        ops: &mut Vec<Op>,
        flushes: &mut Vec<oneshot::Sender<()>>,
    ) -> bool {
        match cmd {
            Some(Cmd::Ops(more)) => ops.extend(more),
            Some(Cmd::Flush(reply)) => flushes.push(reply),
            Some(Cmd::Close(reply)) => self.closing = Some(reply),
            Some(Cmd::Admin(admin)) => self.admin.push(admin),
            None => return false,
        }
        true
    }

    fn overflow_is_empty(&self) -> bool {
        self.overflow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Numbers the event, keeps a copy for the spool, and hands the event to
    /// its sink's lane, or diverts it to the spool when the lane is full
    /// (the worker reads it back from there) or the sink is disabled.
    fn accept(&mut self, envelope: Envelope) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let spooled_ms = now_ms();
        let Envelope { sink, event } = envelope;
        let (in_lane, event) = {
            let mut state = self.lanes[sink].lock();
            if !state.spilled && state.queue.len() >= self.lane_capacity[sink] {
                state.spilled = true;
                state.spill_from = seq;
            }
            if state.spilled || state.disabled {
                state.spilled_through = Some(seq);
                (false, event)
            } else {
                state.queue.push_back(Entry {
                    seq,
                    attempts: 0,
                    spooled_ms,
                    solo: false,
                    event: event.clone(),
                });
                (true, event)
            }
        };
        self.touched[sink] |= in_lane;
        if self.unspooled.is_empty() {
            self.unspooled_from = seq;
        }
        self.unspooled.push_back(Some(Unspooled {
            sink,
            tick: self.tick,
            due_now: !in_lane,
            spooled_ms,
            event,
        }));
    }

    /// Accepts what is waiting, without waiting: the overflow list, then
    /// the queue. (Order across the two is not kept; sinks see no global
    /// order anyway once retries interleave.)
    fn take_arrivals(&mut self) {
        let room = MAX_UNSPOOLED.saturating_sub(self.unspooled.len());
        if room == 0 {
            return;
        }
        let spilled: Vec<Envelope> = {
            let mut overflow = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
            let take = overflow.len().min(room);
            overflow.drain(..take).collect()
        };
        for envelope in spilled {
            self.accept(envelope);
        }
        while self.unspooled.len() < MAX_UNSPOOLED && self.ingress_open {
            match self.ingress.try_recv() {
                Ok(envelope) => self.accept(envelope),
                Err(_) => break,
            }
        }
    }

    /// Wakes the workers whose lanes got events: once per batch of
    /// arrivals, not once per event.
    fn wake_workers(&mut self) {
        for (lane, touched) in self.lanes.iter().zip(self.touched.iter_mut()) {
            if std::mem::take(touched) {
                lane.notify.notify_one();
            }
        }
    }

    /// Takes what is waiting, without waiting: commands first, then the
    /// arrivals.
    fn gather(&mut self, ops: &mut Vec<Op>, flushes: &mut Vec<oneshot::Sender<()>>) {
        while let Ok(cmd) = self.cmds.try_recv() {
            self.take_cmd(Some(cmd), ops, flushes);
        }
        self.take_arrivals();
        self.wake_workers();
    }

    fn unspooled_mut(&mut self, seq: u64) -> Option<&mut Option<Unspooled>> {
        let index = usize::try_from(seq.checked_sub(self.unspooled_from)?).ok()?;
        self.unspooled.get_mut(index)
    }

    /// Applies the workers' reports to events not yet committed: an
    /// acknowledged one is dropped along with its delete (it never touches
    /// the disk); a failed one is due now, so the reschedule or dead letter
    /// that follows it in the same commit finds its record.
    fn settle(&mut self, ops: &mut Vec<Op>) {
        let mut acknowledged = 0u64;
        ops.retain(|op| {
            let seq = op.seq();
            let Some(slot) = self.unspooled_mut(seq) else {
                return true;
            };
            if slot.is_none() {
                return true;
            }
            match op {
                Op::Delete { .. } => {
                    *slot = None;
                    acknowledged += 1;
                    false
                }
                Op::Reschedule { .. } | Op::Kill { .. } => {
                    if let Some(unspooled) = slot {
                        unspooled.due_now = true;
                    }
                    true
                }
            }
        });
        if acknowledged > 0 {
            saturating_sub(&self.counters.queued, acknowledged);
            self.counters
                .delivered_unspooled
                .fetch_add(acknowledged, Ordering::Relaxed);
        }
        self.trim();
    }

    /// The events due for the spool (all of them with `everything`), up to
    /// one commit's worth.
    fn take_due(&mut self, everything: bool) -> Vec<Append> {
        let mut appends = Vec::new();
        let due_tick = self.tick.checked_sub(self.grace_ticks);
        let from = self.unspooled_from;
        for (offset, slot) in self.unspooled.iter_mut().enumerate() {
            if appends.len() >= MAX_COMMIT {
                break;
            }
            let due = slot.as_ref().is_some_and(|u| {
                everything || u.due_now || due_tick.is_some_and(|due| u.tick <= due)
            });
            if due {
                let unspooled = slot.take().expect("checked above");
                appends.push(Append {
                    sink: unspooled.sink,
                    seq: from + offset as u64,
                    spooled_ms: unspooled.spooled_ms,
                    event: unspooled.event,
                });
            }
        }
        self.trim();
        appends
    }

    fn trim(&mut self) {
        while let Some(None) = self.unspooled.front() {
            self.unspooled.pop_front();
            self.unspooled_from += 1;
        }
    }

    async fn commit(
        &mut self,
        appends: &mut Vec<Append>,
        ops: &mut Vec<Op>,
        durability: Durability,
    ) {
        let mut batch_appends = std::mem::take(appends);
        let mut batch_ops = std::mem::take(ops);
        let mut backoff = Duration::from_millis(50);
        loop {
            let spool = self.spool.clone();
            let names = self.names.clone();
            let next_seq = self.next_seq;
            let joined = tokio::task::spawn_blocking(move || {
                let result = spool.commit(&names, &batch_appends, &batch_ops, next_seq, durability);
                (batch_appends, batch_ops, result)
            })
            .await;
            let (returned_appends, returned_ops, result) = match joined {
                Ok(parts) => parts,
                Err(e) => {
                    // The closure cannot panic short of a bug in redb; the
                    // events are gone with it.
                    tracing::error!(error = %e, "spool commit task failed");
                    return;
                }
            };
            batch_appends = returned_appends;
            batch_ops = returned_ops;
            match result {
                Ok(applied) => {
                    self.after_commit(&batch_appends, applied);
                    return;
                }
                Err(error) => {
                    tracing::error!(%error, retry_in = ?backoff, "spool commit failed; keeping the batch in memory");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn after_commit(&mut self, appends: &[Append], applied: spool::Applied) {
        let c = &self.counters;
        c.commits.fetch_add(1, Ordering::Relaxed);
        let appended = appends.len() as u64;
        saturating_sub(&c.queued, appended);
        c.spooled.fetch_add(appended, Ordering::Relaxed);
        c.spool_bytes
            .fetch_add(applied.bytes_added, Ordering::Relaxed);
        let removed: u64 = applied.removed.values().sum();
        saturating_sub(&c.spooled, removed);
        saturating_sub(&c.spool_bytes, applied.bytes_removed);
        for (name, n) in &applied.removed {
            if let Some(i) = self.names.iter().position(|x| x == name) {
                saturating_sub(&c.sinks[i].pending, *n);
            }
        }
        for (name, n) in &applied.killed {
            if let Some(i) = self.names.iter().position(|x| x == name) {
                c.sinks[i].dead_lettered.fetch_add(*n, Ordering::Relaxed);
                c.sinks[i].dead_letters.fetch_add(*n, Ordering::Relaxed);
            }
        }
        if c.full_logged.load(Ordering::Relaxed) && removed > 0 {
            c.full_logged.store(false, Ordering::Relaxed);
        }

        let mut added = vec![0u64; self.lanes.len()];
        for append in appends {
            added[append.sink] += 1;
        }
        for (i, lane) in self.lanes.iter().enumerate() {
            if added[i] == 0 {
                continue;
            }
            c.sinks[i].pending.fetch_add(added[i], Ordering::Relaxed);
            if lane.lock().spilled {
                // The worker may be waiting for these to read them back.
                lane.notify.notify_one();
            }
        }
    }

    async fn checkpoint(&self) {
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || spool.checkpoint()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "spool checkpoint failed"),
            Err(error) => tracing::error!(%error, "spool checkpoint task failed"),
        }
    }

    /// Commits everything not yet committed, and the last reports, durably.
    async fn close(&mut self, ops: &mut Vec<Op>) -> Result<(), SpoolError> {
        let mut flushes = Vec::new();
        loop {
            self.gather(ops, &mut flushes);
            self.settle(ops);
            let mut appends = self.take_due(true);
            if appends.is_empty() && ops.is_empty() {
                break;
            }
            self.commit(&mut appends, ops, Durability::Immediate).await;
        }
        for reply in flushes {
            let _ = reply.send(());
        }
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.checkpoint())
            .await
            .map_err(|_| SpoolError::Task)?
    }
}

fn saturating_sub(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}

// ---------------------------------------------------------------------------
// Sink workers.

struct Worker {
    index: usize,
    name: Arc<str>,
    sink: Arc<dyn Sink>,
    lane: Arc<Lane>,
    spool: Arc<Spool>,
    cmds: mpsc::Sender<Cmd>,
    counters: Arc<Counters>,
    retry: RetryPolicy,
    batch_max: usize,
    linger: Duration,
    window: usize,
    /// Due now, in order.
    ready: VecDeque<Entry>,
    /// Waiting for their next attempt, by (next attempt ms, seq).
    waiting: BTreeMap<(u64, u64), Entry>,
    /// After a transient failure the whole sink waits until then.
    blocked_until: Option<Instant>,
    /// Transient failures in a row, for the sink-wide backoff.
    failures: u32,
    first_ready: Option<Instant>,
    /// `Some(deadline)` once draining.
    shutdown: watch::Receiver<Option<Instant>>,
}

enum Outcome {
    Continue,
    Stop,
}

impl Worker {
    fn counters(&self) -> &SinkCounters {
        &self.counters.sinks[self.index]
    }

    fn in_memory(&self) -> usize {
        self.ready.len() + self.waiting.len()
    }

    async fn run(mut self) {
        loop {
            let draining = *self.shutdown.borrow();
            let now = Instant::now();
            if draining.is_some_and(|deadline| now >= deadline) {
                return;
            }
            if self.lane.lock().disabled {
                // Disabled by a 410: park until the operator enables the
                // sink again (`Dispatcher::enable_sink`) or shutdown.
                if draining.is_some() {
                    return;
                }
                tokio::select! {
                    _ = self.lane.notify.notified() => {}
                    changed = self.shutdown.changed() => {
                        if changed.is_err() && self.shutdown.borrow().is_none() {
                            return;
                        }
                    }
                }
                if !self.lane.lock().disabled {
                    self.failures = 0;
                    self.blocked_until = None;
                }
                continue;
            }
            let more_in_spool = match self.refill().await {
                Ok(more) => more,
                Err(error) => {
                    tracing::error!(sink = %self.name, %error, "reading the spool failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            self.promote_due();
            let blocked = self.blocked_until.is_some_and(|until| until > now);
            if !self.ready.is_empty() && !blocked {
                let full = self.ready.len() >= self.batch_max
                    || self.ready.front().is_some_and(|e| e.solo);
                let lingered = self
                    .first_ready
                    .is_some_and(|first| now >= first + self.linger);
                if full || lingered || draining.is_some() || more_in_spool {
                    match self.deliver().await {
                        Outcome::Continue => continue,
                        Outcome::Stop => return,
                    }
                }
            }
            if let Some(deadline) = draining {
                let next_due = self.next_due();
                let idle = self.ready.is_empty() && !more_in_spool;
                if idle && next_due.is_none_or(|due| due >= deadline) {
                    return;
                }
            }

            // Sleep until something can happen.
            let mut wake_at: Option<Instant> = None;
            let mut at = |t: Instant| wake_at = Some(wake_at.map_or(t, |w: Instant| w.min(t)));
            if !self.ready.is_empty() {
                match self.blocked_until {
                    Some(until) if until > now => at(until),
                    _ => at(self.first_ready.unwrap_or(now) + self.linger),
                }
            }
            if let Some(due) = self.next_due() {
                at(due.max(self.blocked_until.unwrap_or(due)));
            }
            if let Some(deadline) = draining {
                at(deadline);
            }
            let room = self.in_memory() < self.window;
            let sleep = async {
                match wake_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.lane.notify.notified(), if room => {}
                _ = sleep => {}
                changed = self.shutdown.changed() => {
                    if changed.is_err() && self.shutdown.borrow().is_none() {
                        // The dispatcher is gone without a shutdown.
                        return;
                    }
                }
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        let (&(due_ms, _), _) = self.waiting.first_key_value()?;
        Some(Instant::now() + Duration::from_millis(due_ms.saturating_sub(now_ms())))
    }

    fn promote_due(&mut self) {
        let now = now_ms();
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let entry = entry.remove();
            self.push_ready(entry);
        }
    }

    fn push_ready(&mut self, entry: Entry) {
        if self.ready.is_empty() {
            self.first_ready = Some(Instant::now());
        }
        self.ready.push_back(entry);
    }

    /// Fills memory up to the window from the lane or, when spilled, from
    /// the spool. Returns whether the spool still holds more for this sink.
    async fn refill(&mut self) -> Result<bool, SpoolError> {
        let room = self.window.saturating_sub(self.in_memory());
        let spill_from = {
            let lane = self.lane.clone();
            let mut state = lane.lock();
            let take = state.queue.len().min(room);
            for entry in state.queue.drain(..take) {
                self.push_ready(entry);
            }
            (state.queue.is_empty() && state.spilled).then_some(state.spill_from)
        };
        let Some(from) = spill_from else {
            return Ok(false);
        };
        let room = self.window.saturating_sub(self.in_memory());
        if room == 0 {
            return Ok(true);
        }
        let spool = self.spool.clone();
        let name = self.name.clone();
        let rows = tokio::task::spawn_blocking(move || spool.read(&name, from, room))
            .await
            .map_err(|_| SpoolError::Task)??;
        let read = rows.len();
        let mut next = from;
        let mut corrupt = Vec::new();
        let now = now_ms();
        for row in rows {
            match row {
                Ok(Stored {
                    seq,
                    attempts,
                    next_attempt_ms,
                    spooled_ms,
                    event,
                }) => {
                    next = seq + 1;
                    let entry = Entry {
                        seq,
                        attempts,
                        spooled_ms,
                        solo: false,
                        event,
                    };
                    if next_attempt_ms > now {
                        self.waiting.insert((next_attempt_ms, seq), entry);
                    } else {
                        self.push_ready(entry);
                    }
                }
                Err((seq, reason)) => {
                    next = seq + 1;
                    tracing::error!(sink = %self.name, seq, %reason, "dead-lettering an unreadable spool record");
                    corrupt.push(Op::Kill {
                        sink: self.name.clone(),
                        seq,
                        attempts: 0,
                        reason,
                    });
                }
            }
        }
        if !corrupt.is_empty() {
            let _ = self.cmds.send(Cmd::Ops(corrupt)).await;
        }
        let mut state = self.lane.lock();
        state.spill_from = next;
        if read < room && state.spilled_through.is_none_or(|last| last < next) {
            // Caught up with everything diverted: the writer may feed the
            // lane again.
            state.spilled = state.disabled;
            return Ok(false);
        }
        Ok(true)
    }

    async fn deliver(&mut self) -> Outcome {
        let n = if self.ready.front().is_some_and(|e| e.solo) {
            1
        } else {
            self.ready
                .iter()
                .take(self.batch_max)
                .take_while(|e| !e.solo)
                .count()
        };
        let mut metas = Vec::with_capacity(n);
        let mut events = Vec::with_capacity(n);
        for entry in self.ready.drain(..n) {
            let Entry {
                seq,
                attempts,
                spooled_ms,
                solo,
                event,
            } = entry;
            metas.push((seq, attempts, spooled_ms, solo));
            events.push(event);
        }
        self.first_ready = (!self.ready.is_empty()).then(Instant::now);

        let result = {
            let delivery = self.sink.deliver(&events);
            tokio::pin!(delivery);
            loop {
                let deadline = *self.shutdown.borrow();
                tokio::select! {
                    result = &mut delivery => break Some(result),
                    changed = self.shutdown.changed(), if deadline.is_none() => {
                        if changed.is_err() {
                            break None;
                        }
                    }
                    _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => break None,
                }
            }
        };
        let Some(result) = result else {
            // Shutdown deadline: the events stay in the spool.
            return Outcome::Stop;
        };
        let entries: Vec<Entry> = metas
            .into_iter()
            .zip(events)
            .map(|((seq, attempts, spooled_ms, solo), event)| Entry {
                seq,
                attempts,
                spooled_ms,
                solo,
                event,
            })
            .collect();
        match result {
            Ok(()) => {
                self.acknowledge(entries).await;
                Outcome::Continue
            }
            Err(SinkError::Partial { failed }) => {
                let mut failed: HashMap<usize, SinkError> = failed.into_iter().collect();
                let mut delivered = Vec::new();
                let mut transient = Vec::new();
                let mut permanent = Vec::new();
                let mut disabled = None;
                for (i, entry) in entries.into_iter().enumerate() {
                    match failed.remove(&i) {
                        None => delivered.push(entry),
                        Some(SinkError::Permanent { message }) => permanent.push((entry, message)),
                        Some(SinkError::Disabled { message }) => {
                            disabled = Some(message);
                            transient.push((entry, None, String::new()));
                        }
                        Some(SinkError::Transient {
                            message,
                            retry_after,
                        }) => transient.push((entry, retry_after, message)),
                        Some(other) => transient.push((entry, None, other.to_string())),
                    }
                }
                self.acknowledge(delivered).await;
                self.dead_letter(permanent).await;
                if let Some(message) = disabled {
                    // The worker parks (see `run`) until enabled again.
                    self.disable(&message);
                    return Outcome::Continue;
                }
                if !transient.is_empty() {
                    let retry_after = transient.iter().filter_map(|t| t.1).max();
                    let message = transient[0].2.clone();
                    let entries = transient.into_iter().map(|t| t.0).collect();
                    self.reschedule(entries, retry_after, &message).await;
                }
                Outcome::Continue
            }
            Err(SinkError::Transient {
                message,
                retry_after,
            }) => {
                self.reschedule(entries, retry_after, &message).await;
                Outcome::Continue
            }
            Err(SinkError::Permanent { message }) => {
                if entries.len() > 1 {
                    tracing::warn!(
                        sink = %self.name,
                        events = entries.len(),
                        error = %message,
                        "batch refused permanently; retrying its events one at a time"
                    );
                    for mut entry in entries.into_iter().rev() {
                        entry.solo = true;
                        self.ready.push_front(entry);
                    }
                    self.first_ready = Some(Instant::now());
                } else {
                    let letters = entries.into_iter().map(|e| (e, message.clone())).collect();
                    self.dead_letter(letters).await;
                }
                Outcome::Continue
            }
            Err(SinkError::Disabled { message }) => {
                self.disable(&message);
                Outcome::Continue
            }
        }
    }

    async fn acknowledge(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        self.failures = 0;
        self.blocked_until = None;
        self.counters()
            .delivered
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        let ops = entries
            .into_iter()
            .map(|e| Op::Delete {
                sink: self.name.clone(),
                seq: e.seq,
            })
            .collect();
        let _ = self.cmds.send(Cmd::Ops(ops)).await;
    }

    async fn dead_letter(&mut self, letters: Vec<(Entry, String)>) {
        if letters.is_empty() {
            return;
        }
        self.counters()
            .failed_permanent
            .fetch_add(letters.len() as u64, Ordering::Relaxed);
        let ops = letters
            .into_iter()
            .map(|(entry, reason)| {
                tracing::error!(
                    sink = %self.name,
                    event = %entry.event.id,
                    %reason,
                    "event refused permanently; moved to the dead letters"
                );
                Op::Kill {
                    sink: self.name.clone(),
                    seq: entry.seq,
                    attempts: entry.attempts + 1,
                    reason,
                }
            })
            .collect();
        let _ = self.cmds.send(Cmd::Ops(ops)).await;
    }

    async fn reschedule(
        &mut self,
        entries: Vec<Entry>,
        retry_after: Option<Duration>,
        message: &str,
    ) {
        self.failures = self.failures.saturating_add(1);
        let delay = self.retry.delay(self.failures, retry_after);
        let now = now_ms();
        let next_ms = now + delay.as_millis() as u64;
        self.blocked_until = Some(Instant::now() + delay);
        tracing::warn!(
            sink = %self.name,
            events = entries.len(),
            error = %message,
            retry_in = ?delay,
            "delivery failed; retrying"
        );
        let mut ops = Vec::with_capacity(entries.len());
        let mut given_up = Vec::new();
        for mut entry in entries {
            entry.attempts = entry.attempts.saturating_add(1);
            let age = Duration::from_millis(now.saturating_sub(entry.spooled_ms));
            if self.retry.gives_up(entry.attempts, age) {
                given_up.push(entry);
                continue;
            }
            ops.push(Op::Reschedule {
                sink: self.name.clone(),
                seq: entry.seq,
                attempts: entry.attempts,
                next_attempt_ms: next_ms,
            });
            self.waiting.insert((next_ms, entry.seq), entry);
        }
        self.counters()
            .retried
            .fetch_add(ops.len() as u64, Ordering::Relaxed);
        if !ops.is_empty() {
            let _ = self.cmds.send(Cmd::Ops(ops)).await;
        }
        if !given_up.is_empty() {
            let ops = given_up
                .into_iter()
                .map(|entry| {
                    tracing::error!(
                        sink = %self.name,
                        event = %entry.event.id,
                        attempts = entry.attempts,
                        error = %message,
                        "giving up on an event; moved to the dead letters"
                    );
                    Op::Kill {
                        sink: self.name.clone(),
                        seq: entry.seq,
                        attempts: entry.attempts,
                        reason: format!("gave up after {} attempts: {message}", entry.attempts),
                    }
                })
                .collect();
            let _ = self.cmds.send(Cmd::Ops(ops)).await;
        }
    }

    fn disable(&mut self, message: &str) {
        self.counters().disabled.store(true, Ordering::Relaxed);
        {
            let mut state = self.lane.lock();
            // This worker stops; from now on the writer diverts every event
            // of this sink to the spool, where the next start finds it.
            state.disabled = true;
            state.spilled = true;
            state.queue.clear();
        }
        let kept = self.counters().pending.load(Ordering::Relaxed);
        tracing::error!(
            sink = %self.name,
            kind = self.sink.name(),
            error = %message,
            kept_in_spool = kept,
            "SINK DISABLED: the endpoint answered 410 Gone; its events stay in the spool and new ones are refused until it is enabled again (POST /admin/sinks/NAME/enable, `s3tap sinks enable NAME`) or a restart"
        );
        self.ready.clear();
        self.waiting.clear();
    }
}

// ---------------------------------------------------------------------------
// Shutdown.

struct Supervisor {
    writer: JoinHandle<Result<(), DispatcherError>>,
    workers: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<Option<Instant>>,
    cmds: mpsc::Sender<Cmd>,
    requests: mpsc::Receiver<Instant>,
    done: watch::Sender<Option<DispatcherStats>>,
    counters: Arc<Counters>,
    names: Vec<Arc<str>>,
    spool: Arc<Mutex<Option<Arc<Spool>>>>,
}

impl Supervisor {
    async fn run(mut self) -> Result<(), DispatcherError> {
        // No request and no handle left: flush to the spool, deliver nothing.
        let deadline = self.requests.recv().await.unwrap_or_else(Instant::now);
        let (reply, flushed) = oneshot::channel();
        if self.cmds.send(Cmd::Flush(reply)).await.is_ok() {
            let _ = flushed.await;
        }
        let _ = self.shutdown.send(Some(deadline));
        let mut result = Ok(());
        for worker in self.workers.drain(..) {
            if let Err(e) = worker.await {
                tracing::error!(error = %e, "a sink worker failed");
                result = Err(DispatcherError::Task(e.to_string()));
            }
        }
        let (reply, closed) = oneshot::channel();
        if self.cmds.send(Cmd::Close(reply)).await.is_ok() {
            if let Ok(Err(e)) = closed.await {
                result = Err(e.into());
            }
        }
        drop(self.cmds);
        match (&mut self.writer).await {
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(DispatcherError::Task(e.to_string())),
            Ok(Ok(())) => {}
        }
        // The writer and the workers are done: this was the last handle
        // but the producers' (and any dead_letters() in flight), so the file
        // closes and a new dispatcher may open it.
        self.spool.lock().unwrap_or_else(|e| e.into_inner()).take();
        let stats = self.counters.snapshot(&self.names);
        let _ = self.done.send(Some(stats));
        result
    }
}
