//! [`KafkaDeliverer`]: the delivery role on a Kafka outbox. Per sink a
//! consumer in the group `s3tap-deliver-<sink>`; offsets are committed
//! only once every record up to them was settled (delivered, skipped as
//! another sink's, or moved to the dead-letter topic).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::time::Instant;

use super::super::message::{OutboxMessage, SINK_HEADER};
use super::super::{OutboxError, SinkProgress};
use super::dead_letters::publish_dead_letter;
use super::KafkaOutbox;
use crate::notify::{Event, RetryPolicy};
use crate::sink::{Sink, SinkError};

/// Consumes a Kafka outbox for a set of sinks. Any number of deliverers
/// with the same sinks share the work: the group gives each of them some
/// of the partitions.
pub struct KafkaDeliverer {
    outbox: KafkaOutbox,
    sinks: Vec<(Arc<str>, Arc<dyn Sink>)>,
    retry: RetryPolicy,
    session_timeout: Duration,
    linger: Duration,
    progress: Arc<BTreeMap<Arc<str>, SinkProgress>>,
}

/// Configures a [`KafkaDeliverer`].
#[must_use = "a builder does nothing until built"]
pub struct KafkaDelivererBuilder {
    outbox: KafkaOutbox,
    sinks: Vec<(Arc<str>, Arc<dyn Sink>)>,
    retry: RetryPolicy,
    session_timeout: Duration,
    linger: Duration,
}

impl fmt::Debug for KafkaDeliverer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaDeliverer")
            .field(
                "sinks",
                &self.sinks.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("retry", &self.retry)
            .field("session_timeout", &self.session_timeout)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for KafkaDelivererBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaDelivererBuilder")
            .field("sinks", &self.sinks.len())
            .finish_non_exhaustive()
    }
}

/// The consumer group of `sink`'s deliverers.
pub(crate) fn group_id(sink: &str) -> String {
    format!("s3tap-deliver-{sink}")
}

impl KafkaDeliverer {
    /// Starts building a deliverer of `outbox`'s events topic.
    ///
    /// Defaults: the dispatcher's [`RetryPolicy`], a 30 s session timeout
    /// (how long the partitions of a deliverer that died wait before the
    /// group gives them to another), 5 ms to fill a batch.
    pub fn builder(outbox: KafkaOutbox) -> KafkaDelivererBuilder {
        KafkaDelivererBuilder {
            outbox,
            sinks: Vec::new(),
            retry: RetryPolicy::default(),
            session_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(5),
        }
    }

    /// Per sink, what this deliverer did so far.
    pub fn progress(&self) -> Arc<BTreeMap<Arc<str>, SinkProgress>> {
        self.progress.clone()
    }

    /// Delivers until `shutdown` completes; a batch in the sink's hands
    /// then finishes and its offsets are committed, the rest waits in the
    /// topic.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for (name, sink) in &self.sinks {
            let worker = SinkConsumer {
                outbox: self.outbox.clone(),
                name: name.clone(),
                sink: sink.clone(),
                retry: self.retry.clone(),
                session_timeout: self.session_timeout,
                linger: self.linger,
                progress: self.progress.clone(),
                stop: stopped.clone(),
                failures: 0,
            };
            tasks.spawn(worker.run());
        }
        shutdown.await;
        let _ = stop.send(true);
        while tasks.join_next().await.is_some() {}
    }
}

impl KafkaDelivererBuilder {
    /// Delivers the outbox's records for the sink named `name` to `sink`.
    pub fn sink(mut self, name: impl Into<Arc<str>>, sink: Arc<dyn Sink>) -> Self {
        self.sinks.push((name.into(), sink));
        self
    }

    /// Backoff, jitter and when to give up, as the dispatcher's.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The consumers' `session.timeout.ms` (default 30 s; brokers accept
    /// 6 s to 30 min unless configured otherwise): how soon a dead
    /// deliverer's partitions go to the others.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// How long to wait for more records once one arrived, to fill a
    /// batch (default 5 ms).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The deliverer, with each sink's name checked as the proxy's side
    /// checks it.
    pub fn build(self) -> Result<KafkaDeliverer, OutboxError> {
        let mut progress = BTreeMap::new();
        for (name, _) in &self.sinks {
            self.outbox.sink(name)?;
            progress.insert(name.clone(), SinkProgress::default());
        }
        Ok(KafkaDeliverer {
            outbox: self.outbox,
            sinks: self.sinks,
            retry: self.retry,
            session_timeout: self.session_timeout,
            linger: self.linger,
            progress: Arc::new(progress),
        })
    }
}

