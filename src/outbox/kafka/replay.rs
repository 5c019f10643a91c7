//! Replay from a Kafka outbox (`s3tap replay --since ...`): each
//! partition of the events topic from its first record at or after a time
//! (`offsets_for_times`) to its end when the replay starts, delivered again
//! with the events' own ids.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::super::message::{OutboxMessage, RULE_HEADER, SINK_HEADER};
use super::super::replay::{deliver, ReplayReport, ReplaySelection};
use super::super::OutboxError;
use super::deliver::header;
use super::{read_topic, KafkaOutbox};
use crate::notify::{Event, RetryPolicy};
use crate::sink::Sink;

/// Delivers again what `outbox`'s events topic retains and `selection`
/// takes, to `sinks` (by name), in each partition's order, as
/// [`replay`](super::super::replay) does for JetStream.
pub async fn replay(
    outbox: &KafkaOutbox,
    sinks: &[(Arc<str>, Arc<dyn Sink>)],
    selection: &ReplaySelection,
    retry: &RetryPolicy,
) -> Result<ReplayReport, OutboxError> {
    outbox.ensure_topics().await?;
    let since_ms = selection
        .since
        .duration_since(UNIX_EPOCH)
        .map_err(|_| OutboxError::Config("--since is before 1970".into()))?
        .as_millis() as i64;
    let settings = outbox.shared.settings.clone();
    let config = outbox.client_config();
    let wanted_sink = selection.sink.clone();
    let wanted_rule = selection.rule.clone();
    // The selected records, read on a blocking thread, then delivered.
    let records = tokio::task::spawn_blocking(move || {
        let mut selected: Vec<(Option<String>, Vec<u8>, String)> = Vec::new();
        read_topic(
            config,
            &settings.topic,
            settings.timeout,
            |consumer, partition, low, high| {
                start_at(
                    consumer,
                    &settings.topic,
                    partition,
                    since_ms,
                    low,
                    high,
                    settings.timeout,
                )
            },
            |record| {
                let at_or_after = record.timestamp().to_millis().is_none_or(|t| t >= since_ms);
                let sink = header(&record, SINK_HEADER);
                let rule = header(&record, RULE_HEADER);
                let wanted = at_or_after
                    && wanted_sink
                        .as_deref()
                        .is_none_or(|s| sink.as_deref() == Some(s))
                    && wanted_rule
                        .as_deref()
                        .is_none_or(|r| rule.as_deref() == Some(r));
                if wanted {
                    let place = format!(
                        "{}[{}]@{}",
                        record.topic(),
                        record.partition(),
                        record.offset()
                    );
                    selected.push((sink, record.payload().unwrap_or_default().to_vec(), place));
                }
                true
            },
        )?;
        Ok::<_, OutboxError>(selected)
    })
    .await
    .map_err(|e| OutboxError::engine("replay reader", e))??;

    let mut report = ReplayReport::default();
    let mut batches: BTreeMap<Arc<str>, Vec<Event>> = BTreeMap::new();
    for (sink, payload, place) in records {
        let decoded = match OutboxMessage::from_parts(sink, &payload, &place) {
            Ok(decoded) => decoded,
            Err(reason) => {
                tracing::warn!(%reason, "replay skips an undecodable record");
                continue;
            }
        };
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
    for (name, batch) in batches {
        if let Some((_, sink)) = sinks.iter().find(|(n, _)| *n == name) {
            if !batch.is_empty() {
                deliver(&name, sink.as_ref(), batch, retry, &mut report).await;
            }
        }
    }
    Ok(report)
}

/// The offset of `partition`'s first record at or after `since_ms`.
///
/// A broker answers "none" (the end) when no record is that recent. One
/// that does not index by time answers the same for any time: librdkafka's
/// mock cluster does. So "none" is believed only when the partition's last
/// record is older than `since_ms`; otherwise the partition is read from
/// its start and the records are sorted by their timestamps.
fn start_at(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    since_ms: i64,
    low: i64,
    high: i64,
    timeout: Duration,
) -> Result<i64, OutboxError> {
    if low >= high {
        return Ok(high);
    }
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(topic, partition, Offset::Offset(since_ms))
        .map_err(|e| OutboxError::engine("offsets_for_times", e))?;
    let found = consumer
        .offsets_for_times(query, timeout)
        .map_err(|e| OutboxError::engine("offsets_for_times", e))?;
    let offset = found
        .find_partition(topic, partition)
        .map(|p| p.offset())
        .unwrap_or(Offset::End);
    match offset {
        Offset::Offset(at) => Ok(at),
        _ => match last_timestamp(consumer, topic, partition, high, timeout) {
            Some(last) if last >= since_ms => Ok(low),
            _ => Ok(high),
        },
    }
}

/// The timestamp of the last record of `partition` (ends at `high`).
fn last_timestamp(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    high: i64,
    timeout: Duration,
) -> Option<i64> {
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(high - 1))
        .ok()?;
    consumer.assign(&assignment).ok()?;
    let deadline = std::time::Instant::now() + timeout;
    let found = loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(record)) if record.partition() == partition => {
                break record.timestamp().to_millis();
            }
            _ if std::time::Instant::now() > deadline => break None,
            _ => {}
        }
    };
    let _ = consumer.unassign();
    found
}
