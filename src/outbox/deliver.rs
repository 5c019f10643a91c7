//! [`Deliverer`]: the delivery role of a fleet (`s3tap deliver`). Per sink,
//! a durable pull consumer on the outbox stream that every deliverer
//! process shares; batches go to the sink with the dispatcher's retry
//! policy, and a message is acknowledged only once its sink acknowledged
//! it (or it went to the dead-letter stream).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::Message;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::dead_letters::publish_dead_letter;
use super::jetstream::JetStreamOutbox;
use super::message::OutboxMessage;
use super::{OutboxError, SinkProgress};
use crate::notify::{Event, RetryPolicy};
use crate::sink::{Sink, SinkError};

/// Consumes the outbox for a set of sinks. Built by [`Deliverer::builder`],
/// run by [`run`](Deliverer::run). Any number of deliverers (processes or
/// tasks) with the same sinks share the work: each message goes to one of
/// them.
pub struct Deliverer {
    outbox: JetStreamOutbox,
    sinks: Vec<(Arc<str>, Arc<dyn Sink>)>,
    retry: RetryPolicy,
    ack_wait: Duration,
    linger: Duration,
    progress: Arc<BTreeMap<Arc<str>, SinkProgress>>,
}

/// Configures a [`Deliverer`].
#[must_use = "a builder does nothing until built"]
pub struct DelivererBuilder {
    outbox: JetStreamOutbox,
    sinks: Vec<(Arc<str>, Arc<dyn Sink>)>,
    retry: RetryPolicy,
    ack_wait: Duration,
    linger: Duration,
}