struct SinkConsumer {
    outbox: KafkaOutbox,
    name: Arc<str>,
    sink: Arc<dyn Sink>,
    retry: RetryPolicy,
    session_timeout: Duration,
    linger: Duration,
    progress: Arc<BTreeMap<Arc<str>, SinkProgress>>,
    stop: watch::Receiver<bool>,
    /// Transient failures in a row, for the sink-wide backoff.
    failures: u32,
}

/// A record for this sink, not settled yet.
struct Pending {
    partition: i32,
    offset: i64,
    event: Event,
    attempts: u32,
    published: SystemTime,
}

/// How a batch ended.
enum Settled {
    /// Every record settled: commit past the batch.
    All,
    /// Stopping, or the sink is parked: commit up to the first of these
    /// (partition, offset) records, which stay in the topic.
    Until(Vec<(i32, i64)>),
}

impl SinkConsumer {
    fn progress(&self) -> &SinkProgress {
        &self.progress[&self.name]
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps for `wait` unless told to stop; answers whether to go on.
    async fn pause(&mut self, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => !self.stopping(),
            _ = self.stop.changed() => false,
        }
    }

    fn consumer(&self) -> Result<StreamConsumer, OutboxError> {
        let session = self.session_timeout.as_millis().max(1000);
        let mut config = self.outbox.client_config();
        config
            .set("group.id", group_id(&self.name))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 3).to_string())
            // A sink backing off does not poll; the longest backoff
            // (5 min) plus a delivery must not make the group drop it.
            .set("max.poll.interval.ms", "900000")
            .set("fetch.wait.max.ms", "100");
        let consumer: StreamConsumer = config
            .create()
            .map_err(|e| OutboxError::Config(crate::sink::kafka::build_error(e).to_string()))?;
        consumer
            .subscribe(&[&self.outbox.shared.settings.topic])
            .map_err(|e| OutboxError::engine("subscribe", e))?;
        Ok(consumer)
    }

    async fn run(mut self) {
        let mut wait = Duration::from_millis(200);
        let consumer = loop {
            let ready = match self.outbox.ensure_topics().await {
                Ok(()) => self.consumer(),
                Err(error) => Err(error),
            };
            match ready {
                Ok(consumer) => break consumer,
                Err(error) => {
                    tracing::warn!(sink = %self.name, %error, "outbox consumer not ready; retrying");
                    if !self.pause(wait).await {
                        return;
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        };
        let batch_max = self.sink.max_batch().max(1);
        loop {
            let first = tokio::select! {
                next = consumer.recv() => next,
                _ = self.stop.changed() => break,
            };
            let first = match first {
                Ok(message) => message.detach(),
                Err(error) => {
                    // A broker away, a rebalance: the consumer resumes.
                    tracing::debug!(sink = %self.name, %error, "outbox consumer");
                    if !self.pause(Duration::from_millis(100)).await {
                        break;
                    }
                    continue;
                }
            };
            let mut batch = vec![first];
            let deadline = Instant::now() + self.linger;
            while batch.len() < batch_max {
                match tokio::time::timeout_at(deadline, consumer.recv()).await {
                    Ok(Ok(message)) => batch.push(message.detach()),
                    _ => break,
                }
            }
            let settled = self.handle(&batch).await;
            commit(
                &consumer,
                &self.outbox.shared.settings.topic,
                &batch,
                &settled,
            );
            if matches!(settled, Settled::Until(_)) {
                break;
            }
        }
        // Dropping the consumer leaves the group, after the commits in
        // flight: its partitions go to the other deliverers at once.
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }

    /// Delivers one batch: answers which records stay unsettled.
    async fn handle(&mut self, batch: &[OwnedMessage]) -> Settled {
        let mut pending = Vec::new();
        for message in batch {
            let sink = header(message, SINK_HEADER);
            if sink.as_deref() != Some(&*self.name) {
                // Another sink's (its own group delivers it), or a record
                // naming no sink, which no group can deliver.
                continue;
            }
            let published = message
                .timestamp()
                .to_millis()
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
                .unwrap_or_else(SystemTime::now);
            let place = format!(
                "{}[{}]@{}",
                message.topic(),
                message.partition(),
                message.offset()
            );
            match OutboxMessage::from_parts(sink, message.payload().unwrap_or_default(), &place) {
                Ok(decoded) => pending.push(Pending {
                    partition: message.partition(),
                    offset: message.offset(),
                    event: decoded.event,
                    attempts: 0,
                    published,
                }),
                Err(reason) => {
                    tracing::error!(sink = %self.name, %reason, "undecodable outbox record");
                    let raw = super::dead_letters::RawLetter {
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().unwrap_or_default().to_vec(),
                    };
                    while let Err(error) = super::dead_letters::publish_raw_dead_letter(
                        &self.outbox,
                        &self.name,
                        &raw,
                        &reason,
                    )
                    .await
                    {
                        tracing::error!(sink = %self.name, %error, "dead-letter publish failed; retrying");
                        if !self.pause(Duration::from_secs(1)).await {
                            // Stopping before anything was delivered: the
                            // whole batch comes again.
                            return Settled::Until(
                                batch.iter().map(|m| (m.partition(), m.offset())).collect(),
                            );
                        }
                    }
                    self.progress()
                        .dead_lettered
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        while !pending.is_empty() {
            let events: Vec<Event> = pending.iter().map(|p| p.event.clone()).collect();
            let outcome = self.sink.deliver(&events).await;
            let mut again = Vec::new();
            let mut transient: Option<SinkError> = None;
            match outcome {
                Ok(()) => {
                    self.failures = 0;
                    self.delivered(pending.len());
                }
                Err(SinkError::Partial { failed }) => {
                    let mut failed_at: BTreeMap<usize, SinkError> = failed.into_iter().collect();
                    let mut delivered = 0;
                    let mut rest = pending.into_iter().enumerate();
                    while let Some((i, p)) = rest.next() {
                        let Some(error) = failed_at.remove(&i) else {
                            delivered += 1;
                            continue;
                        };
                        if let Some(Settled::Until(mut left)) = self
                            .settle_failed(p, error, &mut again, &mut transient)
                            .await
                        {
                            self.delivered(delivered);
                            // Delivered or not, what follows stays: a
                            // duplicate rather than a gap.
                            left.extend(rest.map(|(_, p)| (p.partition, p.offset)));
                            left.extend(again.iter().map(|p| (p.partition, p.offset)));
                            return Settled::Until(left);
                        }
                    }
                    self.delivered(delivered);
                }
                Err(SinkError::Permanent { message }) if pending.len() > 1 => {
                    // One poisoned event must not dead-letter its neighbours.
                    tracing::warn!(sink = %self.name, %message, "batch refused; retrying one event at a time");
                    let mut rest = pending.into_iter();
                    while let Some(p) = rest.next() {
                        match self.sink.deliver(std::slice::from_ref(&p.event)).await {
                            Ok(()) => self.delivered(1),
                            Err(error) => {
                                if let Some(Settled::Until(mut left)) = self
                                    .settle_failed(p, error, &mut again, &mut transient)
                                    .await
                                {
                                    left.extend(rest.map(|p| (p.partition, p.offset)));
                                    left.extend(again.iter().map(|p| (p.partition, p.offset)));
                                    return Settled::Until(left);
                                }
                            }
                        }
                    }
                }
                Err(error) => {
                    let mut rest = pending.into_iter();
                    while let Some(p) = rest.next() {
                        if let Some(Settled::Until(mut left)) = self
                            .settle_failed(p, error.clone(), &mut again, &mut transient)
                            .await
                        {
                            left.extend(rest.map(|p| (p.partition, p.offset)));
                            left.extend(again.iter().map(|p| (p.partition, p.offset)));
                            return Settled::Until(left);
                        }
                    }
                }
            }
            pending = again;
            if let Some(error) = transient {
                if !self.back_off(&mut pending, &error).await {
                    return Settled::Until(
                        pending.iter().map(|p| (p.partition, p.offset)).collect(),
                    );
                }
            }
        }
        Settled::All
    }

    fn delivered(&self, n: usize) {
        self.progress()
            .delivered
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Settles one record the sink refused: dead letters for a permanent
    /// refusal, `again` for a transient one, and the sink parked on a 410
    /// (`Some`: the record stays in the topic).
    async fn settle_failed(
        &mut self,
        p: Pending,
        error: SinkError,
        again: &mut Vec<Pending>,
        transient: &mut Option<SinkError>,
    ) -> Option<Settled> {
        match error {
            SinkError::Permanent { message } => {
                if let Err(p) = self.dead_letter(p, &message).await {
                    // Not in the dead letters yet: tried again.
                    transient.get_or_insert(SinkError::transient("dead-letter publish failed"));
                    again.push(p);
                }
                None
            }
            SinkError::Disabled { message } => {
                tracing::error!(
                    sink = %self.name,
                    %message,
                    "sink answered 410 Gone: this deliverer stops delivering to it until restarted; its records stay in the topic"
                );
                Some(Settled::Until(vec![(p.partition, p.offset)]))
            }
            error @ SinkError::Transient { .. } => {
                transient.get_or_insert(error);
                again.push(p);
                None
            }
            SinkError::Partial { .. } => {
                if let Err(p) = self.dead_letter(p, "nested partial failure").await {
                    transient.get_or_insert(SinkError::transient("dead-letter publish failed"));
                    again.push(p);
                }
                None
            }
        }
    }

    /// A transient failure: records past the retry budget go to the dead
    /// letters, the others wait the backoff's delay in place (the
    /// consumer's position does not move, and other sinks' groups go on).
    /// Answers whether to go on.
    async fn back_off(&mut self, pending: &mut Vec<Pending>, error: &SinkError) -> bool {
        self.failures = self.failures.saturating_add(1);
        let retry_after = match error {
            SinkError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        };
        let delay = self.retry.delay(self.failures, retry_after);
        tracing::warn!(sink = %self.name, %error, delay_ms = delay.as_millis() as u64, "delivery failed; backing off");
        let mut keep = Vec::with_capacity(pending.len());
        for mut p in std::mem::take(pending) {
            p.attempts += 1;
            let age = SystemTime::now()
                .duration_since(p.published)
                .unwrap_or_default();
            if self.retry.gives_up(p.attempts, age) {
                let reason = format!("gave up after {} attempts: {error}", p.attempts);
                if let Err(p) = self.dead_letter(p, &reason).await {
                    keep.push(p);
                }
            } else {
                keep.push(p);
            }
        }
        self.progress()
            .retried
            .fetch_add(keep.len() as u64, Ordering::Relaxed);
        *pending = keep;
        self.pause(delay).await
    }

    /// Moves one record to the dead letters; gives it back when that
    /// failed.
    async fn dead_letter(&self, p: Pending, reason: &str) -> Result<(), Pending> {
        let message = OutboxMessage {
            sink: self.name.clone(),
            event: p.event,
        };
        match publish_dead_letter(&self.outbox, &message, reason, p.attempts.max(1)).await {
            Ok(()) => {
                self.progress()
                    .dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = %self.name, id = %message.event.id, %reason, "event dead-lettered");
                Ok(())
            }
            Err(error) => {
                tracing::error!(sink = %self.name, %error, "dead-letter publish failed; the event stays in the topic");
                Err(Pending {
                    event: message.event,
                    ..p
                })
            }
        }
    }
}

/// A header's value as text.
pub(super) fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Commits what [`next_offsets`] says. Asynchronous: a commit that fails
/// (a rebalance took the partition) only means its records are delivered
/// again by the next owner.
fn commit(consumer: &StreamConsumer, topic: &str, batch: &[OwnedMessage], settled: &Settled) {
    let records = batch.iter().map(|m| (m.partition(), m.offset()));
    let mut list = TopicPartitionList::new();
    for (partition, offset) in next_offsets(records, settled) {
        if list
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .is_err()
        {
            return;
        }
    }
    if let Err(error) = consumer.commit(&list, CommitMode::Async) {
        tracing::debug!(%error, "outbox offset commit");
    }
}

/// Per partition of a batch's `records` (partition, offset), the offset
/// to commit: past its last record, or, when some stay unsettled, its
/// first unsettled one (records after it in that partition come again
/// too: a duplicate, never a gap).
fn next_offsets(
    records: impl Iterator<Item = (i32, i64)>,
    settled: &Settled,
) -> BTreeMap<i32, i64> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for (partition, offset) in records {
        let after = next.entry(partition).or_insert(offset + 1);
        *after = (*after).max(offset + 1);
    }
    if let Settled::Until(unsettled) = settled {
        let mut first: BTreeMap<i32, i64> = BTreeMap::new();
        for (partition, offset) in unsettled {
            let at = first.entry(*partition).or_insert(*offset);
            *at = (*at).min(*offset);
        }
        next.extend(first);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_stop_at_the_first_unsettled_record_of_each_partition() {
        let records = [(0, 10), (1, 5), (0, 11), (0, 12), (1, 6), (2, 7)];
        let all = next_offsets(records.into_iter(), &Settled::All);
        assert_eq!(all, BTreeMap::from([(0, 13), (1, 7), (2, 8)]));
        let some = next_offsets(
            records.into_iter(),
            &Settled::Until(vec![(0, 12), (0, 11), (1, 5)]),
        );
        // Partition 2 settled whole; 0 and 1 resume at their first
        // unsettled record.
        assert_eq!(some, BTreeMap::from([(0, 11), (1, 5), (2, 8)]));
    }
}
