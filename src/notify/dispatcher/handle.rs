//! The producers' and operators' handle: [`Dispatcher`] (`emit` never
//! waits) and the [`OverflowPolicy`] it applies when the queue is full.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use super::error::{DispatcherError, EmitError};
use super::messages::{Admin, Cmd, Envelope};
use super::spool::{now_ms, DeadLetter, DeadLetterFilter, Spool, SpoolError};
use super::stats::{Counters, DispatcherStats};
use crate::notify::Event;

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

/// The producers' handle to the dispatcher: cheap to clone, `emit` never
/// waits. See the [module docs](super).
#[derive(Clone)]
pub struct Dispatcher {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) names: Vec<Arc<str>>,
    pub(super) index: HashMap<Arc<str>, usize>,
    pub(super) tx: mpsc::Sender<Envelope>,
    pub(super) overflow: Arc<Mutex<Vec<Envelope>>>,
    pub(super) wake: Arc<Notify>,
    pub(super) policy: OverflowPolicy,
    pub(super) closed: AtomicBool,
    pub(super) counters: Arc<Counters>,
    pub(super) max_events: u64,
    pub(super) max_bytes: u64,
    /// Emptied at shutdown, so the file is closed once the tasks are done.
    pub(super) spool: Arc<Mutex<Option<Arc<Spool>>>>,
    /// To the spool writer, for the operator's changes (redrive, purge,
    /// enable): only the writer writes to the spool.
    pub(super) cmds: mpsc::Sender<Cmd>,
    pub(super) requests: mpsc::Sender<Instant>,
    pub(super) done: watch::Receiver<Option<DispatcherStats>>,
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
    /// Accepts `event` for the sink named `sink`. Never waits for a sink or
    /// the disk (unless the policy is [`OverflowPolicy::Block`]).
    pub fn emit(&self, sink: &str, event: Event) -> Result<(), EmitError> {
        let index = self.admit(sink)?;
        self.accepted(index);
        let envelope = Envelope { sink: index, event };
        let handed_over = match self.inner.tx.try_send(envelope) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(EmitError::Closed),
            Err(mpsc::error::TrySendError::Full(envelope)) => match self.inner.policy {
                OverflowPolicy::SpillToSpool => {
                    self.spill(envelope);
                    Ok(())
                }
                OverflowPolicy::DropNewest => {
                    self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    Err(EmitError::QueueFull)
                }
                OverflowPolicy::Block => self.block(envelope),
            },
        };
        if handed_over.is_err() {
            self.refused(index);
        }
        handed_over
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
        self.accepted(index);
        let sent = self.inner.tx.send(Envelope { sink: index, event }).await;
        if sent.is_err() {
            self.refused(index);
            return Err(EmitError::Closed);
        }
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

    /// Counts an event as queued *before* it is handed to the writer: once
    /// handed over, the writer may deliver or spool it and subtract it from
    /// `queued` on another thread at once. Counting after the hand-over lost
    /// that subtraction whenever it came first (the counter saturates at
    /// zero) and left `queued` at one forever.
    fn accepted(&self, index: usize) {
        let counters = &self.inner.counters;
        counters.queued.fetch_add(1, Ordering::Relaxed);
        counters.sinks[index]
            .accepted
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes back [`accepted`](Self::accepted) for an event the writer never
    /// received.
    fn refused(&self, index: usize) {
        let counters = &self.inner.counters;
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        counters.sinks[index]
            .accepted
            .fetch_sub(1, Ordering::Relaxed);
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
    /// [`DispatcherBuilder::spool_limits`](super::DispatcherBuilder::spool_limits)), from 0 up (past 1 when the
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
