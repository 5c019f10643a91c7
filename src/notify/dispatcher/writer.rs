//! The spool writer: the one task that writes to the spool. It numbers
//! accepted events, hands them to the lanes, and group-commits what is due
//! (write-behind: an event acknowledged within its grace is never written)
//! with the workers' reports and the operators' changes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::Durability;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::error::DispatcherError;
use super::lanes::{Entry, Lane};
use super::messages::{Admin, Cmd, Envelope};
use super::spool::{self, now_ms, Append, DeadLetterFilter, FsyncPolicy, Op, Spool, SpoolError};
use super::stats::{saturating_sub, Counters};
use crate::notify::Event;

/// An event handed to its sink (or diverted to the spool) but not yet
/// committed.
pub(super) struct Unspooled {
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

pub(super) struct Writer {
    pub(super) spool: Arc<Spool>,
    pub(super) names: Vec<Arc<str>>,
    pub(super) lanes: Vec<Arc<Lane>>,
    pub(super) lane_capacity: Vec<usize>,
    pub(super) counters: Arc<Counters>,
    pub(super) ingress: mpsc::Receiver<Envelope>,
    pub(super) ingress_open: bool,
    pub(super) cmds: mpsc::Receiver<Cmd>,
    pub(super) overflow: Arc<Mutex<Vec<Envelope>>>,
    pub(super) wake: Arc<Notify>,
    pub(super) fsync: FsyncPolicy,
    pub(super) next_seq: u64,
    pub(super) closing: Option<oneshot::Sender<Result<(), SpoolError>>>,
    /// Accepted and not yet committed, in sequence order from
    /// `unspooled_from`; `None` once committed or acknowledged.
    pub(super) unspooled: VecDeque<Option<Unspooled>>,
    pub(super) unspooled_from: u64,
    /// Ticks so far: one per group commit (or per interval without one).
    pub(super) tick: u64,
    /// Ticks an event may wait for its acknowledgement before it is due:
    /// one under `Interval`, none otherwise.
    pub(super) grace_ticks: u64,
    /// Lanes that got events since their worker was last woken.
    pub(super) touched: Vec<bool>,
    /// Operator commands waiting for the end of the current commit.
    pub(super) admin: Vec<Admin>,
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

/// Ticks an event may wait for its acknowledgement before it is due for
/// the spool: one interval under `Interval`, none otherwise.
pub(super) fn grace_ticks(fsync: FsyncPolicy) -> u64 {
    match fsync {
        FsyncPolicy::Interval(_) => 1,
        FsyncPolicy::Always | FsyncPolicy::Never => 0,
    }
}

impl Writer {
    pub(super) async fn run(mut self) -> Result<(), DispatcherError> {
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

#[cfg(test)]
mod tests;
