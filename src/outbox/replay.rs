//! Replay from the log (`s3tap replay --since ...`): what the outbox stream
//! still retains since a time, delivered again to the sinks it was routed
//! to (or some of them), with the events' own ids so receivers can drop
//! what they already have.

use std::collections::BTreeMap;
#[cfg(feature = "outbox-nats")]
use std::sync::Arc;
use std::time::SystemTime;
#[cfg(feature = "outbox-nats")]
use std::time::{Duration, UNIX_EPOCH};

#[cfg(feature = "outbox-nats")]
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
#[cfg(feature = "outbox-nats")]
use futures_util::StreamExt;

#[cfg(feature = "outbox-nats")]
use super::jetstream::JetStreamOutbox;
#[cfg(feature = "outbox-nats")]
use super::message::{OutboxMessage, RULE_HEADER};
#[cfg(feature = "outbox-nats")]
use super::OutboxError;
use crate::notify::{Event, RetryPolicy};
use crate::sink::{Sink, SinkError};

/// Which messages a replay delivers again.
#[derive(Clone, Debug)]
pub struct ReplaySelection {
    /// From this time on (the time the stream stored the message).
    pub since: SystemTime,
    /// Only events the rule of this name routed.
    pub rule: Option<String>,
    /// Only the copies for the sink of this name.
    pub sink: Option<String>,
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Messages read from the stream that the selection took.
    pub selected: u64,
    /// Per sink, events it acknowledged.
    pub delivered: BTreeMap<String, u64>,
    /// Per sink, events it refused for good or that ran out of retries.
    pub failed: BTreeMap<String, u64>,
    /// Messages for a sink this replay was not given.
    pub unknown_sink: u64,
}

/// Delivers again what `outbox`'s stream retains and `selection` takes, to
/// `sinks` (by name), in the stream's order, in batches of each sink's
/// size; transient failures are retried with `retry`'s backoff (the same
/// budget as a delivery), what still fails is counted, not dead-lettered
/// again. Reads up to the last message present when it starts.
#[cfg(feature = "outbox-nats")]
pub async fn replay(
    outbox: &JetStreamOutbox,
    sinks: &[(Arc<str>, Arc<dyn Sink>)],
    selection: &ReplaySelection,
    retry: &RetryPolicy,
) -> Result<ReplayReport, OutboxError> {
    outbox.ensure_streams().await?;
    let settings = &outbox.shared.settings;
    let mut stream = outbox
        .shared
        .jetstream
        .get_stream(&settings.stream)
        .await
        .map_err(|e| OutboxError::engine("stream", e))?;
    let last = stream
        .info()
        .await
        .map_err(|e| OutboxError::engine("stream", e))?
        .state
        .last_sequence;
    let mut report = ReplayReport::default();
    if last == 0 {
        return Ok(report);
    }
    let since = selection
        .since
        .duration_since(UNIX_EPOCH)
        .map_err(|_| OutboxError::Config("--since is before 1970".into()))?;
    let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(since.as_nanos() as i128)
        .map_err(|e| OutboxError::Config(format!("--since: {e}")))?;
    let filter_subject = match &selection.sink {
        Some(sink) => format!("{}.{sink}.>", settings.subject_prefix),
        None => format!("{}.>", settings.subject_prefix),
    };
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject,
            deliver_policy: DeliverPolicy::ByStartTime { start_time },
            ..Default::default()
        })
        .await
        .map_err(|e| OutboxError::engine("replay reader", e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| OutboxError::engine("replay reader", e))?;
    let mut batches: BTreeMap<Arc<str>, Vec<Event>> = BTreeMap::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(2), messages.next()).await;
        let message = match next {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(error))) => return Err(OutboxError::engine("replay reader", error)),
            // Nothing within the wait: nothing more since `since`.
            Ok(None) | Err(_) => break,
        };
        let info = message
            .info()
            .map_err(|e| OutboxError::engine("replay reader", e))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        if seq > last {
            break;
        }
        let rule = message
            .headers
            .as_ref()
            .and_then(|h| h.get(RULE_HEADER))
            .map(|v| v.as_str().to_owned());
        let wanted_rule = selection
            .rule
            .as_deref()
            .is_none_or(|r| rule.as_deref() == Some(r));
        if wanted_rule {
            match OutboxMessage::decode(
                &message.subject,
                message.headers.as_ref(),
                &message.payload,
                &settings.subject_prefix,
            ) {
                Ok(decoded) => {
                    report.selected += 1;
                    match sinks.iter().find(|(name, _)| *name == decoded.sink) {
                        None => report.unknown_sink += 1,
                        Some((name, sink)) => {
                            let batch = batches.entry(name.clone()).or_default();
                            batch.push(decoded.event);
                            if batch.len() >= sink.max_batch().max(1) {
                                let batch = std::mem::take(batch);
                                deliver(name, sink.as_ref(), batch, retry, &mut report).await;
                            }
                        }
                    }
                }
                Err(reason) => {
                    tracing::warn!(%reason, seq, "replay skips an undecodable message");
                }
            }
        }
        if seq >= last || pending == 0 {
            break;
        }
    }
    for (name, batch) in batches {
        if let Some((_, sink)) = sinks.iter().find(|(n, _)| *n == name) {
            if !batch.is_empty() {
                deliver(&name, sink.as_ref(), batch, retry, &mut report).await;
            }
        }
    }
    Ok(report)
}

/// Delivers one batch with retries; a refused batch goes one event at a
/// time. Shared by both engines' replays.
pub(super) async fn deliver(
    name: &str,
    sink: &dyn Sink,
    batch: Vec<Event>,
    retry: &RetryPolicy,
    report: &mut ReplayReport,
) {
    let started = std::time::Instant::now();
    let mut failures = 0u32;
    loop {
        match sink.deliver(&batch).await {
            Ok(()) => {
                *report.delivered.entry(name.to_owned()).or_insert(0) += batch.len() as u64;
                return;
            }
            Err(SinkError::Transient { retry_after, .. })
                if !retry.gives_up(failures + 1, started.elapsed()) =>
            {
                failures += 1;
                tokio::time::sleep(retry.delay(failures, retry_after)).await;
            }
            Err(error) if batch.len() > 1 && !matches!(error, SinkError::Transient { .. }) => {
                for event in batch {
                    Box::pin(deliver(name, sink, vec![event], retry, report)).await;
                }
                return;
            }
            Err(error) => {
                tracing::warn!(sink = name, %error, events = batch.len(), "replay could not deliver");
                *report.failed.entry(name.to_owned()).or_insert(0) += batch.len() as u64;
                return;
            }
        }
    }
}