impl fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deliverer")
            .field(
                "sinks",
                &self.sinks.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("retry", &self.retry)
            .field("ack_wait", &self.ack_wait)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for DelivererBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelivererBuilder")
            .field("sinks", &self.sinks.len())
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    /// Starts building a deliverer of `outbox`'s stream.
    ///
    /// Defaults: the dispatcher's [`RetryPolicy`], 30 s for the sink to
    /// acknowledge before the stream gives the message to another
    /// deliverer, 5 ms to fill a batch.
    pub fn builder(outbox: JetStreamOutbox) -> DelivererBuilder {
        DelivererBuilder {
            outbox,
            sinks: Vec::new(),
            retry: RetryPolicy::default(),
            ack_wait: Duration::from_secs(30),
            linger: Duration::from_millis(5),
        }
    }

    /// Per sink, what this deliverer did so far.
    pub fn progress(&self) -> Arc<BTreeMap<Arc<str>, SinkProgress>> {
        self.progress.clone()
    }

    /// Delivers until `shutdown` completes; a batch in the sink's hands
    /// then finishes (and is acknowledged), the rest stays in the stream.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for (name, sink) in &self.sinks {
            let worker = SinkConsumer {
                outbox: self.outbox.clone(),
                name: name.clone(),
                sink: sink.clone(),
                retry: self.retry.clone(),
                ack_wait: self.ack_wait,
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

impl DelivererBuilder {
    /// Delivers the outbox's messages for the sink named `name` to `sink`.
    pub fn sink(mut self, name: impl Into<Arc<str>>, sink: Arc<dyn Sink>) -> Self {
        self.sinks.push((name.into(), sink));
        self
    }

    /// Backoff, jitter and when to give up, as the dispatcher's.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How long a delivery may take before the stream gives its messages
    /// to another deliverer (default 30 s; longer than a sink's timeout).
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// How long to wait for more messages once one arrived, to fill a
    /// batch (default 5 ms).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The deliverer, with a sink's name checked to fit a subject.
    pub fn build(self) -> Result<Deliverer, OutboxError> {
        let mut progress = BTreeMap::new();
        for (name, _) in &self.sinks {
            // The same check the proxy's side makes.
            self.outbox.sink(name)?;
            progress.insert(name.clone(), SinkProgress::default());
        }
        Ok(Deliverer {
            outbox: self.outbox,
            sinks: self.sinks,
            retry: self.retry,
            ack_wait: self.ack_wait,
            linger: self.linger,
            progress: Arc::new(progress),
        })
    }
}

/// The durable consumer's name for `sink`.
pub(super) fn consumer_name(sink: &str) -> String {
    format!("deliver-{sink}")
}

struct SinkConsumer {
    outbox: JetStreamOutbox,
    name: Arc<str>,
    sink: Arc<dyn Sink>,
    retry: RetryPolicy,
    ack_wait: Duration,
    linger: Duration,
    progress: Arc<BTreeMap<Arc<str>, SinkProgress>>,
    stop: watch::Receiver<bool>,
    /// Transient failures in a row, for the sink-wide backoff.
    failures: u32,
}

/// A message and what was read from it.
struct Received {
    message: Message,
    event: Event,
    attempts: u32,
    published: SystemTime,
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

    async fn consumer(&mut self) -> Option<pull::Stream> {
        let settings = self.outbox.shared.settings.clone();
        let config = pull::Config {
            durable_name: Some(consumer_name(&self.name)),
            filter_subject: format!("{}.{}.>", settings.subject_prefix, self.name),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: self.ack_wait,
            max_deliver: -1,
            max_ack_pending: 20_000,
            ..Default::default()
        };
        let batch = self.sink.max_batch().clamp(64, 1000);
        let mut wait = Duration::from_millis(200);
        loop {
            let outbox = self.outbox.clone();
            let name = consumer_name(&self.name);
            let attempt = async {
                outbox.ensure_streams().await?;
                let stream = outbox
                    .shared
                    .jetstream
                    .get_stream(&settings.stream)
                    .await
                    .map_err(|e| OutboxError::engine("stream", e))?;
                let consumer = stream
                    .get_or_create_consumer(&name, config.clone())
                    .await
                    .map_err(|e| OutboxError::engine("consumer", e))?;
                consumer
                    .stream()
                    .max_messages_per_batch(batch)
                    .heartbeat(Duration::from_secs(5))
                    .expires(Duration::from_secs(30))
                    .messages()
                    .await
                    .map_err(|e| OutboxError::engine("pull", e))
            };
            match attempt.await {
                Ok(messages) => return Some(messages),
                Err(error) => {
                    tracing::warn!(sink = %self.name, %error, "outbox consumer not ready; retrying");
                    if !self.pause(wait).await {
                        return None;
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn run(mut self) {
        let batch_max = self.sink.max_batch().max(1);
        'connect: while let Some(mut messages) = self.consumer().await {
            loop {
                let first = tokio::select! {
                    next = messages.next() => next,
                    _ = self.stop.changed() => return,
                };
                let first = match first {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => {
                        // Missing heartbeats while a node is away, a
                        // consumer moving: the stream resumes or ends.
                        tracing::debug!(sink = %self.name, %error, "outbox pull");
                        continue;
                    }
                    None => continue 'connect,
                };
                let mut batch = vec![first];
                let deadline = Instant::now() + self.linger;
                while batch.len() < batch_max {
                    match tokio::time::timeout_at(deadline, messages.next()).await {
                        Ok(Some(Ok(message))) => batch.push(message),
                        _ => break,
                    }
                }
                if !self.handle(batch).await {
                    return;
                }
            }
        }
    }

    /// Delivers one batch and settles each message; answers whether to go
    /// on (no after a `410`, or when stopping during a backoff).
    async fn handle(&mut self, batch: Vec<Message>) -> bool {
        let prefix = self.outbox.shared.settings.subject_prefix.clone();
        let mut received = Vec::with_capacity(batch.len());
        for message in batch {
            let (attempts, published) = match message.info() {
                Ok(info) => (
                    info.delivered.max(1) as u32,
                    SystemTime::UNIX_EPOCH
                        + Duration::from_nanos(info.published.unix_timestamp_nanos().max(0) as u64),
                ),
                Err(_) => (1, SystemTime::now()),
            };
            match OutboxMessage::decode(
                &message.subject,
                message.headers.as_ref(),
                &message.payload,
                &prefix,
            ) {
                Ok(decoded) => received.push(Received {
                    message,
                    event: decoded.event,
                    attempts,
                    published,
                }),
                Err(reason) => {
                    tracing::error!(sink = %self.name, %reason, "undecodable outbox message");
                    self.dead_letter_raw(&message, &reason, attempts).await;
                }
            }
        }
        if received.is_empty() {
            return true;
        }
        let events: Vec<Event> = received.iter().map(|r| r.event.clone()).collect();
        let outcome = self.sink.deliver(&events).await;
        match outcome {
            Ok(()) => {
                self.failures = 0;
                self.ack(&received).await;
                true
            }
            Err(SinkError::Partial { failed }) => {
                let mut failed_at: BTreeMap<usize, SinkError> = failed.into_iter().collect();
                let mut delivered = Vec::new();
                let mut rest = Vec::new();
                for (i, r) in received.into_iter().enumerate() {
                    match failed_at.remove(&i) {
                        None => delivered.push(r),
                        Some(error) => rest.push((r, error)),
                    }
                }
                self.ack(&delivered).await;
                let mut go_on = true;
                for (r, error) in rest {
                    go_on &= self.settle_failed(r, error).await;
                }
                go_on
            }
            Err(SinkError::Permanent { message }) if received.len() > 1 => {
                // One poisoned event must not dead-letter its neighbours.
                tracing::warn!(sink = %self.name, %message, "batch refused; retrying one event at a time");
                let mut go_on = true;
                for r in received {
                    if !go_on {
                        self.retry_later(&[r], Duration::ZERO).await;
                        continue;
                    }
                    match self.sink.deliver(std::slice::from_ref(&r.event)).await {
                        Ok(()) => self.ack(std::slice::from_ref(&r)).await,
                        Err(error) => go_on = self.settle_failed(r, error).await,
                    }
                }
                go_on
            }
            Err(error) => {
                let mut go_on = true;
                let mut transient = Vec::new();
                for r in received {
                    match &error {
                        SinkError::Transient { .. } => transient.push(r),
                        _ => go_on &= self.settle_failed(r, error.clone()).await,
                    }
                }
                if !transient.is_empty() {
                    go_on &= self.back_off(transient, &error).await;
                }
                go_on
            }
        }
    }

    async fn ack(&self, received: &[Received]) {
        for r in received {
            if let Err(error) = r.message.ack().await {
                // Delivered but not acknowledged: the stream gives it
                // again after the ack wait (a duplicate, never a loss).
                tracing::warn!(sink = %self.name, %error, "outbox ack failed");
            }
        }
        self.progress()
            .delivered
            .fetch_add(received.len() as u64, Ordering::Relaxed);
    }

    /// Settles one event the sink refused.
    async fn settle_failed(&mut self, r: Received, error: SinkError) -> bool {
        match error {
            SinkError::Permanent { message } => {
                self.dead_letter(r, &message).await;
                true
            }
            SinkError::Disabled { message } => {
                tracing::error!(
                    sink = %self.name,
                    %message,
                    "sink answered 410 Gone: this deliverer stops delivering to it until restarted; its events stay in the stream"
                );
                // Back to the stream at once: other deliverers find the sink
                // gone too and park, and one started after the receiver is
                // back finds them waiting.
                self.retry_later(&[r], Duration::from_secs(1)).await;
                false
            }
            transient @ SinkError::Transient { .. } => self.back_off(vec![r], &transient).await,
            SinkError::Partial { .. } => {
                self.dead_letter(r, "nested partial failure").await;
                true
            }
        }
    }

    /// A transient failure: events past the retry budget go to the dead
    /// letters, the others back to the stream with the backoff's delay, and
    /// the sink waits that long.
    async fn back_off(&mut self, received: Vec<Received>, error: &SinkError) -> bool {
        self.failures = self.failures.saturating_add(1);
        let retry_after = match error {
            SinkError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        };
        let delay = self.retry.delay(self.failures, retry_after);
        tracing::warn!(sink = %self.name, %error, delay_ms = delay.as_millis() as u64, "delivery failed; backing off");
        let mut again = Vec::new();
        for r in received {
            let age = SystemTime::now()
                .duration_since(r.published)
                .unwrap_or_default();
            if self.retry.gives_up(r.attempts, age) {
                let reason = format!("gave up after {} attempts: {error}", r.attempts);
                self.dead_letter(r, &reason).await;
            } else {
                again.push(r);
            }
        }
        self.retry_later(&again, delay).await;
        self.pause(delay).await
    }

    async fn retry_later(&self, received: &[Received], delay: Duration) {
        for r in received {
            let kind = AckKind::Nak((!delay.is_zero()).then_some(delay));
            if let Err(error) = r.message.ack_with(kind).await {
                tracing::debug!(sink = %self.name, %error, "outbox nak failed; the ack wait redelivers it");
            }
        }
        self.progress()
            .retried
            .fetch_add(received.len() as u64, Ordering::Relaxed);
    }

    async fn dead_letter(&self, r: Received, reason: &str) {
        let message = OutboxMessage {
            sink: self.name.clone(),
            event: r.event,
        };
        match publish_dead_letter(&self.outbox, &message, reason, r.attempts).await {
            Ok(()) => {
                let _ = r.message.ack_with(AckKind::Term).await;
                self.progress()
                    .dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = %self.name, id = %message.event.id, %reason, "event dead-lettered");
            }
            Err(error) => {
                // Not in the dead letters yet: leave it to the stream.
                tracing::error!(sink = %self.name, %error, "dead-letter publish failed; the event stays in the stream");
                let _ = r
                    .message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                    .await;
            }
        }
    }

    async fn dead_letter_raw(&self, message: &Message, reason: &str, attempts: u32) {
        match super::dead_letters::publish_raw_dead_letter(
            &self.outbox,
            &self.name,
            message,
            reason,
            attempts,
        )
        .await
        {
            Ok(()) => {
                let _ = message.ack_with(AckKind::Term).await;
                self.progress()
                    .dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::error!(sink = %self.name, %error, "dead-letter publish failed");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                    .await;
            }
        }
    }
}
