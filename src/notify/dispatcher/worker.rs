//! A sink worker: batches its lane (or, once the lane spilled, the spool)
//! for one sink, delivers, and turns each outcome into reports for the
//! writer: acknowledge, reschedule with backoff, dead-letter, or disable.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::lanes::{Entry, Lane};
use super::messages::Cmd;
use super::retry::RetryPolicy;
use super::sink::{Sink, SinkError};
use super::spool::{now_ms, Op, Spool, SpoolError, Stored};
use super::stats::{Counters, SinkCounters};

pub(super) struct Worker {
    pub(super) index: usize,
    pub(super) name: Arc<str>,
    pub(super) sink: Arc<dyn Sink>,
    pub(super) lane: Arc<Lane>,
    pub(super) spool: Arc<Spool>,
    pub(super) cmds: mpsc::Sender<Cmd>,
    pub(super) counters: Arc<Counters>,
    pub(super) retry: RetryPolicy,
    pub(super) batch_max: usize,
    pub(super) linger: Duration,
    pub(super) window: usize,
    /// Due now, in order.
    pub(super) ready: VecDeque<Entry>,
    /// Waiting for their next attempt, by (next attempt ms, seq).
    pub(super) waiting: BTreeMap<(u64, u64), Entry>,
    /// After a transient failure the whole sink waits until then.
    pub(super) blocked_until: Option<Instant>,
    /// Transient failures in a row, for the sink-wide backoff.
    pub(super) failures: u32,
    pub(super) first_ready: Option<Instant>,
    /// `Some(deadline)` once draining.
    pub(super) shutdown: watch::Receiver<Option<Instant>>,
}

pub(super) enum Outcome {
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

    pub(super) async fn run(mut self) {
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

#[cfg(test)]
mod tests;
