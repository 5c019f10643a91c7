//! [`DispatcherBuilder`]: the dispatcher's settings, and `build`, which
//! opens the spool and wires the writer, the workers and the supervisor.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use super::error::DispatcherError;
use super::handle::{Dispatcher, Inner, OverflowPolicy};
use super::lanes::Lane;
use super::retry::RetryPolicy;
use super::sink::Sink;
use super::spool::{FsyncPolicy, Spool};
use super::stats::{Counters, SinkCounters};
use super::supervisor::{DispatcherTask, Supervisor};
use super::worker::Worker;
use super::writer::{grace_ticks, Writer};

impl Dispatcher {
    /// A builder.
    pub fn builder() -> DispatcherBuilder {
        DispatcherBuilder::default()
    }
}

/// Builds a [`Dispatcher`]; see the [module docs](super).
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
    /// [`EmitError::SpoolFull`](super::EmitError::SpoolFull) and counts them. The check is made when
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
                // Start by reading whatever the spool holds.
                Arc::new(Lane::new(last))
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

        // Each sink's batch bound and how many of its events wait in memory
        // (its lane, and as much again in its worker).
        let limits: Vec<(usize, usize)> = self
            .sinks
            .iter()
            .map(|(_, sink)| {
                let batch_max = self.batch_max.min(sink.max_batch().max(1));
                let window = self
                    .lane_capacity
                    .unwrap_or_else(|| (batch_max * 4).max(4096));
                (batch_max, window)
            })
            .collect();
        let mut workers = Vec::new();
        for (i, (_, sink)) in self.sinks.iter().enumerate() {
            let (batch_max, window) = limits[i];
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
        let lane_capacity: Vec<usize> = limits.iter().map(|&(_, window)| window).collect();

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
            grace_ticks: grace_ticks(self.fsync),
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
