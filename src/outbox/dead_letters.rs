//! The dead-letter stream: events a sink refused for good or that ran out
//! of retries, kept with their reason and attempts, listed, redriven into
//! the outbox again, or purged by [`DeadLetterStream`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::HeaderMap;
use futures_util::StreamExt;

use super::jetstream::JetStreamOutbox;
use super::message::{
    OutboxMessage, ATTEMPTS_HEADER, DEAD_SINCE_HEADER, REASON_HEADER, SINK_HEADER,
};
use super::{OutboxDeadLetter, OutboxError};
use crate::notify::DeadLetterFilter;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn dead_headers(
    outbox: &JetStreamOutbox,
    message: &OutboxMessage,
    reason: &str,
    attempts: u32,
) -> (String, HeaderMap) {
    let settings = &outbox.shared.settings;
    let mut headers = message.headers();
    // Reasons come from receivers: one line, bounded.
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect();
    headers.insert(REASON_HEADER, reason.as_str());
    headers.insert(ATTEMPTS_HEADER, attempts.to_string().as_str());
    headers.insert(DEAD_SINCE_HEADER, now_ms().to_string().as_str());
    (
        format!("{}.{}", settings.dead_subject_prefix, message.sink),
        headers,
    )
}

/// Publishes a dead letter and waits for the stream to store it.
pub(super) async fn publish_dead_letter(
    outbox: &JetStreamOutbox,
    message: &OutboxMessage,
    reason: &str,
    attempts: u32,
) -> Result<(), OutboxError> {
    let (subject, headers) = dead_headers(outbox, message, reason, attempts);
    publish(outbox, subject, headers, message.payload()).await
}

/// Publishes a message that could not be read as an event, as it is.
pub(super) async fn publish_raw_dead_letter(
    outbox: &JetStreamOutbox,
    sink: &str,
    raw: &async_nats::jetstream::Message,
    reason: &str,
    attempts: u32,
) -> Result<(), OutboxError> {
    let settings = &outbox.shared.settings;
    let mut headers = raw.headers.clone().unwrap_or_default();
    headers.insert(SINK_HEADER, sink);
    headers.insert(REASON_HEADER, reason);
    headers.insert(ATTEMPTS_HEADER, attempts.to_string().as_str());
    headers.insert(DEAD_SINCE_HEADER, now_ms().to_string().as_str());
    let subject = format!("{}.{sink}", settings.dead_subject_prefix);
    publish(outbox, subject, headers, raw.payload.clone()).await
}

async fn publish(
    outbox: &JetStreamOutbox,
    subject: String,
    headers: HeaderMap,
    payload: bytes::Bytes,
) -> Result<(), OutboxError> {
    outbox.ensure_streams().await?;
    outbox
        .shared
        .jetstream
        .publish_with_headers(subject, headers, payload)
        .await
        .map_err(|e| OutboxError::engine("dead-letter publish", e))?
        .await
        .map_err(|e| OutboxError::engine("dead-letter ack", e))?;
    Ok(())
}

/// The operator's view of the dead-letter stream (`s3tap dead-letters
/// --outbox ...`): the same [`DeadLetterFilter`] as the local spool's.
#[derive(Clone, Debug)]
pub struct DeadLetterStream {
    outbox: JetStreamOutbox,
}

impl DeadLetterStream {
    /// The dead letters of `outbox`.
    pub fn new(outbox: JetStreamOutbox) -> Self {
        DeadLetterStream { outbox }
    }

    /// Up to `limit` dead letters `filter` selects, oldest first.
    pub async fn list(
        &self,
        filter: &DeadLetterFilter,
        limit: usize,
    ) -> Result<Vec<OutboxDeadLetter>, OutboxError> {
        let mut found = Vec::new();
        self.scan(filter, |letter| {
            found.push(letter);
            found.len() < limit
        })
        .await?;
        Ok(found)
    }

