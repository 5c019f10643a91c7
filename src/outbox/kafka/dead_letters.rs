//! The dead-letter topic of a Kafka outbox: events a sink refused for good
//! or that ran out of retries, with their reason and attempts as headers;
//! listed, redriven and purged by [`KafkaDeadLetters`]. Kafka deletes
//! records only by retention, so a handled letter (redriven or purged) is
//! recorded on the compacted `<dead-letter topic>-handled` topic, keyed by
//! its partition and offset; listing skips those.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::message::{Message, OwnedMessage};

use super::super::message::{
    OutboxMessage, ATTEMPTS_HEADER, DEAD_SINCE_HEADER, MSG_ID_HEADER, REASON_HEADER, SINK_HEADER,
};
use super::super::{OutboxDeadLetter, OutboxError};
use super::deliver::header;
use super::{read_topic, KafkaOutbox, Prepared};
use crate::notify::DeadLetterFilter;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The dead-letter headers: why, how many attempts, since when.
fn dead_headers(reason: &str, attempts: u32) -> [(&'static str, String); 3] {
    // Reasons come from receivers: one line, bounded.
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect();
    [
        (REASON_HEADER, reason),
        (ATTEMPTS_HEADER, attempts.to_string()),
        (DEAD_SINCE_HEADER, now_ms().to_string()),
    ]
}

async fn produce_one(outbox: &KafkaOutbox, record: Prepared) -> Result<(), OutboxError> {
    match outbox.produce(vec![record]).await.into_iter().next() {
        None => Ok(()),
        Some((_, error)) => Err(OutboxError::engine("dead-letter publish", error)),
    }
}

/// Publishes a dead letter and waits for the brokers to store it.
pub(super) async fn publish_dead_letter(
    outbox: &KafkaOutbox,
    message: &OutboxMessage,
    reason: &str,
    attempts: u32,
) -> Result<(), OutboxError> {
    let mut record = outbox.prepare(message);
    record.topic = outbox.shared.settings.dead_topic.clone();
    record.headers.extend(dead_headers(reason, attempts));
    produce_one(outbox, record).await
}

/// A record that could not be read as an event.
pub(super) struct RawLetter {
    pub(super) key: Option<Vec<u8>>,
    pub(super) payload: Vec<u8>,
}

/// Publishes a record that could not be read as an event, as it is.
pub(super) async fn publish_raw_dead_letter(
    outbox: &KafkaOutbox,
    sink: &str,
    raw: &RawLetter,
    reason: &str,
) -> Result<(), OutboxError> {
    let mut headers = vec![(SINK_HEADER, sink.to_owned())];
    headers.extend(dead_headers(reason, 1));
    let record = Prepared {
        topic: outbox.shared.settings.dead_topic.clone(),
        key: raw
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
        payload: bytes::Bytes::from(raw.payload.clone()),
    };
    produce_one(outbox, record).await
}

/// The operator's view of a Kafka outbox's dead letters (`s3tap
/// dead-letters --config ...`): the same [`DeadLetterFilter`] as the local
/// spool's.
#[derive(Clone, Debug)]
pub struct KafkaDeadLetters {
    outbox: KafkaOutbox,
}

impl KafkaDeadLetters {
    /// The dead letters of `outbox`.
    pub fn new(outbox: KafkaOutbox) -> Self {
        KafkaDeadLetters { outbox }
    }

    /// Up to `limit` dead letters `filter` selects, oldest first in each
    /// partition, not yet redriven or purged.
    pub async fn list(
        &self,
        filter: &DeadLetterFilter,
        limit: usize,
    ) -> Result<Vec<OutboxDeadLetter>, OutboxError> {
        self.outbox.ensure_topics().await?;
        let settings = self.outbox.shared.settings.clone();
        let config = self.outbox.client_config();
        let filter = filter.clone();
        tokio::task::spawn_blocking(move || {
            let mut handled = HashSet::new();
            read_topic(
                config.clone(),
                &settings.handled_topic(),
                settings.timeout,
                |_, _, low, _| Ok(low),
                |record| {
                    if let Some(key) = record.key() {
                        handled.insert(String::from_utf8_lossy(key).into_owned());
                    }
                    true
                },
            )?;
            let now = now_ms();
            let mut found = Vec::new();
            read_topic(
                config,
                &settings.dead_topic,
                settings.timeout,
                |_, _, low, _| Ok(low),
                |record| {
                    if handled.contains(&handled_key(record.partition(), record.offset())) {
                        return true;
                    }
                    if let Some(letter) = read_letter(&record) {
                        if letter.selected_by(&filter, now) {
                            found.push(letter);
                        }
                    }
                    found.len() < limit
                },
            )?;
            Ok(found)
        })
        .await
        .map_err(|e| OutboxError::engine("dead-letter reader", e))?
    }

    /// Publishes the selected dead letters to the events topic again
    /// (their sinks' deliverers take them as new, with a fresh retry
    /// budget and their own event ids) and marks them handled. Returns how
    /// many, per sink.
    pub async fn redrive(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<BTreeMap<String, u64>, OutboxError> {
        let letters = self.list(filter, usize::MAX).await?;
        let mut moved = BTreeMap::new();
        for letter in letters {
            let message = OutboxMessage {
                sink: Arc::from(letter.sink.as_str()),
                event: letter.event.clone(),
            };
            let mut record = self.outbox.prepare(&message);
            let partition = letter.partition.unwrap_or(0);
            for (name, value) in &mut record.headers {
                if *name == MSG_ID_HEADER {
                    *value = format!("{}:redrive:{partition}:{}", message.msg_id(), letter.seq);
                }
            }
            produce_one(&self.outbox, record).await?;
            self.mark(&letter, "redriven").await?;
            *moved.entry(letter.sink).or_insert(0) += 1;
        }
        Ok(moved)
    }

    /// Marks the selected dead letters handled, so they are no longer
    /// listed (the records themselves go with the topic's retention).
    /// Returns how many, per sink.
    pub async fn purge(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<BTreeMap<String, u64>, OutboxError> {
        let letters = self.list(filter, usize::MAX).await?;
        let mut purged = BTreeMap::new();
        for letter in letters {
            self.mark(&letter, "purged").await?;
            *purged.entry(letter.sink).or_insert(0) += 1;
        }
        Ok(purged)
    }

    async fn mark(&self, letter: &OutboxDeadLetter, how: &str) -> Result<(), OutboxError> {
        let record = Prepared {
            topic: self.outbox.shared.settings.handled_topic(),
            key: Some(handled_key(
                letter.partition.unwrap_or(0),
                letter.seq as i64,
            )),
            headers: Vec::new(),
            payload: bytes::Bytes::from(how.to_owned()),
        };
        produce_one(&self.outbox, record).await
    }
}

fn handled_key(partition: i32, offset: i64) -> String {
    format!("{partition}:{offset}")
}

fn read_letter(record: &OwnedMessage) -> Option<OutboxDeadLetter> {
    let place = format!(
        "{}[{}]@{}",
        record.topic(),
        record.partition(),
        record.offset()
    );
    let decoded = OutboxMessage::from_parts(
        header(record, SINK_HEADER),
        record.payload().unwrap_or_default(),
        &place,
    )
    .ok()?;
    Some(OutboxDeadLetter {
        seq: record.offset().max(0) as u64,
        partition: Some(record.partition()),
        sink: decoded.sink.to_string(),
        reason: header(record, REASON_HEADER).unwrap_or_default(),
        attempts: header(record, ATTEMPTS_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        dead_since_ms: header(record, DEAD_SINCE_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        event: decoded.event,
    })
}