    /// Publishes the selected dead letters to the outbox again (their
    /// sinks' deliverers take them as new, with a fresh retry budget and
    /// their own event ids) and removes them from the dead letters. Returns
    /// how many, per sink.
    pub async fn redrive(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<BTreeMap<String, u64>, OutboxError> {
        let letters = self.list(filter, usize::MAX).await?;
        let mut moved = BTreeMap::new();
        for letter in letters {
            let message = OutboxMessage {
                sink: Arc::from(letter.sink.as_str()),
                event: letter.event,
            };
            let mut headers = message.headers();
            // A new id for the stream's de-duplication: the first copy may
            // still be inside the window. Receivers still see the event id.
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("{}:redrive:{}", message.msg_id(), letter.seq).as_str(),
            );
            let subject = message.subject(&self.outbox.shared.settings.subject_prefix);
            publish(&self.outbox, subject, headers, message.payload()).await?;
            self.delete(letter.seq).await?;
            *moved.entry(letter.sink).or_insert(0) += 1;
        }
        Ok(moved)
    }

    /// Deletes the selected dead letters. Returns how many, per sink.
    pub async fn purge(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<BTreeMap<String, u64>, OutboxError> {
        let letters = self.list(filter, usize::MAX).await?;
        let mut purged = BTreeMap::new();
        for letter in letters {
            self.delete(letter.seq).await?;
            *purged.entry(letter.sink).or_insert(0) += 1;
        }
        Ok(purged)
    }

    async fn delete(&self, seq: u64) -> Result<(), OutboxError> {
        let settings = &self.outbox.shared.settings;
        let stream = self
            .outbox
            .shared
            .jetstream
            .get_stream(&settings.dead_stream)
            .await
            .map_err(|e| OutboxError::engine("dead-letter stream", e))?;
        stream
            .delete_message(seq)
            .await
            .map_err(|e| OutboxError::engine("dead-letter delete", e))?;
        Ok(())
    }

    /// Reads the dead letters (from the first to the last present when the
    /// scan starts) that `filter` selects, until `each` answers false.
    async fn scan(
        &self,
        filter: &DeadLetterFilter,
        mut each: impl FnMut(OutboxDeadLetter) -> bool,
    ) -> Result<(), OutboxError> {
        self.outbox.ensure_streams().await?;
        let settings = &self.outbox.shared.settings;
        let mut stream = self
            .outbox
            .shared
            .jetstream
            .get_stream(&settings.dead_stream)
            .await
            .map_err(|e| OutboxError::engine("dead-letter stream", e))?;
        let last = stream
            .info()
            .await
            .map_err(|e| OutboxError::engine("dead-letter stream", e))?
            .state
            .last_sequence;
        if last == 0 {
            return Ok(());
        }
        let filter_subject = match &filter.sink {
            Some(sink) => format!("{}.{sink}", settings.dead_subject_prefix),
            None => format!("{}.>", settings.dead_subject_prefix),
        };
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| OutboxError::engine("dead-letter reader", e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| OutboxError::engine("dead-letter reader", e))?;
        let now = now_ms();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(2), messages.next()).await;
            let message = match next {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(error))) => {
                    return Err(OutboxError::engine("dead-letter reader", error))
                }
                // Nothing more within the wait: every letter selected was read.
                Ok(None) | Err(_) => return Ok(()),
            };
            let info = message
                .info()
                .map_err(|e| OutboxError::engine("dead-letter reader", e))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if let Some(letter) = read_letter(&message, seq, &settings.dead_subject_prefix) {
                if letter.selected_by(filter, now) && !each(letter) {
                    return Ok(());
                }
            }
            if seq >= last || pending == 0 {
                return Ok(());
            }
        }
    }
}

fn header(headers: Option<&HeaderMap>, name: &str) -> Option<String> {
    headers
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
}

fn read_letter(
    message: &async_nats::jetstream::Message,
    seq: u64,
    prefix: &str,
) -> Option<OutboxDeadLetter> {
    let headers = message.headers.as_ref();
    let decoded =
        OutboxMessage::decode(&message.subject, headers, &message.payload, prefix).ok()?;
    Some(OutboxDeadLetter {
        seq,
        partition: None,
        sink: decoded.sink.to_string(),
        reason: header(headers, REASON_HEADER).unwrap_or_default(),
        attempts: header(headers, ATTEMPTS_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        dead_since_ms: header(headers, DEAD_SINCE_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        event: decoded.event,
    })
}
